"""CloudWatch on the sandbox, driven by plain boto3: GetMetricData rules, ListMetrics, GetMetricStatistics.

Expected values come from the traffic model itself (``sandbox.traffic``), so these tests check that the server
rolls minutes up, pages and filters the way CloudWatch does, not what the traffic looks like.
"""

from __future__ import annotations

import http.client
import json
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import urlsplit

import cbor2
import numpy as np
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from pipelines.sandbox.server import SandboxServer
from pipelines.sandbox.services import cloudwatch as cloudwatch_service

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
NOW_MINUTE = int(NOW.timestamp()) // 60
# Demo series used below: a busy one (a datapoint every minute), one with idle minutes, one idle for 20 days.
BUSY = "1mkpeoqmauub"
BUSY_TOO = "f1yy6gpixwyf"
PATCHY = "aqqhh7y183ua"
IDLE_FOR_WEEKS = "0vw9gigtbibi"


def query(query_id, metric, model_id, stat="Sum", period=60, label=None, namespace="AWS/Bedrock", dims=None):
    """One MetricDataQuery for a Bedrock metric of one ModelId."""
    dimensions = dims if dims is not None else [{"Name": "ModelId", "Value": model_id}]
    item = {
        "Id": query_id,
        "MetricStat": {
            "Metric": {"Namespace": namespace, "MetricName": metric, "Dimensions": dimensions},
            "Period": period,
            "Stat": stat,
        },
    }
    if label is not None:
        item["Label"] = label
    return item


def by_id(response):
    return {r["Id"]: r for r in response["MetricDataResults"]}


def epochs(timestamps):
    return [int(t.timestamp()) for t in timestamps]


class _Body:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **kwargs):
        yield self._body


def raw_get_metric_data(client, **params) -> tuple[int, dict]:
    """Send a GetMetricData request serialized and signed by boto3; return the HTTP status and decoded body.

    botocore's pure-Python response parsers take over a second per 100,800 datapoints, so large pages are
    decoded here with the json module or cbor2: the hook sends the prepared request itself and hands botocore
    an empty document to parse.
    """
    protocol = client.meta.service_model.resolved_protocol
    empty = b"\xa0" if protocol == "smithy-rpc-v2-cbor" else b"{}"
    captured = {}

    def send(request, **kwargs):
        url = urlsplit(request.url)
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        connection.request(request.method, url.path or "/", body=request.body, headers=dict(request.headers))
        answer = connection.getresponse()
        captured["status"], captured["body"] = answer.status, answer.read()
        connection.close()
        return AWSResponse(request.url, 200, {}, _Body(empty))

    event = "before-send.cloudwatch.GetMetricData"
    client.meta.events.register_first(event, send)
    try:
        client.get_metric_data(**params)
    finally:
        client.meta.events.unregister(event, send)
    body = cbor2.loads(captured["body"]) if protocol == "smithy-rpc-v2-cbor" else json.loads(captured["body"])
    return captured["status"], body


@pytest.fixture
def cw(boto3_client):
    return boto3_client("cloudwatch")


def error_of(excinfo):
    error = excinfo.value.response
    return error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Message"]


# ---- datapoints -------------------------------------------------------------------------------------------


def test_minute_sums_are_the_model_minutes_and_idle_minutes_have_no_datapoint(cw, sandbox):
    start = NOW - timedelta(days=1)
    response = cw.get_metric_data(
        MetricDataQueries=[query("inv", "Invocations", PATCHY)],
        StartTime=start,
        EndTime=NOW,
        ScanBy="TimestampAscending",
    )
    result = by_id(response)["inv"]
    samples = sandbox.traffic.minutes("us-east-1", PATCHY, "Invocations", NOW_MINUTE - 1440, NOW_MINUTE)
    active = np.flatnonzero(samples.count > 0)
    assert 0 < len(active) < 1440, "the demo profile should have both busy and idle minutes"
    assert epochs(result["Timestamps"]) == [(NOW_MINUTE - 1440 + int(i)) * 60 for i in active]
    assert result["Values"] == samples.sum[active].tolist()
    assert result["StatusCode"] == "Complete"
    assert result["Label"] == "Invocations"


def test_hourly_and_five_minute_sums_equal_the_sums_of_their_minutes(cw):
    start, end = NOW - timedelta(days=2), NOW
    queries = [
        query("m60", "InputTokenCount", PATCHY, period=60),
        query("m300", "InputTokenCount", PATCHY, period=300),
        query("m3600", "InputTokenCount", PATCHY, period=3600),
    ]
    results = by_id(cw.get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=end))
    minutes = dict(zip(epochs(results["m60"]["Timestamps"]), results["m60"]["Values"], strict=True))
    for key, period in (("m300", 300), ("m3600", 3600)):
        expected: dict[int, float] = {}
        for stamp, value in minutes.items():
            bucket = stamp - stamp % period
            expected[bucket] = expected.get(bucket, 0.0) + value
        got = dict(zip(epochs(results[key]["Timestamps"]), results[key]["Values"], strict=True))
        assert got.keys() == expected.keys()
        for bucket, value in expected.items():
            assert got[bucket] == pytest.approx(value, rel=1e-12)
    assert sum(results["m3600"]["Values"]) == pytest.approx(sum(minutes.values()), rel=1e-12)


def test_the_five_statistics_agree_with_the_minute_samples(cw, sandbox):
    start = NOW - timedelta(hours=6)
    stats = ("Sum", "Average", "Minimum", "Maximum", "SampleCount")
    queries = [query(s.lower(), "InputTokenCount", BUSY, stat=s, period=3600) for s in stats]
    results = by_id(
        cw.get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=NOW, ScanBy="TimestampAscending")
    )
    samples = sandbox.traffic.minutes("us-east-1", BUSY, "InputTokenCount", NOW_MINUTE - 360, NOW_MINUTE)
    shape = (6, 60)
    count = samples.count.reshape(shape)
    expected = {
        "sum": samples.sum.reshape(shape).sum(axis=1),
        "samplecount": count.sum(axis=1),
        "minimum": np.where(count > 0, samples.minimum.reshape(shape), np.inf).min(axis=1),
        "maximum": np.where(count > 0, samples.maximum.reshape(shape), -np.inf).max(axis=1),
    }
    expected["average"] = expected["sum"] / expected["samplecount"]
    for key, values in expected.items():
        assert results[key]["Values"] == pytest.approx(values.tolist(), rel=1e-12), key
        assert len(results[key]["Timestamps"]) == 6
    for low, mean, high in zip(
        results["minimum"]["Values"], results["average"]["Values"], results["maximum"]["Values"], strict=True
    ):
        assert low <= mean <= high


def test_the_current_minute_is_not_published(cw, sandbox):
    response = cw.get_metric_data(
        MetricDataQueries=[query("inv", "Invocations", BUSY)],
        StartTime=NOW - timedelta(minutes=10),
        EndTime=NOW + timedelta(minutes=10),
    )
    stamps = epochs(by_id(response)["inv"]["Timestamps"])
    assert stamps[0] == (NOW_MINUTE - 1) * 60
    assert len(stamps) == 10


def test_scan_by_orders_timestamps(cw):
    params = {
        "MetricDataQueries": [query("inv", "Invocations", BUSY)],
        "StartTime": NOW - timedelta(hours=1),
        "EndTime": NOW,
    }
    default = by_id(cw.get_metric_data(**params))["inv"]
    ascending = by_id(cw.get_metric_data(ScanBy="TimestampAscending", **params))["inv"]
    stamps = epochs(default["Timestamps"])
    assert stamps == sorted(stamps, reverse=True)
    assert epochs(ascending["Timestamps"]) == stamps[::-1]
    assert ascending["Values"] == default["Values"][::-1]


def test_label_timezone_changes_only_the_label(cw):
    label = "${PROP('Dim.ModelId')} peak at ${MAX_TIME}"
    params = {
        "MetricDataQueries": [query("inv", "Invocations", BUSY, label=label)],
        "StartTime": NOW - timedelta(hours=3),
        "EndTime": NOW,
    }
    utc = by_id(cw.get_metric_data(**params))["inv"]
    shifted = by_id(cw.get_metric_data(LabelOptions={"Timezone": "+0130"}, **params))["inv"]
    assert utc["Timestamps"] == shifted["Timestamps"]
    assert utc["Values"] == shifted["Values"]
    peak = utc["Timestamps"][int(np.argmax(utc["Values"]))]
    assert utc["Label"] == f"{BUSY} peak at {peak.astimezone(UTC).isoformat()}"
    local = peak.astimezone(timezone(timedelta(hours=1, minutes=30)))
    assert shifted["Label"] == f"{BUSY} peak at {local.isoformat()}"


def test_metrics_bedrock_does_not_publish_come_back_empty_and_complete(cw):
    queries = [
        query("ec2", "CPUUtilization", "", namespace="AWS/EC2", dims=[{"Name": "InstanceId", "Value": "i-1"}]),
        query("nodim", "Invocations", "", dims=[]),
        query(
            "extra",
            "Invocations",
            BUSY,
            dims=[{"Name": "ModelId", "Value": BUSY}, {"Name": "Operation", "Value": "Converse"}],
        ),
        query("unknown", "Invocations", "no.such-model-v1:0"),
    ]
    results = cw.get_metric_data(MetricDataQueries=queries, StartTime=NOW - timedelta(hours=1), EndTime=NOW)
    assert [r["Id"] for r in results["MetricDataResults"]] == ["ec2", "nodim", "extra", "unknown"]
    for result in results["MetricDataResults"]:
        assert result["Timestamps"] == [] and result["Values"] == []
        assert result["StatusCode"] == "Complete"


def test_return_data_false_queries_are_not_returned(cw):
    queries = [
        query("shown", "Invocations", BUSY),
        {**query("hidden", "Invocations", BUSY), "ReturnData": False},
    ]
    response = cw.get_metric_data(MetricDataQueries=queries, StartTime=NOW - timedelta(hours=1), EndTime=NOW)
    assert [r["Id"] for r in response["MetricDataResults"]] == ["shown"]


# ---- retention ---------------------------------------------------------------------------------------------


def test_one_minute_data_reaches_back_15_days_and_five_minute_data_further(cw):
    start, end = NOW - timedelta(days=20), NOW - timedelta(days=10)
    queries = [
        query("fine", "Invocations", BUSY, period=60),
        query("coarse", "Invocations", BUSY, period=300),
    ]
    results = by_id(
        cw.get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=end, ScanBy="TimestampAscending")
    )
    cutoff = NOW - timedelta(days=15)
    assert results["fine"]["Timestamps"][0] >= cutoff
    assert results["fine"]["Timestamps"][0] < cutoff + timedelta(minutes=2)
    assert results["coarse"]["Timestamps"][0] < start + timedelta(minutes=5)
    assert results["fine"]["StatusCode"] == results["coarse"]["StatusCode"] == "Complete"


@pytest.fixture(scope="module")
def later_sandbox():
    """A second demo sandbox whose clock is moved after start, so old tiers of retention can be reached."""
    with SandboxServer("demo", seed=0, now=NOW) as server:
        yield server


def _client_for(server, boto3_client, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint_url)
    return boto3_client("cloudwatch")


def test_five_minute_data_ends_at_63_days_and_hourly_data_at_455(later_sandbox, boto3_client, monkeypatch):
    client = _client_for(later_sandbox, boto3_client, monkeypatch)
    # History starts 45 days before NOW; 30 days later the oldest minutes are 75 days old.
    later_sandbox.set_now(NOW + timedelta(days=30))
    now = later_sandbox.now()
    window = {"StartTime": now - timedelta(days=75), "EndTime": now - timedelta(days=60)}
    queries = [
        query("five", "Invocations", BUSY, period=300),
        query("hour", "Invocations", BUSY, period=3600),
    ]
    results = by_id(client.get_metric_data(MetricDataQueries=queries, ScanBy="TimestampAscending", **window))
    assert results["five"]["Timestamps"][0] >= now - timedelta(days=63)
    assert results["hour"]["Timestamps"][0] < now - timedelta(days=74)

    later_sandbox.set_now(NOW + timedelta(days=460))
    now = later_sandbox.now()
    too_old = client.get_metric_data(
        MetricDataQueries=[query("hour", "Invocations", BUSY, period=3600)],
        StartTime=now - timedelta(days=470),
        EndTime=now - timedelta(days=456),
    )
    kept = client.get_metric_data(
        MetricDataQueries=[query("hour", "Invocations", BUSY, period=3600)],
        StartTime=now - timedelta(days=454),
        EndTime=now - timedelta(days=453),
    )
    assert by_id(too_old)["hour"]["Timestamps"] == []
    assert len(by_id(kept)["hour"]["Timestamps"]) == 24


def test_moving_the_clock_never_changes_a_published_minute(later_sandbox, boto3_client, monkeypatch):
    client = _client_for(later_sandbox, boto3_client, monkeypatch)
    later_sandbox.set_now(NOW)
    params = {
        "MetricDataQueries": [query("tok", "OutputTokenCount", PATCHY)],
        "StartTime": NOW - timedelta(hours=6),
        "EndTime": NOW,
    }
    before = by_id(client.get_metric_data(**params))["tok"]
    later_sandbox.advance(timedelta(hours=5))
    after = by_id(client.get_metric_data(**params))["tok"]
    assert before["Timestamps"] == after["Timestamps"] and before["Values"] == after["Values"]


# ---- limits and pages --------------------------------------------------------------------------------------


def test_more_than_500_queries_is_refused(cw):
    queries = [query(f"q{i}", "Invocations", BUSY) for i in range(501)]
    with pytest.raises(ClientError) as excinfo:
        cw.get_metric_data(MetricDataQueries=queries, StartTime=NOW - timedelta(hours=1), EndTime=NOW)
    code, status, message = error_of(excinfo)
    assert (code, status) == ("InvalidParameterValue", 400)
    assert "500" in message


def test_500_queries_are_answered(cw):
    metrics = (
        "Invocations",
        "InputTokenCount",
        "OutputTokenCount",
        "InvocationLatency",
        "InvocationThrottles",
    )
    queries = [query(f"q{i}", metrics[i % 5], BUSY, period=60 * (1 + i // 5)) for i in range(500)]
    response = cw.get_metric_data(MetricDataQueries=queries, StartTime=NOW - timedelta(minutes=30), EndTime=NOW)
    assert len(response["MetricDataResults"]) == 500
    assert all(r["StatusCode"] == "Complete" for r in response["MetricDataResults"])


def test_a_response_holds_at_most_100800_datapoints_and_the_rest_follows_the_token(cw, sandbox):
    metrics = ("Invocations", "InputTokenCount", "OutputTokenCount", "InvocationLatency")
    queries = [query(f"{m.lower()}_{i}", m, model) for i, model in enumerate((BUSY, BUSY_TOO)) for m in metrics]
    # 13.5 days of minutes is 19,440 datapoints a query, so the sixth query straddles the page boundary.
    start = NOW - timedelta(days=13, hours=12)
    params = {"MetricDataQueries": queries, "StartTime": start, "EndTime": NOW}
    status, first = raw_get_metric_data(cw, **params)
    assert status == 200
    assert sum(len(r["Values"]) for r in first["MetricDataResults"]) == 100_800
    assert [r["StatusCode"] for r in first["MetricDataResults"]] == ["Complete"] * 5 + ["PartialData"]

    status, second = raw_get_metric_data(cw, NextToken=first["NextToken"], **params)
    assert "NextToken" not in second
    assert second["MetricDataResults"][0]["Id"] == first["MetricDataResults"][-1]["Id"]
    assert all(r["StatusCode"] == "Complete" for r in second["MetricDataResults"])
    total = {}
    for page in (first, second):
        for result in page["MetricDataResults"]:
            total[result["Id"]] = total.get(result["Id"], 0) + len(result["Values"])
    for i, model in enumerate((BUSY, BUSY_TOO)):
        for metric in metrics:
            samples = sandbox.traffic.minutes("us-east-1", model, metric, NOW_MINUTE - 19_440, NOW_MINUTE)
            assert total[f"{metric.lower()}_{i}"] == int((samples.count > 0).sum())


def test_max_datapoints_pages_through_the_paginator_to_the_same_series(cw):
    params = {
        "MetricDataQueries": [query("a", "Invocations", BUSY), query("b", "OutputTokenCount", PATCHY)],
        "StartTime": NOW - timedelta(days=1),
        "EndTime": NOW,
    }
    whole = by_id(cw.get_metric_data(**params))
    pages = list(cw.get_paginator("get_metric_data").paginate(PaginationConfig={"PageSize": 500}, **params))
    assert len(pages) == -(-sum(len(r["Values"]) for r in whole.values()) // 500)
    merged: dict[str, list] = {"a": [], "b": []}
    for page in pages:
        assert sum(len(r["Values"]) for r in page["MetricDataResults"]) <= 500
        for result in page["MetricDataResults"]:
            merged[result["Id"]] += list(zip(result["Timestamps"], result["Values"], strict=True))
    for key in ("a", "b"):
        assert merged[key] == list(zip(whole[key]["Timestamps"], whole[key]["Values"], strict=True))


def test_a_token_from_another_request_is_refused(cw):
    params = {
        "MetricDataQueries": [query("a", "Invocations", BUSY)],
        "StartTime": NOW - timedelta(days=1),
        "EndTime": NOW,
    }
    token = cw.get_metric_data(MaxDatapoints=10, **params)["NextToken"]
    params["StartTime"] = NOW - timedelta(days=2)
    with pytest.raises(ClientError) as excinfo:
        cw.get_metric_data(MaxDatapoints=10, NextToken=token, **params)
    assert error_of(excinfo)[:2] == ("InvalidNextToken", 400)


# ---- validation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queries", "code", "fragment"),
    [
        ([query("Upper", "Invocations", BUSY)], "ValidationError", "Upper"),
        ([query("1st", "Invocations", BUSY)], "ValidationError", "1st"),
        ([query("a-b", "Invocations", BUSY)], "ValidationError", "a-b"),
        (
            [query("same", "Invocations", BUSY), query("same", "Invocations", PATCHY)],
            "ValidationError",
            "same",
        ),
        ([query("p", "Invocations", BUSY, stat="p99")], "InvalidParameterValue", "p99"),
        ([query("p", "Invocations", BUSY, period=90)], "InvalidParameterValue", "multiple of 60"),
        ([{"Id": "e", "Expression": "SUM(METRICS())"}], "ValidationError", "expressions"),
        ([{"Id": "n"}], "ValidationError", "MetricStat or the Expression"),
    ],
)
def test_bad_queries_are_refused_with_the_aws_code(cw, queries, code, fragment):
    with pytest.raises(ClientError) as excinfo:
        cw.get_metric_data(MetricDataQueries=queries, StartTime=NOW - timedelta(hours=1), EndTime=NOW)
    got_code, status, message = error_of(excinfo)
    assert (got_code, status) == (code, 400)
    assert fragment in message


def test_bad_time_range_and_timezone_are_refused(cw):
    queries = [query("a", "Invocations", BUSY)]
    with pytest.raises(ClientError) as excinfo:
        cw.get_metric_data(MetricDataQueries=queries, StartTime=NOW, EndTime=NOW - timedelta(hours=1))
    assert error_of(excinfo)[0] == "ValidationError"
    with pytest.raises(ClientError) as excinfo:
        cw.get_metric_data(
            MetricDataQueries=queries,
            StartTime=NOW - timedelta(hours=1),
            EndTime=NOW,
            LabelOptions={"Timezone": "UTC+2"},
        )
    assert error_of(excinfo)[:2] == ("InvalidParameterValue", 400)


# ---- ListMetrics and GetMetricStatistics -------------------------------------------------------------------


def test_list_metrics_hides_series_idle_for_two_weeks(cw, sandbox):
    metrics = cw.list_metrics(Namespace="AWS/Bedrock")["Metrics"]
    listed = {m["Dimensions"][0]["Value"] for m in metrics}
    all_series = {s.model_id for s in sandbox.traffic.series("us-east-1")}
    assert IDLE_FOR_WEEKS in all_series
    assert listed == all_series - {IDLE_FOR_WEEKS}
    assert {m["Namespace"] for m in metrics} == {"AWS/Bedrock"}
    assert all(m["Dimensions"] == [{"Name": "ModelId", "Value": m["Dimensions"][0]["Value"]}] for m in metrics)
    busy = {m["MetricName"] for m in metrics if m["Dimensions"][0]["Value"] == BUSY}
    assert {"Invocations", "InputTokenCount", "OutputTokenCount", "InvocationThrottles"} <= busy


def test_list_metrics_filters(cw):
    everything = cw.list_metrics(Namespace="AWS/Bedrock")["Metrics"]
    by_name = cw.list_metrics(Namespace="AWS/Bedrock", MetricName="Invocations")["Metrics"]
    by_model = cw.list_metrics(Dimensions=[{"Name": "ModelId", "Value": PATCHY}])["Metrics"]
    recent = cw.list_metrics(Namespace="AWS/Bedrock", RecentlyActive="PT3H")["Metrics"]
    assert by_name == [m for m in everything if m["MetricName"] == "Invocations"]
    assert by_model == [m for m in everything if m["Dimensions"][0]["Value"] == PATCHY]
    assert 0 < len(recent) <= len(everything)
    assert all(m in everything for m in recent)
    assert cw.list_metrics(Namespace="AWS/EC2")["Metrics"] == []
    assert cw.list_metrics(Dimensions=[{"Name": "InstanceId"}])["Metrics"] == []


def test_list_metrics_paginator_walks_every_page(cw, monkeypatch):
    everything = cw.list_metrics(Namespace="AWS/Bedrock")["Metrics"]
    monkeypatch.setattr(cloudwatch_service, "LIST_METRICS_PAGE", 25)
    pages = list(cw.get_paginator("list_metrics").paginate(Namespace="AWS/Bedrock"))
    assert len(pages) == -(-len(everything) // 25)
    assert [m for page in pages for m in page["Metrics"]] == everything


def test_get_metric_statistics_matches_get_metric_data(cw):
    start = NOW - timedelta(hours=12)
    stats = cw.get_metric_statistics(
        Namespace="AWS/Bedrock",
        MetricName="InputTokenCount",
        Dimensions=[{"Name": "ModelId", "Value": BUSY}],
        StartTime=start,
        EndTime=NOW,
        Period=3600,
        Statistics=["Sum", "SampleCount"],
    )
    data = by_id(
        cw.get_metric_data(
            MetricDataQueries=[query("s", "InputTokenCount", BUSY, period=3600)],
            StartTime=start,
            EndTime=NOW,
            ScanBy="TimestampAscending",
        )
    )["s"]
    assert [p["Timestamp"] for p in stats["Datapoints"]] == data["Timestamps"]
    assert [p["Sum"] for p in stats["Datapoints"]] == data["Values"]
    with pytest.raises(ClientError) as excinfo:
        cw.get_metric_statistics(
            Namespace="AWS/Bedrock",
            MetricName="InputTokenCount",
            Dimensions=[{"Name": "ModelId", "Value": BUSY}],
            StartTime=NOW - timedelta(days=2),
            EndTime=NOW,
            Period=60,
            Statistics=["Sum"],
        )
    assert error_of(excinfo)[0] == "InvalidParameterCombination"


def test_a_region_without_traffic_answers_empty(boto3_client):
    client = boto3_client("cloudwatch", region="eu-west-1")
    assert client.list_metrics(Namespace="AWS/Bedrock")["Metrics"] == []
    response = client.get_metric_data(
        MetricDataQueries=[query("a", "Invocations", BUSY)], StartTime=NOW - timedelta(hours=1), EndTime=NOW
    )
    assert response["MetricDataResults"][0]["Values"] == []
    assert response["MetricDataResults"][0]["StatusCode"] == "Complete"

"""GetMetricData discipline: packing, NextToken, PartialData and errors, against botocore's Stubber."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.stub import ANY, Stubber

from pipelines.aws import AwsApiError
from pipelines.aws import cloudwatch as cloudwatch_module
from pipelines.aws.cloudwatch import (
    MAX_DATAPOINTS_PER_CALL,
    MAX_QUERIES_PER_CALL,
    METRICS,
    RateLimiter,
    fetch_metric_data,
    list_model_ids,
    plan_queries,
)

DAY = datetime(2026, 11, 19)


@pytest.fixture
def cloudwatch():
    client = boto3.client("cloudwatch", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def model_ids(count: int) -> list[str]:
    return [f"anthropic.model-{index:03d}-v1:0" for index in range(count)]


def empty_results(count: int, status: str = "Complete") -> list[dict]:
    return [{"Id": f"q{index}", "Timestamps": [], "Values": [], "StatusCode": status} for index in range(count)]


# Packing ---


def test_thirteen_queries_per_model_with_valid_unique_ids():
    batches = plan_queries(["m1", "m2"], DAY, DAY + timedelta(hours=1), 60)
    assert len(METRICS) == 13
    assert len(batches) == 1
    queries = batches[0].queries
    assert len(queries) == 26
    assert all(re.fullmatch(r"[a-z][a-zA-Z0-9_]*", query.query_id) for query in queries)
    assert len({query.query_id for query in queries}) == 26
    assert {(query.model_id, query.metric, query.stat) for query in queries} == {
        (model, spec.metric, spec.stat) for model in ("m1", "m2") for spec in METRICS
    }


def test_a_day_at_one_minute_packs_70_queries_per_call():
    # 1,440 datapoints per query: 70 x 1,440 = 100,800 exactly.
    ids = model_ids(20)  # 260 queries
    batches = plan_queries(ids, DAY, DAY + timedelta(days=1), 60)
    assert len(batches) == math.ceil(260 * 1440 / MAX_DATAPOINTS_PER_CALL) == 4
    assert all(batch.datapoint_slots <= MAX_DATAPOINTS_PER_CALL for batch in batches)
    assert sum(len(batch.queries) for batch in batches) == 260


def test_short_ranges_are_limited_by_500_queries_per_call():
    ids = model_ids(100)  # 1,300 queries over one hour: 78,000 slots, far below the datapoint limit
    batches = plan_queries(ids, DAY, DAY + timedelta(hours=1), 60)
    assert len(batches) == math.ceil(1300 / MAX_QUERIES_PER_CALL) == 3
    assert max(len(batch.queries) for batch in batches) <= MAX_QUERIES_PER_CALL


def test_a_day_at_five_minutes_packs_350_queries_per_call():
    ids = model_ids(40)  # 520 queries x 288 periods
    batches = plan_queries(ids, DAY, DAY + timedelta(days=1), 300)
    assert len(batches) == math.ceil(520 * 288 / MAX_DATAPOINTS_PER_CALL) == 2
    assert all(batch.datapoint_slots <= MAX_DATAPOINTS_PER_CALL for batch in batches)


def test_duplicate_model_ids_are_requested_once():
    batches = plan_queries(["m1", "m1", "m2"], DAY, DAY + timedelta(hours=1), 60)
    assert sum(len(batch.queries) for batch in batches) == 26


def test_period_must_be_whole_minutes():
    with pytest.raises(ValueError, match="multiple of 60"):
        plan_queries(["m1"], DAY, DAY + timedelta(hours=1), 90)


def test_packed_calls_send_the_planned_queries(cloudwatch):
    client, stubber = cloudwatch
    ids = model_ids(20)
    start, end = DAY, DAY + timedelta(days=1)
    for batch in plan_queries(ids, start, end, 60):
        stubber.add_response(
            "get_metric_data",
            {"MetricDataResults": empty_results(len(batch.queries))},
            {
                "MetricDataQueries": ANY,
                "StartTime": start.replace(tzinfo=UTC),
                "EndTime": end.replace(tzinfo=UTC),
                "ScanBy": "TimestampAscending",
            },
        )
    points, stats = fetch_metric_data(client, ids, start, end, 60, max_workers=1)
    assert len(points) == 0
    assert stats.calls == 4
    assert stats.metrics_requested == 260
    assert stats.datapoint_slots == 260 * 1440


# Results and NextToken ---


def test_results_map_back_to_model_metric_and_stat_as_naive_utc(cloudwatch):
    client, stubber = cloudwatch
    start, end = DAY, DAY + timedelta(minutes=3)
    results = empty_results(13)
    # q0 is Invocations/Sum, q9 InvocationLatency/Average of the single model.
    results[0].update(
        Timestamps=[start.replace(tzinfo=UTC), (start + timedelta(minutes=2)).replace(tzinfo=UTC)],
        Values=[3, 5],
    )
    results[9].update(Timestamps=[(start + timedelta(minutes=1)).replace(tzinfo=UTC)], Values=[812.5])
    stubber.add_response("get_metric_data", {"MetricDataResults": results})
    points, stats = fetch_metric_data(client, ["us.anthropic.claude"], start, end, 60)
    rows = list(zip(points.model_id, points.metric, points.stat, points.period_s, points.ts, points.value, strict=True))
    assert rows == [
        ("us.anthropic.claude", "InvocationLatency", "Average", 60, start + timedelta(minutes=1), 812.5),
        ("us.anthropic.claude", "Invocations", "Sum", 60, start, 3.0),
        ("us.anthropic.claude", "Invocations", "Sum", 60, start + timedelta(minutes=2), 5.0),
    ]
    assert all(moment.tzinfo is None for moment in points.ts)
    assert stats.datapoints == 3


def test_next_token_pages_are_followed_and_joined(cloudwatch):
    client, stubber = cloudwatch
    start, end = DAY, DAY + timedelta(minutes=2)
    first = empty_results(13, status="PartialData")
    first[1].update(Timestamps=[start.replace(tzinfo=UTC)], Values=[100])
    second = empty_results(13)
    second[1].update(Timestamps=[(start + timedelta(minutes=1)).replace(tzinfo=UTC)], Values=[200])
    stubber.add_response("get_metric_data", {"MetricDataResults": first, "NextToken": "page-2"})
    stubber.add_response(
        "get_metric_data",
        {"MetricDataResults": second},
        {
            "MetricDataQueries": ANY,
            "StartTime": ANY,
            "EndTime": ANY,
            "ScanBy": "TimestampAscending",
            "NextToken": "page-2",
        },
    )
    points, stats = fetch_metric_data(client, ["m1"], start, end, 60)
    assert list(points.value) == [100.0, 200.0]
    assert set(points.metric) == {"InputTokenCount"}
    assert stats.calls == 2
    assert stats.metrics_requested == 26


def test_partial_data_without_next_token_is_an_error(cloudwatch):
    client, stubber = cloudwatch
    stubber.add_response("get_metric_data", {"MetricDataResults": empty_results(13, status="PartialData")})
    with pytest.raises(AwsApiError, match="PartialData without a NextToken"):
        fetch_metric_data(client, ["m1"], DAY, DAY + timedelta(hours=1), 60)


def test_forbidden_status_is_an_error(cloudwatch):
    client, stubber = cloudwatch
    results = empty_results(13)
    results[4]["StatusCode"] = "Forbidden"
    stubber.add_response("get_metric_data", {"MetricDataResults": results})
    with pytest.raises(AwsApiError, match="returned Forbidden"):
        fetch_metric_data(client, ["m1"], DAY, DAY + timedelta(hours=1), 60)


def test_a_missing_query_result_is_an_error(cloudwatch):
    client, stubber = cloudwatch
    stubber.add_response("get_metric_data", {"MetricDataResults": empty_results(12)})
    with pytest.raises(AwsApiError, match="no result for 1 of 13"):
        fetch_metric_data(client, ["m1"], DAY, DAY + timedelta(hours=1), 60)


def test_call_level_messages_are_an_error(cloudwatch):
    client, stubber = cloudwatch
    stubber.add_response(
        "get_metric_data",
        {
            "MetricDataResults": empty_results(13),
            "Messages": [{"Code": "MaxMetricsExceeded", "Value": "Maximum number of allowed metrics exceeded"}],
        },
    )
    with pytest.raises(AwsApiError, match="MaxMetricsExceeded"):
        fetch_metric_data(client, ["m1"], DAY, DAY + timedelta(hours=1), 60)


@pytest.mark.parametrize("code", ["AccessDenied", "ThrottlingException", "ValidationError"])
def test_api_errors_propagate_naming_the_api_and_region(cloudwatch, code):
    client, stubber = cloudwatch
    stubber.add_client_error("get_metric_data", service_error_code=code, service_message="nope")
    with pytest.raises(AwsApiError, match=rf"GetMetricData in us-east-1 failed: {code}") as raised:
        fetch_metric_data(client, ["m1"], DAY, DAY + timedelta(hours=1), 60)
    assert raised.value.code == code


def test_an_error_in_a_later_call_fails_the_whole_fetch(cloudwatch):
    client, stubber = cloudwatch
    ids = model_ids(20)
    stubber.add_response("get_metric_data", {"MetricDataResults": empty_results(65)})
    stubber.add_client_error("get_metric_data", service_error_code="InternalServiceFault")
    with pytest.raises(AwsApiError, match="InternalServiceFault"):
        fetch_metric_data(client, ids, DAY, DAY + timedelta(days=1), 60, max_workers=1)


def test_datapoints_outside_the_range_are_an_error(cloudwatch):
    client, stubber = cloudwatch
    results = empty_results(13)
    results[0].update(Timestamps=[(DAY - timedelta(minutes=1)).replace(tzinfo=UTC)], Values=[1])
    stubber.add_response("get_metric_data", {"MetricDataResults": results})
    with pytest.raises(AwsApiError, match="outside the requested"):
        fetch_metric_data(client, ["m1"], DAY, DAY + timedelta(hours=1), 60)


def test_rate_limiter_spaces_calls_across_threads(monkeypatch):
    clock = {"now": 100.0}
    sleeps = []
    monkeypatch.setattr(cloudwatch_module.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(cloudwatch_module.time, "sleep", sleeps.append)
    limiter = RateLimiter(per_second=50)
    for _ in range(5):
        limiter.acquire()
    # Five calls at the same instant: the n-th waits n x 20 ms, i.e. 50 calls/s at most.
    assert sleeps == pytest.approx([0.02, 0.04, 0.06, 0.08])


# ListMetrics ---


def test_list_model_ids_follows_pages_and_keeps_model_only_series(cloudwatch):
    client, stubber = cloudwatch

    def metric(name, *dimensions):
        return {"Namespace": "AWS/Bedrock", "MetricName": name, "Dimensions": list(dimensions)}

    model = {"Name": "ModelId", "Value": "anthropic.claude-3-haiku-20240307-v1:0"}
    stubber.add_response(
        "list_metrics",
        {
            "Metrics": [
                metric("Invocations", model),
                metric("Invocations", model, {"Name": "Other", "Value": "x"}),
            ],
            "NextToken": "next",
        },
        {"Namespace": "AWS/Bedrock", "Dimensions": [{"Name": "ModelId"}]},
    )
    stubber.add_response(
        "list_metrics",
        {"Metrics": [metric("InputTokenCount", {"Name": "ModelId", "Value": "us.amazon.nova-lite-v1:0"})]},
        {"Namespace": "AWS/Bedrock", "Dimensions": [{"Name": "ModelId"}], "NextToken": "next"},
    )
    assert list_model_ids(client) == ["anthropic.claude-3-haiku-20240307-v1:0", "us.amazon.nova-lite-v1:0"]

"""Bedrock model invocation logs on the sandbox: records, CloudWatch Logs (Logs Insights, FilterLogEvents), the
S3 delivery bucket and the callers' IAM tags, read with plain boto3 and checked against the metrics.

Times refer to the shared demo sandbox (clock pinned 2026-11-20 12:00 UTC, logging switched on ten days before
the anchor day, 2026-11-10 00:00 UTC). Thursday 2026-11-19 14:00-14:25 is the weekday burst that throttles
us.anthropic.claude-sonnet-4-5 in us-east-1.
"""

from __future__ import annotations

import gzip
import json
import re
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from pipelines.sandbox.invocation_logs import invocation_logs
from pipelines.sandbox.server import SandboxServer
from pipelines.sandbox.services.logs import MAX_CONCURRENT_QUERIES, logs_state

REGION = "us-east-1"
GROUP = "/aws/bedrock/modelinvocations"
BUCKET = "bedrock-invocation-logs-123456789012-us-east-1"
ACCOUNT = "123456789012"
SONNET = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
BURST_START = datetime(2026, 11, 19, 13, 50, tzinfo=UTC)
BURST_END = datetime(2026, 11, 19, 14, 40, tzinfo=UTC)
LOGGING_STARTED = datetime(2026, 11, 10, tzinfo=UTC)
PINNED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
KEY_RE = re.compile(
    r"^AWSLogs/123456789012/BedrockModelInvocationLogs/us-east-1/(\d{4})/(\d{2})/(\d{2})/(\d{2})/"
    r"\d{8}T\d{9}Z_[0-9a-f]{16}\.json\.gz$"
)
TOKEN_METRICS = {
    "Invocations": None,
    "InputTokenCount": "inputTokenCount",
    "OutputTokenCount": "outputTokenCount",
    "CacheReadInputTokenCount": "cacheReadInputTokenCount",
    "CacheWriteInputTokenCount": "cacheWriteInputTokenCount",
}


@pytest.fixture
def logs(boto3_client):
    return boto3_client("logs")


@pytest.fixture
def s3(boto3_client):
    return boto3_client("s3")


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def minute_of(record: dict) -> int:
    stamp = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
    return int(stamp.timestamp()) // 60


def series_of(model_id: str) -> str:
    """The CloudWatch ModelId a logged modelId is published under (ARNs name the profile or model)."""
    return model_id.split("/", 1)[1] if model_id.startswith("arn:") else model_id


def filter_events(logs, start: datetime, end: datetime, pattern: str = "") -> list[dict]:
    """Every event of [start, end) through the FilterLogEvents paginator."""
    pages = logs.get_paginator("filter_log_events").paginate(
        logGroupName=GROUP, startTime=ms(start), endTime=ms(end) - 1, filterPattern=pattern
    )
    return [event for page in pages for event in page["events"]]


def s3_records(s3, start: datetime, end: datetime) -> list[dict]:
    """Every record of the S3 objects holding [start, end) (whole 5-minute chunks), from gzipped JSON lines."""
    records = []
    hour = start.replace(minute=0)
    while hour < end:
        prefix = f"AWSLogs/{ACCOUNT}/BedrockModelInvocationLogs/{REGION}/{hour:%Y/%m/%d/%H}/"
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for item in page.get("Contents", []):
                body = s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
                records += [json.loads(line) for line in gzip.decompress(body).decode().splitlines()]
        hour += timedelta(hours=1)
    return [r for r in records if ms(start) <= ms(datetime.fromisoformat(r["timestamp"][:-1] + "+00:00")) < ms(end)]


def run_insights(logs, query: str, start: datetime, end: datetime, **kwargs) -> dict:
    """StartQuery, poll to Complete, and read every page of rows; returns the last answer with all rows."""
    query_id = logs.start_query(
        logGroupName=GROUP,
        queryString=query,
        startTime=int(start.timestamp()),
        endTime=int(end.timestamp()) - 1,
        **kwargs,
    )["queryId"]
    deadline = time.monotonic() + 120
    while True:
        answer = logs.get_query_results(queryId=query_id)
        if answer["status"] not in ("Scheduled", "Running"):
            break
        assert time.monotonic() < deadline, "the query did not finish"
        time.sleep(0.05)
    assert answer["status"] == "Complete", answer
    rows = list(answer["results"])
    token = answer.get("nextToken")
    while token:
        page = logs.get_query_results(queryId=query_id, nextToken=token)
        rows += page["results"]
        token = page.get("nextToken")
    answer["rows"] = [{cell["field"]: cell["value"] for cell in row} for row in rows]
    return answer


# ---- the records ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def burst_records(sandbox) -> list[dict]:
    """Every record of the throttled half hour, read through FilterLogEvents (paged, 1 MB a page)."""
    import boto3

    client = boto3.client(
        "logs",
        endpoint_url=sandbox.endpoint_url,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    events = filter_events(client, BURST_START, BURST_END)
    assert events == sorted(events, key=lambda e: e["timestamp"])
    assert all(e["logStreamName"] == "aws/bedrock/modelinvocations" for e in events)
    return [json.loads(event["message"]) for event in events]


def test_records_follow_the_model_invocation_log_schema(burst_records):
    assert len(burst_records) > 10_000
    ok = [r for r in burst_records if "errorCode" not in r]
    failed = [r for r in burst_records if "errorCode" in r]
    for record in burst_records:
        assert record["schemaType"] == "ModelInvocationLog"
        assert record["schemaVersion"] == "1.0"
        assert record["accountId"] == ACCOUNT
        assert record["region"] == REGION
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", record["requestId"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["timestamp"])
        assert record["operation"] in ("InvokeModel", "Converse", "ConverseStream", "InvokeModelWithResponseStream")
        assert set(record["identity"]) == {"arn"}
        assert record["input"]["inputContentType"] == "application/json"
        # Bodies are never simulated: a short placeholder stands in for the prompt and the answer.
        assert record["input"]["inputBodyJson"] == {"messages": "[omitted]"}
    assert len({r["requestId"] for r in burst_records}) == len(burst_records)
    for record in ok:
        assert list(record)[:11] == [
            "schemaType",
            "schemaVersion",
            "timestamp",
            "accountId",
            "identity",
            "region",
            "requestId",
            "operation",
            "modelId",
            "input",
            "output",
        ]
        tokens = record["input"]
        assert all(isinstance(tokens[k], int) and tokens[k] >= 0 for k in TOKEN_METRICS.values() if k and k in tokens)
        assert isinstance(record["output"]["outputTokenCount"], int)
        assert record["output"]["outputBodyJson"] == {"output": "[omitted]"}
    # Throttled and failed calls are logged with the error and no token counts.
    assert {r["errorCode"] for r in failed} >= {"ThrottlingException"}
    assert {r["errorCode"] for r in failed} <= {"ThrottlingException", "ValidationException", "InternalServerException"}
    for record in failed:
        assert "output" not in record
        assert "inputTokenCount" not in record["input"]
    throttled = Counter(series_of(r["modelId"]) for r in failed if r["errorCode"] == "ThrottlingException")
    assert set(throttled) <= {SONNET, "k6ohwgtg1bm5", "q8d95n1upg5i", "tryx39s6ak1r", "aqqhh7y183ua"}


def test_callers_are_a_mix_of_sessions_users_and_a_federated_user(burst_records, sandbox):
    arns = Counter(r["identity"]["arn"] for r in burst_records)
    roles = [a for a in arns if a.startswith(f"arn:aws:sts::{ACCOUNT}:assumed-role/")]
    assert {a.rsplit("/", 1)[1] for a in roles if "/code-review-runner/" in a} == {
        "gha-run-88121",
        "gha-run-88122",
        "gha-run-88140",
        "gha-run-88157",
        "gha-run-88163",
    }
    assert f"arn:aws:iam::{ACCOUNT}:user/ci-smoke-tests" in arns
    assert f"arn:aws:iam::{ACCOUNT}:user/jonas.weber" in arns
    assert f"arn:aws:sts::{ACCOUNT}:federated-user/eval-contractor" in arns
    # modelId is what the caller sent: an application profile's ARN, a system profile's id or its ARN, a model id.
    model_ids = {r["modelId"] for r in burst_records}
    assert f"arn:aws:bedrock:{REGION}:{ACCOUNT}:application-inference-profile/q8d95n1upg5i" in model_ids
    assert SONNET in model_ids
    assert f"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/{SONNET}" in model_ids
    assert "amazon.nova-lite-v1:0" in model_ids
    # requestMetadata only where the caller sets it.
    tenants = {r["requestMetadata"]["tenant"] for r in burst_records if "tenant" in r.get("requestMetadata", {})}
    assert {"acme-corp", "globex"} <= tenants
    callers_with_metadata = {r["identity"]["arn"].split("/")[1] for r in burst_records if "requestMetadata" in r}
    assert "ticket-router" not in callers_with_metadata
    assert "support-assistant-app" in callers_with_metadata


def test_record_sums_per_series_and_minute_equal_the_cloudwatch_sums(burst_records, boto3_client, sandbox):
    from_records: dict[tuple[str, str, int], float] = defaultdict(float)
    for record in burst_records:
        key = (series_of(record["modelId"]), minute_of(record))
        if "errorCode" in record:
            metric = {"ThrottlingException": "InvocationThrottles", "ValidationException": "InvocationClientErrors"}
            name = metric.get(record["errorCode"], "InvocationServerErrors")
            from_records[(*key[:1], name, key[1])] += 1
            continue
        from_records[(key[0], "Invocations", key[1])] += 1
        for metric, field in TOKEN_METRICS.items():
            if field:
                part = record["input"] if field != "outputTokenCount" else record["output"]
                from_records[(key[0], metric, key[1])] += part.get(field, 0)

    cloudwatch = boto3_client("cloudwatch")
    series = [spec.model_id for spec in sandbox.scenario.traffic[REGION]]
    metrics = [*TOKEN_METRICS, "InvocationThrottles", "InvocationClientErrors", "InvocationServerErrors"]
    queries = [
        {
            "Id": f"q{i}",
            "Label": f"{model_id}|{metric}",
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/Bedrock",
                    "MetricName": metric,
                    "Dimensions": [{"Name": "ModelId", "Value": model_id}],
                },
                "Period": 60,
                "Stat": "Sum",
            },
        }
        for i, (model_id, metric) in enumerate((m, metric) for m in series for metric in metrics)
    ]
    from_metrics: dict[tuple[str, str, int], float] = {}
    for page in cloudwatch.get_paginator("get_metric_data").paginate(
        MetricDataQueries=queries, StartTime=BURST_START, EndTime=BURST_END
    ):
        for result in page["MetricDataResults"]:
            model_id, metric = result["Label"].split("|")
            for stamp, value in zip(result["Timestamps"], result["Values"], strict=True):
                if value:
                    from_metrics[(model_id, metric, int(stamp.timestamp()) // 60)] = value
    assert {k: v for k, v in from_records.items() if v} == from_metrics
    assert any(metric == "InvocationThrottles" for _, metric, _ in from_metrics), "the burst throttles"


@pytest.mark.parametrize(
    ("pattern", "keep"),
    [
        ('{ $.errorCode = "ThrottlingException" }', lambda r: r.get("errorCode") == "ThrottlingException"),
        (
            '{ $.input.inputTokenCount > 20000 && $.operation = "Invoke*" }',
            lambda r: r["input"].get("inputTokenCount", 0) > 20000 and r["operation"].startswith("Invoke"),
        ),
        ("{ $.requestMetadata.tenant EXISTS || $.errorCode = Validation* }", None),
        ('"federated-user/eval-contractor"', lambda r: "federated-user/eval-contractor" in r["identity"]["arn"]),
        (
            "?ValidationException ?InternalServerException",
            lambda r: r.get("errorCode") in ("ValidationException", "InternalServerException"),
        ),
        (
            "ThrottlingException -code-review-runner",
            lambda r: r.get("errorCode") == "ThrottlingException" and "code-review-runner" not in r["identity"]["arn"],
        ),
    ],
)
def test_filter_patterns_select_the_matching_events(logs, burst_records, pattern, keep):
    if keep is None:

        def keep(r):
            return "tenant" in r.get("requestMetadata", {}) or r.get("errorCode") == "ValidationException"

    start, end = datetime(2026, 11, 19, 14, 0, tzinfo=UTC), datetime(2026, 11, 19, 14, 10, tzinfo=UTC)
    expected = [r["requestId"] for r in burst_records if ms(start) <= _stamp_ms(r) < ms(end) and keep(r)]
    got = [json.loads(e["message"])["requestId"] for e in filter_events(logs, start, end, pattern)]
    assert got == expected and expected


def test_filter_log_events_pages_across_midnight_without_losing_an_event(logs, sandbox):
    start, end = datetime(2026, 11, 18, 23, 58, tzinfo=UTC), datetime(2026, 11, 19, 0, 2, tzinfo=UTC)
    pages = list(
        logs.get_paginator("filter_log_events").paginate(
            logGroupName=GROUP,
            startTime=ms(start),
            endTime=ms(end) - 1,
            filterPattern="{ $.operation = Converse* }",
            PaginationConfig={"PageSize": 37},
        )
    )
    got = [json.loads(e["message"])["requestId"] for page in pages for e in page["events"]]
    records = invocation_logs(sandbox.traffic).records(REGION, ms(start), ms(end)).to_pylist()
    expected = [r["requestId"] for r in records if r["operation"].startswith("Converse")]
    assert len(pages) > 3 and got == expected
    with pytest.raises(logs.exceptions.InvalidParameterException):
        logs.filter_log_events(logGroupName=GROUP, startTime=ms(start), endTime=ms(end), nextToken="bm90IGEgdG9rZW4=")


def _stamp_ms(record: dict) -> int:
    # Records carry whole seconds; the window edges are whole minutes, so seconds decide.
    return ms(datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")))


# ---- Logs Insights -------------------------------------------------------------------------------------------

WINDOW_START = datetime(2026, 11, 19, 14, 0, tzinfo=UTC)
WINDOW_END = datetime(2026, 11, 19, 14, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def window_records(sandbox) -> list[dict]:
    """The records of 14:00-14:30 read independently, from the S3 delivery bucket."""
    import boto3

    client = boto3.client(
        "s3", endpoint_url=sandbox.endpoint_url, region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t"
    )
    return s3_records(client, WINDOW_START, WINDOW_END)


def test_stats_by_minute_and_caller_match_the_records(logs, window_records):
    answer = run_insights(
        logs,
        "filter not ispresent(errorCode)\n"
        "| stats sum(input.inputTokenCount) as i, sum(output.outputTokenCount) as o, count(*) as n"
        " by bin(1m) as minute, identity.arn",
        WINDOW_START,
        WINDOW_END,
    )
    got = {
        (row["minute"], row["identity.arn"]): (int(row["i"]), int(row["o"]), int(row["n"])) for row in answer["rows"]
    }
    expected: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for record in window_records:
        if "errorCode" in record:
            continue
        stamp = datetime.fromtimestamp(minute_of(record) * 60, UTC)
        cell = expected[(f"{stamp:%Y-%m-%d %H:%M:%S}.000", record["identity"]["arn"])]
        cell[0] += record["input"]["inputTokenCount"]
        cell[1] += record["output"]["outputTokenCount"]
        cell[2] += 1
    assert got == {k: tuple(v) for k, v in expected.items()}
    statistics = answer["statistics"]
    assert statistics["recordsScanned"] == len(window_records)
    assert statistics["recordsMatched"] == sum(1 for r in window_records if "errorCode" not in r)
    assert statistics["bytesScanned"] > 500 * len(window_records)


def test_parse_with_named_groups_and_coalesce(logs, window_records):
    answer = run_insights(
        logs,
        r'parse @message /"operation":"(?<op>[A-Za-z]+)","modelId":"(?<target>[^"]+)"/'
        "\n| fields coalesce(errorCode, 'ok') as outcome"
        "\n| stats count(*) as n by op, target, outcome",
        WINDOW_START,
        WINDOW_END,
    )
    got = {(row["op"], row["target"], row["outcome"]): int(row["n"]) for row in answer["rows"]}
    expected = Counter((r["operation"], r["modelId"], r.get("errorCode", "ok")) for r in window_records)
    assert got == dict(expected)
    assert any(outcome == "ThrottlingException" for _, _, outcome in got)


def test_filter_with_in_ispresent_not_and_or(logs, window_records):
    profiles = [
        f"arn:aws:bedrock:{REGION}:{ACCOUNT}:application-inference-profile/k6ohwgtg1bm5",
        f"arn:aws:bedrock:{REGION}:{ACCOUNT}:application-inference-profile/0i4bsiao79du",
    ]
    in_list = ", ".join(f'"{p}"' for p in profiles)
    answer = run_insights(
        logs,
        f"filter modelId in [{in_list}] and ispresent(`requestMetadata.tenant`) and not ispresent(errorCode)"
        "\n| stats count(*) as n, sum(input.cacheReadInputTokenCount) as cached by `requestMetadata.tenant` as tenant",
        WINDOW_START,
        WINDOW_END,
    )
    got = {row["tenant"]: (int(row["n"]), int(row["cached"])) for row in answer["rows"]}
    expected: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for record in window_records:
        tenant = record.get("requestMetadata", {}).get("tenant")
        if record["modelId"] in profiles and tenant and "errorCode" not in record:
            expected[tenant][0] += 1
            expected[tenant][1] += record["input"]["cacheReadInputTokenCount"]
    assert got == {k: tuple(v) for k, v in expected.items()} and len(got) >= 4

    answer = run_insights(
        logs,
        "filter errorCode = 'ThrottlingException' or identity.arn like /federated-user/"
        "\n| filter operation != 'InvokeModelWithResponseStream'"
        "\n| stats count(*) as n by errorCode",
        WINDOW_START,
        WINDOW_END,
    )
    got = {row.get("errorCode", "-"): int(row["n"]) for row in answer["rows"]}
    expected_counts = Counter(
        r.get("errorCode", "-")
        for r in window_records
        if (r.get("errorCode") == "ThrottlingException" or "federated-user" in r["identity"]["arn"])
        and r["operation"] != "InvokeModelWithResponseStream"
    )
    assert got == dict(expected_counts)


def test_fields_sort_limit_and_display(logs, window_records):
    answer = run_insights(
        logs,
        'fields @timestamp, identity.arn as who, input.inputTokenCount as tokens\n| filter who like "user/ci-smoke"'
        "\n| sort tokens desc\n| limit 5\n| display who, tokens",
        WINDOW_START,
        WINDOW_END,
    )
    smoke = sorted(
        (
            r["input"]["inputTokenCount"]
            for r in window_records
            if "user/ci-smoke" in r["identity"]["arn"] and "errorCode" not in r
        ),
        reverse=True,
    )
    assert [int(row["tokens"]) for row in answer["rows"]] == smoke[:5]
    assert all(set(row) == {"who", "tokens", "@ptr"} for row in answer["rows"])


def test_an_unknown_command_or_group_is_refused(logs):
    for unsupported in ("fields x | dedup x", "stats pct(input.inputTokenCount, 90)", "filter x = 'unterminated"):
        with pytest.raises(logs.exceptions.MalformedQueryException):
            logs.start_query(logGroupName=GROUP, queryString=unsupported, startTime=0, endTime=60)
    with pytest.raises(logs.exceptions.ResourceNotFoundException):
        logs.start_query(logGroupName="/no/such/group", queryString="fields x", startTime=0, endTime=60)
    with pytest.raises(logs.exceptions.ResourceNotFoundException):
        logs.get_query_results(queryId="00000000-0000-4000-8000-000000000000")


# ---- limits and stats (own servers: they hold queries open and read the stats) ------------------------------


@pytest.fixture
def own_sandbox():
    with SandboxServer("demo", seed=0, now=PINNED) as server:
        yield server


def _client(server, service):
    import boto3

    return boto3.client(
        service, endpoint_url=server.endpoint_url, region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t"
    )


def test_results_are_paged_by_ten_thousand_and_capped_by_the_limit(own_sandbox):
    logs = _client(own_sandbox, "logs")
    start, end = WINDOW_START, WINDOW_START + timedelta(hours=1)
    records = invocation_logs(own_sandbox.traffic).records(REGION, ms(start), ms(end)).num_rows
    assert records > 12_000
    # Without a limit Logs Insights returns 10,000 rows.
    assert len(run_insights(logs, "fields requestId", start, end)["rows"]) == 10_000
    # Up to 100,000 with the limit parameter, read in pages of 10,000.
    answer = run_insights(logs, "fields requestId", start, end, limit=12_000)
    assert len(answer["rows"]) == 12_000
    assert len({row["requestId"] for row in answer["rows"]}) == 12_000
    assert len(run_insights(logs, "fields requestId | limit 7", start, end, limit=12_000)["rows"]) == 7
    with pytest.raises(logs.exceptions.InvalidParameterException):
        logs.start_query(logGroupName=GROUP, queryString="fields x", startTime=0, endTime=60, limit=100_001)


def test_at_most_thirty_queries_run_at_once(own_sandbox):
    logs = _client(own_sandbox, "logs")
    logs_state(own_sandbox.traffic).min_query_seconds = 120
    started = [
        logs.start_query(logGroupName=GROUP, queryString="stats count(*)", startTime=1795000000, endTime=1795000060)[
            "queryId"
        ]
        for _ in range(MAX_CONCURRENT_QUERIES)
    ]
    assert logs.get_query_results(queryId=started[0])["status"] in ("Scheduled", "Running")
    with pytest.raises(logs.exceptions.LimitExceededException):
        logs.start_query(logGroupName=GROUP, queryString="stats count(*)", startTime=1795000000, endTime=1795000060)
    assert logs.stop_query(queryId=started[0])["success"] is True
    assert logs.get_query_results(queryId=started[0])["status"] == "Cancelled"
    logs.start_query(logGroupName=GROUP, queryString="stats count(*)", startTime=1795000000, endTime=1795000060)


def test_stats_count_the_records_and_bytes_a_run_reads(own_sandbox):
    logs, s3 = _client(own_sandbox, "logs"), _client(own_sandbox, "s3")
    start, end = datetime(2026, 11, 19, 9, 0, tzinfo=UTC), datetime(2026, 11, 19, 10, 0, tzinfo=UTC)
    own_sandbox.reset_stats()
    answer = run_insights(logs, "stats count(*) as n", start, end)
    stats = own_sandbox.stats()
    assert stats["logs_records_scanned"] == answer["statistics"]["recordsScanned"] == int(answer["rows"][0]["n"])
    messages = [e["message"] for e in filter_events(logs, start, end)]
    assert len(messages) == int(answer["rows"][0]["n"])
    # Bytes scanned are the records' JSON text, as Logs Insights bills them.
    assert stats["logs_bytes_scanned"] == answer["statistics"]["bytesScanned"] == sum(len(m.encode()) for m in messages)

    own_sandbox.reset_stats()
    records = s3_records(s3, start, end)
    stats = own_sandbox.stats()
    assert stats["s3_objects_read"] == 12
    assert stats["s3_records_read"] == len(records) == len(messages)
    assert stats["s3_bytes_read"] > 0


def test_caller_totals_helper_agrees_with_a_query(sandbox, logs):
    start, end = datetime(2026, 11, 19, 16, 0, tzinfo=UTC), datetime(2026, 11, 19, 17, 0, tzinfo=UTC)
    totals = invocation_logs(sandbox.traffic).caller_totals(REGION, start, end)
    answer = run_insights(
        logs,
        "filter not ispresent(errorCode) | stats sum(input.inputTokenCount) as i, count(*) as n by identity.arn",
        start,
        end,
    )
    by_arn: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in totals:
        by_arn[row["arn"]][0] += row["input_tokens"]
        by_arn[row["arn"]][1] += row["requests"]
    assert {row["identity.arn"]: [int(row["i"]), int(row["n"])] for row in answer["rows"]} == {
        arn: v for arn, v in by_arn.items() if v[1]
    }
    principals = {row["principal"] for row in totals}
    assert {"role/code-review-runner", "user/ci-smoke-tests"} <= principals


# ---- S3 -------------------------------------------------------------------------------------------------------


def test_objects_are_laid_out_and_gzipped_as_bedrock_delivers_them(s3, logs):
    prefix = f"AWSLogs/{ACCOUNT}/BedrockModelInvocationLogs/{REGION}/2026/11/19/14/"
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    keys = [item["Key"] for item in listing["Contents"]]
    assert len(keys) == 12 and keys == sorted(keys)
    records, lines_read = [], []
    for item in listing["Contents"]:
        assert KEY_RE.match(item["Key"]), item["Key"]
        got = s3.get_object(Bucket=BUCKET, Key=item["Key"])
        body = got["Body"].read()
        assert body[:2] == b"\x1f\x8b" and len(body) == item["Size"] == got["ContentLength"]
        assert got["ETag"] == item["ETag"]
        lines = gzip.decompress(body).decode().splitlines()
        lines_read += lines
        chunk = [json.loads(line) for line in lines]
        # A few minutes of records each, all from the object's hour.
        assert len({minute_of(r) for r in chunk}) == 5
        assert {r["timestamp"][11:13] for r in chunk} == {"14"}
        records += chunk
    # The same records, in the same order and the same text, as the CloudWatch Logs events and @message.
    events = filter_events(logs, datetime(2026, 11, 19, 14, tzinfo=UTC), datetime(2026, 11, 19, 15, tzinfo=UTC))
    assert lines_read == [e["message"] for e in events]
    assert [r["requestId"] for r in records] == [json.loads(e["message"])["requestId"] for e in events]
    sample = run_insights(
        logs,
        "fields @message | sort @timestamp asc | limit 200",
        datetime(2026, 11, 19, 14, tzinfo=UTC),
        datetime(2026, 11, 19, 15, tzinfo=UTC),
    )
    assert [row["@message"] for row in sample["rows"]] == lines_read[:200]


def test_listing_pages_with_continuation_tokens_and_stops_at_the_clock(s3):
    prefix = f"AWSLogs/{ACCOUNT}/BedrockModelInvocationLogs/{REGION}/2026/11/20/"
    whole = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    keys = [item["Key"] for item in whole["Contents"]]
    # The clock is 12:00: the chunk 11:55-12:00 is delivered a minute after it closes.
    assert len(keys) == 12 * 12 - 1
    assert whole["IsTruncated"] is False
    paged = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix=prefix, PaginationConfig={"PageSize": 25}
        )
        for item in page.get("Contents", [])
    ]
    assert paged == keys
    first = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix, MaxKeys=3)
    assert first["KeyCount"] == 3 and first["IsTruncated"] and "NextContinuationToken" in first
    hours = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix, Delimiter="/")
    assert [p["Prefix"][-3:] for p in hours["CommonPrefixes"]] == [f"{h:02d}/" for h in range(12)]
    with pytest.raises(ClientError) as excinfo:
        s3.get_object(Bucket=BUCKET, Key=prefix + "11/20261120T120000000Z_0000000000000000.json.gz")
    assert excinfo.value.response["Error"]["Code"] == "NoSuchKey"
    with pytest.raises(ClientError) as excinfo:
        s3.list_objects_v2(Bucket="someone-elses-bucket")
    assert excinfo.value.response["Error"]["Code"] == "NoSuchBucket"


# ---- logging switched on late --------------------------------------------------------------------------------


def test_traffic_before_logging_started_is_in_the_metrics_but_not_in_the_logs(logs, s3, boto3_client):
    group = logs.describe_log_groups(logGroupNamePrefix="/aws/bedrock")["logGroups"][0]
    assert group["logGroupName"] == GROUP
    assert group["creationTime"] == ms(LOGGING_STARTED)
    start, end = LOGGING_STARTED - timedelta(hours=2), LOGGING_STARTED + timedelta(hours=1)
    invocations = boto3_client("cloudwatch").get_metric_statistics(
        Namespace="AWS/Bedrock",
        MetricName="Invocations",
        Dimensions=[{"Name": "ModelId", "Value": "f1yy6gpixwyf"}],
        StartTime=start,
        EndTime=end,
        Period=3600,
        Statistics=["Sum"],
    )["Datapoints"]
    before = [d for d in invocations if d["Timestamp"] < LOGGING_STARTED]
    assert before and all(d["Sum"] > 0 for d in before)
    answer = run_insights(logs, "stats min(@timestamp) as first, count(*) as n", start, end)
    assert answer["rows"][0]["first"] == "2026-11-10 00:00:00.000" or answer["rows"][0]["first"].startswith(
        "2026-11-10 00:00"
    )
    assert answer["statistics"]["recordsScanned"] == int(answer["rows"][0]["n"])
    assert filter_events(logs, start, LOGGING_STARTED) == []
    earlier = s3.list_objects_v2(
        Bucket=BUCKET, Prefix=f"AWSLogs/{ACCOUNT}/BedrockModelInvocationLogs/{REGION}/2026/11/09/"
    )
    assert earlier["KeyCount"] == 0


# ---- IAM ------------------------------------------------------------------------------------------------------


def test_principal_tags_come_from_iam(boto3_client, sandbox):
    iam = boto3_client("iam")
    assert iam.list_role_tags(RoleName="code-review-runner")["Tags"] == [
        {"Key": "team", "Value": "platform"},
        {"Key": "cost-center", "Value": "CC-2001"},
    ]
    assert iam.list_user_tags(UserName="maria.garcia")["Tags"] == [
        {"Key": "team", "Value": "data-science"},
        {"Key": "cost-center", "Value": "CC-7001"},
    ]
    for key, principal in sandbox.scenario.principals.items():
        if principal.kind == "role":
            tags = iam.list_role_tags(RoleName=principal.name)["Tags"]
        elif principal.kind == "user":
            tags = iam.list_user_tags(UserName=principal.name)["Tags"]
        else:
            continue
        assert {t["Key"]: t["Value"] for t in tags} == principal.tags, key
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.list_role_tags(RoleName="no-such-role")


def test_records_are_the_same_for_the_same_seed_and_differ_for_another(sandbox):
    from pipelines.sandbox.invocation_logs import InvocationLogs
    from pipelines.sandbox.traffic import Traffic

    day = int(datetime(2026, 11, 17, tzinfo=UTC).timestamp()) // 86_400

    def table(seed: int):
        return InvocationLogs(Traffic(sandbox.scenario, seed, anchor=PINNED)).day(REGION, day)

    first, again, other = table(0), table(0), table(1)
    assert first.equals(again)
    assert first.equals(invocation_logs(sandbox.traffic).day(REGION, day))
    assert not first.equals(other)
    assert first.column("requestId").to_pylist() != other.column("requestId").to_pylist()

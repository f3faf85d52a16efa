"""Caller counts from Bedrock invocation logs on the sandbox, by S3 objects and by Logs Insights, checked against the
sandbox's own per-caller totals: the hour 14:00-15:00 of Thursday 2026-11-19, when the Sonnet endpoint of us-east-1
is throttled."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime

import pytest

from pipelines.aws import AwsApiError
from pipelines.aws.invocation_logs import (
    CallerCounts,
    LogReadCost,
    get_logging_config,
    list_log_objects,
    list_principal_tags,
    principal_of,
    query_caller_minutes,
    read_log_object,
)
from pipelines.sandbox.invocation_logs import invocation_logs

ACCOUNT = "123456789012"
START = datetime(2026, 11, 19, 14)
END = datetime(2026, 11, 19, 15)


def series_of(model_id: str) -> str:
    return model_id.rsplit("/", 1)[1] if model_id.startswith("arn:") else model_id


def totals_by_caller(rows: list[dict]) -> dict[tuple[str, str], tuple[int, ...]]:
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * 6)
    for row in rows:
        held = totals[(series_of(row["model_id"]), row["identity_arn"])]
        for index, name in enumerate(
            ("requests", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
        ):
            held[index] += row[name]
        held[5] += row["throttles"] + row["errors"]
    return {key: tuple(value) for key, value in totals.items()}


def expected(sandbox) -> dict[tuple[str, str], tuple[int, ...]]:
    rows = invocation_logs(sandbox.traffic).caller_totals(
        "us-east-1", START.replace(tzinfo=UTC), END.replace(tzinfo=UTC)
    )
    return {
        (row["model_id"], row["arn"]): (
            row["requests"],
            row["input_tokens"],
            row["output_tokens"],
            row["cache_read_tokens"],
            row["cache_write_tokens"],
            row["errors"],
        )
        for row in rows
    }


def test_logging_configuration_names_the_group_and_the_bucket(boto3_client):
    config = get_logging_config(boto3_client("bedrock"))
    assert config.enabled and config.delivery == "s3"
    assert config.log_group == "/aws/bedrock/modelinvocations"
    assert config.s3_bucket == f"bedrock-invocation-logs-{ACCOUNT}-us-east-1"
    # Where logging is off there is no configuration, not an error.
    assert not get_logging_config(boto3_client("bedrock", region="sa-east-1")).enabled


def test_s3_objects_give_the_sandbox_caller_totals_and_keep_no_bodies(boto3_client, sandbox):
    s3 = boto3_client("s3")
    config = get_logging_config(boto3_client("bedrock"))
    cost = LogReadCost()
    objects = [
        item
        for item in list_log_objects(s3, config, ACCOUNT, date(2026, 11, 19), cost)
        if "/2026/11/19/14/" in item["key"]
    ]
    assert len(objects) == 12
    counts = CallerCounts()
    for item in objects:
        read_log_object(s3, config, item["key"], counts, cost)
    rows = counts.rows()
    assert cost.objects_read == 12 and cost.bytes_read == sum(item["size"] for item in objects)
    assert totals_by_caller(rows) == expected(sandbox)
    assert all(START <= row["ts"] < END for row in rows)
    assert {row["source"] for row in rows} == {item["key"] for item in objects}
    assert "[omitted]" not in repr(rows)
    assert any(row["throttles"] for row in rows) and any(row["request_metadata"] for row in rows)


def test_logs_insights_gives_the_same_counts_as_s3(boto3_client, sandbox):
    logs = boto3_client("logs")
    counts, cost = CallerCounts(), LogReadCost()
    query_caller_minutes(logs, "/aws/bedrock/modelinvocations", START, END, counts, cost)
    rows = counts.rows()
    assert totals_by_caller(rows) == expected(sandbox)
    assert cost.queries >= 1 and cost.bytes_scanned > 0
    # Per minute and group the two deliveries agree too.
    s3 = boto3_client("s3")
    config = get_logging_config(boto3_client("bedrock"))
    from_s3 = CallerCounts()
    for item in list_log_objects(s3, config, ACCOUNT, date(2026, 11, 19), LogReadCost()):
        if "/2026/11/19/14/" in item["key"]:
            read_log_object(s3, config, item["key"], from_s3, LogReadCost())

    def keyed(groups):
        merged = defaultdict(lambda: [0] * 7)
        for key, values in groups.items():
            for index, value in enumerate(values):
                merged[key[:4]][index] += value
        return dict(merged)

    assert keyed(counts.groups) == keyed(from_s3.groups)


def test_principal_tags_come_from_iam_and_arns_split_into_principal_and_session(boto3_client):
    arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/code-review-runner/gha-run-88121"
    assert principal_of(arn) == ("role/code-review-runner", "gha-run-88121")
    assert principal_of(f"arn:aws:iam::{ACCOUNT}:user/sandbox") == ("user/sandbox", None)
    tags = list_principal_tags(boto3_client("iam"), ["role/code-review-runner", "federated-user/x", "role/gone"])
    assert {(tag.key, tag.value) for tag in tags} == {("team", "platform"), ("cost-center", "CC-2001")}


def test_an_unknown_log_group_fails_loudly(boto3_client):
    with pytest.raises(AwsApiError, match="StartQuery"):
        query_caller_minutes(boto3_client("logs"), "/no/such/group", START, END, CallerCounts(), LogReadCost())

"""Bedrock model invocation logs, read as per-minute caller counts: who called which ModelId, how much.

Bedrock writes one JSON record per request to CloudWatch Logs, to S3, or to both, as its logging configuration
says (GetModelInvocationLoggingConfiguration). These functions aggregate the records per minute x ModelId (as the
caller sent it: a model id, a profile id or an ARN) x ``identity.arn`` x ``requestMetadata`` and keep only counts:
the prompt and completion bodies are parsed in memory, never returned.

- S3 delivery: each object (gzipped JSON lines) is read once; its counts carry the object's key as ``source``,
  so a later run skips the keys the lake already holds.
- CloudWatch Logs only: one Logs Insights ``stats ... by bin(1m), ...`` query per slice of time, split further
  when a slice's answer would reach the row limit. Logs Insights bills the bytes it scans, whatever the query
  returns, so every record of a range is scanned exactly once.

Principal tags come from IAM ListRoleTags / ListUserTags.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from pipelines.aws import AwsApiError, aws_call

# The counts kept per group, in this order.
COUNT_COLUMNS: tuple[str, ...] = (
    "requests",
    "throttles",
    "errors",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
)
KEY_COLUMNS: tuple[str, ...] = ("ts", "model_id", "identity_arn", "request_metadata")

THROTTLE_ERROR = "ThrottlingException"

# Logs Insights answers at most 10,000 rows unless StartQuery asks for more (up to 100,000); a slice whose answer
# reaches the limit is split in two and asked again, so no group is ever cut off.
INSIGHTS_ROW_LIMIT = 10_000
INSIGHTS_SLICE = timedelta(hours=1)
INSIGHTS_POLL_S = 0.2
INSIGHTS_TIMEOUT_S = 900

# The requestMetadata object as its JSON text: Logs Insights flattens objects into one field per key, and the keys
# are the callers' own, so the whole object is taken from the message and decoded here.
INSIGHTS_QUERY = (
    r'parse @message /"requestMetadata":(?<request_metadata>\{[^}]*\})/'
    " | stats sum(input.inputTokenCount) as input_tokens, sum(output.outputTokenCount) as output_tokens,"
    " sum(input.cacheReadInputTokenCount) as cache_read_tokens,"
    " sum(input.cacheWriteInputTokenCount) as cache_write_tokens, count(*) as calls"
    " by bin(1m) as minute, modelId, identity.arn, errorCode, request_metadata"
)


@dataclass(frozen=True)
class LoggingConfig:
    """Where Bedrock delivers a region's invocation logs (None fields: that delivery is off)."""

    region: str
    log_group: str | None
    s3_bucket: str | None
    s3_key_prefix: str
    text_delivery: bool

    @property
    def enabled(self) -> bool:
        return self.text_delivery and (self.log_group is not None or self.s3_bucket is not None)

    @property
    def delivery(self) -> str:
        """``s3`` when S3 delivery is on (it is read first: its objects are cheaper than scanning), else ``logs``."""
        return "s3" if self.s3_bucket else "logs" if self.log_group else "none"


@dataclass
class LogReadCost:
    """What reading the logs cost: S3 listing and objects, or Logs Insights queries and bytes scanned."""

    list_calls: int = 0
    objects_listed: int = 0
    objects_read: int = 0
    bytes_read: int = 0
    records_read: int = 0
    queries: int = 0
    records_scanned: int = 0
    bytes_scanned: int = 0

    def __add__(self, other: LogReadCost) -> LogReadCost:
        return LogReadCost(**{name: getattr(self, name) + getattr(other, name) for name in vars(self)})


@dataclass
class CallerCounts:
    """Per-minute caller counts: ``groups[(ts, model_id, identity_arn, request_metadata, source)] = [counts...]``."""

    groups: dict[tuple, list[int]] = field(default_factory=dict)

    def add(self, key: tuple, counts: Iterable[int]) -> None:
        held = self.groups.get(key)
        if held is None:
            self.groups[key] = list(counts)
        else:
            for index, value in enumerate(counts):
                held[index] += value

    def rows(self) -> list[dict]:
        """One dict per group: the key columns, ``source``, principal and session, and the counts."""
        out = []
        for (ts, model_id, arn, metadata, source), counts in self.groups.items():
            principal, session = principal_of(arn)
            out.append(
                {
                    "ts": ts,
                    "model_id": model_id,
                    "identity_arn": arn,
                    "principal": principal,
                    "session": session,
                    "request_metadata": metadata,
                    **dict(zip(COUNT_COLUMNS, counts, strict=True)),
                    "source": source,
                }
            )
        return out


def get_logging_config(client) -> LoggingConfig:
    """The region's model invocation logging configuration (Bedrock GetModelInvocationLoggingConfiguration)."""
    with aws_call("GetModelInvocationLoggingConfiguration", client):
        response = client.get_model_invocation_logging_configuration()
    config = response.get("loggingConfig") or {}
    cloudwatch = config.get("cloudWatchConfig") or {}
    s3 = config.get("s3Config") or {}
    return LoggingConfig(
        region=client.meta.region_name,
        log_group=cloudwatch.get("logGroupName") or None,
        s3_bucket=s3.get("bucketName") or None,
        s3_key_prefix=s3.get("keyPrefix") or "",
        text_delivery=bool(config) and config.get("textDataDeliveryEnabled", True),
    )


def principal_of(arn: str) -> tuple[str, str | None]:
    """``(principal, session)`` of a caller ARN: ``role/<name>`` and the STS session for an assumed role,
    ``user/<name>`` or ``federated-user/<name>`` with no session; anything else is kept whole."""
    resource = arn.split(":", 5)[5] if arn.count(":") >= 5 else arn
    kind, _, rest = resource.partition("/")
    if kind == "assumed-role":
        role, _, session = rest.partition("/")
        return f"role/{role}", session or None
    if kind == "user":
        # IAM user ARNs may carry a path (user/division/name); the name is the last part.
        return f"user/{rest.rsplit('/', 1)[-1]}", None
    if kind == "federated-user":
        return f"federated-user/{rest}", None
    return arn, None


def _metadata_text(value) -> str | None:
    # One canonical text per metadata object, so equal objects group together whatever their key order.
    if not value:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _record_counts(record: dict) -> tuple[tuple, list[int]]:
    stamp = record["timestamp"]
    minute = datetime.fromisoformat(stamp[:16]).replace(tzinfo=None)
    metadata = _metadata_text(record.get("requestMetadata"))
    key = (minute, record.get("modelId"), (record.get("identity") or {}).get("arn"), metadata)
    source_input = record.get("input") or {}
    output = record.get("output") or {}
    error = record.get("errorCode")
    counts = [
        0 if error else 1,
        1 if error == THROTTLE_ERROR else 0,
        1 if error and error != THROTTLE_ERROR else 0,
        int(source_input.get("inputTokenCount") or 0),
        int(output.get("outputTokenCount") or 0),
        int(source_input.get("cacheReadInputTokenCount") or 0),
        int(source_input.get("cacheWriteInputTokenCount") or 0),
    ]
    return key, counts


def s3_day_prefix(config: LoggingConfig, account_id: str, day: date) -> str:
    """The key prefix of a UTC day's objects: Bedrock names each object by the hour of its records."""
    return f"{config.s3_key_prefix}AWSLogs/{account_id}/BedrockModelInvocationLogs/{config.region}/{day:%Y/%m/%d}/"


def list_log_objects(client, config: LoggingConfig, account_id: str, day: date, cost: LogReadCost) -> list[dict]:
    """The S3 objects of a UTC day (ListObjectsV2, every page): ``{"key", "size"}`` in key order."""
    objects = []
    with aws_call("ListObjectsV2", client):
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=config.s3_bucket, Prefix=s3_day_prefix(config, account_id, day)
        ):
            cost.list_calls += 1
            objects.extend({"key": item["Key"], "size": item["Size"]} for item in page.get("Contents", []))
    cost.objects_listed += len(objects)
    return objects


def read_log_object(client, config: LoggingConfig, key: str, counts: CallerCounts, cost: LogReadCost) -> None:
    """Add one S3 object's records to ``counts`` (GetObject; gzipped or plain JSON lines)."""
    with aws_call("GetObject", client):
        body = client.get_object(Bucket=config.s3_bucket, Key=key)["Body"].read()
    cost.objects_read += 1
    cost.bytes_read += len(body)
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    records = 0
    for line in body.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            raise AwsApiError(
                "GetObject", config.region, f"s3://{config.s3_bucket}/{key} holds a line that is not JSON ({error})"
            ) from error
        if record.get("schemaType", "ModelInvocationLog") != "ModelInvocationLog":
            continue
        key_fields, values = _record_counts(record)
        counts.add((*key_fields, key), values)
        records += 1
    cost.records_read += records


def _insights_rows(client, group: str, start: datetime, end: datetime, cost: LogReadCost) -> list[dict]:
    """The ``stats`` rows of one Logs Insights query over ``[start, end)`` (whole minutes)."""
    with aws_call("StartQuery", client):
        query_id = client.start_query(
            logGroupName=group,
            startTime=int(start.replace(tzinfo=UTC).timestamp()),
            # Logs Insights includes endTime (epoch seconds); the range is half-open.
            endTime=int(end.replace(tzinfo=UTC).timestamp()) - 1,
            queryString=INSIGHTS_QUERY,
            limit=INSIGHTS_ROW_LIMIT,
        )["queryId"]
    cost.queries += 1
    waited = 0.0
    rows: list[dict] = []
    try:
        with aws_call("GetQueryResults", client):
            while True:
                response = client.get_query_results(queryId=query_id)
                status = response["status"]
                if status == "Complete":
                    rows.extend({cell["field"]: cell["value"] for cell in row} for row in response["results"])
                    token = response.get("nextToken")
                    while token:
                        response = client.get_query_results(queryId=query_id, nextToken=token)
                        rows.extend({cell["field"]: cell["value"] for cell in row} for row in response["results"])
                        token = response.get("nextToken")
                    statistics = response.get("statistics") or {}
                    cost.records_scanned += int(statistics.get("recordsScanned") or 0)
                    cost.bytes_scanned += int(statistics.get("bytesScanned") or 0)
                    return rows
                if status in {"Failed", "Cancelled", "Timeout", "Unknown"}:
                    raise AwsApiError("GetQueryResults", client.meta.region_name, f"the query ended {status}")
                if waited > INSIGHTS_TIMEOUT_S:
                    raise AwsApiError("GetQueryResults", client.meta.region_name, "the query did not finish")
                time.sleep(INSIGHTS_POLL_S)
                waited += INSIGHTS_POLL_S
    except AwsApiError:
        # A query left running holds one of the account's 30 query slots.
        with contextlib.suppress(Exception):  # the first failure is the one to report
            client.stop_query(queryId=query_id)
        raise


def query_caller_minutes(
    client, group: str, start: datetime, end: datetime, counts: CallerCounts, cost: LogReadCost
) -> None:
    """Add the caller counts of ``[start, end)`` (naive UTC, whole minutes) from Logs Insights to ``counts``."""
    pending = []
    moment = start
    while moment < end:
        pending.append((moment, min(end, moment + INSIGHTS_SLICE)))
        moment = pending[-1][1]
    source = "logs-insights"
    while pending:
        lo, hi = pending.pop(0)
        rows = _insights_rows(client, group, lo, hi, cost)
        if len(rows) >= INSIGHTS_ROW_LIMIT and hi - lo > timedelta(minutes=1):
            middle = lo + timedelta(minutes=((hi - lo) // timedelta(minutes=1)) // 2)
            # The bytes of a cut-off slice are scanned again by its halves: the price of a too-busy slice.
            pending[:0] = [(lo, middle), (middle, hi)]
            continue
        if len(rows) >= INSIGHTS_ROW_LIMIT:
            raise AwsApiError(
                "StartQuery", client.meta.region_name, f"more than {INSIGHTS_ROW_LIMIT} caller groups in one minute"
            )
        for row in rows:
            minute = datetime.fromisoformat(row["minute"][:16])
            error = row.get("errorCode")
            calls = int(float(row.get("calls") or 0))
            metadata = row.get("request_metadata")
            key = (
                minute,
                row.get("modelId"),
                row.get("identity.arn"),
                _metadata_text(json.loads(metadata)) if metadata else None,
                source,
            )
            counts.add(
                key,
                [
                    0 if error else calls,
                    calls if error == THROTTLE_ERROR else 0,
                    calls if error and error != THROTTLE_ERROR else 0,
                    *(int(float(row.get(name) or 0)) for name in COUNT_COLUMNS[3:]),
                ],
            )


@dataclass(frozen=True)
class PrincipalTag:
    """One IAM tag of a calling principal (ListRoleTags / ListUserTags)."""

    principal: str
    key: str
    value: str


def list_principal_tags(client, principals: Iterable[str]) -> list[PrincipalTag]:
    """The IAM tags of ``role/<name>`` and ``user/<name>`` principals; federated users have none.

    A principal deleted since it called (NoSuchEntity) has no tags left to read and is skipped.
    """
    tags = []
    for principal in sorted(set(principals)):
        kind, _, name = principal.partition("/")
        if kind == "role":
            operation, api, argument = client.list_role_tags, "ListRoleTags", "RoleName"
        elif kind == "user":
            operation, api, argument = client.list_user_tags, "ListUserTags", "UserName"
        else:
            continue
        marker = None
        while True:
            try:
                with aws_call(api, client):
                    response = operation(**{argument: name, **({"Marker": marker} if marker else {})})
            except AwsApiError as error:
                if error.code == "NoSuchEntity":
                    break
                raise
            tags.extend(PrincipalTag(principal, tag["Key"], tag["Value"]) for tag in response.get("Tags", []))
            marker = response.get("Marker") if response.get("IsTruncated") else None
            if not marker:
                break
    return tags

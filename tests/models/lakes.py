"""Fixture lakes for the SQL-model tests: a few hand-written rows as Parquet partitions, built in a temporary DuckDB.

A :class:`FixtureLake` collects CloudWatch datapoints, coverage ranges, profiles and tags through its methods (rows
land in the partition of their UTC day, written with ``pipelines.lake.write_partition``); ``build(as_of)`` runs
every model of the SQL-models issue and returns the connection.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from pipelines.lake import DATAPOINTS_SCHEMA, Partition, to_table, widen_points, write_partition
from pipelines.models import build_all, discover_models

ACCOUNT = "123456789012"
REGION = "us-east-1"
FETCHED = datetime(2025, 6, 1, 12, 30)

# Real model ids and system-profile ids (the facts the sandbox scenarios use too).
SONNET_4 = "anthropic.claude-sonnet-4-20250514-v1:0"
HAIKU_35 = "anthropic.claude-3-5-haiku-20241022-v1:0"
US_SONNET_4 = f"us.{SONNET_4}"
GLOBAL_SONNET_4 = f"global.{SONNET_4}"

# The models of this issue: every staging model and the marts except quota_map/quota_headroom.
OWN_MARTS = (
    "endpoints",
    "model_burndown",
    "usage_bucket",
    "usage_minute",
    "window_coverage",
    "endpoint_minute",
    "window_stats",
    "tpd_daily",
    "tag_assignments",
    "tag_attribution",
    "throttle_tag_attribution",
    "throttle_minutes",
    "throttle_attribution",
)
# quota_map is a Python model (it parses quota names); throttle_minutes reads it.
OWN_MODELS = (*(model.name for model in discover_models() if model.layer == "staging"), "quota_map", *OWN_MARTS)


def fm_arn(model_id: str, region: str = REGION) -> str:
    """A foundation-model ARN (no account: foundation models belong to AWS)."""
    return f"arn:aws:bedrock:{region}::foundation-model/{model_id}"


def app_arn(profile_id: str, region: str = REGION) -> str:
    return f"arn:aws:bedrock:{region}:{ACCOUNT}:application-inference-profile/{profile_id}"


def system_arn(profile_id: str, region: str = REGION) -> str:
    return f"arn:aws:bedrock:{region}:{ACCOUNT}:inference-profile/{profile_id}"


US_SONNET_4_ARNS = [fm_arn(SONNET_4, region) for region in ("us-east-1", "us-east-2", "us-west-2")]
GLOBAL_SONNET_4_ARNS = [
    fm_arn(SONNET_4, region)
    for region in ("us-east-1", "us-east-2", "us-west-2", "eu-west-1", "ap-northeast-1", "ap-southeast-2")
]


class FixtureLake:
    """Raw rows by dataset and partition, written to ``root`` on ``write()`` (and by ``build``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rows: dict[tuple[str, str, Any], list[dict[str, Any]]] = defaultdict(list)

    def point(
        self,
        series: str,
        metric: str,
        ts: datetime,
        value: float,
        *,
        stat: str = "Sum",
        period_s: int = 60,
        fetched_at: datetime = FETCHED,
        region: str = REGION,
    ) -> None:
        """One CloudWatch datapoint."""
        self.rows["metric_points", region, ts.date()].append(
            {
                "account_id": ACCOUNT,
                "model_id": series,
                "metric": metric,
                "stat": stat,
                "period_s": period_s,
                "ts": ts,
                "value": float(value),
                "fetched_at": fetched_at,
            }
        )

    def minute(self, series: str, ts: datetime, *, period_s: int = 60, region: str = REGION, **measures) -> None:
        """Datapoints of one series and bucket, by measure name (input=, output=, invocations=, ...)."""
        names = {
            "invocations": ("Invocations", "Sum"),
            "input": ("InputTokenCount", "Sum"),
            "output": ("OutputTokenCount", "Sum"),
            "cache_read": ("CacheReadInputTokenCount", "Sum"),
            "cache_write": ("CacheWriteInputTokenCount", "Sum"),
            "throttles": ("InvocationThrottles", "Sum"),
            "client_errors": ("InvocationClientErrors", "Sum"),
            "server_errors": ("InvocationServerErrors", "Sum"),
            "estimated": ("EstimatedTPMQuotaUsage", "Sum"),
            "latency": ("InvocationLatency", "Average"),
            "latency_samples": ("InvocationLatency", "SampleCount"),
            "ttft": ("TimeToFirstToken", "Average"),
            "ttft_samples": ("TimeToFirstToken", "SampleCount"),
        }
        for name, value in measures.items():
            metric, stat = names[name]
            self.point(series, metric, ts, value, stat=stat, period_s=period_s, region=region)

    def coverage(self, start: datetime, end: datetime, *, period_s: int = 60, region: str = REGION) -> None:
        """A range read from CloudWatch at ``period_s``, recorded as the extract does: per UTC day, in the day's
        partition beside that day's metric_points file (written empty when the day has no datapoint)."""
        day_start = start
        while day_start < end:
            day_end = min(end, datetime.combine(day_start.date() + timedelta(days=1), datetime.min.time()))
            self.rows["metric_coverage", region, day_start.date()].append(
                {
                    "account_id": ACCOUNT,
                    "period_s": period_s,
                    "range_start": day_start,
                    "range_end": day_end,
                    "model_ids": 1,
                    "fetched_at": FETCHED,
                }
            )
            # Touching the key is enough: write() writes an empty points file for a day without rows.
            self.rows["metric_points", region, day_start.date()]
            day_start = day_end

    def profile(
        self,
        profile_id: str,
        model_arns: list[str],
        *,
        kind: str = "APPLICATION",
        name: str | None = None,
        snapshot_at: datetime = FETCHED,
        region: str = REGION,
    ) -> str:
        """One inference profile snapshot; returns its ARN."""
        arn = app_arn(profile_id, region) if kind == "APPLICATION" else system_arn(profile_id, region)
        self.rows["inference_profiles", region, snapshot_at.date()].append(
            {
                "account_id": ACCOUNT,
                "profile_id": profile_id,
                "profile_arn": arn,
                "name": name or profile_id,
                "description": None,
                "type": kind,
                "status": "ACTIVE",
                "model_arns": model_arns,
                "created_at": snapshot_at - timedelta(days=30),
                "updated_at": snapshot_at - timedelta(days=30),
                "snapshot_at": snapshot_at,
            }
        )
        return arn

    def tags(
        self, profile_id: str, tags: dict[str, str], *, snapshot_at: datetime = FETCHED, region: str = REGION
    ) -> None:
        for key, value in tags.items():
            self.rows["profile_tags", region, snapshot_at.date()].append(
                {
                    "profile_arn": app_arn(profile_id, region),
                    "profile_id": profile_id,
                    "key": key,
                    "value": value,
                    "snapshot_at": snapshot_at,
                }
            )

    def foundation_model(
        self, model_id: str, name: str, provider: str = "Anthropic", *, snapshot_at: datetime = FETCHED
    ) -> None:
        """One foundation-model listing row (quota_map matches quota names against the model's name)."""
        self.rows["foundation_models", REGION, snapshot_at.date()].append(
            {
                "model_id": model_id,
                "model_arn": fm_arn(model_id),
                "model_name": name,
                "provider": provider,
                "input_modalities": ["TEXT"],
                "output_modalities": ["TEXT"],
                "inference_types": ["ON_DEMAND", "INFERENCE_PROFILE"],
                "response_streaming": True,
                "lifecycle_status": "ACTIVE",
                "snapshot_at": snapshot_at,
            }
        )

    def quota(self, code: str, name: str, value: float, *, snapshot_at: datetime = FETCHED) -> None:
        """One Service Quotas row, applied at its default value."""
        self.rows["service_quotas", REGION, snapshot_at.date()].append(
            {
                "quota_code": code,
                "quota_name": name,
                "quota_arn": f"arn:aws:servicequotas:{REGION}:{ACCOUNT}:bedrock/{code}",
                "value": float(value),
                "default_value": float(value),
                "applied_value": None,
                "unit": "None",
                "adjustable": True,
                "global_quota": False,
                "snapshot_at": snapshot_at,
            }
        )

    def write(self) -> None:
        for (dataset, region, day), rows in self.rows.items():
            if dataset == "metric_points":
                # Datapoints are collected as CloudWatch returns them and stored as the extraction stores them.
                table = widen_points(pa.Table.from_pylist(rows, schema=DATAPOINTS_SCHEMA))
            else:
                table = to_table(dataset, rows)
            write_partition(self.root, Partition(dataset, region, day), table)

    def build(self, as_of: datetime, *, models: tuple[str, ...] = OWN_MODELS) -> duckdb.DuckDBPyConnection:
        """Write the lake and build ``models`` in a fresh in-memory DuckDB; return the connection."""
        self.write()
        connection = duckdb.connect()
        build_all(connection, lake=self.root, as_of=as_of, select=models)
        return connection


def rows(connection: duckdb.DuckDBPyConnection, sql: str, *params: Any) -> list[tuple]:
    """All rows of a query."""
    return connection.execute(sql, list(params)).fetchall()


def one(connection: duckdb.DuckDBPyConnection, sql: str, *params: Any) -> Any:
    """The single value of a one-row, one-column query."""
    result = connection.execute(sql, list(params)).fetchall()
    assert len(result) == 1, f"expected one row, got {result}"
    (value,) = result[0]
    return value


def stat(connection: duckdb.DuckDBPyConnection, series: str, window: str, metric: str) -> dict[str, Any]:
    """One window_stats row as a dict."""
    relation = connection.execute(
        'select * from window_stats where series_id = ? and "window" = ? and metric = ?', [series, window, metric]
    )
    names = [column[0] for column in relation.description]
    found = relation.fetchall()
    assert len(found) == 1, f"expected one window_stats row for {series} {window} {metric}, got {found}"
    return dict(zip(names, found[0], strict=True))

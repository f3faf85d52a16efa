"""Dagster resources: the AWS account (or the sandbox) and the warehouse on disk.

Settings come from resource fields first and the environment second, resolved when a run uses them, never at
import time: ``BUW_WAREHOUSE``, ``BUW_REPORTS``, ``BUW_AS_OF`` (by the rules of ``pipelines.settings``, which the
CLI shares) and the standard AWS variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import botocore.session
import botocore.utils
import dagster as dg
import duckdb
from botocore.config import Config

from pipelines import settings

# current_minute and parse_as_of keep their old import path for the modules that use it.
from pipelines.settings import current_minute as current_minute
from pipelines.settings import parse_as_of as parse_as_of

AS_OF_TAG = "buw/as_of"
# Run tag `buw analyze -m` sets: the CloudWatch series (JSON list) the metrics read is narrowed to.
SERIES_TAG = "buw/series"

# CloudWatch is still filling the last few minutes when a run starts: a minute counted before its datapoints
# land looks idle or half-busy. Windows therefore end this many minutes before AWS's clock unless pinned.
DEFAULT_AS_OF_LAG_MINUTES = 5


def default_as_of(aws_now: datetime, lag: timedelta) -> datetime:
    """The as_of of an unpinned run: AWS's clock less the lag, on a whole minute, naive UTC."""
    if aws_now.tzinfo is not None:
        aws_now = aws_now.astimezone(UTC).replace(tzinfo=None)
    return (aws_now - lag).replace(second=0, microsecond=0)


def pinned_as_of(tags: Mapping[str, str], warehouse: WarehouseResource) -> datetime | None:
    """The as_of a run was pinned to: its ``buw/as_of`` tag, else the warehouse setting (``BUW_AS_OF``)."""
    tagged = tags.get(AS_OF_TAG)
    if tagged:
        return parse_as_of(tagged)
    if settings.pinned_as_of(warehouse.as_of):
        return warehouse.as_of_minute()
    return None


def latest_extracted_as_of(lake: Path) -> datetime | None:
    """The as_of the newest extraction run read the lake up to (``extract_runs``), or None before any run."""
    files = sorted(lake.glob("extract_run_log/region=*/date=*/data.parquet"))
    if not files:
        return None
    with duckdb.connect() as connection:
        row = connection.execute(
            "select as_of from read_parquet($files) order by recorded_at desc, as_of desc limit 1",
            {"files": [str(path) for path in files]},
        ).fetchone()
    return row[0] if row else None


def run_as_of(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> datetime:
    """The ``as_of`` the marts and reports of this run are computed at.

    Pinned (run tag or setting) when given; otherwise where the newest extraction stopped reading, so no window
    ends past the minutes the lake holds, whenever the models run after it (a schedule, the automation, the UI).
    Before any extraction: the run's creation minute less the lag. Taken from the run and the lake, not from the
    clock at each step, so every asset of a run (and a re-run of it) uses the same windows.
    """
    pinned = pinned_as_of(context.run.tags, warehouse)
    if pinned is not None:
        return pinned
    extracted = latest_extracted_as_of(warehouse.lake())
    if extracted is not None:
        return extracted
    record = context.instance.get_run_record_by_id(context.run.run_id)
    created = record.create_timestamp if record is not None and record.create_timestamp is not None else None
    return default_as_of(created or datetime.now(UTC), warehouse.as_of_lag())


def parse_utc_timestamp(value) -> datetime:
    """A wire timestamp (epoch seconds, or ISO-8601 text from the query protocol) as an aware UTC datetime."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return botocore.utils.parse_timestamp(value).astimezone(UTC)


class AwsResource(dg.ConfigurableResource):
    """boto3 access to Bedrock, CloudWatch and Service Quotas in one account.

    ``endpoint_url`` (or ``AWS_ENDPOINT_URL``, which boto3 reads itself) points every client at the sandbox.
    Retries use botocore's adaptive mode, which also rate-limits the client when AWS throttles it.
    """

    regions: list[str] = []
    profile_name: str | None = None
    endpoint_url: str | None = None
    max_attempts: int = 10
    max_concurrency: int = 8

    def target_regions(self) -> list[str]:
        """The regions to extract: the configured list, else ``BUW_REGIONS``, else the session's region."""
        listed = settings.listed_regions(self.regions)
        if listed:
            return listed
        region = self.session().region_name or os.environ.get("AWS_DEFAULT_REGION")
        return [region] if region else ["us-east-1"]

    def session(self) -> boto3.Session:
        """A boto3 session whose responses carry timestamps as UTC datetimes, parsed quickly.

        botocore's default parser converts every timestamp to the local zone through dateutil, which costs more
        than everything else in a GetMetricData answer of 100,800 datapoints; UTC is what the warehouse stores.
        """
        core = botocore.session.get_session()
        core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_utc_timestamp)
        return boto3.Session(botocore_session=core, profile_name=self.profile_name or None)

    def client(self, service: str, region: str):
        """A boto3 client with adaptive retries and enough pooled connections for bounded concurrency."""
        config = Config(
            region_name=region,
            retries={"mode": "adaptive", "max_attempts": self.max_attempts},
            max_pool_connections=max(10, self.max_concurrency * 2),
            connect_timeout=10,
            read_timeout=60,
        )
        return self.session().client(service, config=config, endpoint_url=self.endpoint_url or None)


class WarehouseResource(dg.ConfigurableResource):
    """Where the lake, the DuckDB file and the reports live, and the ``as_of`` the models compute windows at."""

    warehouse_dir: str | None = None
    reports_dir: str | None = None
    as_of: str | None = None
    as_of_lag_minutes: int | None = None
    # How report pages get plotly.js: "shared" (one file in <reports>/assets/, loaded by relative path) or
    # "inline" (inside every page, for single files); BUW_REPORT_PLOTLYJS when unset.
    report_plotlyjs: str | None = None

    def root(self) -> Path:
        return settings.warehouse_root(self.warehouse_dir)

    def lake(self) -> Path:
        return settings.lake_dir(self.warehouse_dir)

    def database(self) -> Path:
        return settings.database_path(self.warehouse_dir)

    def reports(self) -> Path:
        return settings.reports_dir(self.reports_dir)

    def plotlyjs(self) -> str:
        """``shared`` (the default) or ``inline``: the field, else ``BUW_REPORT_PLOTLYJS``."""
        return (self.report_plotlyjs or os.environ.get("BUW_REPORT_PLOTLYJS") or "shared").strip().lower()

    def as_of_minute(self) -> datetime:
        """The pinned ``as_of`` (field or ``BUW_AS_OF``), else the current UTC minute less the lag."""
        pinned = self.as_of or os.environ.get("BUW_AS_OF")
        return parse_as_of(pinned) if pinned else default_as_of(datetime.now(UTC), self.as_of_lag())

    def as_of_lag(self) -> timedelta:
        """How far an unpinned as_of trails AWS's clock: the field, else ``BUW_AS_OF_LAG_MINUTES``, else 5."""
        minutes = self.as_of_lag_minutes
        if minutes is None:
            text = os.environ.get("BUW_AS_OF_LAG_MINUTES", "").strip()
            minutes = int(text) if text else DEFAULT_AS_OF_LAG_MINUTES
        if minutes < 0:
            raise ValueError(f"the as_of lag must be 0 or more minutes, not {minutes}")
        return timedelta(minutes=minutes)

    def connect(self, read_only: bool = True) -> duckdb.DuckDBPyConnection:
        """A read-only DuckDB connection to the published warehouse file, with the session time zone fixed to UTC.

        Only the model step writes the warehouse, and it writes a new file that it then publishes
        (``pipelines.publish``); everything else reads. A reader keeps the version it opened until it reconnects.
        """
        if not read_only:
            raise ValueError("the warehouse file is only written by the model step, through pipelines.publish")
        connection = duckdb.connect(str(self.database()), read_only=True)
        connection.execute("set timezone = 'UTC'")
        return connection

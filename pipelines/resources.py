"""Dagster resources: the AWS account (or the sandbox) and the warehouse on disk.

Settings come from resource fields first and the environment second, resolved when a run uses them, never at
import time: ``BUW_WAREHOUSE``, ``BUW_REPORTS``, ``BUW_AS_OF`` and the standard AWS variables.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import boto3
import botocore.session
import botocore.utils
import dagster as dg
import duckdb
from botocore.config import Config


def parse_as_of(text: str) -> datetime:
    """An ISO-8601 instant as a naive UTC datetime truncated to the minute (the warehouse's time convention)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as error:
        raise ValueError(f"as_of {text!r} is not an ISO-8601 time such as 2026-11-20T12:00:00Z") from error
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.replace(second=0, microsecond=0)


AS_OF_TAG = "buw/as_of"


def run_as_of(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> datetime:
    """This run's ``as_of``: its ``buw/as_of`` tag, else the warehouse setting, else the run's creation minute.

    Taken from the run, not from the clock at each step, so every asset of a run (and a re-run of it) uses the
    same windows and reads the same range.
    """
    tagged = context.run.tags.get(AS_OF_TAG)
    if tagged:
        return parse_as_of(tagged)
    if warehouse.as_of or os.environ.get("BUW_AS_OF"):
        return warehouse.as_of_minute()
    record = context.instance.get_run_record_by_id(context.run_id)
    if record is None or record.create_timestamp is None:
        return warehouse.as_of_minute()
    return record.create_timestamp.astimezone(UTC).replace(tzinfo=None, second=0, microsecond=0)


def parse_utc_timestamp(value) -> datetime:
    """A wire timestamp (epoch seconds, or ISO-8601 text from the query protocol) as an aware UTC datetime."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return botocore.utils.parse_timestamp(value).astimezone(UTC)


def current_minute() -> datetime:
    """The start of the current UTC minute, naive."""
    return datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0)


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
        if self.regions:
            return list(self.regions)
        listed = [name.strip() for name in os.environ.get("BUW_REGIONS", "").split(",") if name.strip()]
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

    def root(self) -> Path:
        return Path(self.warehouse_dir or os.environ.get("BUW_WAREHOUSE") or "warehouse").resolve()

    def lake(self) -> Path:
        return self.root() / "lake"

    def database(self) -> Path:
        return self.root() / "usage.duckdb"

    def reports(self) -> Path:
        return Path(self.reports_dir or os.environ.get("BUW_REPORTS") or "reports/out").resolve()

    def as_of_minute(self) -> datetime:
        """The pinned ``as_of`` (field or ``BUW_AS_OF``), else the start of the current UTC minute."""
        pinned = self.as_of or os.environ.get("BUW_AS_OF")
        return parse_as_of(pinned) if pinned else current_minute()

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection to the warehouse file, with the session time zone fixed to UTC."""
        path = self.database()
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = duckdb.connect(str(path), read_only=read_only)
        connection.execute("set timezone = 'UTC'")
        return connection

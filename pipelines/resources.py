"""Dagster resources: the AWS account (or the sandbox) and the warehouse on disk.

Settings come from resource fields first and the environment second, resolved when a run uses them, never at
import time: ``BUW_WAREHOUSE``, ``BUW_REPORTS``, ``BUW_AS_OF`` (by the rules of ``pipelines.settings``, which the
CLI shares) and the standard AWS variables.
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

from pipelines import settings

# current_minute and parse_as_of keep their old import path for the modules that use it.
from pipelines.settings import current_minute as current_minute
from pipelines.settings import parse_as_of as parse_as_of

AS_OF_TAG = "buw/as_of"


def run_as_of(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> datetime:
    """This run's ``as_of``: its ``buw/as_of`` tag, else the warehouse setting, else the run's creation minute.

    Taken from the run, not from the clock at each step, so every asset of a run (and a re-run of it) uses the
    same windows and reads the same range.
    """
    tagged = context.run.tags.get(AS_OF_TAG)
    if tagged:
        return parse_as_of(tagged)
    if settings.pinned_as_of(warehouse.as_of):
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

    def root(self) -> Path:
        return settings.warehouse_root(self.warehouse_dir)

    def lake(self) -> Path:
        return settings.lake_dir(self.warehouse_dir)

    def database(self) -> Path:
        return settings.database_path(self.warehouse_dir)

    def reports(self) -> Path:
        return settings.reports_dir(self.reports_dir)

    def as_of_minute(self) -> datetime:
        """The pinned ``as_of`` (field or ``BUW_AS_OF``), else the start of the current UTC minute."""
        return settings.as_of_minute(self.as_of)

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

"""The invocation_logs asset against the sandbox: per-caller minutes land in the lake, each S3 object (or, with
CloudWatch Logs delivery only, each log record) is read once across runs, the cost is recorded, and no request body
reaches the lake."""

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipelines import lake as lake_io
from pipelines.assets.extract import invocation_logs
from pipelines.resources import AwsResource, WarehouseResource
from pipelines.sandbox.invocation_logs import invocation_logs as sandbox_logs
from pipelines.sandbox.scenario import load_scenario
from pipelines.sandbox.server import SandboxServer

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 20, 12, 0)
REGION = "us-east-1"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


@pytest.fixture
def own_sandbox(aws_env):
    with SandboxServer("demo", seed=0, now=NOW.replace(tzinfo=UTC)) as server:
        yield server


def run(endpoint_url: str, warehouse: Path, first: str, last: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [invocation_logs],
        tags={RANGE_START: first, RANGE_END: last},
        resources={
            "aws": AwsResource(regions=[REGION], endpoint_url=endpoint_url),
            "warehouse": WarehouseResource(warehouse_dir=str(warehouse), as_of=NOW.isoformat() + "Z"),
        },
        instance=dg.DagsterInstance.ephemeral(),
    )


def lake_totals(lake: Path) -> dict[tuple[str, str], tuple[int, int, int]]:
    with duckdb.connect() as connection:
        rows = connection.execute(
            """
            select regexp_extract(model_id, '[^/]+$'), identity_arn, sum(requests), sum(input_tokens),
                sum(output_tokens), sum(throttles + errors)
            from read_parquet(?, hive_partitioning = true) group by all
            """,
            [lake_io.dataset_glob(lake, "caller_minutes")],
        ).fetchall()
    return {(row[0], row[1]): tuple(int(value) for value in row[2:]) for row in rows}


def expected_totals(sandbox, start: datetime, end: datetime) -> dict:
    rows = sandbox_logs(sandbox.traffic).caller_totals(REGION, start.replace(tzinfo=UTC), end.replace(tzinfo=UTC))
    return {
        (row["model_id"], row["arn"]): (row["requests"], row["input_tokens"], row["output_tokens"], row["errors"])
        for row in rows
    }


def test_each_object_is_read_once_across_runs_and_totals_match_the_sandbox(own_sandbox, tmp_path):
    lake = tmp_path / "lake"
    own_sandbox.reset_stats()
    first = run(own_sandbox.endpoint_url, tmp_path, "2026-11-19", "2026-11-20")
    assert first.success
    stats = own_sandbox.stats()
    # Every delivered object up to the clock is read, once; two days: 288 chunks yesterday, 11:55 worth today.
    assert stats["s3_objects_read"] == stats["s3_keys_listed"] > 288
    metadata = first.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["objects_read"].value == stats["s3_objects_read"]
    assert metadata["bytes_read"].value == stats["s3_bytes_read"]
    assert metadata["records_read"].value == stats["s3_records_read"]
    held_until = datetime(2026, 11, 20, 11, 55)
    assert lake_totals(lake) == expected_totals(own_sandbox, datetime(2026, 11, 19), held_until)

    # A second run an hour later reads only the objects delivered since.
    own_sandbox.reset_stats()
    own_sandbox.advance(timedelta(hours=1))
    assert run(own_sandbox.endpoint_url, tmp_path, "2026-11-20", "2026-11-20").success
    again = own_sandbox.stats()
    assert again["s3_objects_read"] == 12
    assert lake_totals(lake) == expected_totals(own_sandbox, datetime(2026, 11, 19), held_until + timedelta(hours=1))

    # The cost of both runs is in the lake, and no record body is.
    reads = [
        row
        for p in lake_io.partitions(lake, "invocation_log_reads")
        for row in lake_io.read_partition(lake, p).to_pylist()
    ]
    assert sorted(row["objects_read"] for row in reads) == [12, stats["s3_objects_read"]]
    assert {row["delivery"] for row in reads} == {"s3"}
    for path in lake.rglob("*.parquet"):
        assert b"[omitted]" not in path.read_bytes()
    tags = lake_io.read_partition(lake, lake_io.Partition("principal_tags", REGION, NOW.date())).to_pylist()
    assert {"principal": "role/code-review-runner", "key": "team", "value": "platform"} in [
        {k: row[k] for k in ("principal", "key", "value")} for row in tags
    ]


@pytest.fixture
def logs_only_sandbox(aws_env):
    """The demo account with S3 delivery off: its invocation logs go to CloudWatch Logs only."""
    scenario = load_scenario("demo")
    logging = dataclasses.replace(scenario.invocation_logging, s3_bucket="")
    with SandboxServer(
        dataclasses.replace(scenario, invocation_logging=logging), seed=0, now=NOW.replace(tzinfo=UTC)
    ) as server:
        yield server


def log_reads(lake: Path) -> list[dict]:
    return sorted(
        (
            row
            for p in lake_io.partitions(lake, "invocation_log_reads")
            for row in lake_io.read_partition(lake, p).to_pylist()
        ),
        key=lambda row: row["range_start"],
    )


def records_in(sandbox, start: datetime, end: datetime) -> int:
    """How many log records the sandbox holds in [start, end): what a scan of that range must read."""
    return (
        sandbox_logs(sandbox.traffic)
        .records(REGION, int(start.timestamp() * 1000), int(end.timestamp() * 1000))
        .num_rows
    )


def test_with_logs_delivery_only_each_record_is_scanned_once_across_runs(logs_only_sandbox, tmp_path):
    sandbox = logs_only_sandbox
    lake = tmp_path / "lake"
    sandbox.reset_stats()
    first = run(sandbox.endpoint_url, tmp_path, "2026-11-19", "2026-11-20")
    assert first.success
    stats = sandbox.stats()
    assert stats.get("s3_objects_read", 0) == stats.get("s3_keys_listed", 0) == 0
    (read,) = log_reads(lake)
    assert read["delivery"] == "logs"
    assert read["range_start"] == datetime(2026, 11, 19)
    assert datetime(2026, 11, 20, 11) < read["range_end"] <= NOW
    scanned = records_in(sandbox, datetime(2026, 11, 19).replace(tzinfo=UTC), read["range_end"].replace(tzinfo=UTC))
    assert stats["logs_records_scanned"] == scanned > 0
    metadata = first.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["records_scanned"].value == read["records_scanned"] == scanned
    assert metadata["bytes_scanned"].value == read["bytes_scanned"] == stats["logs_bytes_scanned"]
    assert lake_totals(lake) == expected_totals(sandbox, datetime(2026, 11, 19), read["range_end"])

    # An hour later the run scans only the records after the end of the last read: none twice, none missed.
    sandbox.reset_stats()
    sandbox.advance(timedelta(hours=1))
    assert run(sandbox.endpoint_url, tmp_path, "2026-11-20", "2026-11-20").success
    earlier, later = log_reads(lake)
    assert earlier == read
    assert later["range_start"] == read["range_end"] < later["range_end"]
    again = sandbox.stats()["logs_records_scanned"]
    assert (
        again
        == later["records_scanned"]
        == records_in(sandbox, read["range_end"].replace(tzinfo=UTC), later["range_end"].replace(tzinfo=UTC))
    )
    assert 0 < again < scanned
    assert lake_totals(lake) == expected_totals(sandbox, datetime(2026, 11, 19), later["range_end"])
    for path in lake.rglob("*.parquet"):
        assert b"[omitted]" not in path.read_bytes()

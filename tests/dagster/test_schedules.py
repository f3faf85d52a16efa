"""The hourly schedule asks for exactly the day ranges an incremental run needs, as few runs as possible."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from pipelines import lake as lake_io
from pipelines.resources import AwsResource, WarehouseResource
from pipelines.schedules import extract_job, hourly_extract

REGIONS = ["us-east-1", "us-west-2"]
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def _hold_days(lake, region: str, first: date, last: date) -> None:
    """Point and coverage files saying each whole day from first to last was read (what a finished run leaves)."""
    day = first
    while day <= last:
        start = datetime.combine(day, datetime.min.time())
        coverage = lake_io.to_table(
            "metric_coverage",
            [
                {
                    "account_id": "123456789012",
                    "period_s": 60,
                    "range_start": start,
                    "range_end": start + timedelta(days=1),
                    "model_ids": 3,
                    "fetched_at": start + timedelta(days=1),
                }
            ],
        )
        lake_io.write_partition(
            lake, lake_io.Partition("metric_points", region, day), lake_io.empty_table("metric_points")
        )
        lake_io.write_partition(lake, lake_io.Partition("metric_coverage", region, day), coverage)
        day += timedelta(days=1)


def _ranges(tmp_path, moment: datetime, instance=None) -> list[tuple[str, str]]:
    # Both as context managers: a schedule context enters its instance, and must leave it again, or later tests
    # in this process find a disposed instance where Dagster looks for the current one.
    with (
        dg.instance_for_test() as own,
        dg.build_schedule_context(
            instance=instance or own,
            scheduled_execution_time=moment,
            resources={
                "aws": AwsResource(regions=REGIONS),
                "warehouse": WarehouseResource(warehouse_dir=str(tmp_path / "warehouse"), as_of_lag_minutes=5),
            },
        ) as context,
    ):
        result = hourly_extract(context)
    if isinstance(result, dg.SkipReason):
        return []
    return sorted((request.tags[RANGE_START], request.tags[RANGE_END]) for request in result)


def test_first_tick_backfills_30_days_of_every_region_in_one_run(tmp_path):
    assert _ranges(tmp_path, datetime(2026, 11, 20, 13, 2, tzinfo=UTC)) == [("2026-10-21", "2026-11-20")]


def test_midday_tick_on_a_held_lake_reads_only_today(tmp_path):
    lake = tmp_path / "warehouse" / "lake"
    for region in REGIONS:
        _hold_days(lake, region, date(2026, 10, 20), date(2026, 11, 19))
    assert _ranges(tmp_path, datetime(2026, 11, 20, 13, 2, tzinfo=UTC)) == [("2026-11-20", "2026-11-20")]


def test_a_day_one_region_lost_is_read_again_in_its_own_run(tmp_path):
    lake = tmp_path / "warehouse" / "lake"
    for region in REGIONS:
        _hold_days(lake, region, date(2026, 10, 20), date(2026, 11, 19))
    # The points file is gone: its coverage file claims nothing any more.
    (lake / "metric_points" / "region=us-west-2" / "date=2026-11-02" / "data.parquet").unlink()
    assert _ranges(tmp_path, datetime(2026, 11, 20, 13, 2, tzinfo=UTC)) == [
        ("2026-11-02", "2026-11-02"),
        ("2026-11-20", "2026-11-20"),
    ]


def test_a_tick_during_a_backfill_leaves_the_backfill_its_days(tmp_path):
    with dg.instance_for_test() as instance:
        for run_id, status, first, last in (
            ("backfill", dg.DagsterRunStatus.STARTED, "2026-10-21", "2026-11-10"),
            ("failed", dg.DagsterRunStatus.FAILURE, "2026-11-11", "2026-11-15"),
        ):
            instance.add_run(
                dg.DagsterRun(
                    job_name=extract_job.name,
                    run_id=run_id,
                    status=status,
                    tags={RANGE_START: first, RANGE_END: last},
                )
            )
        ranges = _ranges(tmp_path, datetime(2026, 11, 20, 13, 2, tzinfo=UTC), instance)
    # The running backfill keeps 10-21..11-10; the failed run's days are asked for again, with the rest.
    assert ranges == [("2026-11-11", "2026-11-20")]


def test_a_tick_while_every_day_is_being_read_asks_for_nothing(tmp_path):
    with dg.instance_for_test() as instance:
        instance.add_run(
            dg.DagsterRun(
                job_name=extract_job.name,
                run_id="everything",
                status=dg.DagsterRunStatus.STARTING,
                tags={RANGE_START: "2026-10-01", RANGE_END: "2026-11-20"},
            )
        )
        assert _ranges(tmp_path, datetime(2026, 11, 20, 13, 2, tzinfo=UTC), instance) == []

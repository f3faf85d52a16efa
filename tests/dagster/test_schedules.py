"""The hourly schedules ask for exactly the partitions an incremental run needs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from pipelines import lake as lake_io
from pipelines.resources import AwsResource, WarehouseResource
from pipelines.schedules import hourly_metrics, hourly_refresh, metrics_job

REGIONS = ["us-east-1", "us-west-2"]


def _hold_days(lake, region: str, first: date, last: date) -> None:
    """Coverage rows saying each whole day from first to last was read (what a finished run leaves)."""
    day = first
    while day <= last:
        start = datetime.combine(day, datetime.min.time())
        table = lake_io.to_table(
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
        lake_io.write_partition(lake, lake_io.Partition("metric_coverage", region, day), table)
        day += timedelta(days=1)


def _requests(tmp_path, moment: datetime) -> list[str]:
    # Both as context managers: a schedule context enters its instance, and must leave it again, or later tests
    # in this process find a disposed instance where Dagster looks for the current one.
    with (
        dg.instance_for_test() as instance,
        dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=moment,
            resources={
                "aws": AwsResource(regions=REGIONS),
                "warehouse": WarehouseResource(warehouse_dir=str(tmp_path / "warehouse")),
            },
        ) as context,
    ):
        return sorted(str(request.partition_key) for request in hourly_metrics(context))


def test_first_tick_backfills_30_days_of_every_region(tmp_path):
    keys = _requests(tmp_path, datetime(2026, 11, 20, 13, 2, tzinfo=UTC))
    assert len(keys) == 31 * len(REGIONS)
    assert keys[0] == "2026-10-21|us-east-1" and keys[-1] == "2026-11-20|us-west-2"


def test_midday_tick_on_a_held_lake_refreshes_only_today(tmp_path):
    lake = tmp_path / "warehouse" / "lake"
    for region in REGIONS:
        _hold_days(lake, region, date(2026, 10, 20), date(2026, 11, 19))
    assert _requests(tmp_path, datetime(2026, 11, 20, 13, 2, tzinfo=UTC)) == [
        "2026-11-20|us-east-1",
        "2026-11-20|us-west-2",
    ]


def test_first_hour_after_midnight_also_rereads_yesterday(tmp_path):
    lake = tmp_path / "warehouse" / "lake"
    for region in REGIONS:
        _hold_days(lake, region, date(2026, 10, 19), date(2026, 11, 19))
    assert _requests(tmp_path, datetime(2026, 11, 20, 0, 2, tzinfo=UTC)) == [
        "2026-11-19|us-east-1",
        "2026-11-19|us-west-2",
        "2026-11-20|us-east-1",
        "2026-11-20|us-west-2",
    ]


def test_a_day_a_missed_run_left_incomplete_is_read_again(tmp_path):
    lake = tmp_path / "warehouse" / "lake"
    for region in REGIONS:
        _hold_days(lake, region, date(2026, 10, 20), date(2026, 11, 19))
    (lake / "metric_coverage" / "region=us-west-2" / "date=2026-11-02" / "data.parquet").unlink()
    assert "2026-11-02|us-west-2" in _requests(tmp_path, datetime(2026, 11, 20, 13, 2, tzinfo=UTC))


def test_refresh_schedule_pins_as_of_to_the_metrics_tick():
    with dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 20, 13, 12, tzinfo=UTC)) as context:
        request = hourly_refresh(context)
    assert request.tags["buw/as_of"].startswith("2026-11-20T13:02")


def test_partitions_whose_runs_are_still_in_flight_are_not_requested_again(tmp_path):
    with dg.instance_for_test() as instance:
        for day, status in (("2026-11-05", dg.DagsterRunStatus.STARTED), ("2026-11-06", dg.DagsterRunStatus.FAILURE)):
            instance.add_run(
                dg.DagsterRun(
                    job_name=metrics_job.name,
                    run_id=f"run-{day}",
                    status=status,
                    tags={"dagster/partition": f"{day}|us-east-1"},
                )
            )
        with dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime(2026, 11, 20, 13, 2, tzinfo=UTC),
            resources={
                "aws": AwsResource(regions=["us-east-1"]),
                "warehouse": WarehouseResource(warehouse_dir=str(tmp_path / "warehouse")),
            },
        ) as context:
            keys = {str(request.partition_key) for request in hourly_metrics(context)}
    assert "2026-11-05|us-east-1" not in keys  # still running
    assert "2026-11-06|us-east-1" in keys  # failed: asked for again
    assert len(keys) == 30

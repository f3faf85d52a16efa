"""The hourly schedule asks for exactly the partitions an incremental run needs."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from pipelines.resources import AwsResource
from pipelines.schedules import days_to_refresh, hourly_metrics, hourly_refresh


def test_midday_refreshes_only_today():
    assert days_to_refresh(datetime(2026, 11, 20, 13, 2, tzinfo=UTC)) == ["2026-11-20"]


def test_first_hour_after_midnight_also_refreshes_yesterday():
    assert days_to_refresh(datetime(2026, 11, 20, 0, 2, tzinfo=UTC)) == ["2026-11-19", "2026-11-20"]


def test_metrics_schedule_requests_one_run_per_region_and_day():
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 20, 0, 2, tzinfo=UTC),
        resources={"aws": AwsResource(regions=["us-east-1", "us-west-2"])},
    )
    requests = list(hourly_metrics(context))
    keys = sorted(str(request.partition_key) for request in requests)
    assert keys == [
        "2026-11-19|us-east-1",
        "2026-11-19|us-west-2",
        "2026-11-20|us-east-1",
        "2026-11-20|us-west-2",
    ]


def test_refresh_schedule_pins_as_of_to_the_metrics_tick():
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 20, 13, 12, tzinfo=UTC))
    request = hourly_refresh(context)
    assert request.tags["buw/as_of"].startswith("2026-11-20T13:02")

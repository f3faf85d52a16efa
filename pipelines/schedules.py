"""Jobs, the hourly schedule and the automation that keep the warehouse current.

Every hour the schedule starts one extraction run: snapshots of profiles, tags, models and quotas, and the
metric days that need reading (today, past what the lake already holds, plus any day of the last 30 the lake
does not hold whole: all of them on the first tick). The marts and the reports carry an automation condition:
Dagster's automation sensor rebuilds them once new metric partitions or snapshots have landed and no upstream run
is still in progress, so they never run on a guess about when the extraction finished.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import dagster as dg
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from pipelines.extraction import BACKFILL_DAYS, contiguous_spans, days_to_read
from pipelines.resources import AwsResource, WarehouseResource, default_as_of

METRIC_ASSET = dg.AssetKey("metric_points")
# The invocation logs need permissions of their own; the hourly job reads them only once added to it.
EXTRACT_ASSETS = dg.AssetSelection.groups("extract") - dg.AssetSelection.assets("invocation_logs")

extract_job = dg.define_asset_job(
    "extract_job",
    selection=EXTRACT_ASSETS,
    description="Snapshot profiles, tags, models and quotas and read a range of metric days into the lake; the "
    "automation then rebuilds the marts and reports.",
)

automation_sensor = dg.AutomationConditionSensorDefinition(
    "marts_and_reports_automation",
    target=dg.AssetSelection.groups("models", "report"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)

_ACTIVE_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _days_between(first: str, last: str) -> set[date]:
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    return {date.fromordinal(ordinal) for ordinal in range(start.toordinal(), end.toordinal() + 1)}


def days_in_flight(instance: dg.DagsterInstance) -> set[date] | None:
    """Metric days that queued or running runs, or requested backfills, will read; None when it cannot be told."""
    busy: set[date] = set()
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=_ACTIVE_RUN_STATUSES)):
        if run.asset_selection is not None and METRIC_ASSET not in run.asset_selection:
            continue
        tags = run.tags
        if ASSET_PARTITION_RANGE_START_TAG in tags and ASSET_PARTITION_RANGE_END_TAG in tags:
            busy |= _days_between(tags[ASSET_PARTITION_RANGE_START_TAG], tags[ASSET_PARTITION_RANGE_END_TAG])
        elif "dagster/partition" in tags:
            busy |= _days_between(tags["dagster/partition"], tags["dagster/partition"])
    for backfill in instance.get_backfills(filters=BulkActionsFilter(statuses=[BulkActionStatus.REQUESTED])):
        data = backfill.asset_backfill_data
        if data is None:
            if backfill.asset_selection is None or METRIC_ASSET in backfill.asset_selection:
                return None
            continue
        if METRIC_ASSET not in data.target_subset.asset_keys:
            continue
        keys = data.get_target_partitions_subset(METRIC_ASSET).get_partition_keys()
        busy |= {date.fromisoformat(key) for key in keys}
    return busy


def extract_run_requests(
    instance: dg.DagsterInstance, lake, regions, moment: datetime, lag, days: int = BACKFILL_DAYS
) -> list[dg.RunRequest] | dg.SkipReason:
    """The extraction runs an hourly tick at ``moment`` asks for: one per contiguous span of days to read.

    Days a queued or running run (or a requested backfill) will read are left to it, so a tick during a long
    backfill neither reads a day twice at once nor leaves one out: the next tick takes whatever is still missing.
    """
    as_of = default_as_of(moment, lag)
    wanted, _ = days_to_read(lake, as_of, regions, days)
    busy = days_in_flight(instance)
    if busy is None:
        return dg.SkipReason("a backfill of metric_points is being planned; the next tick reads what it leaves")
    todo = [day for day in wanted if day not in busy]
    if not todo:
        return dg.SkipReason("every day to read is already being read by a run in progress")
    return [
        dg.RunRequest(
            run_key=f"metrics {first.isoformat()}…{last.isoformat()} @{moment:%Y-%m-%dT%H}",
            tags={
                ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
                ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
            },
        )
        for first, last in contiguous_spans(todo)
    ]


@dg.schedule(
    job=extract_job,
    cron_schedule="2 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Hourly: snapshots, and the metric minutes since the last run (on the first tick, the last 30 "
    "days), each day range as one run; the automation rebuilds marts and reports after it.",
)
def hourly_extract(context: dg.ScheduleEvaluationContext, aws: AwsResource, warehouse: WarehouseResource):
    moment = (context.scheduled_execution_time or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    return extract_run_requests(context.instance, warehouse.lake(), aws.target_regions(), moment, warehouse.as_of_lag())


SCHEDULES = [hourly_extract]
SENSORS = [automation_sensor]
JOBS = [extract_job]

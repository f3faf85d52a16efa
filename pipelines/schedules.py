"""Jobs and the hourly schedule that keeps the warehouse current.

Every hour: refresh today's metric partitions of each target region (and yesterday's in the first hour after UTC
midnight, to catch late datapoints), then rebuild snapshots, marts and reports. CloudWatch bills GetMetricData per
metric requested, so re-reading the whole current day costs the same as reading its last hour.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from pipelines.assets.extract import held_partitions, partitions_to_refresh
from pipelines.resources import AS_OF_TAG, AwsResource, WarehouseResource
from pipelines.settings import utc_text

METRIC_ASSETS = dg.AssetSelection.assets("metric_points")
REFRESH_ASSETS = dg.AssetSelection.groups("extract", "models", "report") - METRIC_ASSETS

metrics_job = dg.define_asset_job(
    "metrics_job",
    selection=METRIC_ASSETS,
    description="Extract one (region, UTC day) partition of CloudWatch metrics to the lake.",
)
refresh_job = dg.define_asset_job(
    "refresh_job",
    selection=REFRESH_ASSETS,
    description="Snapshot profiles, tags, models and quotas; rebuild every mart; render the reports.",
)


def _partitions_in_flight(instance: dg.DagsterInstance) -> set[str]:
    """Partition keys of metrics_job runs that are queued or running."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(
            job_name=metrics_job.name,
            statuses=[
                dg.DagsterRunStatus.QUEUED,
                dg.DagsterRunStatus.NOT_STARTED,
                dg.DagsterRunStatus.STARTING,
                dg.DagsterRunStatus.STARTED,
            ],
        )
    )
    return {run.tags["dagster/partition"] for run in runs if "dagster/partition" in run.tags}


@dg.schedule(
    job=metrics_job,
    cron_schedule="2 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Hourly: refresh today's metric partitions (and yesterday's just after midnight), and backfill any "
    "day of the last 30 that the lake does not hold completely (all of them on the first tick).",
)
def hourly_metrics(context: dg.ScheduleEvaluationContext, aws: AwsResource, warehouse: WarehouseResource):
    moment = (context.scheduled_execution_time or datetime.now(UTC)).astimezone(UTC)
    as_of = moment.replace(tzinfo=None, second=0, microsecond=0)
    held = held_partitions(warehouse.lake(), as_of)
    busy = _partitions_in_flight(context.instance)
    for region, day in partitions_to_refresh(as_of, held, aws.target_regions()):
        key = dg.MultiPartitionKey({"date": day.isoformat(), "region": region})
        if str(key) in busy:
            # A backfill run of it is still queued or running (a first backfill outlasts an hour).
            continue
        yield dg.RunRequest(run_key=f"{key}@{moment:%Y-%m-%dT%H}", partition_key=key, tags={AS_OF_TAG: utc_text(as_of)})


@dg.schedule(
    job=refresh_job,
    cron_schedule="12 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Hourly, after the metrics: snapshots, marts and reports, as_of = the metrics tick (:02).",
)
def hourly_refresh(context: dg.ScheduleEvaluationContext):
    moment = (context.scheduled_execution_time or datetime.now(UTC)).astimezone(UTC)
    # Windows end where the metrics tick ten minutes earlier stopped reading, so no window holds unread minutes.
    as_of = moment.replace(second=0, microsecond=0) - timedelta(minutes=10)
    return dg.RunRequest(run_key=f"refresh@{moment:%Y-%m-%dT%H}", tags={AS_OF_TAG: utc_text(as_of)})


SCHEDULES = [hourly_metrics, hourly_refresh]
JOBS = [metrics_job, refresh_job]

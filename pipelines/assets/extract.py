"""Extract assets: AWS (or the sandbox) -> the raw Parquet datasets of the lake.

``metric_points`` is partitioned by UTC day with a single-run backfill policy: one run reads a whole range of
days (a backfill of 30 days is one run, not 30) for every target region, asking CloudWatch for each
(series, metric, statistic) once per retention tier (pipelines/extraction.py). The snapshot assets
(``foundation_models``, ``inference_profiles`` with ``profile_tags``, ``service_quotas``) are unpartitioned:
each run loops over the target regions and replaces the (region, listing day) partition, so a day keeps its
last snapshot and older days keep theirs.

The extraction itself is plain functions (``extract_metrics``, ``extract_foundation_models``,
``extract_inference_profiles``, ``extract_service_quotas``); the assets only resolve settings, call them and
report what it cost.
"""

import dataclasses
import json
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg

from pipelines import lake as lake_io
from pipelines.aws import AwsApiError
from pipelines.aws.account import get_identity
from pipelines.aws.bedrock import list_foundation_models, list_inference_profiles, list_profile_tags
from pipelines.aws.cloudwatch import GET_METRIC_DATA_PRICE
from pipelines.aws.invocation_logs import LogReadCost
from pipelines.aws.quotas import list_service_quotas
from pipelines.aws.records import CallStats
from pipelines.extraction import (
    BACKFILL_DAYS,
    ClientCache,
    ExtractError,
    RegionRead,
    extract_metrics,
    oldest_readable_day,
)
from pipelines.invocation_extraction import extract_invocation_logs, record_log_reads
from pipelines.resources import (
    SERIES_TAG,
    AwsResource,
    WarehouseResource,
    default_as_of,
    pinned_as_of,
)
from pipelines.settings import utc_text

__all__ = ["BACKFILL_DAYS", "ExtractError"]

# Dagster marks single-run backfill policies as beta; they are what reads a backfill's range in one run.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)

# The partitions the UI offers: the UTC days CloudWatch can still answer for (455 days of 1-hour data) up to
# today. Older days the lake already holds stay in the lake and in every mart; there is nothing left to read for
# them. The start moves with the clock each time the code location loads.
METRIC_DAYS_START = (datetime.now(UTC).replace(tzinfo=None) - timedelta(days=455)).date() + timedelta(days=1)

metric_days = dg.DailyPartitionsDefinition(
    start_date=METRIC_DAYS_START.isoformat(),
    timezone="UTC",
    # end_offset=1 so today's partition exists: the hourly run refreshes it while the day runs.
    end_offset=1,
)

# One pool for every metric_points run (its limit is 1 in the instance buw sets up): see the asset.
METRICS_POOL = "cloudwatch"


def record_extract_run(
    lake: Path, run_id: str, account_id: str, as_of: datetime, recorded_at: datetime, reads: Iterable[RegionRead]
) -> list[dict]:
    """Append one row per region of this run to ``extract_runs`` (partition: region x day of as_of)."""
    rows_by_region: dict[str, list[dict]] = {}
    for read in reads:
        rows_by_region.setdefault(read.region, []).append(
            {
                "run_id": run_id,
                "account_id": account_id,
                "recorded_at": recorded_at,
                "as_of": as_of,
                "range_start": read.start,
                "range_end": read.end,
                "listing": read.listing,
                "narrowed": read.scope is not None,
                "series": len(read.series),
                "queries": read.queries,
                "calls": read.stats.calls,
                "metrics_requested": read.stats.metrics_requested,
                "datapoints": read.stats.datapoints,
                "days_written": len(read.days),
                "estimated_cost_usd": GET_METRIC_DATA_PRICE.cost(read.stats.metrics_requested),
                "usd_per_1000_metrics": GET_METRIC_DATA_PRICE.usd_per_1000_metrics,
                "price_as_of": GET_METRIC_DATA_PRICE.as_of,
            }
        )
    written = []
    for region, rows in rows_by_region.items():
        partition = lake_io.Partition("extract_run_log", region, as_of.date())
        existing = lake_io.read_partition(lake, partition)
        kept = [row for row in (existing.to_pylist() if existing is not None else []) if row["run_id"] != run_id]
        lake_io.write_partition(lake, partition, lake_io.to_table("extract_run_log", kept + rows))
        written.extend(rows)
    return written


# Snapshots ---


@dataclass(frozen=True)
class SnapshotResult:
    """Rows written per region for one snapshot dataset, and the partition files."""

    dataset: str
    rows_by_region: dict[str, int]
    paths: tuple[Path, ...]
    preview: str

    @property
    def rows(self) -> int:
        return sum(self.rows_by_region.values())


def _markdown(rows: list[dict], columns: tuple[str, ...], limit: int = 8) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows[:limit]:
        cells = []
        for column in columns:
            value = row.get(column)
            cells.append(", ".join(value) if isinstance(value, list | tuple) else "" if value is None else str(value))
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    if len(rows) > limit:
        lines.append(f"| … {len(rows) - limit} more |" + " |" * (len(columns) - 1))
    return "\n".join(lines)


def _write_snapshot(
    lake: Path, dataset: str, by_region: dict[str, list[dict]], day: date, preview_columns: tuple[str, ...]
) -> SnapshotResult:
    paths = tuple(
        lake_io.write_partition(lake, lake_io.Partition(dataset, region, day), lake_io.to_table(dataset, rows))
        for region, rows in by_region.items()
    )
    every_row = [row for rows in by_region.values() for row in rows]
    return SnapshotResult(
        dataset=dataset,
        rows_by_region={region: len(rows) for region, rows in by_region.items()},
        paths=paths,
        preview=_markdown(every_row, preview_columns),
    )


def _lake_row(record, listed_at: datetime, **columns) -> dict:
    """A record as a lake row: its fields are named as the dataset's columns; the snapshot time is added."""
    return {**dataclasses.asdict(record), "snapshot_at": listed_at, **columns}


def _per_region(dataset: str, regions: Iterable[str], listing: Callable[[str], list]) -> dict[str, list]:
    """``listing(region)`` for every region; an AWS failure names the dataset and the region."""
    listed = {}
    for region in regions:
        try:
            listed[region] = listing(region)
        except AwsApiError as error:
            raise ExtractError(f"{dataset} for {region}: {error}") from error
    return listed


def extract_foundation_models(aws: AwsResource, lake: Path, regions: Iterable[str], as_of: datetime) -> SnapshotResult:
    """Snapshot ListFoundationModels of each region into ``foundation_models`` (region, as_of day)."""
    listed = _per_region(
        "foundation_models", regions, lambda region: list_foundation_models(aws.client("bedrock", region))
    )
    by_region = {region: [_lake_row(model, as_of) for model in models] for region, models in listed.items()}
    return _write_snapshot(
        lake, "foundation_models", by_region, as_of.date(), ("model_id", "provider", "inference_types")
    )


LAKE_PROFILE_TYPES = {"SYSTEM_DEFINED": "SYSTEM", "APPLICATION": "APPLICATION"}


def extract_inference_profiles(
    aws: AwsResource, lake: Path, regions: Iterable[str], as_of: datetime, account_id: str
) -> tuple[SnapshotResult, SnapshotResult]:
    """Snapshot ListInferenceProfiles (both types) and the tags of application profiles (ListTagsForResource).

    System-defined profiles belong to AWS and carry no customer tags, so only application profiles are asked.
    """

    def listing(region: str) -> tuple[list, list]:
        client = aws.client("bedrock", region)
        profiles = list_inference_profiles(client)
        return profiles, list_profile_tags(client, [p for p in profiles if p.type == "APPLICATION"])

    listed = _per_region("inference_profiles", regions, listing)
    profiles_by_region = {
        # The lake names the types SYSTEM and APPLICATION (docs/data-dictionary.md); the API says SYSTEM_DEFINED.
        region: [
            _lake_row(profile, as_of, account_id=account_id, type=LAKE_PROFILE_TYPES.get(profile.type, profile.type))
            for profile in profiles
        ]
        for region, (profiles, _) in listed.items()
    }
    tags_by_region = {region: [_lake_row(tag, as_of) for tag in tags] for region, (_, tags) in listed.items()}
    day = as_of.date()
    return (
        _write_snapshot(lake, "inference_profiles", profiles_by_region, day, ("profile_id", "type", "name")),
        _write_snapshot(lake, "profile_tags", tags_by_region, day, ("profile_id", "key", "value")),
    )


def extract_service_quotas(aws: AwsResource, lake: Path, regions: Iterable[str], as_of: datetime) -> SnapshotResult:
    """Snapshot the Bedrock quotas of each region (ListAWSDefaultServiceQuotas + ListServiceQuotas)."""
    listed = _per_region(
        "service_quotas", regions, lambda region: list_service_quotas(aws.client("service-quotas", region))
    )
    by_region = {region: [_lake_row(quota, as_of) for quota in quotas] for region, quotas in listed.items()}
    return _write_snapshot(
        lake,
        "service_quotas",
        by_region,
        as_of.date(),
        ("quota_code", "quota_name", "value", "applied_value"),
    )


def account_id_for(aws: AwsResource, region: str, purpose: str = "the extraction") -> str:
    """The account id of the credentials (STS GetCallerIdentity); a failure is an ``ExtractError``.

    ``purpose`` names what needed it (e.g. the partition), so the error says which run step failed.
    """
    return identity_for(aws, region, purpose)[0]


def identity_for(aws: AwsResource, region: str, purpose: str = "the extraction") -> tuple[str, datetime]:
    """The account id and AWS's clock (from STS GetCallerIdentity); a failure is an ``ExtractError``.

    AWS's clock, not the run's ``as_of``, dates snapshots and measures CloudWatch retention.
    """
    try:
        return get_identity(aws.client("sts", region))
    except AwsApiError as error:
        raise ExtractError(f"{purpose}: reading the account id: {error}") from error


def _failure(error: ExtractError) -> dg.Failure:
    # dg.Failure puts the one-sentence cause at the top of the run's failure event instead of a nested traceback.
    return dg.Failure(description=str(error), allow_retries=True)


# Dagster assets ---


def _listing_time(aws: AwsResource, dataset: str) -> datetime:
    """When a snapshot is taken, by AWS's clock: snapshots record what was listed then, whatever the run's as_of."""
    return identity_for(aws, aws.target_regions()[0], dataset)[1].replace(second=0)


def _snapshot_metadata(result: SnapshotResult, listed_at: datetime) -> dict:
    return {
        "dagster/row_count": dg.MetadataValue.int(result.rows),
        "rows_by_region": dg.MetadataValue.json(result.rows_by_region),
        "listed_at": dg.MetadataValue.text(utc_text(listed_at)),
        "path": dg.MetadataValue.path(str(result.paths[0].parent.parent.parent) if result.paths else ""),
        "preview": dg.MetadataValue.md(result.preview),
    }


def _reads_table(reads: Iterable[RegionRead]) -> str:
    lines = [
        "| region | read from | to | listing | series | queries | calls | metrics requested | datapoints | est. USD |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for read in reads:
        lines.append(
            f"| {read.region} | {read.start:%Y-%m-%d %H:%M} | {read.end:%Y-%m-%d %H:%M} | {read.listing} | "
            f"{len(read.series)} | {read.queries} | {read.stats.calls} | {read.stats.metrics_requested:,} | "
            f"{read.stats.datapoints:,} | {GET_METRIC_DATA_PRICE.cost(read.stats.metrics_requested):.4f} |"
        )
    return "\n".join(lines)


@dg.asset(
    partitions_def=metric_days,
    # A backfill of any range is one run, which reads each (series, metric, statistic) once per retention tier
    # for the whole range: GetMetricData bills per metric requested, not per day or datapoint.
    backfill_policy=dg.BackfillPolicy.single_run(),
    # One pool for every metrics run: its limit (dagster.yaml, concurrency.pools) keeps two runs from reading
    # CloudWatch, and rewriting the same day files, at once.
    pool=METRICS_POOL,
    group_name="extract",
    kinds={"aws", "cloudwatch", "parquet"},
)
def metric_points(context: dg.AssetExecutionContext, aws: AwsResource, warehouse: WarehouseResource):
    """CloudWatch AWS/Bedrock datapoints of every target region for a range of UTC days (ListMetrics, GetMetricData).

    Asks only for the metrics ListMetrics lists (recently active ones when the range starts within three hours),
    once per retention tier: 1-minute periods for the last 15 days, 5-minute before, 1-hour before that. Minutes
    the lake already holds are not read again. Writes ``metric_points``, ``metric_coverage`` and
    ``extract_runs``.
    """
    window = context.partition_time_window
    first_day = window.start.astimezone(UTC).date()
    last_day = (window.end.astimezone(UTC) - timedelta(seconds=1)).date()
    regions = aws.target_regions()
    series = json.loads(context.run.tags[SERIES_TAG]) if SERIES_TAG in context.run.tags else None
    lake = warehouse.lake()
    clients = ClientCache(aws)
    reads: list[RegionRead] = []
    try:
        account_id, now = identity_for(aws, regions[0], "metric_points")
        as_of = pinned_as_of(context.run.tags, warehouse) or default_as_of(now, warehouse.as_of_lag())
        today = now.date()
        if first_day > today or last_day < oldest_readable_day(now):
            raise dg.Failure(
                description=f"metric_points {first_day}…{last_day} cannot be read: CloudWatch answers for "
                f"{oldest_readable_day(now)} to {today} (UTC) only; pick days in that range.",
                allow_retries=False,
            )
        upgraded = lake_io.upgrade_metric_points(lake)
        if upgraded:
            context.log.info(f"rewrote {len(upgraded)} metric_points files of an earlier layout")
        for region in regions:
            region_now = now if region == regions[0] else identity_for(aws, region, "metric_points")[1]
            read = extract_metrics(
                aws, lake, region, first_day, last_day, as_of, account_id, region_now, series=series, clients=clients
            )
            for problem in read.problems:
                context.log.warning(f"{region}: {problem}; reading those minutes again")
            context.log.info(
                f"{region}: read {read.start:%Y-%m-%d %H:%M} to {read.end:%Y-%m-%d %H:%M} ({read.listing}), "
                f"{read.queries} queries, {read.stats.calls} GetMetricData calls, "
                f"{read.stats.metrics_requested} metrics requested, {read.stats.datapoints} datapoints"
            )
            reads.append(read)
    except ExtractError as error:
        raise _failure(error) from error
    record_extract_run(lake, context.run.run_id, account_id, as_of, now.replace(tzinfo=None), reads)
    total = sum((read.stats for read in reads), CallStats())
    return dg.MaterializeResult(
        metadata={
            "calls": dg.MetadataValue.int(total.calls),
            "metrics_requested": dg.MetadataValue.int(total.metrics_requested),
            "datapoints": dg.MetadataValue.int(total.datapoints),
            "estimated_cost_usd": dg.MetadataValue.float(GET_METRIC_DATA_PRICE.cost(total.metrics_requested)),
            "price": dg.MetadataValue.text(
                f"${GET_METRIC_DATA_PRICE.usd_per_1000_metrics} per 1,000 metrics (as of "
                f"{GET_METRIC_DATA_PRICE.as_of.isoformat()})"
            ),
            "series": dg.MetadataValue.int(len({(read.region, s) for read in reads for s in read.series})),
            "narrowed_to": dg.MetadataValue.text(", ".join(series) if series is not None else "every listed series"),
            "periods": dg.MetadataValue.text(
                ", ".join(f"{period} s" for period in sorted({p for read in reads for p in read.periods})) or "none"
            ),
            "as_of": dg.MetadataValue.text(as_of.isoformat() + "Z"),
            "days_written": dg.MetadataValue.int(len({(read.region, day) for read in reads for day in read.days})),
            "dagster/row_count": dg.MetadataValue.int(sum(read.fetched_rows for read in reads)),
            "path": dg.MetadataValue.path(str(lake / "metric_points")),
            "reads": dg.MetadataValue.md(_reads_table(reads)),
            "preview": dg.MetadataValue.md(reads[0].preview if len(reads) == 1 else _reads_table(reads)),
        }
    )


def _log_reads_table(reads) -> str:
    lines = [
        "| region | delivery | read from | to | objects read | bytes read | records | queries | bytes scanned | rows |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for read in reads:
        lines.append(
            f"| {read.region} | {read.delivery} | {read.start:%Y-%m-%d %H:%M} | {read.end:%Y-%m-%d %H:%M} | "
            f"{read.cost.objects_read:,} | {read.cost.bytes_read:,} | {read.cost.records_read:,} | "
            f"{read.cost.queries} | {read.cost.bytes_scanned:,} | {read.rows:,} |"
        )
    return "\n".join(lines)


@dg.asset(
    partitions_def=metric_days,
    # As for the metrics: a backfill of any range is one run, and each S3 object or log record is read once.
    backfill_policy=dg.BackfillPolicy.single_run(),
    # Its own pool: two runs must not rewrite the same caller_minutes days at once, but a log read need not
    # wait for a CloudWatch read.
    pool="invocation_logs",
    group_name="extract",
    kinds={"aws", "s3", "parquet"},
)
def invocation_logs(context: dg.AssetExecutionContext, aws: AwsResource, warehouse: WarehouseResource):
    """Per-minute caller counts from Bedrock model invocation logs of every target region for a range of UTC days.

    Reads GetModelInvocationLoggingConfiguration, then the S3 objects not yet held (ListObjectsV2, GetObject)
    or, with CloudWatch Logs delivery only, Logs Insights (StartQuery, GetQueryResults) for the minutes after
    the last read; the callers' IAM tags (ListRoleTags, ListUserTags). Writes ``caller_minutes`` (counts only,
    never a request's body), ``principal_tags`` and ``invocation_log_reads``.
    """
    window = context.partition_time_window
    first_day = window.start.astimezone(UTC).date()
    last_day = (window.end.astimezone(UTC) - timedelta(seconds=1)).date()
    regions = aws.target_regions()
    lake = warehouse.lake()
    clients = ClientCache(aws)
    reads = []
    try:
        account_id, now = identity_for(aws, regions[0], "invocation_logs")
        for region in regions:
            read = extract_invocation_logs(clients, lake, region, first_day, last_day, account_id, now)
            context.log.info(
                f"{region}: {read.delivery} {read.start:%Y-%m-%d %H:%M} to {read.end:%Y-%m-%d %H:%M}, "
                f"{read.cost.objects_read} objects ({read.cost.bytes_read} bytes), {read.cost.queries} queries "
                f"({read.cost.bytes_scanned} bytes scanned), {read.rows} rows"
            )
            reads.append(read)
    except ExtractError as error:
        raise _failure(error) from error
    record_log_reads(lake, context.run.run_id, account_id, now.replace(tzinfo=None), reads)
    total = sum((read.cost for read in reads), LogReadCost())
    return dg.MaterializeResult(
        metadata={
            "delivery": dg.MetadataValue.json({read.region: read.delivery for read in reads}),
            "objects_read": dg.MetadataValue.int(total.objects_read),
            "bytes_read": dg.MetadataValue.int(total.bytes_read),
            "records_read": dg.MetadataValue.int(total.records_read),
            "queries": dg.MetadataValue.int(total.queries),
            "records_scanned": dg.MetadataValue.int(total.records_scanned),
            "bytes_scanned": dg.MetadataValue.int(total.bytes_scanned),
            "days_written": dg.MetadataValue.int(len({(read.region, day) for read in reads for day in read.days})),
            "dagster/row_count": dg.MetadataValue.int(sum(read.rows for read in reads)),
            "path": dg.MetadataValue.path(str(lake / "caller_minutes")),
            "reads": dg.MetadataValue.md(_log_reads_table(reads)),
        }
    )


@dg.asset(group_name="extract", kinds={"aws", "bedrock", "parquet"})
def foundation_models(context: dg.AssetExecutionContext, aws: AwsResource, warehouse: WarehouseResource):
    """Foundation models offered in each target region (Bedrock ListFoundationModels), as of the run's day."""
    try:
        listed_at = _listing_time(aws, "foundation_models")
        result = extract_foundation_models(aws, warehouse.lake(), aws.target_regions(), listed_at)
    except ExtractError as error:
        raise _failure(error) from error
    return dg.MaterializeResult(metadata=_snapshot_metadata(result, listed_at))


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "inference_profiles",
            group_name="extract",
            kinds={"aws", "bedrock", "parquet"},
            description="System-defined and application inference profiles of each target region "
            "(Bedrock ListInferenceProfiles), as of the run's day.",
        ),
        dg.AssetSpec(
            "profile_tags",
            group_name="extract",
            kinds={"aws", "bedrock", "parquet"},
            description="Tags of each application inference profile (Bedrock ListTagsForResource), "
            "as of the run's day.",
        ),
    ],
    name="inference_profiles_and_tags",
)
def inference_profiles_and_tags(context: dg.AssetExecutionContext, aws: AwsResource, warehouse: WarehouseResource):
    """Inference profiles and their tags (Bedrock ListInferenceProfiles and ListTagsForResource)."""
    regions = aws.target_regions()
    try:
        account_id, listed_at = identity_for(aws, regions[0], "inference_profiles")
        listed_at = listed_at.replace(second=0)
        profiles, tags = extract_inference_profiles(aws, warehouse.lake(), regions, listed_at, account_id)
    except ExtractError as error:
        raise _failure(error) from error
    yield dg.MaterializeResult(asset_key="inference_profiles", metadata=_snapshot_metadata(profiles, listed_at))
    yield dg.MaterializeResult(asset_key="profile_tags", metadata=_snapshot_metadata(tags, listed_at))


@dg.asset(group_name="extract", kinds={"aws", "servicequotas", "parquet"})
def service_quotas(context: dg.AssetExecutionContext, aws: AwsResource, warehouse: WarehouseResource):
    """Bedrock quotas of each target region, applied and default values, as of the run's day.

    Service Quotas ListAWSDefaultServiceQuotas and ListServiceQuotas, two paginated listings per region.
    """
    try:
        listed_at = _listing_time(aws, "service_quotas")
        result = extract_service_quotas(aws, warehouse.lake(), aws.target_regions(), listed_at)
    except ExtractError as error:
        raise _failure(error) from error
    return dg.MaterializeResult(metadata=_snapshot_metadata(result, listed_at))


EXTRACT_ASSETS = [metric_points, foundation_models, inference_profiles_and_tags, service_quotas, invocation_logs]

# Read only when asked for (``buw analyze --breakdown``, the UI): the invocation logs need permissions
# (docs/iam-policy.md) that the metrics alone do not.
OPTIONAL_EXTRACT_ASSETS = ("invocation_logs",)

"""Extract assets: AWS (or the sandbox) -> the raw Parquet datasets of the lake.

``metric_points`` is partitioned by (UTC day, region); one partition reads every Bedrock series of a region
for one day through packed GetMetricData calls and writes ``metric_points`` and ``metric_coverage`` for that
day. The snapshot assets (``foundation_models``, ``inference_profiles`` with ``profile_tags``,
``service_quotas``) are unpartitioned: each run loops over the target regions and replaces the (region, as_of
day) partition, so a day keeps its last snapshot and older days keep theirs.

The extraction itself is plain functions (``extract_metrics_partition``, ``extract_foundation_models``,
``extract_inference_profiles``, ``extract_service_quotas``) that the CLI also calls without Dagster; the
assets only resolve settings, call them and report what it cost.
"""

import dataclasses
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import lake as lake_io
from pipelines.aws import AwsApiError
from pipelines.aws.account import BEDROCK_REGIONS, get_identity
from pipelines.aws.bedrock import list_foundation_models, list_inference_profiles, list_profile_tags
from pipelines.aws.cloudwatch import fetch_metric_data, list_model_ids
from pipelines.aws.quotas import list_service_quotas
from pipelines.aws.records import CallStats, MetricPoints
from pipelines.resources import AwsResource, WarehouseResource, run_as_of
from pipelines.settings import utc_text

BACKFILL_DAYS = 30

# CloudWatch keeps 1-minute data 15 days, 5-minute data 63 days and 1-hour data 455 days, and answers a call
# with no datapoint at all when its StartTime is older than its period allows. Tiers are measured from as_of,
# which can trail the service's own clock by the time a run waits in a queue, so each tier starts a margin
# later than the retention would allow.
RESOLUTION_TIERS: tuple[tuple[timedelta, int], ...] = (
    (timedelta(days=15), 60),
    (timedelta(days=63), 300),
    (timedelta(days=455), 3600),
)
RETENTION_MARGIN = timedelta(hours=1)

metric_partitions = dg.MultiPartitionsDefinition(
    {
        # end_offset=1 so today's partition exists: the hourly run refreshes it while the day runs.
        "date": dg.DailyPartitionsDefinition(start_date="2025-01-01", timezone="UTC", end_offset=1),
        "region": dg.StaticPartitionsDefinition(list(BEDROCK_REGIONS)),
    }
)


class ExtractError(RuntimeError):
    """An extraction failed; the message names the dataset, the region, the day (if any) and the API."""


@dataclass(frozen=True)
class FetchRange:
    """A time range [start, end) read at one period (seconds); bounds are aligned to the period."""

    start: datetime
    end: datetime
    period_s: int


@dataclass(frozen=True)
class ExtractResult:
    """What ``extract_metrics_partition`` read and wrote for one (region, day)."""

    region: str
    day: date
    as_of: datetime
    ranges: tuple[FetchRange, ...]
    model_ids: tuple[str, ...]
    stats: CallStats
    rows: int
    previous_rows: int
    fetched_rows: int
    kept_rows: int
    path: Path | None
    coverage_path: Path | None
    preview: str

    @property
    def periods(self) -> tuple[int, ...]:
        return tuple(sorted({fetch_range.period_s for fetch_range in self.ranges}))


# Planning ---


def _ceil_to(moment: datetime, seconds: int) -> datetime:
    epoch = datetime(1970, 1, 1)
    elapsed = (moment - epoch).total_seconds()
    return epoch + timedelta(seconds=math.ceil(elapsed / seconds) * seconds)


def day_bounds(day: date, as_of: datetime) -> tuple[datetime, datetime]:
    """The part of ``day`` a run at ``as_of`` can read: [00:00, min(next midnight, as_of))."""
    start = datetime.combine(day, time())
    return start, min(start + timedelta(days=1), as_of)


def plan_ranges(day: date, as_of: datetime, now: datetime | None = None) -> list[FetchRange]:
    """The sub-ranges of ``day`` and the period each is read at, finest first.

    Retention is measured from ``now``, CloudWatch's own clock (default: ``as_of``, which it is for every run
    that does not pin a past ``as_of``): times at least ``now - 15 days`` (plus the margin, rounded up to 5
    minutes) are read at 60 s, older ones at 300 s down to 63 days, then 3600 s down to 455 days; anything older
    is gone from CloudWatch and yields no range. A run pinned to a past ``as_of`` therefore reads its old days at
    the period CloudWatch still serves, and the merge keeps the finer rows the lake already holds.
    """
    now = as_of if now is None else now
    start, end = day_bounds(day, min(as_of, now))
    ranges: list[FetchRange] = []
    upper = end
    for index, (retention, period) in enumerate(RESOLUTION_TIERS):
        # The lower bound of a tier is aligned to the next (coarser) tier's period, so the two tile exactly.
        align = RESOLUTION_TIERS[index + 1][1] if index + 1 < len(RESOLUTION_TIERS) else period
        lower = _ceil_to(now - retention + RETENTION_MARGIN, align)
        tier_start, tier_end = max(start, lower), min(end, upper)
        if tier_start < tier_end:
            ranges.append(FetchRange(tier_start, tier_end, period))
        upper = lower
    return ranges


def plan_backfill(as_of: datetime, days: int = BACKFILL_DAYS) -> list[date]:
    """The days a first run reads, oldest first: today and the ``days`` before it.

    ``days + 1`` partitions, because a window of ``days`` ending at ``as_of`` starts part-way through the day
    ``days`` days ago. Days past CloudWatch's 455-day retention are left out.
    """
    today = as_of.date()
    oldest = (as_of - RESOLUTION_TIERS[-1][0]).date() + timedelta(days=1)
    return [today - timedelta(days=back) for back in range(days, -1, -1) if today - timedelta(days=back) >= oldest]


def partitions_to_refresh(
    as_of: datetime,
    held: set[tuple[str, date]],
    regions: Iterable[str],
    days: int = BACKFILL_DAYS,
) -> list[tuple[str, date]]:
    """The (region, day) partitions an incremental run at ``as_of`` must read, sorted by region then day.

    Today always (re-reading a whole day costs the same metrics as its last hour and catches late datapoints);
    yesterday too during the first hour after midnight; and any day of the backfill window not in ``held``
    (see ``held_partitions``), which makes the first run a backfill and fills gaps left by missed runs.
    """
    wanted: set[tuple[str, date]] = set()
    today = as_of.date()
    recent = {today}
    if as_of - datetime.combine(today, time()) < timedelta(hours=1):
        recent.add(today - timedelta(days=1))
    for region in regions:
        wanted.update((region, day) for day in recent)
        wanted.update((region, day) for day in plan_backfill(as_of, days) if (region, day) not in held)
    return sorted(wanted)


def held_partitions(lake: Path, as_of: datetime | None = None) -> set[tuple[str, date]]:
    """(region, day) partitions whose coverage reaches the end of the day (or ``as_of`` for today's)."""
    held = set()
    for partition in lake_io.partitions(lake, "metric_coverage"):
        table = lake_io.read_partition(lake, partition)
        if table is None or table.num_rows == 0:
            continue
        start = datetime.combine(partition.day, time())
        end = start + timedelta(days=1)
        if as_of is not None:
            end = min(end, as_of)
        spans = sorted(zip(table["range_start"].to_pylist(), table["range_end"].to_pylist(), strict=True))
        reached = start
        for span_start, span_end in spans:
            if span_start > reached:
                break
            reached = max(reached, span_end)
        if reached >= end:
            held.add((partition.region, partition.day))
    return held


# Metric partitions ---


class ClientCache:
    """The boto3 clients of one run, one per (service, region).

    ``AwsResource.client`` builds a new session and client each time, which costs a fraction of a second of
    botocore model loading; a backfill of dozens of partitions would spend most of its time there.
    """

    def __init__(self, aws: AwsResource) -> None:
        self.aws = aws
        self._clients: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()

    def __call__(self, service: str, region: str):
        with self._lock:
            key = (service, region)
            if key not in self._clients:
                self._clients[key] = self.aws.client(service, region)
            return self._clients[key]


def lake_model_ids(lake: Path, region: str) -> set[str]:
    """Every ModelId the lake already holds datapoints for in ``region``."""
    found: set[str] = set()
    for partition in lake_io.partitions(lake, "metric_points"):
        if partition.region != region:
            continue
        path = partition.path(lake)
        try:
            column = pq.read_table(path, columns=["model_id"])["model_id"]
        except (pa.ArrowInvalid, OSError) as error:
            raise lake_io.LakeError(
                f"the lake file {path} is unreadable ({error}); delete it and re-materialize that partition"
            ) from error
        found.update(value for value in pc.unique(column).to_pylist() if value)
    return found


def model_ids_to_fetch(clients: ClientCache, lake: Path, region: str) -> list[str]:
    """ListMetrics' ModelIds, plus those already in the lake, plus the region's application profile ids.

    ListMetrics hides series idle for two weeks; the lake and the application profiles bring them back, so a
    quiet application profile still gets its series read and a day backfilled later is not missing it. System
    profiles are not added: AWS defines about a hundred per region, GetMetricData bills every metric asked for,
    and one with traffic shows in ListMetrics (or, once seen, in the lake).
    """
    from_metrics = list_model_ids(clients("cloudwatch", region))
    profiles = list_inference_profiles(clients("bedrock", region), "APPLICATION")
    return sorted(set(from_metrics) | lake_model_ids(lake, region) | {p.profile_id for p in profiles})


def _points_table(points: MetricPoints, account_id: str, fetched_at: datetime) -> pa.Table:
    columns = points.as_columns()
    count = len(points)
    return pa.table(
        {
            "account_id": pa.array([account_id] * count, pa.string()),
            "model_id": pa.array(columns["model_id"], pa.string()),
            "metric": pa.array(columns["metric"], pa.string()),
            "stat": pa.array(columns["stat"], pa.string()),
            "period_s": pa.array(columns["period_s"], pa.int32()),
            "ts": pa.array(columns["ts"], pa.timestamp("us")),
            "value": pa.array(columns["value"], pa.float64()),
            "fetched_at": pa.array([fetched_at] * count, pa.timestamp("us")),
        },
        schema=lake_io.SCHEMAS["metric_points"],
    )


def _refetched_mask(table: pa.Table, ranges: Iterable[FetchRange]) -> pa.ChunkedArray | pa.Array:
    """True for existing rows the new fetch replaces: same period, timestamp inside a range read now."""
    mask = pa.array([False] * table.num_rows, pa.bool_())
    for fetch_range in ranges:
        inside = pc.and_(
            pc.equal(table["period_s"], pa.scalar(fetch_range.period_s, pa.int32())),
            pc.and_(
                pc.greater_equal(table["ts"], pa.scalar(fetch_range.start, pa.timestamp("us"))),
                pc.less(table["ts"], pa.scalar(fetch_range.end, pa.timestamp("us"))),
            ),
        )
        mask = pc.or_(mask, inside)
    return mask


def merge_points(existing: pa.Table | None, fetched: pa.Table, ranges: Iterable[FetchRange]) -> pa.Table:
    """The partition's new content: the fetched rows, plus every existing row the fetch did not re-read.

    An existing row is dropped only when a range read now covers its timestamp at its own period. Rows at a
    finer period survive a coarser re-read (1-minute history is never replaced by 5-minute data once
    CloudWatch has rolled it up), and rows outside every range read now are kept, so a re-run never loses a
    row. Sorted by (model_id, metric, stat, period_s, ts) so equal content gives an equal file.
    """
    ranges = list(ranges)
    parts = [fetched]
    if existing is not None and existing.num_rows:
        parts.insert(0, existing.filter(pc.invert(_refetched_mask(existing, ranges))))
    merged = pa.concat_tables(parts)
    return merged.sort_by(
        [
            ("model_id", "ascending"),
            ("metric", "ascending"),
            ("stat", "ascending"),
            ("period_s", "ascending"),
            ("ts", "ascending"),
        ]
    )


def merge_coverage(
    existing: pa.Table | None,
    ranges: Iterable[FetchRange],
    model_count: int,
    account_id: str,
    fetched_at: datetime,
) -> pa.Table:
    """Coverage rows after a fetch: the new ranges, plus the parts of old ranges not re-read at their
    period."""
    ranges = list(ranges)
    rows = [
        {
            "account_id": account_id,
            "period_s": fetch_range.period_s,
            "range_start": fetch_range.start,
            "range_end": fetch_range.end,
            "model_ids": model_count,
            "fetched_at": fetched_at,
        }
        for fetch_range in ranges
    ]
    for old in existing.to_pylist() if existing is not None else []:
        pieces = [(old["range_start"], old["range_end"])]
        for fetch_range in ranges:
            if fetch_range.period_s != old["period_s"]:
                continue
            remaining = []
            for piece_start, piece_end in pieces:
                if piece_start < fetch_range.start:
                    remaining.append((piece_start, min(piece_end, fetch_range.start)))
                if piece_end > fetch_range.end:
                    remaining.append((max(piece_start, fetch_range.end), piece_end))
            pieces = remaining
        rows.extend({**old, "range_start": start, "range_end": end} for start, end in pieces if start < end)
    rows.sort(key=lambda row: (row["period_s"], row["range_start"]))
    return lake_io.to_table("metric_coverage", rows)


PREVIEW_METRICS = ("Invocations", "InputTokenCount", "OutputTokenCount")


def preview_table(table: pa.Table, limit: int = 10) -> str:
    """A small markdown table of the datapoints read: count, invocations and input/output tokens per ModelId.

    Give it the rows of one fetch: the ranges of a fetch never overlap, so the sums count each minute once.
    """
    lines = [
        "| model_id | datapoints | invocations | input tokens | output tokens |",
        "|---|---:|---:|---:|---:|",
    ]
    if table.num_rows == 0:
        return "\n".join([*lines, "| (no datapoints) | 0 | 0 | 0 | 0 |"])
    counted = table.group_by("model_id").aggregate([("value", "count")]).to_pydict()
    counts = dict(zip(counted["model_id"], counted["value_count"], strict=True))
    sums = table.filter(pc.and_(pc.equal(table["stat"], "Sum"), pc.is_in(table["metric"], pa.array(PREVIEW_METRICS))))
    totals: dict[str, dict[str, float]] = {model_id: {} for model_id in counts}
    summed = sums.group_by(["model_id", "metric"]).aggregate([("value", "sum")]).to_pydict()
    for model_id, metric, value in zip(summed["model_id"], summed["metric"], summed["value_sum"], strict=True):
        totals[model_id][metric] = value
    ranked = sorted(counts, key=lambda model_id: (-totals[model_id].get("Invocations", 0.0), model_id))
    for model_id in ranked[:limit]:
        values = [totals[model_id].get(metric, 0.0) for metric in PREVIEW_METRICS]
        lines.append(f"| {model_id} | {counts[model_id]:,} | " + " | ".join(f"{v:,.0f}" for v in values) + " |")
    if len(ranked) > limit:
        lines.append(f"| … {len(ranked) - limit} more | | | | |")
    return "\n".join(lines)


def extract_metrics_partition(
    aws: AwsResource,
    lake: Path,
    region: str,
    day: date,
    as_of: datetime,
    account_id: str,
    fetched_at: datetime | None = None,
    clients: ClientCache | None = None,
    model_ids: Sequence[str] | None = None,
    now: datetime | None = None,
) -> ExtractResult:
    """Read one (region, UTC day) of Bedrock metrics from CloudWatch and replace its lake partitions.

    Reads [day 00:00, min(next midnight, as_of)) for every ModelId of ``model_ids_to_fetch`` (ListMetrics,
    ListInferenceProfiles and the lake), at the periods of ``plan_ranges``, with packed GetMetricData calls.
    Everything is read before anything is written; then ``metric_points`` and ``metric_coverage`` of the day
    are each replaced atomically with the merge of old and new (see ``merge_points``). Any AWS error raises
    ``ExtractError`` naming the region, the day and the API, and leaves the lake as it was.
    """
    as_of = as_of.replace(second=0, microsecond=0)
    fetched_at = fetched_at or datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    points_partition = lake_io.Partition("metric_points", region, day)
    coverage_partition = lake_io.Partition("metric_coverage", region, day)
    existing = lake_io.read_partition(lake, points_partition)
    previous_rows = existing.num_rows if existing is not None else 0
    if now is None:
        _, now = identity_for(aws, region, f"metric_points for {region} on {day.isoformat()}")
    ranges = plan_ranges(day, as_of, now)
    if not ranges:
        # A day after as_of or past CloudWatch's retention: nothing to read, and what the lake holds stays.
        return ExtractResult(
            region,
            day,
            as_of,
            (),
            (),
            CallStats(),
            previous_rows,
            previous_rows,
            0,
            previous_rows,
            None,
            None,
            "",
        )
    clients = clients or ClientCache(aws)
    try:
        # A run reading many days of a region passes the list in: it is the same for each of its days.
        model_ids = list(model_ids) if model_ids is not None else model_ids_to_fetch(clients, lake, region)
        cloudwatch = clients("cloudwatch", region)
        points = MetricPoints()
        stats = CallStats()
        for fetch_range in ranges:
            fetched, cost = fetch_metric_data(
                cloudwatch,
                model_ids,
                fetch_range.start,
                fetch_range.end,
                fetch_range.period_s,
                max_workers=aws.max_concurrency,
            )
            points, stats = points + fetched, stats + cost
    except AwsApiError as error:
        raise ExtractError(f"metric_points for {region} on {day.isoformat()}: {error}") from error

    fetched_table = _points_table(points, account_id, fetched_at)
    merged = merge_points(existing, fetched_table, ranges)
    coverage = merge_coverage(
        lake_io.read_partition(lake, coverage_partition), ranges, len(model_ids), account_id, fetched_at
    )
    # Points first: coverage claims a range only once its datapoints are on disk, so a run killed between the
    # two writes leaves a partition that the next run simply re-reads.
    path = lake_io.write_partition(lake, points_partition, merged)
    coverage_path = lake_io.write_partition(lake, coverage_partition, coverage)
    return ExtractResult(
        region=region,
        day=day,
        as_of=as_of,
        ranges=tuple(ranges),
        model_ids=tuple(model_ids),
        stats=stats,
        rows=merged.num_rows,
        previous_rows=previous_rows,
        fetched_rows=fetched_table.num_rows,
        kept_rows=merged.num_rows - fetched_table.num_rows,
        path=path,
        coverage_path=coverage_path,
        preview=preview_table(fetched_table),
    )


def refresh_metrics(
    aws: AwsResource,
    lake: Path,
    as_of: datetime,
    regions: Iterable[str],
    account_id: str,
    days: int = BACKFILL_DAYS,
    *,
    now: datetime | None = None,
    on_plan: Callable[[list[tuple[str, date]]], None] | None = None,
    on_partition: Callable[[ExtractResult], None] | None = None,
) -> list[ExtractResult]:
    """One incremental run without Dagster: every partition ``partitions_to_refresh`` names, by region then day.

    The first run backfills ``days`` days; later runs read today (and yesterday just after midnight) plus any
    day a missed or failed run left incomplete. Stops at the first failing partition; partitions written
    before it stay written, and the next run picks up the rest. ``now`` is AWS's clock (read from STS per
    region when not given); ``on_plan`` gets the partitions before any is read and ``on_partition`` each result
    as it lands (the CLI draws its progress bars and records Dagster materializations with them).
    """
    todo = sorted(partitions_to_refresh(as_of, held_partitions(lake, as_of), regions, days))
    if on_plan is not None:
        on_plan(todo)
    clients = ClientCache(aws)
    regions_todo = {region for region, _ in todo}
    model_ids = {region: model_ids_to_fetch(clients, lake, region) for region in regions_todo}
    clocks = {region: now or identity_for(aws, region)[1] for region in regions_todo}
    results = []
    for region, day in todo:
        result = extract_metrics_partition(
            aws,
            lake,
            region,
            day,
            as_of,
            account_id,
            clients=clients,
            model_ids=model_ids[region],
            now=clocks[region],
        )
        results.append(result)
        if on_partition is not None:
            on_partition(result)
    return results


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
        # DESIGN §3 names the types SYSTEM and APPLICATION; the API says SYSTEM_DEFINED.
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


@dg.asset(
    partitions_def=metric_partitions,
    # One pool for every partition run: its limit (dagster.yaml, concurrency.pools) bounds how many read
    # CloudWatch at once, so a 30-day backfill of many regions stays within the account's GetMetricData TPS.
    pool="cloudwatch",
    group_name="extract",
    kinds={"aws", "cloudwatch", "parquet"},
)
def metric_points(context: dg.AssetExecutionContext, aws: AwsResource, warehouse: WarehouseResource):
    """CloudWatch AWS/Bedrock datapoints of one region and UTC day (GetMetricData, ListMetrics).

    Every ModelId from ListMetrics, ListInferenceProfiles and the lake; Sum of the token, invocation, throttle
    and error counts and of EstimatedTPMQuotaUsage, Average and SampleCount of InvocationLatency and
    TimeToFirstToken. 1-minute periods for the last 15 days, 5-minute before. Writes ``metric_points`` and
    ``metric_coverage``.
    """
    keys = context.partition_key.keys_by_dimension
    region, day = keys["region"], date.fromisoformat(keys["date"])
    as_of = run_as_of(context, warehouse)
    try:
        account_id, now = identity_for(aws, region, f"metric_points for {region} on {day.isoformat()}")
        result = extract_metrics_partition(aws, warehouse.lake(), region, day, as_of, account_id, now=now)
    except ExtractError as error:
        raise _failure(error) from error
    context.log.info(
        f"{region} {day}: {result.stats.calls} GetMetricData calls, {result.stats.metrics_requested} metrics "
        f"requested, {result.fetched_rows} datapoints read, {result.rows} rows in the partition"
    )
    return dg.MaterializeResult(
        metadata={
            "calls": dg.MetadataValue.int(result.stats.calls),
            "metrics_requested": dg.MetadataValue.int(result.stats.metrics_requested),
            "datapoints": dg.MetadataValue.int(result.stats.datapoints),
            "model_ids": dg.MetadataValue.int(len(result.model_ids)),
            "periods": dg.MetadataValue.text(", ".join(f"{period} s" for period in result.periods) or "none"),
            "as_of": dg.MetadataValue.text(as_of.isoformat() + "Z"),
            "path": dg.MetadataValue.path(str(lake_io.Partition("metric_points", region, day).path(warehouse.lake()))),
            "rows": dg.MetadataValue.int(result.rows),
            "rows_added": dg.MetadataValue.int(result.rows - result.previous_rows),
            "preview": dg.MetadataValue.md(result.preview),
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


EXTRACT_ASSETS = [metric_points, foundation_models, inference_profiles_and_tags, service_quotas]

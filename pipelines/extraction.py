"""Metric extraction planned per run, paid per metric: CloudWatch -> the ``metric_points`` days of the lake.

GetMetricData bills every metric requested in every call, whatever the time range, so a run asks for each
(series, metric, statistic) once per retention tier for the whole range it needs, instead of once per day:

- the range is a span of UTC days (one Dagster run: a day, or a backfill's whole range). Inside it, minutes the
  lake already holds are skipped up to the first minute it does not hold (less a few minutes for datapoints
  CloudWatch publishes late), so an hourly run reads the last hour, not the whole day;
- only what ListMetrics lists is asked for: a series has a metric only once it had a datapoint for it. A range
  that starts within CloudWatch's three-hour ``RecentlyActive`` window asks only for recently active metrics; an
  older one asks for everything listed (series with data in the last two weeks) plus what the lake shows in the
  range being read again;
- ``series`` (from ``buw analyze -m``) narrows the read to the chosen endpoints' series;
- each tier (1-minute for what CloudWatch still holds at 1 minute, then 5-minute, then 1-hour) is one packed set
  of calls (see ``pipelines.aws.cloudwatch.plan_pair_queries``).

What was read is split by UTC day and merged into each day's Parquet file (one row per series, period and bucket,
a column per statistic): a re-read replaces exactly the cells of the queries it made in the ranges it read, at their
period; everything else the file held stays, so 1-minute history is never replaced by coarser data and series left
out of a narrowed read keep their values. Each day's
points are written before its coverage (the ranges read), so a run killed in between leaves a day the next run
reads again.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipelines import lake as lake_io
from pipelines.aws import AwsApiError
from pipelines.aws.cloudwatch import (
    METRICS,
    MetricSpec,
    fetch_metric_data,
    list_metric_series,
    queries_for,
)
from pipelines.aws.records import CallStats, MetricPoints

BACKFILL_DAYS = 30

# CloudWatch keeps 1-minute data 15 days, 5-minute data 63 days and 1-hour data 455 days, and answers a call
# with no datapoint at all when its StartTime is older than its period allows. Tiers are measured from the
# service's own clock, and each starts a margin later than the retention would allow, for the time a run
# waits in a queue between reading the clock and calling.
RESOLUTION_TIERS: tuple[tuple[timedelta, int], ...] = (
    (timedelta(days=15), 60),
    (timedelta(days=63), 300),
    (timedelta(days=455), 3600),
)
RETENTION_MARGIN = timedelta(hours=1)

# CloudWatch publishes a minute's datapoints a little after it ends; a run reads again this much of what the
# previous run read last.
LATE_DATA = timedelta(minutes=10)

# ListMetrics(RecentlyActive=PT3H) lists metrics with a datapoint in the last three hours; a range starting
# this long before the clock (less a margin for the run's own duration) can use it.
RECENTLY_ACTIVE = timedelta(hours=3) - timedelta(minutes=15)

# ListMetrics leaves out series with no datapoint in the last two weeks. A range reaching further back may hold
# traffic of an application profile that has gone quiet since; it is asked for these counts only (the ones every
# series that had traffic publishes), in the coarse tiers wholly older than that (5-minute and 1-hour), so a first
# backfill does not lose its usage. Its 1-minute day just past the two weeks is left out: asking for it would
# bill the quiet series once more for a day.
LISTED_FOR = timedelta(days=14)
QUIET_SERIES_METRICS: tuple[MetricSpec, ...] = tuple(
    spec
    for spec in METRICS
    if (spec.metric, spec.stat)
    in {
        ("Invocations", "Sum"),
        ("InputTokenCount", "Sum"),
        ("OutputTokenCount", "Sum"),
        ("InvocationThrottles", "Sum"),
    }
)

SPECS: dict[tuple[str, str], MetricSpec] = {(spec.metric, spec.stat): spec for spec in METRICS}


class ExtractError(RuntimeError):
    """An extraction failed; the message names the dataset, the region, the range and the API."""


@dataclass(frozen=True)
class FetchRange:
    """A time range [start, end) read at one period (seconds); bounds are aligned to the period."""

    start: datetime
    end: datetime
    period_s: int


# Planning ---


def _ceil_to(moment: datetime, seconds: int) -> datetime:
    epoch = datetime(1970, 1, 1)
    elapsed = (moment - epoch).total_seconds()
    return epoch + timedelta(seconds=math.ceil(elapsed / seconds) * seconds)


def day_start(day: date) -> datetime:
    return datetime.combine(day, time())


def plan_tiers(start: datetime, end: datetime, now: datetime) -> list[FetchRange]:
    """The sub-ranges of [start, end) and the period each is read at, finest first.

    Retention is measured from ``now``, CloudWatch's own clock: times at least ``now - 15 days`` (plus the
    margin, rounded up to 5 minutes) are read at 60 s, older ones at 300 s down to 63 days, then 3600 s down to
    455 days; anything older is gone from CloudWatch and yields no range. Nothing after ``now`` is read.
    """
    end = min(end, now)
    ranges: list[FetchRange] = []
    upper = end
    for index, (retention, period) in enumerate(RESOLUTION_TIERS):
        # The lower bound of a tier is aligned to the next (coarser) tier's period, so the two tile exactly.
        align = RESOLUTION_TIERS[index + 1][1] if index + 1 < len(RESOLUTION_TIERS) else period
        lower = _ceil_to(now - retention + RETENTION_MARGIN, align)
        tier_start, tier_end = max(start, lower), min(end, upper)
        if tier_start < tier_end:
            ranges.append(FetchRange(tier_start, tier_end, period))
        upper = min(upper, lower)
    return ranges


def plan_ranges(day: date, as_of: datetime, now: datetime | None = None) -> list[FetchRange]:
    """The tiers of one whole UTC day, up to ``as_of`` (and CloudWatch's clock ``now``, default ``as_of``)."""
    now = as_of if now is None else now
    start = day_start(day)
    return plan_tiers(start, min(start + timedelta(days=1), as_of), now)


def oldest_readable_day(now: datetime) -> date:
    """The first UTC day CloudWatch still holds whole (at 1-hour resolution)."""
    return (now - RESOLUTION_TIERS[-1][0] + RETENTION_MARGIN).date() + timedelta(days=1)


def backfill_days(as_of: datetime, days: int = BACKFILL_DAYS) -> list[date]:
    """The days a first run reads, oldest first: the day of ``as_of`` and the ``days`` before it.

    ``days + 1`` days, because a window of ``days`` ending at ``as_of`` starts part-way through the day
    ``days`` days ago. Days past CloudWatch's 455-day retention are left out.
    """
    today = as_of.date()
    oldest = oldest_readable_day(as_of)
    wanted = (today - timedelta(days=back) for back in range(days, -1, -1))
    return [day for day in wanted if day >= oldest]


@dataclass(frozen=True)
class DayCoverage:
    """What one day file of a region holds: the ranges read (with their scope), or why it cannot be trusted."""

    spans: tuple[tuple[datetime, datetime, int, tuple[str, ...] | None], ...] = ()
    problem: str | None = None


def day_coverage(lake: Path, region: str, day: date) -> DayCoverage:
    """The coverage a day claims, only where its datapoints are on disk and readable.

    Coverage is a claim about the points file: a day whose ``metric_points`` file is missing or unreadable holds
    nothing, whatever its coverage file says, and is read again.
    """
    points = lake_io.Partition("metric_points", region, day)
    coverage = lake_io.Partition("metric_coverage", region, day)
    if not coverage.path(lake).exists():
        return DayCoverage()
    if not points.path(lake).exists():
        return DayCoverage(problem=f"{points.path(lake)} is missing")
    try:
        lake_io.read_partition(lake, points)
        table = lake_io.read_partition(lake, coverage)
    except lake_io.LakeError as error:
        return DayCoverage(problem=str(error).split(";")[0])
    if table is None:
        return DayCoverage()
    spans = []
    for row in table.to_pylist():
        scope = row.get("series_ids")
        spans.append((row["range_start"], row["range_end"], row["period_s"], tuple(scope) if scope else None))
    return DayCoverage(spans=tuple(sorted(spans, key=lambda span: (span[0], span[1]))))


def _in_scope(span_scope: tuple[str, ...] | None, series: Iterable[str] | None) -> bool:
    """Whether a range read for ``span_scope`` (None: every listed series) covers a read of ``series``."""
    if span_scope is None:
        return True
    return series is not None and set(series) <= set(span_scope)


def covered_until(
    lake: Path, region: str, start: datetime, end: datetime, series: Iterable[str] | None = None
) -> tuple[datetime, list[str]]:
    """How far from ``start`` the lake holds [start, end) without a gap, and the problems found on the way."""
    series = tuple(series) if series is not None else None
    reached = start
    problems: list[str] = []
    day = start.date()
    while day_start(day) < end:
        coverage = day_coverage(lake, region, day)
        if coverage.problem:
            problems.append(coverage.problem)
            break
        for span_start, span_end, _, scope in coverage.spans:
            if not _in_scope(scope, series):
                continue
            if span_start > reached:
                break
            reached = max(reached, span_end)
        if reached < min(end, day_start(day) + timedelta(days=1)):
            break
        day += timedelta(days=1)
    return min(reached, end), problems


def held_days(lake: Path, region: str, as_of: datetime, days: Iterable[date]) -> set[date]:
    """The days whose readable files cover the whole day (up to ``as_of`` for the day of ``as_of``)."""
    held = set()
    for day in days:
        start = day_start(day)
        end = min(start + timedelta(days=1), as_of)
        if end <= start or covered_until(lake, region, start, end)[0] >= end:
            held.add(day)
    return held


def days_to_read(
    lake: Path, as_of: datetime, regions: Iterable[str], days: int = BACKFILL_DAYS
) -> tuple[list[date], list[str]]:
    """The days an incremental run at ``as_of`` must read (oldest first), and why any held day is read again.

    The day of ``as_of`` always (the run reads only past the minutes the lake already holds), and every day of
    the backfill window that some region's lake does not hold whole: on a first run, all of them.
    """
    wanted = {as_of.date()}
    problems: list[str] = []
    window = backfill_days(as_of, days)
    for region in regions:
        for day in window:
            start = day_start(day)
            end = min(start + timedelta(days=1), as_of)
            if end <= start:
                continue
            reached, found = covered_until(lake, region, start, end)
            problems.extend(found)
            if reached < end:
                wanted.add(day)
    return sorted(wanted), problems


def contiguous_spans(days: Iterable[date]) -> list[tuple[date, date]]:
    """Sorted days grouped into [first, last] runs of consecutive days."""
    spans: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if spans and day - spans[-1][1] == timedelta(days=1):
            spans[-1] = (spans[-1][0], day)
        else:
            spans.append((day, day))
    return spans


# Reading ---


class ClientCache:
    """The boto3 clients of one run, one per (service, region).

    Building a client costs a fraction of a second of botocore model loading; a run reading many regions would
    spend most of its time there.
    """

    def __init__(self, aws) -> None:
        self.aws = aws
        self._clients: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()

    def __call__(self, service: str, region: str):
        with self._lock:
            key = (service, region)
            if key not in self._clients:
                self._clients[key] = self.aws.client(service, region)
            return self._clients[key]


def lake_queries(lake: Path, region: str, start: datetime, end: datetime) -> set[tuple[str, MetricSpec]]:
    """The (series, statistic) queries with a datapoint in the lake inside [start, end)."""
    found: set[tuple[str, MetricSpec]] = set()
    day = start.date()
    while day_start(day) < end:
        try:
            table = lake_io.read_partition(lake, lake_io.Partition("metric_points", region, day))
        except lake_io.LakeError:
            table = None
        if table is not None and table.num_rows:
            inside = table.filter(
                pc.and_(
                    pc.greater_equal(table["ts"], pa.scalar(start, pa.timestamp("us"))),
                    pc.less(table["ts"], pa.scalar(end, pa.timestamp("us"))),
                )
            )
            counted = inside.group_by("model_id").aggregate([(column, "count") for column in lake_io.POINT_COLUMNS])
            for row in counted.to_pylist():
                for (metric, stat), column in lake_io.POINT_MEASURES.items():
                    spec = SPECS.get((metric, stat))
                    if spec is not None and row[f"{column}_count"]:
                        found.add((row["model_id"], spec))
        day += timedelta(days=1)
    return found


@dataclass(frozen=True)
class RegionRead:
    """What one run read for one region and wrote to the lake."""

    region: str
    start: datetime
    end: datetime
    ranges: tuple[FetchRange, ...]
    listing: str
    series: tuple[str, ...]
    queries: int
    stats: CallStats
    days: tuple[date, ...]
    rows: int
    fetched_rows: int
    problems: tuple[str, ...] = ()
    preview: str = ""
    scope: tuple[str, ...] | None = field(default=None)

    @property
    def periods(self) -> tuple[int, ...]:
        return tuple(sorted({fetch_range.period_s for fetch_range in self.ranges}))


def _points_table(points: MetricPoints, account_id: str, fetched_at: datetime) -> pa.Table:
    """What was read as metric_points rows: one per series, period and bucket, a column per statistic."""
    columns = points.as_columns()
    count = len(points)
    datapoints = pa.table(
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
        schema=lake_io.DATAPOINTS_SCHEMA,
    )
    return lake_io.widen_points(datapoints)


Read = tuple[FetchRange, Sequence[tuple[str, MetricSpec]] | None]


def _cleared(table: pa.Table, reads: Sequence[Read]) -> pa.Table:
    """``table`` without the values a new read replaces: for each statistic, the cells of the series it was read
    for, at the read's period, inside its range. Rows left with no value are dropped."""
    for (metric, stat), column in lake_io.POINT_MEASURES.items():
        replaced = None
        for fetch_range, queries in reads:
            inside = pc.and_(
                pc.equal(table["period_s"], pa.scalar(fetch_range.period_s, pa.int32())),
                pc.and_(
                    pc.greater_equal(table["ts"], pa.scalar(fetch_range.start, pa.timestamp("us"))),
                    pc.less(table["ts"], pa.scalar(fetch_range.end, pa.timestamp("us"))),
                ),
            )
            if queries is not None:
                series = sorted({model_id for model_id, spec in queries if (spec.metric, spec.stat) == (metric, stat)})
                if not series:
                    continue
                inside = pc.and_(inside, pc.is_in(table["model_id"], value_set=pa.array(series, pa.string())))
            replaced = inside if replaced is None else pc.or_(replaced, inside)
        if replaced is not None:
            kept = pc.if_else(replaced, pa.scalar(None, pa.float64()), table[column])
            table = table.set_column(table.schema.get_field_index(column), column, kept)
    held = None
    for column in lake_io.POINT_COLUMNS:
        valid = pc.is_valid(table[column])
        held = valid if held is None else pc.or_(held, valid)
    return table.filter(held) if held is not None else table


def merge_points(
    existing: pa.Table | None,
    fetched: pa.Table,
    ranges: Iterable[FetchRange | Read],
) -> pa.Table:
    """A day's new content: the fetched values, plus every existing value the read did not replace.

    ``ranges`` are the ranges read, each a ``FetchRange`` (every query) or a (range, queries) pair. An existing
    value is dropped only when a query read now covers its series and statistic at its own period and the range
    it was read in covers its timestamp. Values at a finer period survive a coarser re-read (1-minute history is
    never replaced by 5-minute data once CloudWatch has rolled it up), values of series a narrowed read left out
    stay, and values outside every range read now are kept, so a re-run never loses a datapoint. A row's
    ``fetched_at`` is when its newest value was read. Sorted by (model_id, period_s, ts) so equal content gives
    an equal file.
    """
    reads = [item if isinstance(item, tuple) else (item, None) for item in ranges]
    if existing is None or existing.num_rows == 0:
        return fetched.sort_by([("model_id", "ascending"), ("period_s", "ascending"), ("ts", "ascending")])
    import duckdb

    kept = _cleared(existing, reads)
    # A cell is in at most one of the two tables (the fetched ones were cleared from the kept rows), so taking
    # the fetched value first only matters should a read ever return a value outside its range.
    measures = ", ".join(
        f"coalesce(max({column}) filter (where fresh), max({column})) as {column}" for column in lake_io.POINT_COLUMNS
    )
    with duckdb.connect() as connection:
        connection.register("kept", kept)
        connection.register("fetched", fetched)
        merged = connection.sql(
            f"select any_value(account_id) as account_id, model_id, period_s, ts, {measures}, "
            "max(fetched_at) as fetched_at "
            "from (select *, false as fresh from kept union all select *, true as fresh from fetched) "
            "group by model_id, period_s, ts order by model_id, period_s, ts"
        ).to_arrow_table()
    return merged.cast(lake_io.SCHEMAS["metric_points"])


def merge_coverage(
    existing: pa.Table | None,
    ranges: Iterable[FetchRange],
    model_count: int,
    account_id: str,
    fetched_at: datetime,
    scope: Sequence[str] | None = None,
) -> pa.Table:
    """Coverage rows after a read: the new ranges, plus the parts of old ranges not read again at their period.

    ``scope`` is the series a narrowed read asked for (None: every listed series). A narrowed read replaces only
    the coverage of reads with the same or a narrower scope: the whole-region coverage of an earlier run stays.
    """
    ranges = list(ranges)
    scope_list = sorted(scope) if scope is not None else None
    rows = [
        {
            "account_id": account_id,
            "period_s": fetch_range.period_s,
            "range_start": fetch_range.start,
            "range_end": fetch_range.end,
            "model_ids": model_count,
            "fetched_at": fetched_at,
            "series_ids": scope_list,
        }
        for fetch_range in ranges
    ]
    for old in existing.to_pylist() if existing is not None else []:
        old_scope = old.get("series_ids")
        replaced = scope_list is None or (old_scope is not None and set(old_scope) <= set(scope_list))
        pieces = [(old["range_start"], old["range_end"])]
        for fetch_range in ranges:
            if fetch_range.period_s != old["period_s"] or not replaced:
                continue
            remaining = []
            for piece_start, piece_end in pieces:
                if piece_start < fetch_range.start:
                    remaining.append((piece_start, min(piece_end, fetch_range.start)))
                if piece_end > fetch_range.end:
                    remaining.append((max(piece_start, fetch_range.end), piece_end))
            pieces = remaining
        rows.extend({**old, "range_start": start, "range_end": end} for start, end in pieces if start < end)
    rows.sort(key=lambda row: (row["period_s"], row["range_start"], json.dumps(row.get("series_ids"))))
    return lake_io.to_table("metric_coverage", rows)


PREVIEW_METRICS = ("Invocations", "InputTokenCount", "OutputTokenCount")


def preview_table(table: pa.Table, limit: int = 10) -> str:
    """A small markdown table of the datapoints read: count, invocations and input/output tokens per ModelId.

    Give it the rows of one read: the ranges of a read never overlap, so the sums count each minute once.
    """
    lines = [
        "| model_id | datapoints | invocations | input tokens | output tokens |",
        "|---|---:|---:|---:|---:|",
    ]
    if table.num_rows == 0:
        return "\n".join([*lines, "| (no datapoints) | 0 | 0 | 0 | 0 |"])
    preview_columns = [lake_io.POINT_MEASURES[(metric, "Sum")] for metric in PREVIEW_METRICS]
    summed = table.group_by("model_id").aggregate(
        [(column, "count") for column in lake_io.POINT_COLUMNS] + [(column, "sum") for column in preview_columns]
    )
    counts: dict[str, int] = {}
    totals: dict[str, dict[str, float]] = {}
    for row in summed.to_pylist():
        counts[row["model_id"]] = sum(row[f"{column}_count"] for column in lake_io.POINT_COLUMNS)
        totals[row["model_id"]] = {
            metric: row[f"{column}_sum"] or 0.0 for metric, column in zip(PREVIEW_METRICS, preview_columns, strict=True)
        }
    ranked = sorted(counts, key=lambda model_id: (-totals[model_id].get("Invocations", 0.0), model_id))
    for model_id in ranked[:limit]:
        values = [totals[model_id].get(metric, 0.0) for metric in PREVIEW_METRICS]
        lines.append(f"| {model_id} | {counts[model_id]:,} | " + " | ".join(f"{v:,.0f}" for v in values) + " |")
    if len(ranked) > limit:
        lines.append(f"| … {len(ranked) - limit} more | | | | |")
    return "\n".join(lines)


def plan_read(
    clients: ClientCache,
    lake: Path,
    region: str,
    start: datetime,
    end: datetime,
    now: datetime,
    series: Sequence[str] | None = None,
    reread: bool = False,
) -> tuple[datetime, str, list[tuple[str, MetricSpec]], list[tuple[str, MetricSpec]], list[str]]:
    """Where a read of [start, end) really starts, which listing it used, its queries, the extra queries for
    quiet series (for the part older than ListMetrics' two weeks) and any lake problems.

    Unless ``reread``, the read starts at the first minute the lake does not hold (less ``LATE_DATA``), so a run
    pays for nothing it already has. An empty query list with a start before ``end`` means: nothing to ask for,
    the range was idle.
    """
    problems: list[str] = []
    if not reread:
        reached, problems = covered_until(lake, region, start, end, series)
        if reached >= end:
            return end, "none", [], [], problems
        start = max(start, reached - LATE_DATA) if reached > start else start
    cloudwatch = clients("cloudwatch", region)
    if start >= now - RECENTLY_ACTIVE:
        listing = "RecentlyActive=PT3H"
        listed = list_metric_series(cloudwatch, recently_active=True)
    else:
        listing = "last 14 days"
        listed = list_metric_series(cloudwatch)
    queries = set(queries_for(listed)) | lake_queries(lake, region, start, end)
    quiet: set[tuple[str, MetricSpec]] = set()
    if start < now - LISTED_FOR:
        from pipelines.aws.bedrock import list_inference_profiles

        known = {model_id for model_id, _ in queries}
        profiles = list_inference_profiles(clients("bedrock", region), "APPLICATION")
        quiet = {
            (profile.profile_id, spec)
            for profile in profiles
            if profile.profile_id not in known
            for spec in QUIET_SERIES_METRICS
        }
    if series is not None:
        chosen = set(series)
        queries = {query for query in queries if query[0] in chosen}
        quiet = {query for query in quiet if query[0] in chosen}
    order = {spec: index for index, spec in enumerate(METRICS)}

    def ordered(found):
        return sorted(found, key=lambda query: (query[0], order[query[1]]))

    return start, listing, ordered(queries), ordered(quiet), problems


def extract_metrics(
    aws,
    lake: Path,
    region: str,
    first_day: date,
    last_day: date,
    as_of: datetime,
    account_id: str,
    now: datetime,
    *,
    series: Sequence[str] | None = None,
    reread: bool = False,
    clients: ClientCache | None = None,
    fetched_at: datetime | None = None,
) -> RegionRead:
    """Read [first_day 00:00, min(last_day + 1, as_of)) of a region from CloudWatch into the lake's day files.

    See the module docstring for what is asked for. Everything is read before anything is written; then each
    day touched gets its points file and then its coverage file replaced atomically. Any AWS error raises
    ``ExtractError`` naming the region, the range and the API, and leaves the lake as it was.
    """
    as_of = as_of.replace(second=0, microsecond=0)
    fetched_at = fetched_at or datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    clients = clients or ClientCache(aws)
    start = day_start(first_day)
    end = min(day_start(last_day) + timedelta(days=1), as_of, now.replace(second=0, microsecond=0))
    scope = tuple(sorted(set(series))) if series is not None else None
    described = f"metric_points for {region} from {first_day.isoformat()} to {last_day.isoformat()}"
    if end <= start:
        return RegionRead(region, start, start, (), "none", (), 0, CallStats(), (), 0, 0, scope=scope)
    try:
        start, listing, queries, quiet, problems = plan_read(clients, lake, region, start, end, now, scope, reread)
        ranges = plan_tiers(start, end, now) if start < end else []
        reads: list[Read] = [
            (fetch_range, queries + quiet if fetch_range.end <= now - LISTED_FOR else queries) for fetch_range in ranges
        ]
        points, stats = MetricPoints(), CallStats()
        for fetch_range, asked in reads:
            if not asked:
                continue
            fetched, cost = fetch_metric_data(
                clients("cloudwatch", region),
                (),
                fetch_range.start,
                fetch_range.end,
                fetch_range.period_s,
                max_workers=aws.max_concurrency,
                pairs=asked,
            )
            points, stats = points + fetched, stats + cost
    except AwsApiError as error:
        raise ExtractError(f"{described}: {error}") from error

    fetched_table = _points_table(points, account_id, fetched_at)
    series_read = tuple(sorted({model_id for _, asked in reads for model_id, _ in asked}))
    days: list[date] = []
    rows = 0
    if ranges:
        day = min(r.start for r in ranges).date()
        last = (max(r.end for r in ranges) - timedelta(microseconds=1)).date()
        while day <= last:
            rows += _write_day(lake, region, day, fetched_table, reads, scope, account_id, fetched_at)
            days.append(day)
            day += timedelta(days=1)
    return RegionRead(
        region=region,
        start=start,
        end=end,
        ranges=tuple(ranges),
        listing=listing,
        series=series_read,
        queries=len({query for _, asked in reads for query in asked}),
        stats=stats,
        days=tuple(days),
        rows=rows,
        fetched_rows=fetched_table.num_rows,
        problems=tuple(problems),
        preview=preview_table(fetched_table),
        scope=scope,
    )


def _write_day(
    lake: Path,
    region: str,
    day: date,
    fetched: pa.Table,
    reads: Sequence[Read],
    scope: tuple[str, ...] | None,
    account_id: str,
    fetched_at: datetime,
) -> int:
    """Merge what was read of ``day`` into its files (points first, then coverage); return the day's rows."""
    lower, upper = day_start(day), day_start(day) + timedelta(days=1)
    day_reads = [
        (FetchRange(max(r.start, lower), min(r.end, upper), r.period_s), asked)
        for r, asked in reads
        if r.start < upper and r.end > lower
    ]
    inside = fetched.filter(
        pc.and_(
            pc.greater_equal(fetched["ts"], pa.scalar(lower, pa.timestamp("us"))),
            pc.less(fetched["ts"], pa.scalar(upper, pa.timestamp("us"))),
        )
    )
    points_partition = lake_io.Partition("metric_points", region, day)
    coverage_partition = lake_io.Partition("metric_coverage", region, day)
    try:
        existing = lake_io.read_partition(lake, points_partition)
        existing_coverage = lake_io.read_partition(lake, coverage_partition) if existing is not None else None
    except lake_io.LakeError:
        # An unreadable file holds nothing we can keep: the day is rebuilt from what was read now, and its
        # coverage claims only that.
        existing, existing_coverage = None, None
    merged = merge_points(existing, inside, day_reads)
    series_count = len({model_id for _, asked in day_reads for model_id, _ in asked})
    coverage = merge_coverage(existing_coverage, [r for r, _ in day_reads], series_count, account_id, fetched_at, scope)
    lake_io.write_partition(lake, points_partition, merged)
    lake_io.write_partition(lake, coverage_partition, coverage)
    return merged.num_rows


def extract_incrementally(
    aws, lake: Path, as_of: datetime, regions: Iterable[str], account_id: str, days: int = BACKFILL_DAYS
) -> list[RegionRead]:
    """What one run of the metric_points asset reads, as plain functions: the days ``days_to_read`` names for
    every region, as one range, at AWS's clock (for benchmarks and tests that need no Dagster instance)."""
    from pipelines.aws.account import get_identity

    clients = ClientCache(aws)
    regions = list(regions)
    wanted, _ = days_to_read(lake, as_of, regions, days)
    reads = []
    for region in regions:
        try:
            now = get_identity(clients("sts", region))[1].astimezone(UTC).replace(tzinfo=None)
        except AwsApiError as error:
            raise ExtractError(f"metric_points for {region}: reading AWS's clock: {error}") from error
        reads.append(extract_metrics(aws, lake, region, wanted[0], wanted[-1], as_of, account_id, now, clients=clients))
    return reads

"""Invocation-log extraction: Bedrock's model invocation logs -> the ``caller_minutes`` days of the lake.

Per region, the logging configuration (GetModelInvocationLoggingConfiguration) says where the records are:

- with S3 delivery, the day's objects are listed and only those whose key no ``caller_minutes`` row names as its
  ``source`` are read, each once: a re-run or an hourly refresh reads just the objects delivered since;
- with CloudWatch Logs delivery only, Logs Insights aggregates the minutes after the end of the last read this
  region's ``invocation_log_reads`` records inside the range (less nothing: records are complete once their
  minute has passed; the last minutes before the clock are left for the next run, as Bedrock delivers a little
  late), so every record is scanned once.

Rows are merged into each UTC day's file: S3 rows of new objects are added; Logs Insights rows replace the held
Logs Insights rows of the minutes read. Each read's cost (objects and bytes, or queries and bytes scanned) is a
row of ``invocation_log_reads``; the principals seen get their IAM tags in ``principal_tags``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipelines import lake as lake_io
from pipelines.aws import AwsApiError
from pipelines.aws.invocation_logs import (
    CallerCounts,
    LoggingConfig,
    LogReadCost,
    get_logging_config,
    list_log_objects,
    list_principal_tags,
    query_caller_minutes,
    read_log_object,
)
from pipelines.extraction import ExtractError, day_start

LOGS_SOURCE = "logs-insights"

# Bedrock writes a record to CloudWatch Logs shortly after the call; minutes this close to the clock are read
# by the next run.
LOGS_DELAY = timedelta(minutes=5)


@dataclass
class LogRead:
    """What one run read from one region's invocation logs."""

    region: str
    delivery: str
    start: datetime
    end: datetime
    cost: LogReadCost = field(default_factory=LogReadCost)
    rows: int = 0
    days: tuple[date, ...] = ()
    principals: tuple[str, ...] = ()


def _days(first_day: date, last_day: date) -> list[date]:
    return [date.fromordinal(n) for n in range(first_day.toordinal(), last_day.toordinal() + 1)]


def held_sources(lake: Path, region: str, days: list[date]) -> set[str]:
    """The S3 keys whose records the lake's ``caller_minutes`` days (and their neighbours) already hold."""
    sources: set[str] = set()
    around = {day + timedelta(days=offset) for day in days for offset in (-1, 0, 1)}
    for day in sorted(around):
        table = lake_io.read_partition(lake, lake_io.Partition("caller_minutes", region, day))
        if table is not None:
            sources.update(pc.unique(table.column("source")).to_pylist())
    sources.discard(LOGS_SOURCE)
    return sources


def logs_read_until(lake: Path, region: str, start: datetime, end: datetime) -> datetime:
    """Where the next Logs Insights read of ``[start, end)`` begins: after the last read recorded inside it."""
    resume = start
    for partition in lake_io.partitions(lake, "invocation_log_reads"):
        if partition.region != region:
            continue
        table = lake_io.read_partition(lake, partition)
        for row in table.to_pylist() if table is not None else []:
            if row["delivery"] == "logs" and row["range_start"] <= resume < row["range_end"] <= end:
                resume = row["range_end"]
    return resume


def _merge_day(lake: Path, region: str, day: date, new: pa.Table, logs_range: tuple[datetime, datetime] | None) -> None:
    """Add ``new`` to a day's file: rows of the same S3 objects, or Logs Insights rows of ``logs_range``, go."""
    partition = lake_io.Partition("caller_minutes", region, day)
    held = lake_io.read_partition(lake, partition)
    if held is not None:
        source = held.column("source")
        if logs_range is None:
            stale = pc.is_in(source, value_set=pc.unique(new.column("source")))
        else:
            ts = held.column("ts")
            stale = pc.and_(
                pc.equal(source, LOGS_SOURCE),
                pc.and_(pc.greater_equal(ts, logs_range[0]), pc.less(ts, logs_range[1])),
            )
        new = pa.concat_tables([held.filter(pc.invert(stale)), new])
    lake_io.write_partition(lake, partition, new.sort_by([("ts", "ascending"), ("model_id", "ascending")]))


def extract_invocation_logs(
    clients,
    lake: Path,
    region: str,
    first_day: date,
    last_day: date,
    account_id: str,
    now: datetime,
) -> LogRead:
    """Read the caller counts of ``first_day..last_day`` (UTC) in ``region`` into ``caller_minutes``.

    ``clients(service, region)`` makes boto3 clients; ``now`` is AWS's clock. A region without invocation
    logging reads nothing and says so in ``delivery`` (``none``).
    """
    start, end = day_start(first_day), min(day_start(last_day) + timedelta(days=1), now)
    try:
        config: LoggingConfig = get_logging_config(clients("bedrock", region))
    except AwsApiError as error:
        raise ExtractError(f"invocation_logs for {region}: {error}") from error
    read = LogRead(region, config.delivery if config.enabled else "none", start, end)
    if not config.enabled or end <= start:
        return read
    counts = CallerCounts()
    logs_range = None
    fetched_at = now.replace(microsecond=0)
    try:
        if read.delivery == "s3":
            s3 = clients("s3", region)
            days = _days(first_day, min(last_day, now.date()))
            known = held_sources(lake, region, days)
            for day in days:
                for item in list_log_objects(s3, config, account_id, day, read.cost):
                    if item["key"] not in known:
                        read_log_object(s3, config, item["key"], counts, read.cost)
        else:
            end = min(end, (now - LOGS_DELAY).replace(second=0, microsecond=0))
            start = logs_read_until(lake, region, start, end)
            read.start, read.end = start, max(start, end)
            if start < end:
                logs_range = (start, end)
                query_caller_minutes(clients("logs", region), config.log_group, start, end, counts, read.cost)
    except AwsApiError as error:
        raise ExtractError(
            f"invocation_logs for {region} ({start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}): {error}"
        ) from error
    rows = counts.rows()
    for row in rows:
        row["account_id"] = account_id
        row["fetched_at"] = fetched_at
    table = lake_io.to_table("caller_minutes", rows)
    read.rows = table.num_rows
    written = []
    if rows:
        days = pc.unique(pc.cast(table.column("ts"), pa.date32())).to_pylist()
        for day in sorted(days):
            day_rows = table.filter(pc.equal(pc.cast(table.column("ts"), pa.date32()), day))
            _merge_day(lake, region, day, day_rows, logs_range)
            written.append(day)
    elif logs_range is not None:
        # An idle range still replaces what an earlier read of it held.
        for day in _days(start.date(), (read.end - timedelta(microseconds=1)).date()):
            if lake_io.read_partition(lake, lake_io.Partition("caller_minutes", region, day)) is not None:
                _merge_day(lake, region, day, lake_io.empty_table("caller_minutes"), logs_range)
    read.days = tuple(written)
    read.principals = tuple(sorted({row["principal"] for row in rows}))
    if read.principals:
        try:
            tags = list_principal_tags(clients("iam", region), read.principals)
        except AwsApiError as error:
            raise ExtractError(f"invocation_logs for {region}: principal tags: {error}") from error
        snapshot = [
            {"principal": tag.principal, "key": tag.key, "value": tag.value, "snapshot_at": fetched_at} for tag in tags
        ]
        # Principals without tags are listed with null keys, so "no tags now" is told from "never listed".
        untagged = set(read.principals) - {tag.principal for tag in tags}
        snapshot += [{"principal": p, "key": None, "value": None, "snapshot_at": fetched_at} for p in untagged]
        partition = lake_io.Partition("principal_tags", region, now.date())
        held = lake_io.read_partition(lake, partition)
        kept = [] if held is None else [r for r in held.to_pylist() if r["principal"] not in set(read.principals)]
        lake_io.write_partition(lake, partition, lake_io.to_table("principal_tags", kept + snapshot))
    return read


def record_log_reads(
    lake: Path, run_id: str, account_id: str, recorded_at: datetime, reads: list[LogRead]
) -> list[dict]:
    """Append one row per region of this run to ``invocation_log_reads`` (partition: region x day of the read)."""
    written = []
    for read in reads:
        row = {
            "run_id": run_id,
            "account_id": account_id,
            "recorded_at": recorded_at,
            "delivery": read.delivery,
            "range_start": read.start,
            "range_end": read.end,
            **{name: getattr(read.cost, name) for name in vars(read.cost)},
            "rows_written": read.rows,
            "days_written": len(read.days),
        }
        partition = lake_io.Partition("invocation_log_reads", read.region, recorded_at.date())
        existing = lake_io.read_partition(lake, partition)
        kept = [r for r in (existing.to_pylist() if existing is not None else []) if r["run_id"] != run_id]
        lake_io.write_partition(lake, partition, lake_io.to_table("invocation_log_reads", [*kept, row]))
        written.append(row)
    return written

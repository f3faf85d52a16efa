"""The raw lake: Parquet datasets, Hive-partitioned by region and UTC day, written atomically.

Layout: ``<lake>/<dataset>/region=<region>/date=<YYYY-MM-DD>/data.parquet``. The partition columns live in the
path only (DuckDB and every Hive-aware reader add them back), so a file never disagrees with its folder. A write
goes to a temporary file in the same folder and is renamed over ``data.parquet``: readers see the old partition or
the new one, never half of one, and a re-run of a partition replaces it.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

PARTITION_FILE = "data.parquet"

_TS = pa.timestamp("us")  # naive timestamps, always UTC (documented in docs/data-dictionary.md)

# The CloudWatch statistics the lake keeps, each a column of metric_points: (metric, statistic) -> column. One row
# per series and bucket with a column per statistic is about a ninth of the rows of one row per datapoint, and the
# models read it without a pivot.
POINT_MEASURES: dict[tuple[str, str], str] = {
    ("Invocations", "Sum"): "invocations",
    ("InputTokenCount", "Sum"): "input_tokens",
    ("OutputTokenCount", "Sum"): "output_tokens",
    ("CacheReadInputTokenCount", "Sum"): "cache_read_tokens",
    ("CacheWriteInputTokenCount", "Sum"): "cache_write_tokens",
    ("InvocationThrottles", "Sum"): "throttles",
    ("InvocationClientErrors", "Sum"): "client_errors",
    ("InvocationServerErrors", "Sum"): "server_errors",
    ("EstimatedTPMQuotaUsage", "Sum"): "estimated_tpm_quota_usage",
    ("InvocationLatency", "Average"): "latency_avg_ms",
    ("InvocationLatency", "SampleCount"): "latency_samples",
    ("TimeToFirstToken", "Average"): "ttft_avg_ms",
    ("TimeToFirstToken", "SampleCount"): "ttft_samples",
}
POINT_COLUMNS: tuple[str, ...] = tuple(POINT_MEASURES.values())

# Datapoints as GetMetricData returns them, one row per (series, metric, statistic, bucket): what the extraction
# holds before it writes, and what metric_points files of earlier versions hold (read_partition widens them).
DATAPOINTS_SCHEMA = pa.schema(
    [
        ("account_id", pa.string()),
        ("model_id", pa.string()),
        ("metric", pa.string()),
        ("stat", pa.string()),
        ("period_s", pa.int32()),
        ("ts", _TS),
        ("value", pa.float64()),
        ("fetched_at", _TS),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    # One CloudWatch series (AWS/Bedrock, dimension ModelId) and bucket: a column per statistic kept (POINT_MEASURES),
    # null where CloudWatch returned no datapoint or the statistic was not read.
    "metric_points": pa.schema(
        [
            ("account_id", pa.string()),
            ("model_id", pa.string()),
            ("period_s", pa.int32()),
            ("ts", _TS),
            *((column, pa.float64()) for column in POINT_COLUMNS),
            ("fetched_at", _TS),
        ]
    ),
    # Which time ranges were read at which period: a missing datapoint inside a covered range is an idle minute,
    # outside it is unknown. Lets the models report coverage and prefer 1-minute data over 5-minute data.
    "metric_coverage": pa.schema(
        [
            ("account_id", pa.string()),
            ("period_s", pa.int32()),
            ("range_start", _TS),
            ("range_end", _TS),
            ("model_ids", pa.int32()),
            ("fetched_at", _TS),
            # The series a narrowed read (``buw analyze -m``) asked for; null when it read every listed series.
            ("series_ids", pa.list_(pa.string())),
        ]
    ),
    # What each extraction run read per region and what it cost: GetMetricData is billed per metric requested.
    "extract_run_log": pa.schema(
        [
            ("run_id", pa.string()),
            ("account_id", pa.string()),
            ("recorded_at", _TS),
            ("as_of", _TS),
            ("range_start", _TS),
            ("range_end", _TS),
            ("listing", pa.string()),
            ("narrowed", pa.bool_()),
            ("series", pa.int32()),
            ("queries", pa.int32()),
            ("calls", pa.int64()),
            ("metrics_requested", pa.int64()),
            ("datapoints", pa.int64()),
            ("days_written", pa.int32()),
            ("estimated_cost_usd", pa.float64()),
            ("usd_per_1000_metrics", pa.float64()),
            ("price_as_of", pa.date32()),
        ]
    ),
    # Invocation-log counts per minute x caller x ModelId as sent x requestMetadata; never a request's body.
    "caller_minutes": pa.schema(
        [
            ("account_id", pa.string()),
            ("ts", _TS),
            ("model_id", pa.string()),
            ("identity_arn", pa.string()),
            ("principal", pa.string()),
            ("session", pa.string()),
            ("request_metadata", pa.string()),
            ("requests", pa.int64()),
            ("throttles", pa.int64()),
            ("errors", pa.int64()),
            ("input_tokens", pa.int64()),
            ("output_tokens", pa.int64()),
            ("cache_read_tokens", pa.int64()),
            ("cache_write_tokens", pa.int64()),
            # The S3 object the counts came from (each is read once), or "logs-insights".
            ("source", pa.string()),
            ("fetched_at", _TS),
        ]
    ),
    # What each invocation-log read cost per region: S3 objects and bytes, or Logs Insights bytes scanned.
    "invocation_log_reads": pa.schema(
        [
            ("run_id", pa.string()),
            ("account_id", pa.string()),
            ("recorded_at", _TS),
            ("delivery", pa.string()),
            ("range_start", _TS),
            ("range_end", _TS),
            ("list_calls", pa.int64()),
            ("objects_listed", pa.int64()),
            ("objects_read", pa.int64()),
            ("bytes_read", pa.int64()),
            ("records_read", pa.int64()),
            ("queries", pa.int64()),
            ("records_scanned", pa.int64()),
            ("bytes_scanned", pa.int64()),
            ("rows_written", pa.int64()),
            ("days_written", pa.int32()),
        ]
    ),
    # IAM tags of the principals seen in the invocation logs (ListRoleTags / ListUserTags).
    "principal_tags": pa.schema(
        [
            ("principal", pa.string()),
            ("key", pa.string()),
            ("value", pa.string()),
            ("snapshot_at", _TS),
        ]
    ),
    "inference_profiles": pa.schema(
        [
            ("account_id", pa.string()),
            ("profile_id", pa.string()),
            ("profile_arn", pa.string()),
            ("name", pa.string()),
            ("description", pa.string()),
            ("type", pa.string()),
            ("status", pa.string()),
            ("model_arns", pa.list_(pa.string())),
            ("created_at", _TS),
            ("updated_at", _TS),
            ("snapshot_at", _TS),
        ]
    ),
    "profile_tags": pa.schema(
        [
            ("profile_arn", pa.string()),
            ("profile_id", pa.string()),
            ("key", pa.string()),
            ("value", pa.string()),
            ("snapshot_at", _TS),
        ]
    ),
    "foundation_models": pa.schema(
        [
            ("model_id", pa.string()),
            ("model_arn", pa.string()),
            ("model_name", pa.string()),
            ("provider", pa.string()),
            ("input_modalities", pa.list_(pa.string())),
            ("output_modalities", pa.list_(pa.string())),
            ("inference_types", pa.list_(pa.string())),
            ("response_streaming", pa.bool_()),
            ("lifecycle_status", pa.string()),
            ("snapshot_at", _TS),
        ]
    ),
    "service_quotas": pa.schema(
        [
            ("quota_code", pa.string()),
            ("quota_name", pa.string()),
            ("quota_arn", pa.string()),
            ("value", pa.float64()),
            ("default_value", pa.float64()),
            ("applied_value", pa.float64()),
            ("unit", pa.string()),
            ("adjustable", pa.bool_()),
            ("global_quota", pa.bool_()),
            ("snapshot_at", _TS),
        ]
    ),
}

DATASETS: tuple[str, ...] = tuple(SCHEMAS)


@dataclass(frozen=True)
class Partition:
    """One (dataset, region, UTC day) partition of the lake."""

    dataset: str
    region: str
    day: date

    def directory(self, lake: Path) -> Path:
        return lake / self.dataset / f"region={self.region}" / f"date={self.day.isoformat()}"

    def path(self, lake: Path) -> Path:
        return self.directory(lake) / PARTITION_FILE


class LakeError(RuntimeError):
    """A lake file cannot be read or written; the message names the file and what to do."""


def empty_table(dataset: str) -> pa.Table:
    """An empty table with the dataset's schema."""
    return SCHEMAS[dataset].empty_table()


def to_table(dataset: str, rows: Iterable[dict]) -> pa.Table:
    """Rows (dicts keyed by column) as a table with the dataset's exact schema."""
    return pa.Table.from_pylist(list(rows), schema=SCHEMAS[dataset])


def write_partition(lake: Path, partition: Partition, table: pa.Table) -> Path:
    """Replace one partition with ``table`` atomically and return the partition file's path."""
    schema = SCHEMAS[partition.dataset]
    if not table.schema.equals(schema):
        table = table.select(schema.names).cast(schema)
    directory = partition.directory(lake)
    directory.mkdir(parents=True, exist_ok=True)
    _sweep(directory.glob(".*.tmp"))
    # The writer's pid in the name tells the next run whether the file belongs to a writer still at work.
    temporary = directory / f".{os.getpid()}-{uuid.uuid4().hex}.tmp"
    pq.write_table(table, temporary, compression="zstd")
    final = directory / PARTITION_FILE
    os.replace(temporary, final)
    return final


def sweep_temp_files(lake: Path) -> list[Path]:
    """Delete the temporary files of writers that died mid-write, anywhere in the lake; return what was deleted."""
    return _sweep(lake.glob("*/region=*/date=*/.*.tmp"))


def _sweep(candidates: Iterable[Path]) -> list[Path]:
    # Left by a run killed mid-write; never visible to readers (they read *.parquet only). One whose writer is
    # still alive on this machine (or, for a name without a pid, one younger than an hour) may be written right
    # now, so it stays.
    removed = []
    for stale in candidates:
        pid = stale.name[1:].partition("-")[0]
        try:
            if _alive(int(pid)) if pid.isdigit() else time.time() - stale.stat().st_mtime < 3600:
                continue
            stale.unlink()
        except OSError:  # gone already, or a read-only warehouse: nothing to do
            continue
        removed.append(stale)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_partition(lake: Path, partition: Partition) -> pa.Table | None:
    """The partition's table, or None when it was never written."""
    path = partition.path(lake)
    if not path.exists():
        return None
    try:
        if partition.dataset != "metric_points":
            return pq.read_table(path, schema=SCHEMAS[partition.dataset])
        # Read once, then told apart by its columns: a file of the earlier layout is widened on the way.
        table = pq.read_table(path)
        if "metric" in table.column_names:
            return widen_points(table.select(DATAPOINTS_SCHEMA.names).cast(DATAPOINTS_SCHEMA))
        return table.select(SCHEMAS["metric_points"].names).cast(SCHEMAS["metric_points"])
    except (pa.ArrowInvalid, OSError) as error:
        raise LakeError(
            f"the lake file {path} is unreadable ({error}); delete it and re-materialize that partition"
        ) from error


def _holds_datapoints(path: Path) -> bool:
    """Whether a metric_points file has the one-row-per-datapoint layout of earlier versions."""
    return "metric" in pq.read_schema(path).names


def widen_points(datapoints: pa.Table) -> pa.Table:
    """Datapoints (``DATAPOINTS_SCHEMA``) as metric_points rows: one per series, period and bucket, a column per
    statistic of ``POINT_MEASURES`` (others are dropped), sorted by (model_id, period_s, ts).

    A (series, statistic, period, bucket) appears once in what GetMetricData returns; should it appear twice,
    the value fetched last is kept.
    """
    import duckdb  # the lake's other readers and writers need only pyarrow

    with duckdb.connect() as connection:
        connection.register("datapoints", datapoints)
        table = connection.sql(widen_sql("datapoints") + " order by model_id, period_s, ts").to_arrow_table()
    return table.cast(SCHEMAS["metric_points"])


def widen_sql(source: str, keys: tuple[str, ...] = ()) -> str:
    """The DuckDB query that turns the datapoint rows of ``source`` (a relation in ``DATAPOINTS_SCHEMA``, plus
    ``keys`` such as the Hive columns) into metric_points rows. Only the names of ``POINT_MEASURES`` are
    written into its text; ``source`` and ``keys`` come from this code, never from input."""
    measures = ", ".join(
        f"arg_max(value, fetched_at) filter (where metric = '{metric}' and stat = '{stat}') as {column}"
        for (metric, stat), column in POINT_MEASURES.items()
    )
    kept = " or ".join(f"(metric = '{metric}' and stat = '{stat}')" for metric, stat in POINT_MEASURES)
    grouped = ", ".join([*keys, "model_id", "period_s", "ts"])
    return (
        f"select any_value(account_id) as account_id, {grouped}, {measures}, max(fetched_at) as fetched_at "
        f"from {source} where ({kept}) group by {grouped}"
    )


def earlier_layout_files(lake: Path) -> list[Partition]:
    """The metric_points files still in the one-row-per-datapoint layout of earlier versions; unreadable files are
    left to the readers that report them.

    Once none is left the marker says so, and later calls (each model build binds the lake again) read no file
    footer at all. Only the marker is written here: the files themselves are rewritten by ``upgrade_metric_points``.
    """
    marker = lake / "metric_points" / _WIDE_MARKER
    if marker.exists():
        return []
    found = []
    for partition in partitions(lake, "metric_points"):
        try:
            if _holds_datapoints(partition.path(lake)):
                found.append(partition)
        except (pa.ArrowInvalid, OSError):
            continue
    if not found and marker.parent.is_dir():
        with contextlib.suppress(OSError):  # a read-only lake: the scan is repeated, nothing else changes
            marker.touch()
    return found


# Written once every metric_points file has the one-row-per-series-and-bucket layout, so later runs skip the scan.
_WIDE_MARKER = ".layout-series-bucket"


def upgrade_metric_points(lake: Path) -> list[Path]:
    """Rewrite metric_points files of the one-row-per-datapoint layout in today's layout; return those rewritten.

    Same datapoints, same folders; each file is replaced atomically, so a reader sees the old file or the new.
    Only the metric_points step calls this: it is the one writer of these files, and its runs never overlap
    (one pool), so no run's new file is overwritten by the old one's rewrite. Until then the models read the
    old files through the same pivot (``widen_sql``).
    """
    marker = lake / "metric_points" / _WIDE_MARKER
    if marker.exists():
        return []
    rewritten = []
    for partition in earlier_layout_files(lake):
        try:
            table = read_partition(lake, partition)
        except LakeError:
            continue  # an unreadable file is read again from CloudWatch by the extraction of its day
        rewritten.append(write_partition(lake, partition, table))
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return rewritten


def partitions(lake: Path, dataset: str) -> list[Partition]:
    """Every partition of a dataset present in the lake, sorted."""
    found = []
    for path in sorted((lake / dataset).glob(f"region=*/date=*/{PARTITION_FILE}")):
        region = path.parent.parent.name.removeprefix("region=")
        day = date.fromisoformat(path.parent.name.removeprefix("date="))
        found.append(Partition(dataset, region, day))
    return found


def has_data(lake: Path, dataset: str) -> bool:
    """Whether any partition of the dataset has been written."""
    return any((lake / dataset).glob(f"region=*/date=*/{PARTITION_FILE}"))


def dataset_glob(lake: Path, dataset: str) -> str:
    """The glob DuckDB reads a dataset with (``hive_partitioning`` adds region and date)."""
    return str(lake / dataset / "region=*" / "date=*" / PARTITION_FILE)

"""Usage reports: one HTML and one JSON file per endpoint, and an index page of every endpoint's headroom.

The report reads the marts of ``warehouse/usage.duckdb`` (DESIGN §3) and nothing else. ``quota_map`` and
``quota_headroom`` are optional: a quota card shows headroom from ``quota_headroom``, else the quota value from
``quota_map``, else "no quota found". Columns beyond DESIGN §3 (account_id, output_multiplier,
quota_tpm_computed, estimated_tpm_quota_usage) are used when present. Everything here is a pure function of the
database and ``as_of``: the same warehouse and ``as_of`` give byte-identical files.

The JSON document (:func:`build_report_data`) holds every number the HTML shows; the HTML is rendered from that
document alone. Charts use plotly.js, inlined once per page so a report opens offline. plotly.js is ~4.8 MB,
which leaves ~180 KB of a 5 MB (5,000,000 bytes) page for data, so chart series are compact: a point per
bucket (the peak minute of the bucket for rates, the sum for counts), integers sent as plotly's base64 typed
arrays, x given as start and step instead of an array. When a page would still exceed :data:`MAX_HTML_BYTES`
the charts are re-bucketed one step coarser (:data:`CHART_BUCKET_LADDER`) until it fits; the tables always use
every minute.
"""

from __future__ import annotations

import functools
import glob
import html
import json
import logging
import math
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from pipelines.quotas.checks import CHECK_WINDOW, P90_THRESHOLD, EndpointHeadroom, flagged_endpoints

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "reports" / "templates"

# (window, minutes): the windows of DESIGN §4, in display order.
WINDOWS: tuple[tuple[str, int], ...] = (("1h", 60), ("1d", 1440), ("7d", 10080), ("14d", 20160), ("30d", 43200))
WINDOW_MINUTES = dict(WINDOWS)

# (metric, label, unit) of window_stats, in display order.
STAT_METRICS: tuple[tuple[str, str, str], ...] = (
    ("tpm", "TPM", "tokens/min"),
    ("quota_tpm", "Quota TPM", "quota tokens/min"),
    ("rpm", "RPM", "requests/min"),
    ("tpd", "TPD", "tokens/24 h"),
    ("input_tokens", "Input tokens", "tokens/min"),
    ("output_tokens", "Output tokens", "tokens/min"),
    ("cache_read_tokens", "Cache read tokens", "tokens/min"),
    ("cache_write_tokens", "Cache write tokens", "tokens/min"),
    ("invocations", "Invocations", "per min"),
    ("throttles", "Throttles", "per min"),
    ("client_errors", "Client errors", "per min"),
    ("server_errors", "Server errors", "per min"),
    ("latency_ms", "Latency", "ms"),
    ("ttft_ms", "Time to first token", "ms"),
)
# A sum of per-minute averages means nothing, so these show no total.
NON_ADDITIVE_METRICS = frozenset({"latency_ms", "ttft_ms"})

QUOTA_TYPES: tuple[tuple[str, str], ...] = (("tpm", "TPM"), ("rpm", "RPM"), ("tpd", "TPD"))
QUOTA_LABELS = {
    "tpm": "TPM",
    "rpm": "RPM",
    "tpd": "TPD",
    "concurrent": "Concurrent requests",
    "input_tpm": "Input TPM",
    "output_tpm": "Output TPM",
}

# The window the index page and each report's summary use: a week smooths one-off days but still shows growth.
SUMMARY_WINDOW = "7d"
# The largest window: it decides which series get their own chart line and the throttle timeline's range.
TIMELINE_WINDOW = "30d"

MAX_HTML_BYTES = 5_000_000
# More lines than this per chart are unreadable and too large; the smallest series are summed into one line.
MAX_CHART_SERIES = 8
WORST_MINUTES = 10

# Chart bucket sizes (minutes) per window, finest first. Every size divides its window, so buckets end at as_of.
CHART_BUCKET_LADDER: tuple[Mapping[str, int], ...] = (
    {"1h": 1, "1d": 1, "7d": 30, "14d": 60, "30d": 120},
    {"1h": 1, "1d": 2, "7d": 30, "14d": 60, "30d": 120},
    {"1h": 1, "1d": 5, "7d": 60, "14d": 120, "30d": 240},
    {"1h": 1, "1d": 10, "7d": 120, "14d": 240, "30d": 480},
    {"1h": 5, "1d": 30, "7d": 240, "14d": 480, "30d": 720},
)

AGGREGATE_LABEL = "all profiles"
DIRECT_LABEL = "direct"
AGGREGATE_SERIES = "*"
OTHER_LINE = "~other"

REQUIRED_MARTS = (
    "endpoints",
    "usage_minute",
    "endpoint_minute",
    "window_stats",
    "tpd_daily",
    "tag_attribution",
    "throttle_attribution",
)
OPTIONAL_MARTS = ("quota_map", "quota_headroom")
# quota_headroom columns the quota cards and the alerts read; a mart built before they existed is refused.
HEADROOM_COLUMNS = frozenset({"minutes_at_quota", "throttled_minutes", "active_points", "utilisation_p90"})

# Line colours: the aggregate is near-black, quota lines are red, so the profile palette has no red in it.
AGGREGATE_COLOR = "#222222"
QUOTA_COLOR = "#d62728"
SERIES_COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
)

LIMITATIONS = (
    "CloudWatch counts tokens after a request finishes. Bedrock reserves the input tokens plus max_tokens against "
    "the TPM quota when a request starts and settles to the real count at the end; CloudWatch never sees that "
    "reservation, so requests with a large max_tokens can be throttled while the TPM shown here is below the quota.",
    "Quota TPM is input + cache-write + output tokens × the model's output burndown rate, or AWS's "
    "EstimatedTPMQuotaUsage where that metric exists; both estimate what Bedrock counts against the quota.",
    "CloudWatch keeps 1-minute data for 15 days and 5-minute data for 63 days. Older parts of a window come from "
    "5-minute points, which spread a bucket's tokens over five minutes and so hide the peak minute inside it.",
    "Idle minutes publish no datapoint. Statistics are over active minutes (minutes with a datapoint); the "
    "active/window minute counts give the denominator for a zero-filled view.",
    "A chart point of a bucketed window is the peak minute of its bucket for rates (TPM, quota TPM, RPM) and the "
    "sum of the bucket for counts (throttles); the tables use every minute.",
)


@dataclass(frozen=True)
class ReportFile:
    """One written report: an endpoint's page (``kind="endpoint"``) or the index page (``kind="index"``)."""

    kind: str
    region: str | None
    endpoint: str | None
    html_path: Path
    json_path: Path
    html_bytes: int


class ReportError(ValueError):
    """The warehouse cannot produce the requested report; the message says what to do."""


# ---------------------------------------------------------------------------------------------------- helpers


def _utc(moment: datetime) -> datetime:
    """A naive UTC datetime truncated to the minute (naive input is taken as UTC, the warehouse convention)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.replace(second=0, microsecond=0)


def _ms(moment: datetime) -> int:
    return int(moment.replace(tzinfo=UTC).timestamp() * 1000)


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _plotly_time(iso: str) -> str:
    # plotly.js date axes are zone-less; every time here is UTC.
    return iso.replace("T", " ").removesuffix("Z")


def _num(value: Any, digits: int = 1) -> int | float | None:
    """A JSON-friendly number rounded to ``digits``; integral values become ints, NULL/NaN become None."""
    if value is None:
        return None
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        return None
    number = round(number, digits)
    if digits <= 0 or number.is_integer():
        return int(number)
    return number


def _pct(part: Any, whole: Any) -> float | int | None:
    if part is None or whole is None or float(whole) == 0:
        return None
    return _num(100.0 * float(part) / float(whole), 1)


def _share_pct(part: Any, whole: float) -> float | int | None:
    if part is None or whole == 0:
        return None
    return _num(100.0 * float(part) / whole, 2)


def safe_filename(text: str) -> str:
    """A file-name-safe form of an endpoint id or region: ``:`` and anything unusual become ``_``."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip(".")
    return cleaned or "_"


def report_stem(endpoint: str, as_of: datetime) -> str:
    """``<endpoint-safe-name>-<as_of YYYYmmddTHHMMZ>``, the file name of a report without extension."""
    return f"{safe_filename(endpoint)}-{_utc(as_of).strftime('%Y%m%dT%H%MZ')}"


KEEP_PAGES = 3
"""Pages kept per endpoint: the hourly schedule writes one per as_of, at up to 5 MB each."""

_AS_OF_SUFFIX = re.compile(r"-\d{8}T\d{4}Z$")


def _prune_older_pages(folder: Path, stem: str, keep: int = KEEP_PAGES) -> None:
    """Delete an endpoint's pages (and their JSON) older than its ``keep`` newest as_of values."""
    prefix = _AS_OF_SUFFIX.sub("", stem)
    pages = sorted(
        (path for path in folder.glob(f"{glob.escape(prefix)}-*.html") if _AS_OF_SUFFIX.sub("", path.stem) == prefix),
        key=lambda path: path.stem[len(prefix) + 1 :],
    )
    for old in pages[:-keep]:
        old.unlink(missing_ok=True)
        old.with_suffix(".json").unlink(missing_ok=True)


def script_json(value: Any) -> str:
    """JSON that is safe inside an HTML ``<script>`` element.

    ``<``, ``>`` and ``&`` become ``\\u003c`` etc. so no value can close the element or open a comment, and
    U+2028/U+2029 are escaped because they end a line in older JavaScript parsers.
    """
    text = json.dumps(value, ensure_ascii=False, sort_keys=False, separators=(",", ":"), default=_json_default)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _rows(connection: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    cursor = connection.execute(sql, list(params))
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _has_relation(connection: duckdb.DuckDBPyConnection, name: str) -> bool:
    # Probing with a query honours the search path and finds views as well as tables.
    try:
        connection.execute(f'select * from "{name}" limit 0')
    except duckdb.CatalogException:
        return False
    return True


def _columns(connection: duckdb.DuckDBPyConnection, name: str) -> frozenset[str]:
    # Marts may carry columns beyond DESIGN §3 (account_id, estimated_tpm_quota_usage, ...); use them when present.
    cursor = connection.execute(f'select * from "{name}" limit 0')
    return frozenset(column[0] for column in cursor.description)


def _check_marts(connection: duckdb.DuckDBPyConnection) -> dict[str, bool]:
    missing = [name for name in REQUIRED_MARTS if not _has_relation(connection, name)]
    if missing:
        raise ReportError(
            f"The warehouse has no {', '.join(missing)} mart{'s' if len(missing) > 1 else ''}; "
            "build them first with buw analyze, buw demo or buw report --as-of (or materialise the models group in "
            "Dagster)."
        )
    optional = {name: _has_relation(connection, name) for name in OPTIONAL_MARTS}
    if optional["quota_headroom"]:
        lacking = sorted(HEADROOM_COLUMNS - _columns(connection, "quota_headroom"))
        if lacking:
            raise ReportError(
                f"The quota_headroom mart has no {', '.join(lacking)} column{'s' if len(lacking) > 1 else ''}; "
                "it was built by an older version: rebuild the models with buw report --as-of (or materialise the "
                "models group in Dagster)."
            )
    return optional


def _check_as_of(connection: duckdb.DuckDBPyConnection, as_of_ms: int) -> None:
    built = [
        row[0] for row in connection.execute("select distinct epoch_ms(as_of) from window_stats order by 1").fetchall()
    ]
    if built and as_of_ms not in built:
        held = ", ".join(_iso(ms) or "" for ms in built[-3:])
        raise ReportError(
            f"window_stats was computed for as_of {held}, not {_iso(as_of_ms)}; rebuild the models with this "
            "as_of or render the report with the as_of the models used."
        )


# ---------------------------------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class _Series:
    series_id: str
    label: str
    is_application_profile: bool
    profile_name: str | None
    profile_arn: str | None


@dataclass(frozen=True)
class _Context:
    region: str
    endpoint: str
    as_of_ms: int
    series: tuple[_Series, ...]
    # The region's covered range [start, end): all series of a region are extracted together, so a minute inside
    # it without a datapoint is idle (zero), one outside it is unknown.
    covered_start_ms: int | None
    covered_end_ms: int | None

    def label(self, series_id: str) -> str:
        for series in self.series:
            if series.series_id == series_id:
                return series.label
        return AGGREGATE_LABEL if series_id == AGGREGATE_SERIES else series_id

    def window_start_ms(self, window: str) -> int:
        return self.as_of_ms - WINDOW_MINUTES[window] * 60_000


def _endpoint_series(connection: duckdb.DuckDBPyConnection, region: str, endpoint: str) -> tuple[_Series, ...]:
    listed = _rows(
        connection,
        """
        select series_id, is_application_profile, profile_name, profile_arn
        from endpoints where region = ? and endpoint = ? order by series_id
        """,
        [region, endpoint],
    )
    known = {row["series_id"] for row in listed}
    # A series with data but missing from the endpoints mart still counts; it is labelled by its id.
    for (series_id,) in connection.execute(
        "select distinct series_id from usage_minute where region = ? and endpoint = ? order by series_id",
        [region, endpoint],
    ).fetchall():
        if series_id not in known:
            listed.append(
                {
                    "series_id": series_id,
                    "is_application_profile": None,
                    "profile_name": None,
                    "profile_arn": None,
                }
            )
    direct = [row for row in listed if row["is_application_profile"] is False]
    names: dict[str, str] = {}
    for row in listed:
        if row["is_application_profile"] is False:
            names[row["series_id"]] = DIRECT_LABEL if len(direct) == 1 else f"{DIRECT_LABEL} ({row['series_id']})"
        else:
            names[row["series_id"]] = row["profile_name"] or row["series_id"]
    counts: dict[str, int] = {}
    for name in names.values():
        counts[name] = counts.get(name, 0) + 1
    series = [
        _Series(
            series_id=row["series_id"],
            label=names[row["series_id"]]
            if counts[names[row["series_id"]]] == 1
            else f"{names[row['series_id']]} ({row['series_id']})",
            is_application_profile=bool(row["is_application_profile"]),
            profile_name=row["profile_name"],
            profile_arn=row["profile_arn"],
        )
        for row in listed
    ]
    # Direct traffic first, then the application profiles by name.
    series.sort(key=lambda item: (item.is_application_profile, item.label, item.series_id))
    return tuple(series)


def _context(connection: duckdb.DuckDBPyConnection, region: str, endpoint: str, as_of: datetime) -> _Context:
    as_of_ms = _ms(_utc(as_of))
    start, end = connection.execute(
        """
        select min(epoch_ms(ts)), max(epoch_ms(ts) + coalesce(resolution_s, 60) * 1000)
        from usage_minute where region = ? and epoch_ms(ts) < ?
        """,
        [region, as_of_ms],
    ).fetchone()
    return _Context(
        region=region,
        endpoint=endpoint,
        as_of_ms=as_of_ms,
        series=_endpoint_series(connection, region, endpoint),
        covered_start_ms=None if start is None else int(start),
        covered_end_ms=None if end is None else min(int(end), as_of_ms),
    )


def _header(connection: duckdb.DuckDBPyConnection, context: _Context, account_id: str | None) -> dict[str, Any]:
    if account_id is None and "account_id" in _columns(connection, "usage_minute"):
        (account_id,) = connection.execute(
            "select min(account_id) from usage_minute where region = ? and endpoint = ?",
            [context.region, context.endpoint],
        ).fetchone()
    kind = connection.execute(
        """
        select endpoint_kind, base_model_id from endpoints
        where region = ? and endpoint = ?
        order by is_application_profile, series_id limit 1
        """,
        [context.region, context.endpoint],
    ).fetchone()
    first, last, first_1min = connection.execute(
        """
        select min(epoch_ms(ts)), max(epoch_ms(ts)), min(epoch_ms(ts)) filter (where resolution_s = 60)
        from usage_minute where region = ? and endpoint = ? and epoch_ms(ts) < ?
        """,
        [context.region, context.endpoint, context.as_of_ms],
    ).fetchone()
    return {
        "account_id": account_id,
        "region": context.region,
        "endpoint": context.endpoint,
        "endpoint_kind": kind[0] if kind else None,
        "base_model_id": kind[1] if kind else None,
        "as_of": _iso(context.as_of_ms),
        "first_datapoint": _iso(first),
        "last_datapoint": _iso(last),
        "first_1min_datapoint": _iso(first_1min),
    }


def _series_list(context: _Context) -> list[dict[str, Any]]:
    return [
        {
            "series_id": series.series_id,
            "label": series.label,
            "is_application_profile": series.is_application_profile,
            "profile_name": series.profile_name,
            "profile_arn": series.profile_arn,
        }
        for series in context.series
    ]


def _stats(connection: duckdb.DuckDBPyConnection, context: _Context) -> list[dict[str, Any]]:
    found = _rows(
        connection,
        """
        select "window", metric, p50, p90, p99, "avg", "max", total, active_points, window_points
        from window_stats
        where region = ? and endpoint = ? and series_id = ? and epoch_ms(as_of) = ?
        """,
        [context.region, context.endpoint, AGGREGATE_SERIES, context.as_of_ms],
    )
    by_key = {(row["window"], row["metric"]): row for row in found}
    stats = []
    for window, _minutes in WINDOWS:
        rows = []
        for metric, label, unit in STAT_METRICS:
            row = by_key.get((window, metric), {})
            rows.append(
                {
                    "metric": metric,
                    "label": label,
                    "unit": unit,
                    "p50": _num(row.get("p50")),
                    "p90": _num(row.get("p90")),
                    "p99": _num(row.get("p99")),
                    "avg": _num(row.get("avg")),
                    "max": _num(row.get("max")),
                    "total": None if metric in NON_ADDITIVE_METRICS else _num(row.get("total"), 0),
                    "active_points": _num(row.get("active_points"), 0),
                    "window_points": _num(row.get("window_points"), 0),
                }
            )
        stats.append({"window": window, "metrics": rows})
    return stats


def _quotas(connection: duckdb.DuckDBPyConnection, context: _Context, optional: Mapping[str, bool]) -> dict[str, Any]:
    headroom = []
    if optional["quota_headroom"]:
        headroom = _rows(
            connection,
            """
            select
                quota_type, quota_code, quota_value, "window", p90, "max", minutes_over_80, minutes_over_100,
                minutes_at_quota, throttled_minutes
            from quota_headroom where region = ? and endpoint = ?
            order by quota_type, quota_code, "window"
            """,
            [context.region, context.endpoint],
        )
    mapped: dict[str, dict[str, Any]] = {}
    if optional["quota_map"]:
        columns = _columns(connection, "quota_map")
        # The effective value (applied, else default, doubled for cross-region TPD) when the map carries one.
        value = next((name for name in ("effective_value", "quota_value") if name in columns), None)
        for row in _rows(
            connection,
            f"""
            select quota_type, quota_code, quota_name, rule, {value or "null"} as quota_value from quota_map
            where region = ? and endpoint = ? order by quota_type, quota_code
            """,
            [context.region, context.endpoint],
        ):
            mapped.setdefault(row["quota_type"], row)
    types = [name for name, _ in QUOTA_TYPES]
    types += sorted({row["quota_type"] for row in headroom} - set(types))
    cards = []
    for quota_type in types:
        rows = [row for row in headroom if row["quota_type"] == quota_type]
        # One quota per endpoint and type is the mart's grain; should two codes appear, the first code wins.
        code = rows[0]["quota_code"] if rows else mapped.get(quota_type, {}).get("quota_code")
        rows = [row for row in rows if row["quota_code"] == code]
        value = next((row["quota_value"] for row in rows if row["quota_value"] is not None), None)
        meta = mapped.get(quota_type, {})
        source = "quota_headroom" if value is not None else None
        if value is None and meta.get("quota_code") in (None, code) and meta.get("quota_value") is not None:
            value, source = meta["quota_value"], "quota_map"
        by_window = {row["window"]: row for row in rows}
        windows = []
        for window, _minutes in WINDOWS:
            row = by_window.get(window)
            if row is None:
                continue
            windows.append(
                {
                    "window": window,
                    "p90": _num(row["p90"]),
                    "max": _num(row["max"]),
                    "utilisation_p90_pct": _pct(row["p90"], value),
                    "utilisation_max_pct": _pct(row["max"], value),
                    "minutes_over_80": _num(row["minutes_over_80"], 0),
                    "minutes_over_100": _num(row["minutes_over_100"], 0),
                    "minutes_at_quota": _num(row["minutes_at_quota"], 0),
                    "throttled_minutes": _num(row["throttled_minutes"], 0),
                }
            )
        cards.append(
            {
                "quota_type": quota_type,
                "label": QUOTA_LABELS.get(quota_type, quota_type),
                "found": value is not None,
                "quota_code": code,
                "quota_name": meta.get("quota_name") if meta.get("quota_code") in (None, code) else None,
                "rule": meta.get("rule") if meta.get("quota_code") in (None, code) else None,
                "quota_value": _num(value, 0),
                "source": source,
                "windows": windows,
            }
        )
    return {
        "headroom_available": optional["quota_headroom"],
        "map_available": optional["quota_map"],
        "cards": cards,
    }


Alerts = dict[tuple[str, str], list[EndpointHeadroom]]


def _headroom_alerts(connection: duckdb.DuckDBPyConnection, optional: Mapping[str, bool]) -> Alerts | None:
    """What the headroom asset checks warn about, per (region, endpoint); None without a quota_headroom mart.

    The verdict is the checks' own (:func:`pipelines.quotas.checks.flagged_endpoints`), so the report and the
    Dagster UI can never disagree about which endpoint is flagged.
    """
    if not optional["quota_headroom"]:
        return None
    alerts: Alerts = {}
    for numbers in flagged_endpoints(connection):
        alerts.setdefault((numbers.region, numbers.endpoint), []).append(numbers)
    return alerts


def _alerts(context: _Context, alerts: Alerts | None, quotas: Mapping[str, Any]) -> dict[str, Any]:
    names = {card["quota_code"]: card["quota_name"] for card in quotas["cards"] if card["quota_code"]}
    flagged = [
        {
            "quota_type": numbers.quota_type,
            "label": QUOTA_LABELS.get(numbers.quota_type, numbers.quota_type),
            # The asset check's name on quota_headroom in the Dagster UI (pipelines/assets/models.py).
            "check": f"{numbers.quota_type}_headroom",
            "window": numbers.window,
            "quota_code": numbers.quota_code,
            "quota_name": names.get(numbers.quota_code),
            "quota_value": _num(numbers.quota_value, 0),
            "p90": _num(numbers.p90),
            "max": _num(numbers.max),
            "utilisation_p90_pct": None if numbers.utilisation_p90 is None else _num(100 * numbers.utilisation_p90),
            "utilisation_max_pct": None if numbers.utilisation_max is None else _num(100 * numbers.utilisation_max),
            "minutes_over_80": _num(numbers.minutes_over_80, 0),
            "minutes_over_100": _num(numbers.minutes_over_100, 0),
            "minutes_at_quota": _num(numbers.minutes_at_quota, 0),
            "throttled_minutes": _num(numbers.throttled_minutes, 0),
            # For the tokens-per-day quota the points are rolling days, not minutes.
            "point_unit": "days" if numbers.quota_type == "tpd" else "minutes",
        }
        for numbers in (alerts or {}).get((context.region, context.endpoint), [])
    ]
    return {
        "available": alerts is not None,
        "window": CHECK_WINDOW,
        "p90_threshold_pct": _num(100 * P90_THRESHOLD),
        "flagged": flagged,
    }


def _coverage(connection: duckdb.DuckDBPyConnection, context: _Context) -> dict[str, Any]:
    windows = []
    for window, minutes in WINDOWS:
        start_ms = context.window_start_ms(window)
        # usage_minute spreads a 5-minute bucket over its five minutes (resolution_s = 300), so these are minutes.
        minutes_1min, minutes_5min, minutes_other = connection.execute(
            """
            select
                count(distinct ts) filter (where resolution_s = 60),
                count(distinct ts) filter (where resolution_s = 300),
                count(distinct ts) filter (where resolution_s not in (60, 300)),
            from usage_minute
            where region = ? and endpoint = ? and epoch_ms(ts) >= ? and epoch_ms(ts) < ?
            """,
            [context.region, context.endpoint, start_ms, context.as_of_ms],
        ).fetchone()
        if minutes_1min and (minutes_5min or minutes_other):
            resolution = "1-min and 5-min" if not minutes_other else "mixed"
        elif minutes_1min:
            resolution = "1-min"
        elif minutes_5min and not minutes_other:
            resolution = "5-min"
        elif minutes_other:
            resolution = "mixed"
        else:
            resolution = "no data"
        covered_from = covered_minutes = None
        if context.covered_start_ms is not None and context.covered_end_ms is not None:
            begin = max(start_ms, context.covered_start_ms)
            end = min(context.as_of_ms, context.covered_end_ms)
            if end > begin:
                covered_from = _iso(begin)
                covered_minutes = (end - begin) // 60_000
        windows.append(
            {
                "window": window,
                "start": _iso(start_ms),
                "end": _iso(context.as_of_ms),
                "window_minutes": minutes,
                "covered_from": covered_from,
                "covered_minutes": covered_minutes or 0,
                "minutes_1min": int(minutes_1min),
                "minutes_5min": int(minutes_5min),
                "minutes_other": int(minutes_other),
                "resolution": resolution,
            }
        )
    return {
        "region_covered_from": _iso(context.covered_start_ms),
        "region_covered_to": _iso(context.covered_end_ms),
        "windows": windows,
        "limitations": list(LIMITATIONS),
    }


def _tags(connection: duckdb.DuckDBPyConnection, context: _Context) -> list[dict[str, Any]]:
    found = _rows(
        connection,
        """
        select "window", tag_key, tag_value, tokens, invocations, peak_tpm
        from tag_attribution where region = ? and endpoint = ?
        """,
        [context.region, context.endpoint],
    )
    keys = sorted({row["tag_key"] for row in found if row["tag_key"] is not None})
    # A row without a tag key (direct traffic, when the mart writes it once per window) belongs to every key.
    keyless = [row for row in found if row["tag_key"] is None]
    result = []
    for key in keys or ([None] if keyless else []):
        rows = [row for row in found if row["tag_key"] == key] + (keyless if key is not None else [])
        windows = []
        for window, _minutes in WINDOWS:
            in_window = [row for row in rows if row["window"] == window]
            whole = float(sum(row["tokens"] or 0 for row in in_window))
            entries = [
                {
                    "tag_value": row["tag_value"],
                    "tokens": _num(row["tokens"], 0),
                    "share_pct": _share_pct(row["tokens"] or 0, whole),
                    "invocations": _num(row["invocations"], 0),
                    "peak_tpm": _num(row["peak_tpm"], 0),
                }
                for row in in_window
            ]
            entries.sort(
                key=lambda entry: (-(entry["tokens"] or 0), entry["tag_value"] is None, entry["tag_value"] or "")
            )
            windows.append({"window": window, "rows": entries})
        result.append({"tag_key": key, "windows": windows})
    return result


def _throttles(connection: duckdb.DuckDBPyConnection, context: _Context) -> dict[str, Any]:
    found = _rows(
        connection,
        """
        select "window", series_id, throttles, throttled_minutes, tokens_in_throttled_minutes
        from throttle_attribution where region = ? and endpoint = ?
        """,
        [context.region, context.endpoint],
    )
    windows = []
    for window, _minutes in WINDOWS:
        (throttled_minutes, throttles) = connection.execute(
            """
            select count(*) filter (where throttles > 0), coalesce(sum(throttles), 0) from endpoint_minute
            where region = ? and endpoint = ? and epoch_ms(ts) >= ? and epoch_ms(ts) < ?
            """,
            [context.region, context.endpoint, context.window_start_ms(window), context.as_of_ms],
        ).fetchone()
        rows = [row for row in found if row["window"] == window and row["series_id"] != AGGREGATE_SERIES]
        whole = float(sum(row["tokens_in_throttled_minutes"] or 0 for row in rows))
        entries = [
            {
                "series_id": row["series_id"],
                "label": context.label(row["series_id"]),
                "throttles": _num(row["throttles"], 0),
                "throttled_minutes": _num(row["throttled_minutes"], 0),
                "tokens_in_throttled_minutes": _num(row["tokens_in_throttled_minutes"], 0),
                "share_pct": _share_pct(row["tokens_in_throttled_minutes"] or 0, whole),
            }
            for row in rows
        ]
        entries.sort(key=lambda entry: (-(entry["tokens_in_throttled_minutes"] or 0), entry["label"]))
        windows.append(
            {
                "window": window,
                "throttled_minutes": int(throttled_minutes),
                "throttles": _num(throttles, 0),
                "rows": entries,
            }
        )
    return {"windows": windows, "worst_minutes": _worst_minutes(connection, context)}


def _worst_minutes(connection: duckdb.DuckDBPyConnection, context: _Context) -> list[dict[str, Any]]:
    found = _rows(
        connection,
        """
        with worst as (
            select ts, throttles, tpm from endpoint_minute
            where region = ? and endpoint = ? and throttles > 0 and epoch_ms(ts) >= ? and epoch_ms(ts) < ?
            order by throttles desc, ts
            limit ?
        )
        select
            epoch_ms(worst.ts) as ts_ms,
            worst.throttles,
            worst.tpm,
            usage.series_id,
            usage.tpm as series_tpm,
        from worst
        left join usage_minute as usage
            on usage.region = ? and usage.endpoint = ? and usage.ts = worst.ts
        """,
        [
            context.region,
            context.endpoint,
            context.window_start_ms(TIMELINE_WINDOW),
            context.as_of_ms,
            WORST_MINUTES,
            context.region,
            context.endpoint,
        ],
    )
    minutes: dict[int, dict[str, Any]] = {}
    for row in found:
        minute = minutes.setdefault(
            row["ts_ms"], {"ts_ms": row["ts_ms"], "throttles": row["throttles"], "tpm": row["tpm"], "users": []}
        )
        if row["series_id"] is not None:
            minute["users"].append((row["series_tpm"] or 0, context.label(row["series_id"]), row["series_id"]))
    result = []
    for minute in sorted(minutes.values(), key=lambda item: (-(item["throttles"] or 0), item["ts_ms"])):
        users = sorted(minute["users"], key=lambda user: (-user[0], user[1]))
        top = users[0] if users else None
        result.append(
            {
                "ts": _iso(minute["ts_ms"]),
                "throttles": _num(minute["throttles"], 0),
                "tpm": _num(minute["tpm"], 0),
                "top_series_id": top[2] if top else None,
                "top_label": top[1] if top else None,
                "top_tpm": _num(top[0], 0) if top else None,
                "top_share_pct": _share_pct(top[0], float(minute["tpm"] or 0)) if top else None,
            }
        )
    return result


def _output_burndown(connection: duckdb.DuckDBPyConnection, context: _Context) -> dict[str, Any]:
    """How much an output token counts against the TPM quota for this endpoint over the timeline window.

    The models' ``output_multiplier`` column when usage_minute has it, else the ratio the data implies:
    quota TPM = input + cache-write + output × burndown.
    """
    columns = _columns(connection, "usage_minute")
    params = [context.region, context.endpoint, context.window_start_ms(TIMELINE_WINDOW), context.as_of_ms]
    where = "where region = ? and endpoint = ? and epoch_ms(ts) >= ? and epoch_ms(ts) < ?"
    if "output_multiplier" in columns:
        (value,) = connection.execute(f"select max(output_multiplier) from usage_minute {where}", params).fetchone()
        return {"value": _num(value, 2), "source": "output_multiplier"}
    # EstimatedTPMQuotaUsage is AWS's own count; the computed column (when present) isolates the burndown rate.
    quota = "quota_tpm_computed" if "quota_tpm_computed" in columns else "quota_tpm"
    totals = connection.execute(
        f"select sum({quota}), sum(input_tokens), sum(cache_write_tokens), sum(output_tokens)"
        f" from usage_minute {where}",
        params,
    ).fetchone()
    quota_total, inputs, cache_write, output = totals
    if quota_total is None or not output:
        return {"value": None, "source": None}
    value = (float(quota_total) - float(inputs or 0) - float(cache_write or 0)) / float(output)
    return {"value": _num(value, 1), "source": "estimated"}


def _summary(report: Mapping[str, Any]) -> dict[str, Any]:
    stats = next(window for window in report["stats"] if window["window"] == SUMMARY_WINDOW)
    by_metric = {row["metric"]: row for row in stats["metrics"]}
    cards = {card["quota_type"]: card for card in report["quotas"]["cards"]}

    def headroom(quota_type: str) -> dict[str, Any]:
        card = cards.get(quota_type)
        row = next((row for row in card["windows"] if row["window"] == SUMMARY_WINDOW), None) if card else None
        return {
            "quota_value": card["quota_value"] if card else None,
            "utilisation_p90_pct": row["utilisation_p90_pct"] if row else None,
            "utilisation_max_pct": row["utilisation_max_pct"] if row else None,
        }

    tpm, rpm, tpd = headroom("tpm"), headroom("rpm"), headroom("tpd")
    throttles = next(window for window in report["throttles"]["windows"] if window["window"] == SUMMARY_WINDOW)
    utilisations = [
        value
        for value in (tpm["utilisation_max_pct"], rpm["utilisation_max_pct"], tpd["utilisation_max_pct"])
        if value is not None
    ]
    return {
        "window": SUMMARY_WINDOW,
        "tpm_p90": by_metric["tpm"]["p90"],
        "tpm_max": by_metric["tpm"]["max"],
        "tpm_quota": tpm["quota_value"],
        "tpm_utilisation_p90_pct": tpm["utilisation_p90_pct"],
        "tpm_utilisation_max_pct": tpm["utilisation_max_pct"],
        "rpm_p90": by_metric["rpm"]["p90"],
        "rpm_max": by_metric["rpm"]["max"],
        "rpm_quota": rpm["quota_value"],
        "rpm_utilisation_max_pct": rpm["utilisation_max_pct"],
        "tpd_max": by_metric["tpd"]["max"],
        "tpd_quota": tpd["quota_value"],
        "tpd_utilisation_max_pct": tpd["utilisation_max_pct"],
        "throttled_minutes": throttles["throttled_minutes"],
        "utilisation_max_pct": max(utilisations) if utilisations else None,
        "alert": bool(report["alerts"]["flagged"]),
        "alerts": report["alerts"]["flagged"],
    }


# ---------------------------------------------------------------------------------------------------- charts


def _chart_lines(connection: duckdb.DuckDBPyConnection, context: _Context) -> list[dict[str, Any]]:
    """The chart lines: the aggregate, then the largest series (30d tokens), then one line for the rest."""
    tokens = dict(
        connection.execute(
            """
            select series_id, sum(input_tokens + output_tokens) from usage_minute
            where region = ? and endpoint = ? and epoch_ms(ts) >= ? and epoch_ms(ts) < ?
            group by series_id
            """,
            [context.region, context.endpoint, context.window_start_ms(TIMELINE_WINDOW), context.as_of_ms],
        ).fetchall()
    )
    ranked = sorted(context.series, key=lambda series: (-(tokens.get(series.series_id) or 0), series.label))
    if len(ranked) > MAX_CHART_SERIES:
        kept, rest = ranked[: MAX_CHART_SERIES - 1], ranked[MAX_CHART_SERIES - 1 :]
    else:
        kept, rest = ranked, []
    # Keep the display order (direct first, then by name) for the lines that stay.
    order = {series.series_id: index for index, series in enumerate(context.series)}
    kept.sort(key=lambda series: order[series.series_id])
    lines = [{"line": AGGREGATE_SERIES, "label": AGGREGATE_LABEL, "series_ids": [AGGREGATE_SERIES]}]
    lines += [{"line": series.series_id, "label": series.label, "series_ids": [series.series_id]} for series in kept]
    if rest:
        lines.append(
            {
                "line": OTHER_LINE,
                "label": f"other ({len(rest)} profiles)",
                "series_ids": sorted(series.series_id for series in rest),
            }
        )
    for index, line in enumerate(lines):
        line["color"] = AGGREGATE_COLOR if index == 0 else SERIES_COLORS[(index - 1) % len(SERIES_COLORS)]
    return lines


def _covered_buckets(context: _Context, window: str, bucket_minutes: int) -> tuple[int, int] | None:
    """The first and past-the-last bucket index of a window that lie inside the covered range."""
    if context.covered_start_ms is None or context.covered_end_ms is None:
        return None
    start_ms = context.window_start_ms(window)
    step = bucket_minutes * 60_000
    count = WINDOW_MINUTES[window] // bucket_minutes
    first = max(0, (context.covered_start_ms - start_ms) // step)
    last = min(count, -(-(context.covered_end_ms - start_ms) // step))
    return (first, last) if last > first else None


def _bucketed(
    connection: duckdb.DuckDBPyConnection,
    context: _Context,
    lines: list[dict[str, Any]],
    window: str,
    bucket_minutes: int,
) -> dict[str, Any]:
    start_ms = context.window_start_ms(window)
    step = bucket_minutes * 60_000
    span = _covered_buckets(context, window, bucket_minutes)
    chart: dict[str, Any] = {
        "window": window,
        "bucket_minutes": bucket_minutes,
        "start": _iso(start_ms),
        "end": _iso(context.as_of_ms),
        "x0": None,
        "points": 0,
        "tpm": [],
        "rpm": [],
        "quota_tpm": [],
    }
    if span is None:
        return chart
    first, last = span
    count = last - first
    chart["x0"] = _iso(start_ms + first * step)
    chart["points"] = count
    params = [start_ms, step, context.region, context.endpoint, start_ms, context.as_of_ms]
    # Where AWS publishes EstimatedTPMQuotaUsage the mart's quota TPM is that metric; the computed value is charted
    # beside it so a difference between the two shows.
    both = {"quota_tpm_computed", "estimated_tpm_quota_usage"} <= _columns(connection, "endpoint_minute")
    extra = ", max(quota_tpm_computed), count(estimated_tpm_quota_usage)" if both else ", null, 0"
    aggregate = connection.execute(
        f"""
        select (epoch_ms(ts) - ?) // ? as bucket, max(tpm), max(rpm), max(quota_tpm){extra}
        from endpoint_minute
        where region = ? and endpoint = ? and epoch_ms(ts) >= ? and epoch_ms(ts) < ?
        group by bucket
        """,
        params,
    ).fetchall()
    kept = [line["line"] for line in lines[1:] if line["line"] != OTHER_LINE]
    # Rates of summed series ("other") are summed per minute first, then the bucket takes the peak minute.
    per_line = connection.execute(
        """
        with minutes as (
            select
                case when list_contains(?, series_id) then series_id else ? end as line,
                ts,
                sum(tpm) as tpm,
                sum(rpm) as rpm,
            from usage_minute
            where region = ? and endpoint = ? and epoch_ms(ts) >= ? and epoch_ms(ts) < ?
            group by all
        )
        select line, (epoch_ms(ts) - ?) // ? as bucket, max(tpm), max(rpm)
        from minutes
        group by all
        """,
        [kept, OTHER_LINE, context.region, context.endpoint, start_ms, context.as_of_ms, start_ms, step],
    ).fetchall()

    def filled(points: Iterable[tuple[int, Any]]) -> list[int]:
        values = np.zeros(count, dtype=np.float64)
        for bucket, value in points:
            if first <= bucket < last and value is not None:
                values[int(bucket) - first] = float(value)
        return [int(value) for value in np.rint(values)]

    for line in lines:
        if line["line"] == AGGREGATE_SERIES:
            tpm = filled((row[0], row[1]) for row in aggregate)
            rpm = filled((row[0], row[2]) for row in aggregate)
        else:
            tpm = filled((row[1], row[2]) for row in per_line if row[0] == line["line"])
            rpm = filled((row[1], row[3]) for row in per_line if row[0] == line["line"])
        chart["tpm"].append({"label": line["label"], "series_ids": line["series_ids"], "values": tpm})
        chart["rpm"].append({"label": line["label"], "series_ids": line["series_ids"], "values": rpm})
    # The quota applies to the endpoint, so quota TPM is charted for the aggregate, with its TPM for contrast.
    quota_tpm = filled((row[0], row[3]) for row in aggregate)
    chart["quota_tpm"] = [
        {"label": f"{AGGREGATE_LABEL} (quota TPM)", "series_ids": [AGGREGATE_SERIES], "values": quota_tpm}
    ]
    if any(row[5] for row in aggregate):
        computed = filled((row[0], row[4]) for row in aggregate)
        if computed != quota_tpm:
            chart["quota_tpm"].append(
                {
                    "label": f"{AGGREGATE_LABEL} (computed quota TPM)",
                    "series_ids": [AGGREGATE_SERIES],
                    "values": computed,
                }
            )
    chart["quota_tpm"].append(
        {"label": f"{AGGREGATE_LABEL} (TPM)", "series_ids": [AGGREGATE_SERIES], "values": chart["tpm"][0]["values"]}
    )
    return chart


def _tpd_chart(
    connection: duckdb.DuckDBPyConnection, context: _Context, lines: list[dict[str, Any]], bucket_minutes: int
) -> dict[str, Any]:
    """Rolling-24 h token totals over the timeline window; rolling days are thinned to one peak per bucket."""
    start_ms = context.window_start_ms(TIMELINE_WINDOW)
    step = bucket_minutes * 60_000
    found = connection.execute(
        """
        select series_id, epoch_ms(day_end) as end_ms, tokens from tpd_daily
        where region = ? and endpoint = ? and epoch_ms(day_end) > ? and epoch_ms(day_end) <= ?
        """,
        [context.region, context.endpoint, start_ms, context.as_of_ms],
    ).fetchall()
    has_aggregate = any(row[0] == AGGREGATE_SERIES for row in found)
    line_of = {sid: line["line"] for line in lines for sid in line["series_ids"]}
    sums: dict[tuple[str, int], float] = {}
    for series_id, end_ms, tokens in found:
        targets = []
        if series_id == AGGREGATE_SERIES:
            targets.append(AGGREGATE_SERIES)
        else:
            targets.append(line_of.get(series_id, OTHER_LINE))
            if not has_aggregate:
                targets.append(AGGREGATE_SERIES)
        for target in targets:
            sums[(target, int(end_ms))] = sums.get((target, int(end_ms)), 0.0) + float(tokens or 0)
    series = []
    for line in lines:
        peaks: dict[int, tuple[float, int]] = {}
        for (target, end_ms), tokens in sums.items():
            if target != line["line"]:
                continue
            bucket = (end_ms - start_ms - 1) // step
            best = peaks.get(bucket)
            if best is None or (tokens, -end_ms) > (best[0], -best[1]):
                peaks[bucket] = (tokens, end_ms)
        points = sorted((end_ms, tokens) for tokens, end_ms in peaks.values())
        series.append(
            {
                "label": line["label"],
                "series_ids": line["series_ids"],
                "x": [_iso(end_ms) for end_ms, _tokens in points],
                "values": [round(tokens) for _end_ms, tokens in points],
            }
        )
    return {
        "window": TIMELINE_WINDOW,
        "bucket_minutes": bucket_minutes,
        "start": _iso(start_ms),
        "end": _iso(context.as_of_ms),
        "lines": series,
    }


def _throttle_timeline(connection: duckdb.DuckDBPyConnection, context: _Context, bucket_minutes: int) -> dict[str, Any]:
    start_ms = context.window_start_ms(TIMELINE_WINDOW)
    step = bucket_minutes * 60_000
    timeline: dict[str, Any] = {
        "window": TIMELINE_WINDOW,
        "bucket_minutes": bucket_minutes,
        "start": _iso(start_ms),
        "end": _iso(context.as_of_ms),
        "x0": None,
        "values": [],
    }
    span = _covered_buckets(context, TIMELINE_WINDOW, bucket_minutes)
    if span is None:
        return timeline
    first, last = span
    sums = dict(
        connection.execute(
            """
            select (epoch_ms(ts) - ?) // ? as bucket, sum(throttles) from endpoint_minute
            where region = ? and endpoint = ? and epoch_ms(ts) >= ? and epoch_ms(ts) < ?
            group by bucket
            """,
            [start_ms, step, context.region, context.endpoint, start_ms, context.as_of_ms],
        ).fetchall()
    )
    timeline["x0"] = _iso(start_ms + first * step)
    timeline["values"] = [round(float(sums.get(bucket) or 0)) for bucket in range(first, last)]
    return timeline


GRANULARITY_MINUTES = {"1min": 1, "5min": 5, "1hour": 60}


def _chart_floor(granularity: Mapping[str, int | str] | None) -> dict[str, int]:
    """The finest chart bucket (minutes) per window a caller asked for: ints or ``1min``/``5min``/``1hour``."""
    floor: dict[str, int] = {}
    for window, value in (granularity or {}).items():
        minutes = GRANULARITY_MINUTES.get(value, value) if isinstance(value, str) else value
        if window not in WINDOW_MINUTES or not isinstance(minutes, int) or minutes < 1:
            raise ReportError(
                f"chart granularity {window}={value!r} is not valid; give a window of "
                f"{', '.join(WINDOW_MINUTES)} and one of {', '.join(GRANULARITY_MINUTES)}."
            )
        if WINDOW_MINUTES[window] % minutes:
            raise ReportError(f"a {minutes}-minute chart bucket does not divide the {window} window; pick another.")
        floor[window] = minutes
    return floor


def _chart_buckets(level: int, floor: Mapping[str, int]) -> dict[str, int]:
    # The coarser of the ladder's step and the requested granularity: either divides its window.
    return {window: max(size, floor.get(window, 1)) for window, size in CHART_BUCKET_LADDER[level].items()}


def _charts(
    connection: duckdb.DuckDBPyConnection, context: _Context, level: int, floor: Mapping[str, int] | None = None
) -> dict[str, Any]:
    buckets = _chart_buckets(level, floor or {})
    lines = _chart_lines(connection, context)
    return {
        "level": level,
        "lines": [{"label": line["label"], "series_ids": line["series_ids"], "color": line["color"]} for line in lines],
        "windows": [_bucketed(connection, context, lines, window, buckets[window]) for window, _ in WINDOWS],
        "tpd": _tpd_chart(connection, context, lines, buckets[TIMELINE_WINDOW]),
        "throttle_timeline": _throttle_timeline(connection, context, buckets[TIMELINE_WINDOW]),
    }


def _report_tables(
    connection: duckdb.DuckDBPyConnection,
    region: str,
    endpoint: str,
    as_of: datetime,
    account_id: str | None,
    alerts: Alerts | None = None,
) -> tuple[_Context, dict[str, Any]]:
    optional = _check_marts(connection)
    if alerts is None:
        alerts = _headroom_alerts(connection, optional)
    context = _context(connection, region, endpoint, as_of)
    if not context.series:
        raise ReportError(
            f"Endpoint {endpoint!r} in region {region!r} is not in the warehouse; list the endpoints with "
            "`select distinct region, endpoint from endpoints` and pick one of them."
        )
    _check_as_of(connection, context.as_of_ms)
    stats = _stats(connection, context)
    quotas = _quotas(connection, context, optional)
    report: dict[str, Any] = {
        "schema": "buw.report/1",
        "header": _header(connection, context, account_id),
        "alerts": _alerts(context, alerts, quotas),
        "series": _series_list(context),
        "quotas": quotas,
        "stats": stats,
        "output_burndown": _output_burndown(connection, context),
        "tags": _tags(connection, context),
        "throttles": _throttles(connection, context),
        "coverage": _coverage(connection, context),
    }
    report["summary"] = _summary(report)
    return context, report


def build_report_data(
    connection: duckdb.DuckDBPyConnection,
    region: str,
    endpoint: str,
    as_of: datetime,
    *,
    account_id: str | None = None,
    chart_level: int = 0,
    chart_granularity: Mapping[str, int | str] | None = None,
) -> dict[str, Any]:
    """The JSON document of one endpoint's report: every number its HTML page shows.

    ``as_of`` is naive UTC (or aware, converted) and is truncated to the minute; windows end there.
    ``chart_level`` indexes :data:`CHART_BUCKET_LADDER` (0 = finest); ``chart_granularity`` (window ->
    minutes or ``1min``/``5min``/``1hour``) makes chart buckets at least that coarse. Raises :class:`ReportError`
    when a required mart is missing, the endpoint is unknown or ``window_stats`` was computed for another
    ``as_of``. ``account_id`` defaults to the marts' own account_id column when they carry one.
    """
    floor = _chart_floor(chart_granularity)
    context, report = _report_tables(connection, region, endpoint, as_of, account_id)
    report["charts"] = _charts(connection, context, chart_level, floor)
    return report


def build_index_data(
    reports: Sequence[Mapping[str, Any]], as_of: datetime, account_id: str | None, links: Sequence[str | None]
) -> dict[str, Any]:
    """The index document: one row per report (its summary and a relative link); endpoints the headroom checks
    flag first, then by highest utilisation. Without ``account_id`` the reports' own account is used when they
    all name the same one."""
    if account_id is None:
        accounts = {report["header"]["account_id"] for report in reports} - {None}
        account_id = accounts.pop() if len(accounts) == 1 else None
    rows = []
    for report, link in zip(reports, links, strict=True):
        rows.append(
            {
                "region": report["header"]["region"],
                "endpoint": report["header"]["endpoint"],
                "endpoint_kind": report["header"]["endpoint_kind"],
                "link": link,
                **report["summary"],
            }
        )
    rows.sort(
        key=lambda row: (
            not row["alert"],
            row["utilisation_max_pct"] is None,
            -(row["utilisation_max_pct"] or 0),
            -(row["tpm_max"] or 0),
            row["region"],
            row["endpoint"],
        )
    )
    return {
        "schema": "buw.index/1",
        "account_id": account_id,
        "as_of": _iso(_ms(_utc(as_of))),
        "window": SUMMARY_WINDOW,
        "alert_window": CHECK_WINDOW,
        "endpoints_flagged": sum(1 for row in rows if row["alert"]),
        "endpoints": rows,
    }


# ---------------------------------------------------------------------------------------------------- rendering


def _label(text: str) -> str:
    # plotly.js renders a few HTML tags (<b>, <br>, <a>) in text and decodes &lt; &gt; &amp; but not &quot;,
    # so escaping exactly those three shows any label literally.
    return html.escape(text, quote=False)


def _layout(
    title: str,
    y_title: str,
    x_range: tuple[str, str] | None = None,
    subtitle: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": _label(title), "font": {"size": 14}},
        "height": 340,
        "margin": {"l": 60, "r": 20, "t": 56 if subtitle else 40, "b": 40},
        "legend": {"orientation": "h", "y": -0.2, "yanchor": "top"},
        "hovermode": "x unified",
        "yaxis": {"title": {"text": y_title}, "rangemode": "tozero"},
        "xaxis": {"type": "date"},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
    }
    if subtitle:
        layout["title"]["subtitle"] = {"text": _label(subtitle), "font": {"size": 11, "color": "#5f6b76"}}
    if x_range:
        layout["xaxis"]["range"] = [_plotly_time(x_range[0]), _plotly_time(x_range[1])]
    layout.update(extra)
    return layout


def _figure(traces: list[Any], layout: dict[str, Any]) -> dict[str, Any]:
    import plotly.graph_objects as go

    figure = go.Figure(data=traces, layout=layout).to_plotly_json()
    # The default template is ~10 KB per figure; plotly.js defaults look the same for these charts.
    figure["layout"].pop("template", None)
    return {"data": figure["data"], "layout": figure["layout"]}


def _quota_trace(label: str, value: float, start: str, end: str) -> Any:
    import plotly.graph_objects as go

    return go.Scatter(
        x=[_plotly_time(start), _plotly_time(end)],
        y=[value, value],
        mode="lines",
        name=_label(f"{label} ({value:,})"),
        line={"color": QUOTA_COLOR, "dash": "dash", "width": 2},
    )


def _bucket_text(minutes: int, kind: str) -> str:
    if minutes == 1:
        return "1-min points"
    size = f"{minutes // 60}-hour" if minutes % 60 == 0 else f"{minutes}-min"
    return f"{kind} of each {size} bucket"


def _figures(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    import plotly.graph_objects as go

    charts = report["charts"]
    colors = [line["color"] for line in charts["lines"]]
    quotas = {card["quota_type"]: card["quota_value"] for card in report["quotas"]["cards"]}
    figures: list[dict[str, Any]] = []
    burndown = report["output_burndown"]["value"]
    quota_note = ""
    if burndown is not None and burndown > 1:
        quota_note = f"; output tokens count ×{burndown:,}"
    metric_titles = {
        "tpm": ("TPM", "tokens/min", "tpm"),
        "quota_tpm": ("Quota TPM vs TPM quota", "quota tokens/min", "tpm"),
        "rpm": ("RPM", "requests/min", "rpm"),
    }
    for chart in charts["windows"]:
        if chart["x0"] is None:
            continue
        x_range = (chart["start"], chart["end"])
        for metric, (title, unit, quota_type) in metric_titles.items():
            traces = []
            palette = colors
            if metric == "quota_tpm":
                palette = [AGGREGATE_COLOR, *(["#ff7f0e"] if len(chart[metric]) == 3 else []), "#9e9e9e"]
            for index, line in enumerate(chart[metric]):
                traces.append(
                    go.Scatter(
                        x0=_plotly_time(chart["x0"]),
                        dx=chart["bucket_minutes"] * 60_000,
                        # uint64 lets plotly.py narrow to the smallest unsigned typed array that fits.
                        y=np.asarray(line["values"], dtype=np.uint64),
                        mode="lines",
                        name=_label(line["label"]),
                        line={"color": palette[index], "width": 2.5 if index == 0 else 1.5},
                    )
                )
            if quotas.get(quota_type) is not None:
                traces.append(
                    _quota_trace(f"{quota_type.upper()} quota", quotas[quota_type], chart["start"], chart["end"])
                )
            rate = _bucket_text(chart["bucket_minutes"], "peak minute")
            figures.append(
                {
                    "id": f"chart-{metric.replace('_', '-')}-{chart['window']}",
                    "window": chart["window"],
                    "metric": metric,
                    **_figure(
                        traces,
                        _layout(
                            f"{title}, {chart['window']}",
                            unit,
                            x_range,
                            subtitle=rate + (quota_note if metric == "quota_tpm" else ""),
                        ),
                    ),
                }
            )
    tpd = charts["tpd"]
    if any(line["values"] for line in tpd["lines"]):
        traces = [
            go.Scatter(
                x=[_plotly_time(x) for x in line["x"]],
                y=np.asarray(line["values"], dtype=np.uint64),
                mode="lines+markers",
                name=_label(line["label"]),
                line={"color": colors[index], "width": 2.5 if index == 0 else 1.5},
                marker={"size": 4},
            )
            for index, line in enumerate(tpd["lines"])
            if line["values"]
        ]
        if quotas.get("tpd") is not None:
            traces.append(_quota_trace("TPD quota", quotas["tpd"], tpd["start"], tpd["end"]))
        figures.append(
            {
                "id": "chart-tpd",
                "window": tpd["window"],
                "metric": "tpd",
                **_figure(
                    traces,
                    _layout(
                        f"Tokens per rolling 24 h, {tpd['window']}",
                        "tokens/24 h",
                        (tpd["start"], tpd["end"]),
                        subtitle="each point: input + output tokens of the 24 h ending there",
                    ),
                ),
            }
        )
    timeline = charts["throttle_timeline"]
    if timeline["x0"] is not None:
        figures.append(
            {
                "id": "chart-throttles",
                "window": timeline["window"],
                "metric": "throttles",
                **_figure(
                    [
                        go.Bar(
                            x0=_plotly_time(timeline["x0"]),
                            dx=timeline["bucket_minutes"] * 60_000,
                            y=np.asarray(timeline["values"], dtype=np.uint64),
                            name="throttles",
                            marker={"color": QUOTA_COLOR},
                        )
                    ],
                    _layout(
                        f"Throttles, {timeline['window']}",
                        "throttles",
                        (timeline["start"], timeline["end"]),
                        subtitle=_bucket_text(timeline["bucket_minutes"], "sum"),
                        showlegend=False,
                    ),
                ),
            }
        )
    for index, tag in enumerate(report["tags"]):
        values: list[Any] = []
        for window in reversed(tag["windows"]):
            for row in window["rows"]:
                if row["tag_value"] not in values:
                    values.append(row["tag_value"])
        if not values:
            continue
        traces = []
        for window in tag["windows"]:
            shares = {row["tag_value"]: row["share_pct"] for row in window["rows"]}
            if not shares:
                continue
            traces.append(
                go.Bar(
                    x=[_label(_tag_text(value)) for value in values],
                    y=[shares.get(value) for value in values],
                    name=window["window"],
                )
            )
        figures.append(
            {
                "id": f"chart-tag-{index}",
                "window": None,
                "metric": "tag_share",
                **_figure(
                    traces,
                    _layout(
                        f"Share of tokens by {_tag_text(tag['tag_key'], key=True)}",
                        "% of tokens",
                        subtitle="share of the tokens of each window",
                        barmode="group",
                        xaxis={"type": "category"},
                        hovermode="closest",
                    ),
                ),
            }
        )
    return figures


def _tag_text(value: str | None, key: bool = False) -> str:
    if value is None:
        return "(no tag key)" if key else "(untagged)"
    return value


def _format_number(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:,}"


def _format_pct(value: Any) -> str:
    return "—" if value is None else f"{value:,} %"


def _format_time(iso: str | None) -> str:
    return "—" if iso is None else _plotly_time(iso)[:16] + " UTC"


@functools.lru_cache(maxsize=1)
def _plotly_js() -> str:
    import plotly.offline

    script = plotly.offline.get_plotlyjs()
    # Inlined verbatim inside <script>; this would end the element early.
    if "</script" in script.lower():
        raise RuntimeError("plotly.js contains '</script' and cannot be inlined")
    return script


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2
    import markupsafe

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["num"] = _format_number
    environment.filters["pct"] = _format_pct
    environment.filters["when"] = _format_time
    environment.filters["tag"] = _tag_text
    environment.filters["script_json"] = lambda value: markupsafe.Markup(script_json(value))
    return environment


def render_report_html(report: Mapping[str, Any]) -> str:
    """The HTML page of one report document (from :func:`build_report_data`), plotly.js inlined."""
    figures = _figures(report)
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            report=report,
            windows=[window for window, _ in WINDOWS],
            figures=figures,
            figure_ids={figure["id"] for figure in figures},
            plotly_js=_plotly_js_markup(),
        )
    )


def _plotly_js_markup() -> Any:
    import markupsafe

    return markupsafe.Markup(_plotly_js())


def render_index_html(index: Mapping[str, Any]) -> str:
    """The HTML index page of an index document (from :func:`build_index_data`)."""
    return _environment().get_template("index.html.j2").render(index=index)


def _write_atomic(path: Path, text: str) -> int:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``.

    The file is created with mode 0o666 less the process umask (0644 under the usual 022), like any file a shell
    writes, so a web server or a colleague can read the reports; ``tempfile.mkstemp`` would make it 0600.
    Creating it with that mode lets the kernel apply the umask, which cannot be read without changing it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _attempt in range(100):
        temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            handle = os.open(temporary, flags, 0o666)
        except FileExistsError:
            continue
        break
    else:
        raise FileExistsError(f"no free temporary name beside {path}")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return len(data)


def _document_json(document: Mapping[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, sort_keys=True, indent=1, default=_json_default) + "\n"


def render_reports(
    connection: duckdb.DuckDBPyConnection,
    out_dir: Path,
    as_of: datetime,
    account_id: str | None = None,
    select: Iterable[tuple[str, str]] | None = None,
    *,
    chart_granularity: Mapping[str, int | str] | None = None,
) -> list[ReportFile]:
    """Write every endpoint's report and the index page; return the files written (the index last).

    Reports go to ``<out_dir>/<region>/<endpoint-safe-name>-<as_of YYYYmmddTHHMMZ>.html`` and ``.json``;
    the index to ``<out_dir>/index.html`` and ``index.json`` and lists every endpoint of the warehouse.
    ``select`` limits the run to (region, endpoint) pairs. ``chart_granularity`` (window -> minutes or
    ``1min``/``5min``/``1hour``, e.g. from ``--granularity``) sets the finest chart bucket per window. A page that
    would exceed :data:`MAX_HTML_BYTES` gets coarser chart buckets until it fits (the JSON then holds the same
    coarser series). ``account_id`` defaults to the marts' own account_id column when they carry one.
    """
    floor = _chart_floor(chart_granularity)
    alerts = _headroom_alerts(connection, _check_marts(connection))
    out_dir = Path(out_dir)
    as_of = _utc(as_of)
    # Endpoints with usage: a region lists about a hundred system profiles, most never called, and a page for
    # each would be noise (and 5 MB apiece).
    known = connection.execute(
        "select distinct region, endpoint from endpoint_minute order by region, endpoint"
    ).fetchall()
    if select is None:
        pairs = [(str(region), str(endpoint)) for region, endpoint in known]
    else:
        wanted = sorted({(str(region), str(endpoint)) for region, endpoint in select})
        unknown = [pair for pair in wanted if pair not in set(known)]
        if unknown:
            region, endpoint = unknown[0]
            raise ReportError(
                f"Endpoint {endpoint!r} in region {region!r} has no usage in the warehouse; list those that do with "
                "`select distinct region, endpoint from endpoint_minute` and pick one of them."
            )
        pairs = wanted
    stems = _unique_stems(pairs, as_of)
    stems_for_all = _unique_stems([(str(region), str(endpoint)) for region, endpoint in known], as_of)
    files: list[ReportFile] = []
    reports: list[dict[str, Any]] = []
    links: list[str] = []
    for region, endpoint in pairs:
        context, tables = _report_tables(connection, region, endpoint, as_of, account_id, alerts)
        tried: list[dict[str, int]] = []
        for level in range(len(CHART_BUCKET_LADDER)):
            if _chart_buckets(level, floor) in tried:
                continue
            tried.append(_chart_buckets(level, floor))
            report = {**tables, "charts": _charts(connection, context, level, floor)}
            page = render_report_html(report)
            size = len(page.encode("utf-8"))
            if size <= MAX_HTML_BYTES:
                break
            log.info("report %s/%s is %d bytes at chart level %d; coarsening", region, endpoint, size, level)
        else:
            log.warning(
                "report %s/%s is %d bytes, above %d even at the coarsest charts", region, endpoint, size, MAX_HTML_BYTES
            )
        folder = out_dir / safe_filename(region)
        stem = stems[(region, endpoint)]
        html_path, json_path = folder / f"{stem}.html", folder / f"{stem}.json"
        written = _write_atomic(html_path, page)
        _write_atomic(json_path, _document_json(report))
        _prune_older_pages(folder, stem)
        files.append(ReportFile("endpoint", region, endpoint, html_path, json_path, written))
        reports.append(report)
        links.append(f"{safe_filename(region)}/{stem}.html")
    # The index covers every endpoint of the warehouse, not only those rendered now, so rendering one endpoint
    # (`buw analyze -m ...`) does not shrink it. Endpoints not rendered in this call link to their newest page
    # for this as_of if one exists; their numbers are computed from the marts like the others'.
    rendered = dict(zip(pairs, zip(reports, links, strict=True), strict=True))
    index_reports, index_links = [], []
    for region, endpoint in ((str(region), str(endpoint)) for region, endpoint in known):
        if (region, endpoint) in rendered:
            report, link = rendered[(region, endpoint)]
        else:
            _, report = _report_tables(connection, region, endpoint, as_of, account_id, alerts)
            existing = out_dir / safe_filename(region) / f"{stems_for_all[(region, endpoint)]}.html"
            link = f"{safe_filename(region)}/{existing.name}" if existing.exists() else None
        index_reports.append(report)
        index_links.append(link)
    index = build_index_data(index_reports, as_of, account_id, index_links)
    index_html, index_json = out_dir / "index.html", out_dir / "index.json"
    written = _write_atomic(index_html, render_index_html(index))
    _write_atomic(index_json, _document_json(index))
    files.append(ReportFile("index", None, None, index_html, index_json, written))
    return files


def _unique_stems(pairs: Sequence[tuple[str, str]], as_of: datetime) -> dict[tuple[str, str], str]:
    """File stems per endpoint; two ids that clean to the same name in one region get a short hash each."""
    import hashlib

    stems = {pair: report_stem(pair[1], as_of) for pair in pairs}
    seen: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for pair, stem in stems.items():
        seen.setdefault((safe_filename(pair[0]), stem), []).append(pair)
    for clashing in seen.values():
        if len(clashing) > 1:
            for pair in clashing:
                digest = hashlib.sha1(pair[1].encode("utf-8")).hexdigest()[:8]
                stems[pair] = f"{safe_filename(pair[1])}-{digest}-{_utc(as_of).strftime('%Y%m%dT%H%MZ')}"
    return stems

"""The numbers of a report, read from the marts of ``warehouse/usage.duckdb`` and nothing else.

Everything but the chart series lives here: the header, quota cards (from ``quota_headroom``, else the quota
value from ``quota_map``, else "no quota found"), the headroom checks' alerts, per-window statistics, tag,
caller and throttle attribution, coverage, and the index rows. ``quota_map``, ``quota_headroom`` and the caller
marts (built from the opt-in invocation logs) are optional; columns
beyond the documented ones (account_id, output_multiplier, quota_tpm_computed, estimated_tpm_quota_usage) are used
when present. Everything is a pure function of the database and ``as_of``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

from pipelines.quotas.checks import CHECK_WINDOW, P90_THRESHOLD, EndpointHeadroom, flagged_endpoints

# (window, minutes): the windows of the marts (seed time_windows), in display order.
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

WORST_MINUTES = 10
# Callers per table of the Callers section; the rest are summed into one "other" row.
CALLER_ROWS = 8
# The caller_attribution dimension the Callers section shows: sessions are listed under their principal.
CALLER_DIMENSION = "principal"
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
    "window_coverage",
    "throttle_minutes",
)
# caller_minute and caller_attribution are built from the opt-in invocation logs; a warehouse from before they
# existed lacks them, and the Callers section then says how to get them.
OPTIONAL_MARTS = ("quota_map", "quota_headroom", "caller_minute", "caller_attribution")
# quota_headroom columns the quota cards and the alerts read; a mart built before they existed is refused.
HEADROOM_COLUMNS = frozenset({"minutes_at_quota", "throttled_minutes", "active_points", "utilisation_p90"})

LIMITATIONS = (
    "CloudWatch counts tokens after a request finishes. Bedrock reserves the input tokens plus max_tokens against "
    "the TPM quota when a request starts and settles to the real count at the end; CloudWatch never sees that "
    "reservation, so requests with a large max_tokens can be throttled while the TPM shown here is below the quota.",
    "Quota TPM is input + cache-write + output tokens × the model's output burndown rate, or AWS's "
    "EstimatedTPMQuotaUsage where that metric exists; both estimate what Bedrock counts against the quota.",
    "CloudWatch keeps 1-minute data for 15 days and 5-minute data for 63 days. A 5-minute bucket says how much "
    "happened in its five minutes, not in which: percentiles, maxima, active minutes and throttled minutes are "
    "over 1-minute data only; where a window holds 5-minute data its figures over buckets are shown beside them, "
    "labelled as such, and its busiest minute there is only bracketed (bucket sum / 5 ≤ busiest minute ≤ bucket "
    "sum). Totals count every resolution.",
    "Idle minutes publish no datapoint. Statistics are over active minutes (minutes with a 1-minute datapoint); "
    "the window minutes are the minutes read at 1-minute resolution, the denominator for a zero-filled view.",
    "Charts show a point per minute where the warehouse holds 1-minute data and a point per 5 minutes where only "
    "5-minute data remain. Where a chart is bucketed (a requested granularity, or profile lines that would not "
    "fit the page), a point is the peak minute of its bucket for rates and the sum for counts, and the chart says "
    "so; the tables use every minute.",
)


class ReportError(ValueError):
    """The warehouse cannot produce the requested report; the message says what to do."""


# ---------------------------------------------------------------------------------------------------- helpers


def utc_minute(moment: datetime) -> datetime:
    """A naive UTC datetime truncated to the minute (naive input is taken as UTC, the warehouse convention)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.replace(second=0, microsecond=0)


def epoch_ms(moment: datetime) -> int:
    return int(moment.replace(tzinfo=UTC).timestamp() * 1000)


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def plotly_time(text: str) -> str:
    # plotly.js date axes are zone-less; every time here is UTC.
    return text.replace("T", " ").removesuffix("Z")


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


def columns_of(connection: duckdb.DuckDBPyConnection, name: str) -> frozenset[str]:
    # Marts may carry columns beyond the documented minimum (account_id, estimated_tpm_quota_usage, ...): use them
    # when present.
    cursor = connection.execute(f'select * from "{name}" limit 0')
    return frozenset(column[0] for column in cursor.description)


def check_marts(connection: duckdb.DuckDBPyConnection) -> dict[str, bool]:
    missing = [name for name in REQUIRED_MARTS if not _has_relation(connection, name)]
    if missing:
        raise ReportError(
            f"The warehouse has no {', '.join(missing)} mart{'s' if len(missing) > 1 else ''}; "
            "build them first with buw analyze, buw demo or buw report --as-of (or materialise the models group in "
            "Dagster)."
        )
    optional = {name: _has_relation(connection, name) for name in OPTIONAL_MARTS}
    if optional["quota_headroom"]:
        lacking = sorted(HEADROOM_COLUMNS - columns_of(connection, "quota_headroom"))
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
        held = ", ".join(iso(ms) or "" for ms in built[-3:])
        raise ReportError(
            f"window_stats was computed for as_of {held}, not {iso(as_of_ms)}; rebuild the models with this "
            "as_of or render the report with the as_of the models used."
        )


# ---------------------------------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class ReportSeries:
    series_id: str
    label: str
    is_application_profile: bool
    profile_name: str | None
    profile_arn: str | None


@dataclass(frozen=True)
class ReportContext:
    region: str
    endpoint: str
    as_of_ms: int
    series: tuple[ReportSeries, ...]
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


def _endpoint_series(connection: duckdb.DuckDBPyConnection, region: str, endpoint: str) -> tuple[ReportSeries, ...]:
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
        ReportSeries(
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


def _context(connection: duckdb.DuckDBPyConnection, region: str, endpoint: str, as_of: datetime) -> ReportContext:
    as_of_ms = epoch_ms(utc_minute(as_of))
    start, end = connection.execute(
        """
        select min(epoch_ms(ts)), max(epoch_ms(ts) + coalesce(resolution_s, 60) * 1000)
        from usage_minute where region = ? and epoch_ms(ts) < ?
        """,
        [region, as_of_ms],
    ).fetchone()
    return ReportContext(
        region=region,
        endpoint=endpoint,
        as_of_ms=as_of_ms,
        series=_endpoint_series(connection, region, endpoint),
        covered_start_ms=None if start is None else int(start),
        covered_end_ms=None if end is None else min(int(end), as_of_ms),
    )


def _header(connection: duckdb.DuckDBPyConnection, context: ReportContext, account_id: str | None) -> dict[str, Any]:
    if account_id is None and "account_id" in columns_of(connection, "usage_minute"):
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
        "as_of": iso(context.as_of_ms),
        "first_datapoint": iso(first),
        "last_datapoint": iso(last),
        "first_1min_datapoint": iso(first_1min),
    }


def _series_list(context: ReportContext) -> list[dict[str, Any]]:
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


# Figures over 5-minute buckets, shown beside the 1-minute ones where a window holds coarse data.
COARSE_STAT_COLUMNS = ("buckets_5min", "p90_5min", "max_5min", "max_bound_5min")
# What the 1-minute figures of window_stats are over, when the mart says so.
RESOLUTION_STAT_COLUMNS = ("resolution_s", "percentile_basis", "coarsest_resolution_s")


def _optional_columns(connection: duckdb.DuckDBPyConnection, mart: str, names: Sequence[str], prefix: str = "") -> str:
    """A select list of ``names``: the column where ``mart`` has it, else null (a mart built by an older version)."""
    present = columns_of(connection, mart)
    return ", ".join(f'{prefix}"{name}"' if name in present else f'null as "{name}"' for name in names)


def _window_coverage(connection: duckdb.DuckDBPyConnection, context: ReportContext) -> dict[str, dict[str, Any]]:
    """window_coverage of the endpoint's region, per window: minutes read at 1 minute, only coarser, never."""
    found = _rows(
        connection,
        """
        select
            "window", window_minutes, covered_minutes_1min, covered_minutes_5min, covered_minutes_1h,
            uncovered_minutes, epoch_ms(coverage_start) as coverage_start_ms
        from window_coverage where region = ? and epoch_ms(as_of) = ?
        """,
        [context.region, context.as_of_ms],
    )
    by_window = {row["window"]: row for row in found}
    result = {}
    for window, minutes in WINDOWS:
        row = by_window.get(window)
        # A region without a row read nothing of the window.
        covered_1min = int(row["covered_minutes_1min"]) if row else 0
        covered_5min = int(row["covered_minutes_5min"]) if row else 0
        covered_1h = int(row["covered_minutes_1h"]) if row else 0
        uncovered = int(row["uncovered_minutes"]) if row else minutes
        result[window] = {
            "window_minutes": minutes,
            "covered_minutes_1min": covered_1min,
            "covered_minutes_5min": covered_5min,
            "covered_minutes_1h": covered_1h,
            "uncovered_minutes": uncovered,
            "coverage_start": iso(row["coverage_start_ms"]) if row else None,
            "fully_covered_1min": covered_1min == minutes,
            "resolution": _resolution_label(covered_1min, covered_5min, covered_1h, uncovered),
        }
    return result


def _resolution_label(covered_1min: int, covered_5min: int, covered_1h: int, uncovered: int) -> str:
    parts = [
        name for name, minutes in (("1-min", covered_1min), ("5-min", covered_5min), ("1-hour", covered_1h)) if minutes
    ]
    if not parts:
        return "not read"
    label = " and ".join(parts) if len(parts) < 3 else "1-min, 5-min and 1-hour"
    return f"{label}, partly not read" if uncovered else label


def _stats(
    connection: duckdb.DuckDBPyConnection, context: ReportContext, coverage: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    extra = _optional_columns(connection, "window_stats", (*COARSE_STAT_COLUMNS, *RESOLUTION_STAT_COLUMNS))
    found = _rows(
        connection,
        f"""
        select "window", metric, p50, p90, p99, "avg", "max", total, active_points, window_points, {extra}
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
                    "resolution_s": _num(row.get("resolution_s"), 0),
                    "percentile_basis": row.get("percentile_basis"),
                    "coarsest_resolution_s": _num(row.get("coarsest_resolution_s"), 0),
                    # Over 5-minute buckets (rate = bucket sum / 5): never minutes, so kept apart from the above.
                    "buckets_5min": _num(row.get("buckets_5min"), 0),
                    "p90_5min": _num(row.get("p90_5min")),
                    "max_5min": _num(row.get("max_5min")),
                    "max_bound_5min": _num(row.get("max_bound_5min")),
                }
            )
        stats.append({"window": window, "coverage": dict(coverage[window]), "metrics": rows})
    return stats


def _quotas(
    connection: duckdb.DuckDBPyConnection, context: ReportContext, optional: Mapping[str, bool]
) -> dict[str, Any]:
    headroom = []
    if optional["quota_headroom"]:
        coarse = _optional_columns(connection, "quota_headroom", COARSE_STAT_COLUMNS)
        headroom = _rows(
            connection,
            f"""
            select
                quota_type, quota_code, quota_value, "window", p90, "max", minutes_over_80, minutes_over_100,
                minutes_at_quota, throttled_minutes, {coarse}
            from quota_headroom where region = ? and endpoint = ?
            order by quota_type, quota_code, "window"
            """,
            [context.region, context.endpoint],
        )
    mapped: dict[str, dict[str, Any]] = {}
    if optional["quota_map"]:
        columns = columns_of(connection, "quota_map")
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
                    # Over 5-minute buckets: the p90 of bucket rates and the bracket of the busiest minute there.
                    "buckets_5min": _num(row["buckets_5min"], 0),
                    "p90_5min": _num(row["p90_5min"]),
                    "max_5min": _num(row["max_5min"]),
                    "max_bound_5min": _num(row["max_bound_5min"]),
                    "utilisation_p90_5min_pct": _pct(row["p90_5min"], value),
                    "utilisation_max_5min_pct": _pct(row["max_5min"], value),
                    "utilisation_max_bound_5min_pct": _pct(row["max_bound_5min"], value),
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


def headroom_alerts(connection: duckdb.DuckDBPyConnection, optional: Mapping[str, bool]) -> Alerts | None:
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


def _alerts(context: ReportContext, alerts: Alerts | None, quotas: Mapping[str, Any]) -> dict[str, Any]:
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


def _coverage(context: ReportContext, coverage: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    windows = [
        {
            "window": window,
            "start": iso(context.window_start_ms(window)),
            "end": iso(context.as_of_ms),
            **coverage[window],
        }
        for window, _minutes in WINDOWS
    ]
    return {
        "region_covered_from": iso(context.covered_start_ms),
        "region_covered_to": iso(context.covered_end_ms),
        "windows": windows,
        "limitations": list(LIMITATIONS),
    }


def _tags(connection: duckdb.DuckDBPyConnection, context: ReportContext) -> list[dict[str, Any]]:
    coarse = _optional_columns(connection, "tag_attribution", ("peak_tpm_5min", "peak_tpm_bound_5min"))
    found = _rows(
        connection,
        f"""
        select "window", tag_key, tag_value, tokens, invocations, peak_tpm, {coarse}
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
                    # The group's busiest minute inside the 5-minute data, bracketed: bucket sum / 5 to sum.
                    "peak_tpm_5min": _num(row["peak_tpm_5min"]),
                    "peak_tpm_bound_5min": _num(row["peak_tpm_bound_5min"], 0),
                }
                for row in in_window
            ]
            entries.sort(
                key=lambda entry: (-(entry["tokens"] or 0), entry["tag_value"] is None, entry["tag_value"] or "")
            )
            windows.append({"window": window, "rows": entries})
        result.append({"tag_key": key, "windows": windows})
    return result


def _throttles(connection: duckdb.DuckDBPyConnection, context: ReportContext) -> dict[str, Any]:
    found = _rows(
        connection,
        f"""
        select
            "window", series_id, throttles, throttled_minutes, tokens_in_throttled_minutes,
            {_optional_columns(connection, "throttle_attribution", ("throttled_buckets_5min",))}
        from throttle_attribution where region = ? and endpoint = ?
        """,
        [context.region, context.endpoint],
    )
    # Throttled minutes are the endpoint's throttled 1-minute rows (throttle_minutes): a throttled 5-minute bucket
    # does not say which of its minutes were throttled, so it counts in throttles and buckets, never as minutes.
    minutes = {
        window: (int(count), limits)
        for window, count, limits in connection.execute(
            """
            select
                w."window",
                count(m.ts),
                list(m.limiting_quota order by m.ts) filter (where m.ts is not null)
            from (select unnest(?::varchar[]) as "window", unnest(?::bigint[]) as start_ms) as w
            left join throttle_minutes as m
                on m.region = ? and m.endpoint = ? and epoch_ms(m.ts) >= w.start_ms and epoch_ms(m.ts) < ?
            group by w."window"
            """,
            [
                [window for window, _ in WINDOWS],
                [context.window_start_ms(window) for window, _ in WINDOWS],
                context.region,
                context.endpoint,
                context.as_of_ms,
            ],
        ).fetchall()
    }
    # Throttled requests at every resolution: the window's total of the throttles metric.
    throttle_totals = dict(
        connection.execute(
            """
            select "window", total from window_stats
            where region = ? and endpoint = ? and series_id = ? and metric = 'throttles' and epoch_ms(as_of) = ?
            """,
            [context.region, context.endpoint, AGGREGATE_SERIES, context.as_of_ms],
        ).fetchall()
    )
    windows = []
    for window, _minutes in WINDOWS:
        throttled_minutes, limits = minutes.get(window, (0, []))
        by_limit: dict[str, int] = {}
        for limit in limits or []:
            by_limit[limit] = by_limit.get(limit, 0) + 1
        whole_row = next(
            (row for row in found if row["window"] == window and row["series_id"] == AGGREGATE_SERIES), None
        )
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
                "throttled_buckets_5min": _num(row["throttled_buckets_5min"], 0),
            }
            for row in rows
        ]
        entries.sort(key=lambda entry: (-(entry["tokens_in_throttled_minutes"] or 0), entry["label"]))
        windows.append(
            {
                "window": window,
                "throttled_minutes": throttled_minutes,
                "throttled_minutes_by_limiting_quota": dict(sorted(by_limit.items())),
                "throttled_buckets_5min": _num(whole_row["throttled_buckets_5min"], 0) if whole_row else 0,
                "throttles": _num(throttle_totals.get(window) or 0, 0),
                "rows": entries,
            }
        )
    return {"windows": windows, "worst_minutes": _worst_minutes(connection, context)}


def _worst_minutes(connection: duckdb.DuckDBPyConnection, context: ReportContext) -> list[dict[str, Any]]:
    found = _rows(
        connection,
        """
        with worst as (
            select ts, throttles, tpm, limiting_quota from throttle_minutes
            where region = ? and endpoint = ? and epoch_ms(ts) >= ? and epoch_ms(ts) < ?
            order by throttles desc, ts
            limit ?
        )
        select
            epoch_ms(worst.ts) as ts_ms,
            worst.throttles,
            worst.tpm,
            worst.limiting_quota,
            usage.series_id,
            usage.tpm as series_tpm,
        from worst
        left join usage_minute as usage
            on usage.region = ? and usage.endpoint = ? and usage.ts = worst.ts and usage.resolution_s = 60
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
            row["ts_ms"],
            {
                "ts_ms": row["ts_ms"],
                "throttles": row["throttles"],
                "tpm": row["tpm"],
                "limiting_quota": row["limiting_quota"],
                "users": [],
            },
        )
        if row["series_id"] is not None:
            minute["users"].append((row["series_tpm"] or 0, context.label(row["series_id"]), row["series_id"]))
    result = []
    for minute in sorted(minutes.values(), key=lambda item: (-(item["throttles"] or 0), item["ts_ms"])):
        users = sorted(minute["users"], key=lambda user: (-user[0], user[1]))
        top = users[0] if users else None
        result.append(
            {
                "ts": iso(minute["ts_ms"]),
                "throttles": _num(minute["throttles"], 0),
                "tpm": _num(minute["tpm"], 0),
                "limiting_quota": minute["limiting_quota"],
                "top_series_id": top[2] if top else None,
                "top_label": top[1] if top else None,
                "top_tpm": _num(top[0], 0) if top else None,
                "top_share_pct": _share_pct(top[0], float(minute["tpm"] or 0)) if top else None,
            }
        )
    return result


def _caller_status(
    connection: duckdb.DuckDBPyConnection, context: ReportContext, optional: Mapping[str, bool]
) -> tuple[str, int | None, int | None]:
    """(status, the region's first logged minute, the end of its last one): ``no_logs`` when the warehouse holds
    no invocation log of the region, ``no_calls`` when the logs hold no call to this endpoint in the timeline
    window, else ``ok``."""
    if not (optional["caller_minute"] and optional["caller_attribution"]):
        return "no_logs", None, None
    first, last = connection.execute(
        "select min(epoch_ms(ts)), max(epoch_ms(ts)) from caller_minute where region = ?", [context.region]
    ).fetchone()
    if first is None:
        return "no_logs", None, None
    (calls,) = connection.execute(
        """
        select count(*) from caller_attribution
        where region = ? and endpoint = ? and dimension = ? and not is_remainder and epoch_ms(as_of) = ?
        """,
        [context.region, context.endpoint, CALLER_DIMENSION, context.as_of_ms],
    ).fetchone()
    return ("ok" if calls else "no_calls"), int(first), int(last) + 60_000


def _caller_details(connection: duckdb.DuckDBPyConnection, context: ReportContext) -> dict[tuple[str, str], Any]:
    """Per (window, principal) from caller_minute: its busiest minute and its sessions (count, the largest)."""
    found = _rows(
        connection,
        """
        with windows as (
            select unnest(?::varchar[]) as "window", unnest(?::bigint[]) as start_ms
        ),
        calls as (
            select coalesce(principal, '(unknown)') as principal, session_name, ts, tokens from caller_minute
            where region = ? and endpoint = ? and epoch_ms(ts) >= ? and epoch_ms(ts) < ?
        ),
        per_minute as (
            select principal, ts, sum(tokens) as tokens from calls group by all
        ),
        peaks as (
            select w."window", m.principal, epoch_ms(first(m.ts order by m.tokens desc, m.ts)) as peak_ms
            from per_minute as m inner join windows as w on epoch_ms(m.ts) >= w.start_ms
            group by all
        ),
        per_session as (
            select w."window", c.principal, c.session_name, sum(c.tokens) as tokens
            from calls as c inner join windows as w on epoch_ms(c.ts) >= w.start_ms
            where c.session_name is not null
            group by all
        ),
        sessions as (
            select
                "window", principal, count(*) as sessions,
                first(session_name order by tokens desc, session_name) as top_session,
                max(tokens) as top_session_tokens
            from per_session group by all
        )
        select peaks.*, sessions.sessions, sessions.top_session, sessions.top_session_tokens
        from peaks left join sessions using ("window", principal)
        """,
        [
            [window for window, _ in WINDOWS],
            [context.window_start_ms(window) for window, _ in WINDOWS],
            context.region,
            context.endpoint,
            context.window_start_ms(TIMELINE_WINDOW),
            context.as_of_ms,
        ],
    )
    return {(row["window"], row["principal"]): row for row in found}


def _caller_entry(row: Mapping[str, Any], details: Mapping[str, Any] | None) -> dict[str, Any]:
    remainder = bool(row["is_remainder"])
    tokens = row["tokens"]
    top_tokens = details["top_session_tokens"] if details else None
    return {
        "principal": row["dimension_value"],
        "kind": "remainder" if remainder else "caller",
        "requests": _num(row["requests"], 0),
        "share_requests_pct": _num(_scaled(row["share_requests"]), 2),
        "tokens": _num(tokens, 0),
        "share_pct": _num(_scaled(row["share"]), 2),
        "quota_tokens": _num(row["quota_tokens"], 0),
        "share_quota_tokens_pct": _num(_scaled(row["share_quota_tokens"]), 2),
        "peak_tpm": _num(row["peak_tpm"], 0),
        "peak_minute": iso(details["peak_ms"]) if details else None,
        "active_minutes": _num(row["active_minutes"], 0),
        "sessions": _num(details["sessions"], 0) if details and details["sessions"] is not None else None,
        "top_session": details["top_session"] if details else None,
        "top_session_share_pct": _share_pct(top_tokens, float(tokens)) if top_tokens is not None and tokens else None,
    }


def _scaled(share: Any) -> float | None:
    return None if share is None else 100.0 * float(share)


def _other_entry(rows: Sequence[Mapping[str, Any]], fields: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """One row summing ``rows``: each (entry key, mart column) of ``fields`` summed; what cannot be summed (a peak,
    minutes that overlap) is left out."""
    entry: dict[str, Any] = {"principal": f"other ({len(rows)} callers)", "kind": "other"}
    for key, column in fields:
        values = [row[column] for row in rows if row[column] is not None]
        total = sum(float(value) for value in values) if values else None
        entry[key] = _num(_scaled(total), 2) if key.endswith("_pct") else _num(total, 0)
    return entry


CALLER_SUMS = (
    ("requests", "requests"),
    ("share_requests_pct", "share_requests"),
    ("tokens", "tokens"),
    ("share_pct", "share"),
    ("quota_tokens", "quota_tokens"),
    ("share_quota_tokens_pct", "share_quota_tokens"),
)
THROTTLED_SUMS = (
    ("throttles", "throttles"),
    ("tokens_in_throttled_minutes", "tokens_in_throttled_minutes"),
    ("share_in_throttled_minutes_pct", "share_in_throttled_minutes"),
)


def _callers(
    connection: duckdb.DuckDBPyConnection,
    context: ReportContext,
    optional: Mapping[str, bool],
    throttles: Mapping[str, Any],
) -> dict[str, Any]:
    """Who called the endpoint (caller_attribution by principal, sessions and busiest minutes from caller_minute):
    the top callers per window with the part the invocation logs do not cover as its own row, and who was calling
    in the endpoint's throttled minutes."""
    status, first, last = _caller_status(connection, context, optional)
    result: dict[str, Any] = {
        "status": status,
        "dimension": CALLER_DIMENSION,
        "top": CALLER_ROWS,
        "logged_from": iso(first),
        "logged_to": iso(last),
        "windows": [],
        "throttled": [],
    }
    if status != "ok":
        return result
    found = _rows(
        connection,
        """
        select
            "window", coalesce(dimension_value, '(unknown)') as dimension_value, is_remainder, tokens, share,
            quota_tokens, share_quota_tokens, requests, share_requests, peak_tpm, active_minutes, throttles,
            throttled_minutes, tokens_in_throttled_minutes, share_in_throttled_minutes
        from caller_attribution
        where region = ? and endpoint = ? and dimension = ? and epoch_ms(as_of) = ?
        """,
        [context.region, context.endpoint, CALLER_DIMENSION, context.as_of_ms],
    )
    details = _caller_details(connection, context)
    throttled_minutes = {window["window"]: window for window in throttles["windows"]}
    for window, _minutes in WINDOWS:
        in_window = [row for row in found if row["window"] == window]
        callers = sorted(
            (row for row in in_window if not row["is_remainder"]),
            key=lambda row: (-(row["tokens"] or 0), row["dimension_value"]),
        )
        remainder = [row for row in in_window if row["is_remainder"]]
        rows = [_caller_entry(row, details.get((window, row["dimension_value"]))) for row in callers[:CALLER_ROWS]]
        if callers[CALLER_ROWS:]:
            # Peaks, minutes and sessions of several callers do not add up: the row leaves them empty.
            rows.append({**dict.fromkeys(rows[0]), **_other_entry(callers[CALLER_ROWS:], CALLER_SUMS)})
        rows += [_caller_entry(row, None) for row in remainder]
        result["windows"].append({"window": window, "callers": len(callers), "rows": rows})
        # Who was calling when the endpoint was throttled: callers active in a throttled minute or throttled
        # themselves, by their share of the tokens in those minutes.
        involved = sorted(
            (row for row in callers if row["throttled_minutes"] or row["throttles"]),
            key=lambda row: (
                -(row["share_in_throttled_minutes"] or 0),
                -(row["throttles"] or 0),
                row["dimension_value"],
            ),
        )
        endpoint_minutes = throttled_minutes[window]["throttled_minutes"]
        throttled_rows = []
        for row in involved[:CALLER_ROWS]:
            throttled_rows.append(
                {
                    "principal": row["dimension_value"],
                    "kind": "caller",
                    "throttles": _num(row["throttles"], 0),
                    "throttled_minutes": _num(row["throttled_minutes"], 0),
                    "throttled_minutes_pct": _pct(row["throttled_minutes"], endpoint_minutes),
                    "tokens_in_throttled_minutes": _num(row["tokens_in_throttled_minutes"], 0),
                    "share_in_throttled_minutes_pct": _num(_scaled(row["share_in_throttled_minutes"]), 2),
                }
            )
        if involved[CALLER_ROWS:]:
            throttled_rows.append(
                {**dict.fromkeys(throttled_rows[0]), **_other_entry(involved[CALLER_ROWS:], THROTTLED_SUMS)}
            )
        for row in remainder:
            if not (row["throttles"] or row["tokens_in_throttled_minutes"]):
                continue
            throttled_rows.append(
                {
                    "principal": row["dimension_value"],
                    "kind": "remainder",
                    "throttles": _num(row["throttles"], 0),
                    "throttled_minutes": None,
                    "throttled_minutes_pct": None,
                    "tokens_in_throttled_minutes": _num(row["tokens_in_throttled_minutes"], 0),
                    "share_in_throttled_minutes_pct": _num(_scaled(row["share_in_throttled_minutes"]), 2),
                }
            )
        result["throttled"].append(
            {
                "window": window,
                "throttled_minutes": endpoint_minutes,
                "throttles": throttled_minutes[window]["throttles"],
                "rows": throttled_rows,
            }
        )
    return result


def _worst_minute_callers(
    connection: duckdb.DuckDBPyConnection, context: ReportContext, status: str, worst: list[dict[str, Any]]
) -> None:
    """Give each of the most throttled minutes its heaviest caller (the principal with the most logged tokens in
    that minute, its tokens and share of the minute's TPM); null where the invocation logs hold no call then."""
    found: dict[str, tuple[str, Any]] = {}
    if status == "ok" and worst:
        for minute_ms, principal, tokens in connection.execute(
            """
            select epoch_ms(ts), first(principal order by tokens desc, principal), max(tokens)
            from (
                select ts, coalesce(principal, '(unknown)') as principal, sum(tokens) as tokens from caller_minute
                where region = ? and endpoint = ? and list_contains(?, epoch_ms(ts))
                group by all
            )
            group by ts
            """,
            [context.region, context.endpoint, [_iso_ms(minute["ts"]) for minute in worst]],
        ).fetchall():
            found[iso(int(minute_ms)) or ""] = (principal, tokens)
    for minute in worst:
        principal, tokens = found.get(minute["ts"], (None, None))
        minute["top_caller"] = principal
        minute["top_caller_tokens"] = _num(tokens, 0)
        minute["top_caller_share_pct"] = _share_pct(tokens, float(minute["tpm"] or 0)) if tokens is not None else None


def _iso_ms(text: str) -> int:
    return epoch_ms(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def _output_burndown(connection: duckdb.DuckDBPyConnection, context: ReportContext) -> dict[str, Any]:
    """How much an output token counts against the TPM quota for this endpoint over the timeline window.

    The models' ``output_multiplier`` column when usage_minute has it, else the ratio the data implies:
    quota TPM = input + cache-write + output × burndown.
    """
    columns = columns_of(connection, "usage_minute")
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
        # The summary's statistics are over the minutes read at 1 minute; say when that is not the whole window.
        "coverage": {
            key: stats["coverage"][key]
            for key in (
                "fully_covered_1min",
                "window_minutes",
                "covered_minutes_1min",
                "covered_minutes_5min",
                "covered_minutes_1h",
                "uncovered_minutes",
                "resolution",
            )
        },
        "utilisation_max_pct": max(utilisations) if utilisations else None,
        "alert": bool(report["alerts"]["flagged"]),
        "alerts": report["alerts"]["flagged"],
    }


def report_tables(
    connection: duckdb.DuckDBPyConnection,
    region: str,
    endpoint: str,
    as_of: datetime,
    account_id: str | None,
    alerts: Alerts | None = None,
) -> tuple[ReportContext, dict[str, Any]]:
    optional = check_marts(connection)
    if alerts is None:
        alerts = headroom_alerts(connection, optional)
    context = _context(connection, region, endpoint, as_of)
    if not context.series:
        raise ReportError(
            f"Endpoint {endpoint!r} in region {region!r} is not in the warehouse; list the endpoints with "
            "`select distinct region, endpoint from endpoints` and pick one of them."
        )
    _check_as_of(connection, context.as_of_ms)
    coverage = _window_coverage(connection, context)
    stats = _stats(connection, context, coverage)
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
        "coverage": _coverage(context, coverage),
    }
    report["callers"] = _callers(connection, context, optional, report["throttles"])
    _worst_minute_callers(connection, context, report["callers"]["status"], report["throttles"]["worst_minutes"])
    report["summary"] = _summary(report)
    return context, report


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
        "as_of": iso(epoch_ms(utc_minute(as_of))),
        "window": SUMMARY_WINDOW,
        "alert_window": CHECK_WINDOW,
        "endpoints_flagged": sum(1 for row in rows if row["alert"]),
        "endpoints": rows,
    }

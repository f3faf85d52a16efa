"""CloudWatch GetMetricData, GetMetricStatistics and ListMetrics over the traffic model, with AWS's rules.

The traffic model gives per-minute samples (sum, count, minimum, maximum) for a series; this module rolls them
up into periods and applies what CloudWatch applies:

- retention: 1-minute data for 15 days, 5-minute for 63 days, 1-hour for 455 days. A bucket older than its
  period's tier has no datapoint (no error), so a 60 s query over last month returns only the last 15 days;
- StartTime is rounded down to the minute (to 5 minutes when older than 15 days, to the hour when older
  than 63, as CloudWatch documents for GetMetricStatistics) and buckets run from there in steps of Period; a
  minute belongs to the query when its start is before EndTime; minutes at or after the sandbox clock's
  current minute are not published yet;
- a bucket without any sample (an idle minute) has no datapoint;
- at most 500 queries a call; at most 100,800 datapoints (or MaxDatapoints) per response, the rest through an
  opaque NextToken; ScanBy, LabelOptions.Timezone, Id rules, the five statistics.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np

from pipelines.sandbox.protocols import ApiError
from pipelines.sandbox.services import CallContext, Handler, decode_token, encode_token, fingerprint

NAMESPACE = "AWS/Bedrock"
DIMENSION = "ModelId"
STATISTICS = ("Sum", "Average", "Minimum", "Maximum", "SampleCount")
MAX_QUERIES = 500
MAX_DATAPOINTS = 100_800
LIST_METRICS_PAGE = 500
STATISTICS_MAX_DATAPOINTS = 1440
HIGH_RESOLUTION_PERIODS = (1, 5, 10, 30)
DAY_S = 86_400
LISTED_IDLE_DAYS = 14
RECENTLY_ACTIVE_MINUTES = 180
ID_PATTERN = re.compile(r"^[a-z][a-zA-Z0-9_]*$")
TIMEZONE_PATTERN = re.compile(r"^([+-])(\d{2})(\d{2})$")
DYNAMIC_LABEL = re.compile(r"\$\{([A-Z_]+)\}|\$\{PROP\('([^']+)'\)\}")
UNITS = {"InvocationLatency": "Milliseconds", "TimeToFirstToken": "Milliseconds"}


@dataclass(frozen=True)
class MetricQuery:
    """One MetricStat query of a GetMetricData call."""

    position: int
    query_id: str
    label: str | None
    return_data: bool
    namespace: str
    metric_name: str
    dimensions: tuple[tuple[str, str], ...]
    period: int
    stat: str


@dataclass(frozen=True)
class SeriesResult:
    """A query's whole answer, timestamps (epoch seconds) in ScanBy order."""

    query_id: str
    label: str
    timestamps: np.ndarray
    values: np.ndarray


# ------------------------------------------------------------------------------------------------------------
# Roll-up of minute samples into periods


def retention_seconds(period: int) -> int:
    """How far back CloudWatch keeps data at ``period``: 15 days (1 min), 63 days (5 min), 455 days (1 h)."""
    if period % 3600 == 0:
        return 455 * DAY_S
    if period % 300 == 0:
        return 63 * DAY_S
    return 15 * DAY_S


def rounded_start(start_s: int, now_s: int) -> int:
    """StartTime rounded down as CloudWatch does: minute; 5 minutes past 15 days; hour past 63 days."""
    age = now_s - start_s
    step = 60 if age <= 15 * DAY_S else 300 if age <= 63 * DAY_S else 3600
    return start_s - start_s % step


def statistic_series(
    ctx: CallContext,
    model_id: str,
    metric: str,
    stat: str,
    period: int,
    start_s: int,
    end_s: float,
    now_s: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Ascending bucket starts (int64 epoch seconds) and values of one statistic, buckets with data only."""
    empty = (np.empty(0, np.int64), np.empty(0, np.float64))
    if period < 60 or period % 60 or not ctx.has_region:
        # Bedrock publishes no high-resolution data, so sub-minute periods find nothing.
        return empty
    step = period // 60
    origin = rounded_start(start_s, now_s)
    first_minute = origin // 60
    stop_minute = min(math.ceil(end_s / 60), now_s // 60)
    if stop_minute <= first_minute:
        return empty
    n_buckets = -(-(stop_minute - first_minute) // step)
    # Buckets are skipped (not computed) where retention has dropped this period or the history has not begun.
    oldest_allowed = now_s - retention_seconds(period)
    k0 = max(0, -(-(oldest_allowed - origin) // period))
    history_start = ctx.traffic.history_start_minute
    k0 = max(k0, (history_start - first_minute) // step)
    if k0 >= n_buckets:
        return empty
    lo = first_minute + k0 * step
    samples = ctx.traffic.minutes(ctx.region, model_id, metric, lo, stop_minute)
    n = n_buckets - k0
    starts = origin + (k0 + np.arange(n, dtype=np.int64)) * period
    mask, values = _reduce(samples, stat, step, n, stop_minute - lo)
    return starts[mask], values


def _reduce(samples: Any, stat: str, step: int, n: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    count = np.asarray(samples.count, dtype=np.float64)
    if step == 1:
        mask = count > 0
        if stat == "SampleCount":
            return mask, count[mask]
        if stat == "Sum":
            return mask, np.asarray(samples.sum, dtype=np.float64)[mask]
        if stat == "Average":
            return mask, np.asarray(samples.sum, dtype=np.float64)[mask] / count[mask]
        source = samples.minimum if stat == "Minimum" else samples.maximum
        return mask, np.asarray(source, dtype=np.float64)[mask]

    def padded(array: Any, fill: float) -> np.ndarray:
        out = np.full(n * step, fill, dtype=np.float64)
        out[:length] = array
        return out.reshape(n, step)

    counts = padded(count, 0.0)
    totals = counts.sum(axis=1)
    mask = totals > 0
    active = counts > 0
    if stat == "SampleCount":
        return mask, totals[mask]
    if stat in ("Sum", "Average"):
        sums = np.where(active, padded(samples.sum, 0.0), 0.0).sum(axis=1)[mask]
        return mask, sums if stat == "Sum" else sums / totals[mask]
    if stat == "Minimum":
        return mask, np.where(active, padded(samples.minimum, np.inf), np.inf).min(axis=1)[mask]
    return mask, np.where(active, padded(samples.maximum, -np.inf), -np.inf).max(axis=1)[mask]


def _model_id(namespace: str | None, metric_name: str | None, dimensions: tuple[tuple[str, str], ...]) -> str | None:
    """The ModelId a metric names, or None for any metric Bedrock does not publish."""
    from pipelines.sandbox.traffic import METRICS

    if namespace != NAMESPACE or metric_name not in METRICS:
        return None
    if len(dimensions) != 1 or dimensions[0][0] != DIMENSION:
        return None
    return dimensions[0][1]


def _epoch_seconds(moment: datetime) -> float:
    return moment.timestamp()


# ------------------------------------------------------------------------------------------------------------
# GetMetricData


def _parse_queries(params: dict[str, Any]) -> list[MetricQuery]:
    raw_queries = params.get("MetricDataQueries") or []
    if not raw_queries:
        raise ApiError("ValidationError", "The parameter MetricDataQueries must contain at least one query.")
    if len(raw_queries) > MAX_QUERIES:
        raise ApiError(
            "InvalidParameterValue",
            f"The collection MetricDataQueries must not have a size greater than {MAX_QUERIES}.",
        )
    queries = []
    seen: set[str] = set()
    for position, raw in enumerate(raw_queries, 1):
        where = f"MetricDataQueries.member.{position}"
        query_id = raw.get("Id", "")
        if not ID_PATTERN.match(query_id):
            raise ApiError(
                "ValidationError",
                f"The value {query_id} for parameter {where}.Id is not valid: an Id must start with a "
                "lowercase letter and contain only letters, numbers and underscores.",
            )
        if query_id in seen:
            raise ApiError("ValidationError", f"The Id {query_id} is used by more than one MetricDataQuery.")
        seen.add(query_id)
        stat_block = raw.get("MetricStat")
        if raw.get("Expression") is not None:
            if stat_block is not None:
                raise ApiError(
                    "ValidationError",
                    f"Exactly one element of the MetricStat or the Expression parameter must be set for {where}.",
                )
            raise ApiError(
                "ValidationError",
                f"{where}.Expression: the sandbox does not support metric math or Metrics Insights "
                "expressions; request each metric with MetricStat.",
            )
        if stat_block is None:
            raise ApiError(
                "ValidationError",
                f"Exactly one element of the MetricStat or the Expression parameter must be set for {where}.",
            )
        stat = stat_block.get("Stat", "")
        if stat not in STATISTICS:
            raise ApiError(
                "InvalidParameterValue",
                f"The value {stat} for parameter {where}.MetricStat.Stat is not supported by the sandbox; "
                "use one of Sum, Average, Minimum, Maximum or SampleCount.",
            )
        period = int(stat_block.get("Period", 0))
        if period <= 0 or (period % 60 and period not in HIGH_RESOLUTION_PERIODS):
            raise ApiError(
                "InvalidParameterValue",
                f"The parameter {where}.MetricStat.Period must be 1, 5, 10, 30 or a multiple of 60.",
            )
        metric = stat_block.get("Metric") or {}
        if not metric.get("Namespace") or not metric.get("MetricName"):
            raise ApiError(
                "InvalidParameterValue",
                f"The parameters {where}.MetricStat.Metric.Namespace and MetricName are required.",
            )
        dimensions = tuple((d["Name"], d["Value"]) for d in metric.get("Dimensions") or [])
        queries.append(
            MetricQuery(
                position=position,
                query_id=query_id,
                label=raw.get("Label"),
                return_data=raw.get("ReturnData", True) is not False,
                namespace=metric["Namespace"],
                metric_name=metric["MetricName"],
                dimensions=dimensions,
                period=period,
                stat=stat,
            )
        )
    return queries


def _timezone(params: dict[str, Any]) -> timezone:
    text = (params.get("LabelOptions") or {}).get("Timezone")
    if text is None:
        return UTC
    match = TIMEZONE_PATTERN.match(text)
    if match is None or int(match.group(2)) > 23 or int(match.group(3)) > 59:
        raise ApiError(
            "InvalidParameterValue",
            f"The value {text} for parameter LabelOptions.Timezone is not valid; use +HHMM or -HHMM, e.g. +0130.",
        )
    sign = -1 if match.group(1) == "-" else 1
    return timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))


def _label(query: MetricQuery, timestamps: np.ndarray, values: np.ndarray, tz: timezone) -> str:
    """The query's Label with CloudWatch dynamic labels filled in; times shown in LabelOptions.Timezone."""
    template = query.label if query.label is not None else query.metric_name
    if "${" not in template:
        return template
    props = {
        "MetricName": query.metric_name,
        "Namespace": query.namespace,
        "Period": str(query.period),
        "Stat": query.stat,
        **{f"Dim.{name}": value for name, value in query.dimensions},
    }

    def when(index: int) -> str:
        moment = datetime.fromtimestamp(int(timestamps[index]), UTC).astimezone(tz)
        return moment.isoformat()

    def number(value: float) -> str:
        return repr(float(value))

    n = len(values)
    order = np.argsort(timestamps, kind="stable") if n else timestamps
    live = {
        "LABEL": lambda: query.metric_name,
        "DATAPOINT_COUNT": lambda: str(n),
        "SUM": lambda: number(values.sum()),
        "AVG": lambda: number(values.mean()),
        "MIN": lambda: number(values.min()),
        "MAX": lambda: number(values.max()),
        "FIRST": lambda: number(values[order[0]]),
        "LAST": lambda: number(values[order[-1]]),
        "FIRST_TIME": lambda: when(int(order[0])),
        "LAST_TIME": lambda: when(int(order[-1])),
        "MIN_TIME": lambda: when(int(np.argmin(values))),
        "MAX_TIME": lambda: when(int(np.argmax(values))),
    }

    def replace(match: re.Match) -> str:
        if match.group(2) is not None:
            return props.get(match.group(2), "")
        name = match.group(1)
        if name not in live:
            return match.group(0)
        if name not in ("LABEL", "DATAPOINT_COUNT") and n == 0:
            return ""
        return live[name]()

    return DYNAMIC_LABEL.sub(replace, template)


def _compute(
    ctx: CallContext,
    queries: list[MetricQuery],
    start_s: int,
    end_s: float,
    now_s: int,
    descending: bool,
    tz: timezone,
) -> list[SeriesResult]:
    results = []
    for query in queries:
        if not query.return_data:
            continue
        model_id = _model_id(query.namespace, query.metric_name, query.dimensions)
        if model_id is None:
            timestamps, values = np.empty(0, np.int64), np.empty(0, np.float64)
        else:
            timestamps, values = statistic_series(
                ctx, model_id, query.metric_name, query.stat, query.period, start_s, end_s, now_s
            )
        label = _label(query, timestamps, values, tz)
        if descending:
            timestamps, values = timestamps[::-1], values[::-1]
        results.append(SeriesResult(query.query_id, label, timestamps, values))
    return results


def get_metric_data(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """GetMetricData: MetricStat queries over the simulated Bedrock metrics, paged at 100,800 datapoints."""
    queries = _parse_queries(params)
    start, end = params["StartTime"], params["EndTime"]
    if start >= end:
        raise ApiError("ValidationError", "The parameter StartTime must be less than the parameter EndTime.")
    scan_by = params.get("ScanBy") or "TimestampDescending"
    if scan_by not in ("TimestampDescending", "TimestampAscending"):
        raise ApiError(
            "InvalidParameterValue",
            f"The value {scan_by} for parameter ScanBy is not valid; use TimestampDescending or TimestampAscending.",
        )
    page_size = params.get("MaxDatapoints")
    if page_size is not None and page_size < 1:
        raise ApiError("InvalidParameterValue", "The parameter MaxDatapoints must be greater than 0.")
    page_size = min(int(page_size or MAX_DATAPOINTS), MAX_DATAPOINTS)
    tz = _timezone(params)
    start_s = math.floor(_epoch_seconds(start))
    end_s = _epoch_seconds(end)
    digest = fingerprint([ctx.region, [q.__dict__ for q in queries], start_s, end_s, scan_by, page_size, str(tz)])
    offset = 0
    now_s = int(_epoch_seconds(ctx.now))
    token = params.get("NextToken")
    if token:
        state = decode_token(token, "InvalidNextToken", "The NextToken is not valid for this request.")
        if state.get("r") != digest or not isinstance(state.get("o"), int) or not isinstance(state.get("t"), int):
            raise ApiError("InvalidNextToken", "The NextToken is not valid for this request.")
        # Later pages read the data as of the first page's clock, so a paginated read is one consistent
        # snapshot.
        offset, now_s = state["o"], state["t"]
    ctx.count("metrics_requested", len(queries))

    series = ctx.cache.get_or_compute(
        ("GetMetricData", digest, now_s),
        lambda: _compute(ctx, queries, start_s, end_s, now_s, scan_by == "TimestampDescending", tz),
    )
    results, returned, total = [], 0, 0
    page_end = offset + page_size
    for item in series:
        n = len(item.timestamps)
        first, last = total, total + n
        total = last
        lo, hi = max(first, offset), min(last, page_end)
        if hi > lo or (n == 0 and offset == 0):
            a, b = max(0, lo - first), max(0, hi - first)
            results.append(
                {
                    "Id": item.query_id,
                    "Label": item.label,
                    "Timestamps": item.timestamps[a:b],
                    "Values": item.values[a:b],
                    "StatusCode": "Complete" if b >= n else "PartialData",
                    "Messages": [],
                }
            )
            returned += b - a
    ctx.count("datapoints_returned", returned)
    output: dict[str, Any] = {"MetricDataResults": results, "Messages": []}
    if page_end < total:
        output["NextToken"] = encode_token({"o": page_end, "r": digest, "t": now_s})
    return output


# ------------------------------------------------------------------------------------------------------------
# GetMetricStatistics (older tools still use it)


def get_metric_statistics(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """GetMetricStatistics: up to 1,440 datapoints of one metric, ascending, with the requested statistics."""
    statistics = params.get("Statistics") or []
    if params.get("ExtendedStatistics"):
        raise ApiError("InvalidParameterValue", "The sandbox does not support ExtendedStatistics (percentiles).")
    if not statistics:
        raise ApiError(
            "InvalidParameterCombination",
            "Must specify either Statistics or ExtendedStatistics, but not both.",
        )
    for stat in statistics:
        if stat not in STATISTICS:
            raise ApiError("InvalidParameterValue", f"The statistic {stat} is not valid.")
    period = int(params["Period"])
    if period % 60 and period not in HIGH_RESOLUTION_PERIODS:
        raise ApiError("InvalidParameterValue", "The parameter Period must be 1, 5, 10, 30 or a multiple of 60.")
    start, end = params["StartTime"], params["EndTime"]
    if start >= end:
        raise ApiError("InvalidParameterValue", "The parameter StartTime must be less than the parameter EndTime.")
    start_s, end_s = math.floor(_epoch_seconds(start)), _epoch_seconds(end)
    now_s = int(_epoch_seconds(ctx.now))
    requested = math.ceil((end_s - rounded_start(start_s, now_s)) / period)
    if requested > STATISTICS_MAX_DATAPOINTS:
        raise ApiError(
            "InvalidParameterCombination",
            f"You have requested up to {requested} datapoints, which exceeds the limit of "
            f"{STATISTICS_MAX_DATAPOINTS}. You may reduce the datapoints requested by increasing Period, or "
            "decreasing the time range.",
        )
    metric_name = params["MetricName"]
    dimensions = tuple((d["Name"], d["Value"]) for d in params.get("Dimensions") or [])
    model_id = _model_id(params["Namespace"], metric_name, dimensions)
    columns: dict[str, dict[int, float]] = {}
    if model_id is not None:
        for stat in statistics:
            starts, values = statistic_series(ctx, model_id, metric_name, stat, period, start_s, end_s, now_s)
            columns[stat] = dict(zip(starts.tolist(), values.tolist(), strict=True))
    stamps = sorted(set().union(*(c.keys() for c in columns.values()))) if columns else []
    unit = UNITS.get(metric_name, "Count")
    datapoints = []
    for stamp in stamps:
        point: dict[str, Any] = {"Timestamp": datetime.fromtimestamp(stamp, UTC)}
        for stat in statistics:
            point[stat] = columns[stat][stamp]
        point["Unit"] = unit
        datapoints.append(point)
    ctx.count("datapoints_returned", len(datapoints))
    return {"Label": metric_name, "Datapoints": datapoints}


# ------------------------------------------------------------------------------------------------------------
# ListMetrics


def _listed_metrics(ctx: CallContext, now_minute: int, window: int) -> list[tuple[str, str]]:
    """(MetricName, ModelId) of each series with data in the ``window`` minutes before ``now_minute``."""
    from pipelines.sandbox.traffic import METRICS

    if not ctx.has_region:
        return []
    rows = []
    for series in ctx.traffic.series(ctx.region):
        last = ctx.traffic.last_active_minute(ctx.region, series.model_id, now_minute)
        if last is None or last < now_minute - window:
            continue
        for metric in METRICS:
            samples = ctx.traffic.minutes(ctx.region, series.model_id, metric, now_minute - window, now_minute)
            if np.any(np.asarray(samples.count) > 0):
                rows.append((metric, series.model_id))
    return sorted(set(rows))


def list_metrics(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """ListMetrics: AWS/Bedrock metrics with data in the last 14 days (3 hours with RecentlyActive=PT3H)."""
    recently = params.get("RecentlyActive")
    if recently is not None and recently != "PT3H":
        raise ApiError("InvalidParameterValue", f"The value {recently} for parameter RecentlyActive is not valid.")
    window = RECENTLY_ACTIVE_MINUTES if recently else LISTED_IDLE_DAYS * 1440
    namespace = params.get("Namespace")
    metric_name = params.get("MetricName")
    filters = params.get("Dimensions") or []
    digest = fingerprint([ctx.region, namespace, metric_name, filters, recently])
    now_minute = int(_epoch_seconds(ctx.now)) // 60
    offset = 0
    if params.get("NextToken"):
        state = decode_token(params["NextToken"], "InvalidNextToken", "The NextToken is not valid for this request.")
        if state.get("r") != digest or not isinstance(state.get("o"), int) or not isinstance(state.get("t"), int):
            raise ApiError("InvalidNextToken", "The NextToken is not valid for this request.")
        # Later pages list as of the first page's clock, so a listing never skips or repeats a metric.
        offset, now_minute = state["o"], state["t"]
    rows = ctx.cache.get_or_compute(
        ("ListMetrics", ctx.region, now_minute, window), lambda: _listed_metrics(ctx, now_minute, window)
    )
    selected = []
    for metric, model_id in rows:
        if namespace is not None and namespace != NAMESPACE:
            continue
        if metric_name is not None and metric != metric_name:
            continue
        if any(f.get("Name") != DIMENSION or f.get("Value") not in (None, model_id) for f in filters):
            continue
        selected.append(
            {
                "Namespace": NAMESPACE,
                "MetricName": metric,
                "Dimensions": [{"Name": DIMENSION, "Value": model_id}],
            }
        )
    page = selected[offset : offset + LIST_METRICS_PAGE]
    output: dict[str, Any] = {"Metrics": page}
    if params.get("IncludeLinkedAccounts"):
        output["OwningAccounts"] = [ctx.account_id] * len(page)
    if offset + LIST_METRICS_PAGE < len(selected):
        output["NextToken"] = encode_token({"o": offset + LIST_METRICS_PAGE, "r": digest, "t": now_minute})
    return output


HANDLERS: dict[tuple[str, str], Handler] = {
    ("monitoring", "GetMetricData"): get_metric_data,
    ("monitoring", "GetMetricStatistics"): get_metric_statistics,
    ("monitoring", "ListMetrics"): list_metrics,
}

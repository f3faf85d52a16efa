"""Chart series of a report: every line of every chart, at the resolution the warehouse holds, compactly encoded.

A line's values over the 30-day timeline are computed once and stored once, as a *block*; the charts of the
shorter windows show a slice of the same block, so the 1h, 1d, 7d, 14d and 30d charts cost no more than the 30d
one. A block is at the data's own resolution: one point per minute where the lake holds 1-minute data, one per
5 minutes (or hour) where only coarser CloudWatch data remain (usage_minute spreads such a bucket evenly over its
minutes, so one point per bucket holds all there is); a point stores the count of its minutes and the page divides
by the step. Values are plotly's typed arrays, one per run of equal steps: little-endian bytes of the smallest
integer type that fits, base64-encoded (``{"dtype": "u2", "bdata": "..."}``), which numpy decodes with
``np.frombuffer(base64.b64decode(bdata), dtype)``.

Only when the 1-minute lines of every application profile would not fit :data:`CHART_DATA_BUDGET` do the
profile lines of the 7d, 14d and 30d charts fall back to the peak minute of a bucket
(:data:`PROFILE_BUCKETS`); the page says so under those charts, and the endpoint aggregate, the quota lines and
the throttles stay at full resolution. A bucket size the user asks for (``--granularity``) applies to every line.

The stacked caller charts (tokens by principal from the invocation logs, and the part the logs do not hold) are
bucketed always, 5 minutes for the day and an hour for the month, so they stay a few tens of kilobytes.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import numpy as np

from pipelines.report.queries import (
    AGGREGATE_LABEL,
    AGGREGATE_SERIES,
    TIMELINE_WINDOW,
    WINDOW_MINUTES,
    WINDOWS,
    ReportContext,
    ReportError,
    columns_of,
    iso,
    report_tables,
)

# More lines than this per chart are unreadable; the smallest series are summed into one line.
MAX_CHART_SERIES = 8
OTHER_LINE = "~other"

# Base64 characters all chart blocks of a page may take. With the tables and layouts (~70-120 KB) this keeps an
# endpoint page under 1 MB (plotly.js itself is a separate shared file). The aggregate's four full-resolution
# 30-day lines take 300-650 KB of it; the profile lines get the rest, at 1-minute points while they fit.
CHART_DATA_BUDGET = 700_000
# Bucket sizes (minutes) the profile lines of the long windows fall back to, finest first; each divides every
# window longer than a day, and an hour, so the buckets of every window line up with as_of.
PROFILE_BUCKETS = (5, 10, 15, 30, 60, 120, 240)
# Windows whose profile lines may fall back to buckets; the 1h and 1d charts always show every minute.
LONG_WINDOWS = frozenset({"7d", "14d", "30d"})

GRANULARITY_MINUTES = {"1min": 1, "5min": 5, "1hour": 60}

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


def chart_floor(granularity: Mapping[str, int | str] | None) -> dict[str, int]:
    """The chart bucket (minutes) per window a caller asked for: ints or ``1min``/``5min``/``1hour``."""
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
        if minutes > 1:
            floor[window] = minutes
    return floor


def typed_array(values: np.ndarray) -> dict[str, str]:
    """plotly's typed-array form of ``values``: the smallest unsigned integer type that holds them, else float32."""
    values = np.asarray(values, dtype=np.float64)
    if values.size and (np.any(values < 0) or np.any(values != np.rint(values))):
        dtype = "<f4"
    else:
        top = float(values.max()) if values.size else 0.0
        dtype = next((kind for kind, limit in (("<u1", 2**8), ("<u2", 2**16), ("<u4", 2**32)) if top < limit), "<f8")
    return {"dtype": dtype.lstrip("<"), "bdata": base64.b64encode(values.astype(dtype).tobytes()).decode("ascii")}


def decode_block(block: Mapping[str, Any]) -> tuple[list[int], list[float]]:
    """A block's points as (epoch ms, value) lists: what the page's script draws (per-minute values)."""
    times: list[int] = []
    values: list[float] = []
    moment = block["start_ms"]
    for (step, count), encoded in zip(block["segments"], block["values"], strict=True):
        stored = np.frombuffer(base64.b64decode(encoded["bdata"]), dtype=np.dtype("<" + encoded["dtype"])).tolist()
        times.extend(moment + index * step * 60_000 for index in range(count))
        moment += count * step * 60_000
        divisor = step if block["per_point"] else 1
        values.extend(value / divisor for value in stored)
    return times, values


@dataclass(frozen=True)
class _Minutes:
    """Per-minute values of the timeline window, index 0 = its first minute; zero where idle or not covered."""

    start_ms: int
    first: int  # first covered minute index
    last: int  # past the last covered minute index
    resolution: np.ndarray  # resolution_s of the endpoint's data per minute, 0 where idle
    lines: dict[str, dict[str, np.ndarray]]  # line -> metric -> values
    # Blocks by key and point layouts by first minute, shared by every layout build_charts tries.
    blocks: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    layouts: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def chart_lines(connection: duckdb.DuckDBPyConnection, context: ReportContext) -> list[dict[str, Any]]:
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


def _minutes(connection: duckdb.DuckDBPyConnection, context: ReportContext, lines: list[dict[str, Any]]) -> _Minutes:
    start_ms = context.window_start_ms(TIMELINE_WINDOW)
    count = WINDOW_MINUTES[TIMELINE_WINDOW]
    first = last = 0
    if context.covered_start_ms is not None and context.covered_end_ms is not None:
        first = max(0, (context.covered_start_ms - start_ms) // 60_000)
        last = min(count, -(-(context.covered_end_ms - start_ms) // 60_000))
        last = max(first, last)
    params = [start_ms, context.region, context.endpoint, start_ms, context.as_of_ms]
    # Where AWS publishes EstimatedTPMQuotaUsage the mart's quota TPM is that metric; the computed value is charted
    # beside it so a difference between the two shows.
    both = {"quota_tpm_computed", "estimated_tpm_quota_usage"} <= columns_of(connection, "endpoint_minute")
    extra = ", quota_tpm_computed, estimated_tpm_quota_usage" if both else ", null, null"
    aggregate = connection.execute(
        f"""
        select (epoch_ms(ts) - ?) // 60000, tpm, rpm, quota_tpm, throttles, resolution_s{extra}
        from endpoint_minute
        where region = ? and endpoint = ? and epoch_ms(ts) >= ? and epoch_ms(ts) < ?
        """,
        params,
    ).fetchnumpy()
    index = np.asarray(aggregate[next(iter(aggregate))], dtype=np.int64)
    names = list(aggregate)

    def column(position: int) -> np.ndarray:
        values = np.zeros(count, dtype=np.float64)
        given = np.ma.filled(np.ma.asarray(aggregate[names[position]], dtype=np.float64), 0.0)
        values[index] = np.nan_to_num(given)
        return values

    resolution = column(5).astype(np.int64)
    metrics = {"tpm": column(1), "rpm": column(2), "quota_tpm": column(3), "throttles": column(4)}
    estimated = np.ma.asarray(aggregate[names[7]])
    if both and np.ma.count(estimated):
        metrics["quota_tpm_computed"] = column(6)
    found = {AGGREGATE_SERIES: metrics}
    kept = [line["line"] for line in lines[1:] if line["line"] != OTHER_LINE]
    # Rates of summed series ("other") are summed per minute first.
    per_line = connection.execute(
        """
        select
            case when list_contains(?, series_id) then series_id else ? end as line,
            (epoch_ms(ts) - ?) // 60000 as minute,
            sum(tpm) as tpm,
            sum(rpm) as rpm,
        from usage_minute
        where region = ? and endpoint = ? and epoch_ms(ts) >= ? and epoch_ms(ts) < ?
        group by all
        """,
        [kept, OTHER_LINE, start_ms, context.region, context.endpoint, start_ms, context.as_of_ms],
    ).fetchnumpy()
    names_of = np.asarray(per_line["line"], dtype=object)
    for line in lines[1:]:
        rows = names_of == line["line"]
        at = np.asarray(per_line["minute"], dtype=np.int64)[rows]
        found[line["line"]] = {}
        for metric in ("tpm", "rpm"):
            values = np.zeros(count)
            values[at] = np.nan_to_num(np.ma.filled(np.ma.asarray(per_line[metric], dtype=np.float64), 0.0)[rows])
            found[line["line"]][metric] = values
    return _Minutes(start_ms=start_ms, first=int(first), last=int(last), resolution=resolution, lines=found)


def _native_points(minutes: _Minutes, first: int) -> tuple[np.ndarray, np.ndarray]:
    """Point starts (minute indexes) and their steps (minutes) from ``first`` to the covered end.

    A clock-aligned 5-minute (or 60-minute) bucket whose every active minute came from 5-minute (hourly) data
    becomes one point: its minutes all hold the same spread value.
    """
    last = minutes.last
    starts = np.zeros(len(minutes.resolution), dtype=bool)
    starts[first:last] = True
    steps = np.ones(len(minutes.resolution), dtype=np.int64)
    epoch_minute = minutes.start_ms // 60_000
    # Idle minutes have no resolution of their own; before the endpoint's first 1-minute datapoint they belong to
    # the 5-minute era and are drawn as 5-minute points too.
    fine = np.flatnonzero((minutes.resolution > 0) & (minutes.resolution < 300))
    first_fine = int(fine[0]) if fine.size else len(minutes.resolution)
    for step in (60, 5):
        begin = first + (-(epoch_minute + first)) % step
        buckets = (last - begin) // step
        if buckets <= 0:
            continue
        chunk = minutes.resolution[begin : begin + buckets * step].reshape(buckets, step)
        lowest = np.where(chunk > 0, chunk, np.iinfo(np.int64).max).min(axis=1)
        busiest = chunk.max(axis=1)
        coarse_data = (busiest == step * 60) & (lowest == step * 60)
        if step == 5:
            ends = begin + (np.arange(buckets) + 1) * step
            coarse_data |= (busiest == 0) & (ends <= first_fine)
        coarse = np.flatnonzero(coarse_data)
        for bucket in coarse:
            at = begin + int(bucket) * step
            starts[at + 1 : at + step] = False
            steps[at] = step
    points = np.flatnonzero(starts)
    return points, steps[points]


def _block(
    minutes: _Minutes, line: str, metric: str, bucket: int | None, range_start: int, summed: bool = False
) -> dict[str, Any] | None:
    """One line's points from minute index ``range_start``: native resolution, or the peak (sum) per bucket."""
    first = max(minutes.first, range_start)
    if first >= minutes.last:
        return None
    values = minutes.lines[line][metric]
    if bucket is None:
        if first not in minutes.layouts:
            minutes.layouts[first] = _native_points(minutes, first)
        points, steps = minutes.layouts[first]
        # A point stores the count of its minutes (a 5-minute point: the 5-minute sum CloudWatch published, which
        # usage_minute had spread over five minutes), a whole number that fits a small integer type; the page
        # divides by the step to draw the per-minute rate, so a slow 5-minute span is not rounded to zero.
        reduced = np.rint(np.add.reduceat(values[first : minutes.last], points - first))
        segments: list[list[int]] = []
        for step in steps.tolist():
            if segments and segments[-1][0] == step:
                segments[-1][1] += 1
            else:
                segments.append([step, 1])
        start = int(points[0])
        # Each run of equal steps gets its own integer type: 5-minute counts are five times the minute values
        # and must not widen the type of the (much longer) 1-minute run.
        encoded, offset = [], 0
        for _step, count in segments:
            encoded.append(typed_array(reduced[offset : offset + count]))
            offset += count
    else:
        # Buckets line up with range_start, which lies a whole number of buckets before as_of.
        lo = range_start + (first - range_start) // bucket * bucket
        hi = range_start + -(-(minutes.last - range_start) // bucket) * bucket
        span = np.zeros(hi - lo)
        end = min(hi, len(values))
        span[: end - lo] = values[lo:end]
        grouped = span.reshape(-1, bucket)
        reduced = grouped.sum(axis=1) if summed else grouped.max(axis=1)
        # Peak minutes are whole tokens or requests; a sum of spread 5-minute throttles keeps a decimal.
        reduced = np.round(reduced, 1) if summed else np.rint(reduced)
        segments = [[bucket, len(reduced)]]
        start = lo
        encoded = [typed_array(reduced)]
    return {
        "start": iso(minutes.start_ms + start * 60_000),
        "start_ms": minutes.start_ms + start * 60_000,
        "segments": segments,
        # True: values are counts per point, drawn divided by the point's step (minutes) as a per-minute rate.
        "per_point": bucket is None,
        "values": encoded,
    }


def _plan(floor: Mapping[str, int], profile_bucket: int | None) -> dict[tuple[str, bool], tuple[int | None, str]]:
    """(window, is_profile_line) -> (bucket or None for native, the window the block starts at)."""
    plan: dict[tuple[str, bool], tuple[int | None, str]] = {}
    for window, minutes in WINDOWS:
        for profile in (False, True):
            bucket = floor.get(window)
            if profile and profile_bucket is not None:
                if window in LONG_WINDOWS:
                    bucket = max(bucket or 1, profile_bucket)
                elif bucket is None:
                    # Native profile blocks then only need the last day, which the 1h and 1d charts show.
                    plan[(window, profile)] = (None, "1d")
                    continue
            # A bucket that also divides the timeline's start shares one block across windows.
            aligned = bucket is None or (WINDOW_MINUTES[TIMELINE_WINDOW] - minutes) % bucket == 0
            plan[(window, profile)] = (bucket, TIMELINE_WINDOW if aligned else window)
    return plan


def _block_key(metric: str, line: str, bucket: int | None, start_window: str) -> str:
    return f"{metric}|{line}|{bucket or 'native'}|{start_window}"


def _build(
    minutes: _Minutes,
    lines: list[dict[str, Any]],
    context: ReportContext,
    floor: Mapping[str, int],
    profile_bucket: int | None,
) -> dict[str, Any]:
    plan = _plan(floor, profile_bucket)
    blocks: dict[str, dict[str, Any] | None] = {}
    computed = minutes.blocks

    def block(metric: str, line: str, window: str, profile: bool, source: str | None = None) -> str | None:
        bucket, start_window = plan[(window, profile)]
        key = _block_key(metric, line, bucket, start_window)
        if key not in computed:
            range_start = (context.window_start_ms(start_window) - minutes.start_ms) // 60_000
            computed[key] = _block(minutes, line, source or metric, bucket, range_start, summed=metric == "throttles")
        blocks[key] = computed[key]
        return key if blocks[key] is not None else None

    windows = []
    for window, _minutes in WINDOWS:
        start_ms = context.window_start_ms(window)
        has_data = (
            context.covered_start_ms is not None
            and context.covered_end_ms is not None
            and context.covered_start_ms < context.as_of_ms
            and context.covered_end_ms > start_ms
        )
        chart: dict[str, Any] = {
            "window": window,
            "start": iso(start_ms),
            "end": iso(context.as_of_ms),
            "has_data": has_data,
            "bucket_minutes": plan[(window, False)][0],
            "profile_bucket_minutes": plan[(window, True)][0],
            "tpm": [],
            "rpm": [],
            "quota_tpm": [],
        }
        if has_data:
            for metric in ("tpm", "rpm"):
                for line in lines:
                    profile = line["line"] != AGGREGATE_SERIES
                    chart[metric].append(
                        {
                            "label": line["label"],
                            "series_ids": line["series_ids"],
                            "block": block(metric, line["line"], window, profile),
                        }
                    )
            # The quota applies to the endpoint, so quota TPM is charted for the aggregate, with its TPM for contrast.
            chart["quota_tpm"].append(
                {
                    "label": f"{AGGREGATE_LABEL} (quota TPM)",
                    "series_ids": [AGGREGATE_SERIES],
                    "block": block("quota_tpm", AGGREGATE_SERIES, window, False),
                }
            )
            aggregate = minutes.lines[AGGREGATE_SERIES]
            if "quota_tpm_computed" in aggregate and not np.array_equal(
                np.rint(aggregate["quota_tpm_computed"]), np.rint(aggregate["quota_tpm"])
            ):
                chart["quota_tpm"].append(
                    {
                        "label": f"{AGGREGATE_LABEL} (computed quota TPM)",
                        "series_ids": [AGGREGATE_SERIES],
                        "block": block("quota_tpm_computed", AGGREGATE_SERIES, window, False),
                    }
                )
            chart["quota_tpm"].append(
                {
                    "label": f"{AGGREGATE_LABEL} (TPM)",
                    "series_ids": [AGGREGATE_SERIES],
                    "block": chart["tpm"][0]["block"],
                }
            )
        windows.append(chart)
    start_ms = context.window_start_ms(TIMELINE_WINDOW)
    throttle_key = block("throttles", AGGREGATE_SERIES, TIMELINE_WINDOW, False) if windows[-1]["has_data"] else None
    return {
        "lines": [{"label": line["label"], "series_ids": line["series_ids"], "color": line["color"]} for line in lines],
        "profile_bucket_minutes": profile_bucket,
        "windows": windows,
        "throttle_timeline": {
            "window": TIMELINE_WINDOW,
            "start": iso(start_ms),
            "end": iso(context.as_of_ms),
            "bucket_minutes": plan[(TIMELINE_WINDOW, False)][0],
            "block": throttle_key,
        },
        "blocks": {key: value for key, value in sorted(blocks.items()) if value is not None},
    }


def _block_bytes(charts: Mapping[str, Any]) -> int:
    # The base64 text plus what each run costs in the page's JSON (its segment and its dtype object).
    return sum(len(run["bdata"]) + 48 for block in charts["blocks"].values() for run in block["values"])


def _tpd_chart(
    connection: duckdb.DuckDBPyConnection, context: ReportContext, lines: list[dict[str, Any]]
) -> dict[str, Any]:
    """Tokens of each rolling 24 h day of the timeline window (a point per day: tpd_daily's grain)."""
    start_ms = context.window_start_ms(TIMELINE_WINDOW)
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
        points = sorted((end_ms, tokens) for (target, end_ms), tokens in sums.items() if target == line["line"])
        series.append(
            {
                "label": line["label"],
                "series_ids": line["series_ids"],
                "x": [iso(end_ms) for end_ms, _tokens in points],
                "values": [round(tokens) for _end_ms, tokens in points],
            }
        )
    return {"window": TIMELINE_WINDOW, "start": iso(start_ms), "end": iso(context.as_of_ms), "lines": series}


def build_charts(
    connection: duckdb.DuckDBPyConnection,
    context: ReportContext,
    floor: Mapping[str, int] | None = None,
    callers_status: str | None = None,
) -> dict[str, Any]:
    """Every chart series of one endpoint's report (the ``charts`` member of its document).

    ``callers_status`` is the ``callers.status`` of the report's tables: the caller charts are drawn when it is
    ``ok`` (the invocation logs hold calls to the endpoint).
    """
    floor = floor or {}
    lines = chart_lines(connection, context)
    minutes = _minutes(connection, context, lines)
    charts = _build(minutes, lines, context, floor, None)
    if len(lines) > 1 and _block_bytes(charts) > CHART_DATA_BUDGET:
        for bucket in PROFILE_BUCKETS:
            charts = _build(minutes, lines, context, floor, bucket)
            if _block_bytes(charts) <= CHART_DATA_BUDGET:
                break
    charts["tpd"] = _tpd_chart(connection, context, lines)
    charts["callers"] = {"windows": []}
    if callers_status == "ok":
        charts["callers"] = build_caller_charts(connection, context, charts["blocks"])
    return charts


# ---------------------------------------------------------------------------------------------------- callers

# (window, bucket minutes) of the stacked caller charts: each bucket's tokens, drawn as its average tokens/min,
# so the stacks add up to the endpoint's TPM averaged over the bucket. Buckets keep a caller chart at a few
# thousand points: 288 for the day, 720 for the month.
CALLER_CHARTS: tuple[tuple[str, int], ...] = (("1d", 5), ("30d", 60))
# Callers with a line of their own (by tokens in the timeline window); the others are summed into one line.
CALLER_CHART_LINES = 7
CALLER_OTHER_COLOR = "#7f7f7f"
CALLER_REMAINDER_COLOR = "#c7c7c7"
CALLER_REMAINDER_LABEL = "(not in logs)"


def _caller_lines(connection: duckdb.DuckDBPyConnection, context: ReportContext) -> list[dict[str, Any]]:
    """The stacked lines: the largest principals of the timeline window, one line for the rest, the remainder."""
    ranked = connection.execute(
        """
        select coalesce(principal, '(unknown)') as principal from caller_minute
        where region = ? and endpoint = ? and epoch_ms(ts) >= ? and epoch_ms(ts) < ?
        group by all
        order by sum(tokens) desc, principal
        """,
        [context.region, context.endpoint, context.window_start_ms(TIMELINE_WINDOW), context.as_of_ms],
    ).fetchall()
    principals = [row[0] for row in ranked]
    kept = principals if len(principals) <= CALLER_CHART_LINES + 1 else principals[:CALLER_CHART_LINES]
    lines = [
        {"label": principal, "kind": "caller", "principals": [principal], "color": SERIES_COLORS[index]}
        for index, principal in enumerate(kept)
    ]
    rest = principals[len(kept) :]
    if rest:
        lines.append(
            {
                "label": f"other ({len(rest)} callers)",
                "kind": "other",
                "principals": sorted(rest),
                "color": CALLER_OTHER_COLOR,
            }
        )
    lines.append(
        {"label": CALLER_REMAINDER_LABEL, "kind": "remainder", "principals": [], "color": CALLER_REMAINDER_COLOR}
    )
    return lines


def build_caller_charts(
    connection: duckdb.DuckDBPyConnection, context: ReportContext, blocks: dict[str, Any]
) -> dict[str, Any]:
    """Tokens over time by caller, stacked: a block per line and chart, added to ``blocks``.

    A bucket's "not in the logs" value is the endpoint's tokens (endpoint_minute.tpm) less the logged ones, at
    least 0: the part of the metrics the invocation logs do not cover, as caller_attribution's remainder row.
    """
    lines = _caller_lines(connection, context)
    kept = [line["label"] for line in lines if line["kind"] == "caller"]
    charts = []
    for window, bucket in CALLER_CHARTS:
        start_ms = context.window_start_ms(window)
        count = WINDOW_MINUTES[window] // bucket
        # Buckets before the region's first datapoint hold nothing known; the chart starts where the data do.
        first = 0
        if context.covered_start_ms is not None:
            first = min(count, max(0, (context.covered_start_ms - start_ms) // (bucket * 60_000)))
        step = bucket * 60_000
        params = [kept, start_ms, step, context.region, context.endpoint, start_ms, context.as_of_ms]
        logged = connection.execute(
            """
            select
                case
                    when list_contains(?, coalesce(principal, '(unknown)')) then coalesce(principal, '(unknown)')
                    else ''
                end as line,
                (epoch_ms(ts) - ?) // ? as bucket,
                sum(tokens) as tokens
            from caller_minute
            where region = ? and endpoint = ? and epoch_ms(ts) >= ? and epoch_ms(ts) < ?
            group by all
            """,
            params,
        ).fetchall()
        metrics = connection.execute(
            """
            select (epoch_ms(ts) - ?) // ? as bucket, sum(tpm) from endpoint_minute
            where region = ? and endpoint = ? and epoch_ms(ts) >= ? and epoch_ms(ts) < ?
            group by all
            """,
            params[1:],
        ).fetchall()
        values = {line["label"]: np.zeros(count) for line in lines}
        other = next((line["label"] for line in lines if line["kind"] == "other"), None)
        total = np.zeros(count)
        for name, index, tokens in logged:
            target = name or other
            if target is not None:
                values[target][int(index)] += float(tokens or 0)
            total[int(index)] += float(tokens or 0)
        endpoint_tokens = np.zeros(count)
        for index, tokens in metrics:
            endpoint_tokens[int(index)] = float(tokens or 0)
        values[CALLER_REMAINDER_LABEL] = np.clip(endpoint_tokens - total, 0, None)
        chart_lines = []
        for position, line in enumerate(lines):
            key = f"callers|{window}|{position}"
            blocks[key] = {
                "start": iso(start_ms + first * step),
                "start_ms": start_ms + first * step,
                "segments": [[bucket, count - first]],
                # A point holds the bucket's tokens; the page draws them divided by the bucket's minutes.
                "per_point": True,
                "values": [typed_array(np.rint(values[line["label"]][first:]))],
            }
            chart_lines.append({**line, "block": key})
        charts.append(
            {
                "window": window,
                "start": iso(start_ms),
                "end": iso(context.as_of_ms),
                "bucket_minutes": bucket,
                "lines": chart_lines,
            }
        )
    return {"windows": charts}


def build_report_data(
    connection: duckdb.DuckDBPyConnection,
    region: str,
    endpoint: str,
    as_of: datetime,
    *,
    account_id: str | None = None,
    chart_granularity: Mapping[str, int | str] | None = None,
) -> dict[str, Any]:
    """The JSON document of one endpoint's report: every number its HTML page shows.

    ``as_of`` is naive UTC (or aware, converted) and is truncated to the minute; windows end there.
    ``chart_granularity`` (window -> minutes or ``1min``/``5min``/``1hour``) sets a chart bucket for a window.
    Raises :class:`ReportError` when a required mart is missing, the endpoint is unknown or ``window_stats`` was
    computed for another ``as_of``. ``account_id`` defaults to the marts' own account_id column when they carry
    one.
    """
    floor = chart_floor(chart_granularity)
    context, report = report_tables(connection, region, endpoint, as_of, account_id)
    report["charts"] = build_charts(connection, context, floor, report["callers"]["status"])
    return report


# ---------------------------------------------------------------------------------------------------- overview

# The overview's columns: the busiest minute of each hour (rolling days for TPD) of the summary window.
OVERVIEW_BUCKET_MINUTES = 60


def build_overview(
    connection: duckdb.DuckDBPyConnection,
    rows: Sequence[Mapping[str, Any]],
    quotas: Mapping[tuple[str, str], Mapping[str, float | None]],
    as_of_ms: int,
    window: str,
) -> dict[str, Any]:
    """Utilisation of each quota per endpoint over ``window``: one heatmap per quota type, rows in ``rows`` order.

    TPM (quota TPM, what Bedrock counts) and RPM cells are the busiest minute of each hour as % of the quota; TPD
    cells are the rolling 24 h days of tpd_daily ending in the window. An endpoint without that quota has an empty
    row.
    """
    start_ms = as_of_ms - WINDOW_MINUTES[window] * 60_000
    step = OVERVIEW_BUCKET_MINUTES * 60_000
    buckets = WINDOW_MINUTES[window] // OVERVIEW_BUCKET_MINUTES
    peaks = connection.execute(
        """
        select region, endpoint, (epoch_ms(ts) - ?) // ? as bucket, max(quota_tpm), max(rpm)
        from endpoint_minute where epoch_ms(ts) >= ? and epoch_ms(ts) < ?
        group by all
        """,
        [start_ms, step, start_ms, as_of_ms],
    ).fetchall()
    days = connection.execute(
        """
        select region, endpoint, epoch_ms(day_end), tokens from tpd_daily
        where series_id = ? and epoch_ms(day_end) > ? and epoch_ms(day_end) <= ?
        """,
        [AGGREGATE_SERIES, start_ms, as_of_ms],
    ).fetchall()
    day_ends = sorted({int(row[2]) for row in days})
    by_endpoint: dict[tuple[str, str], dict[str, Any]] = {}
    for region, endpoint, bucket, quota_tpm, rpm in peaks:
        slot = by_endpoint.setdefault((region, endpoint), {"tpm": {}, "rpm": {}})
        slot["tpm"][int(bucket)] = quota_tpm
        slot["rpm"][int(bucket)] = rpm
    tpd: dict[tuple[str, str], dict[int, float]] = {}
    for region, endpoint, end_ms, tokens in days:
        tpd.setdefault((region, endpoint), {})[int(end_ms)] = tokens

    def utilisation(used: float | None, quota: float | None) -> float | None:
        if quota is None or quota <= 0:
            return None
        value = 100.0 * float(used or 0) / float(quota)
        return None if math.isnan(value) else round(value, 1)

    labels = [f"{row['region']} · {row['endpoint']}" for row in rows]
    panels = []
    for quota_type, label in (("tpm", "TPM"), ("rpm", "RPM"), ("tpd", "TPD")):
        grid = []
        for row in rows:
            pair = (row["region"], row["endpoint"])
            quota = quotas.get(pair, {}).get(quota_type)
            if quota_type == "tpd":
                values = tpd.get(pair, {})
                grid.append([utilisation(values.get(end), quota) for end in day_ends])
            else:
                values = by_endpoint.get(pair, {}).get(quota_type, {})
                grid.append([utilisation(values.get(bucket), quota) for bucket in range(buckets)])
        # Cells are centred on their x, so x is the middle of the hour or rolling day a cell stands for.
        if quota_type == "tpd":
            x = [iso(end - 43_200_000) for end in day_ends]
            note = "each cell: the tokens of a rolling 24 h day, as % of the TPD quota"
        else:
            x = [iso(start_ms + bucket * step + step // 2) for bucket in range(buckets)]
            counted = "quota TPM (what Bedrock counts)" if quota_type == "tpm" else "requests"
            note = f"each cell: the busiest minute of the hour, {counted} as % of the {label} quota"
        panels.append({"quota_type": quota_type, "label": label, "note": note, "x": x, "z": grid})
    return {"window": window, "start": iso(start_ms), "end": iso(as_of_ms), "rows": labels, "panels": panels}

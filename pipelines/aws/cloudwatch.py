"""CloudWatch: which Bedrock series exist, and their datapoints through packed GetMetricData calls.

GetMetricData is billed per metric requested, not per datapoint, and one call takes at most 500 queries and
returns at most 100,800 datapoints (more come back behind NextToken, each page a call). ``plan_queries``
therefore packs as many queries per call as fit both limits, so a day of 1-minute data (1,440 datapoints a
query) goes 70 queries a call and a day of 5-minute data 350. ``fetch_metric_data`` runs the calls
concurrently under a rate limit, follows every NextToken and raises on anything incomplete: an empty series
must mean an idle model, never a failed call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, date, datetime

from pipelines.aws import AwsApiError, aws_call
from pipelines.aws.records import CallStats, MetricPoints, MetricQuery, QueryBatch, periods_in

NAMESPACE = "AWS/Bedrock"
DIMENSION = "ModelId"
MAX_QUERIES_PER_CALL = 500
MAX_DATAPOINTS_PER_CALL = 100_800
MAX_CALLS_PER_SECOND = 50.0


@dataclass(frozen=True)
class MetricPrice:
    """What CloudWatch charges for GetMetricData, and since when that is the price we know."""

    usd_per_1000_metrics: float
    as_of: date
    source: str

    def cost(self, metrics_requested: int) -> float:
        """The estimated charge in USD for ``metrics_requested`` metrics."""
        return metrics_requested * self.usd_per_1000_metrics / 1000


# GetMetricData is billed per metric requested in each call, whatever the range or datapoints returned.
GET_METRIC_DATA_PRICE = MetricPrice(
    usd_per_1000_metrics=0.01,
    as_of=date(2026, 11, 1),
    source="Amazon CloudWatch pricing, API requests: GetMetricData, $0.01 per 1,000 metrics requested",
)


@dataclass(frozen=True)
class MetricSpec:
    """One statistic of one AWS/Bedrock metric, fetched for every ModelId."""

    metric: str
    stat: str


# Counts are summed per period; latencies are averaged, and their SampleCount is kept so averages can be
# re-weighted when minutes are rolled up or series are added together.
METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("Invocations", "Sum"),
    MetricSpec("InputTokenCount", "Sum"),
    MetricSpec("OutputTokenCount", "Sum"),
    MetricSpec("CacheReadInputTokenCount", "Sum"),
    MetricSpec("CacheWriteInputTokenCount", "Sum"),
    MetricSpec("InvocationThrottles", "Sum"),
    MetricSpec("InvocationClientErrors", "Sum"),
    MetricSpec("InvocationServerErrors", "Sum"),
    MetricSpec("EstimatedTPMQuotaUsage", "Sum"),
    MetricSpec("InvocationLatency", "Average"),
    MetricSpec("InvocationLatency", "SampleCount"),
    MetricSpec("TimeToFirstToken", "Average"),
    MetricSpec("TimeToFirstToken", "SampleCount"),
)


def list_metric_series(client, namespace: str = NAMESPACE, *, recently_active: bool = False) -> dict[str, set[str]]:
    """{ModelId: the metric names ListMetrics lists for it} (every page).

    Only metrics whose sole dimension is ModelId count: that is the per-model series GetMetricData is asked
    for. CloudWatch lists a metric only where it has datapoints: series idle for two weeks drop out, a series
    with no cache traffic has no CacheReadInputTokenCount, and EstimatedTPMQuotaUsage and TimeToFirstToken exist
    for some models only. ``recently_active`` narrows the listing to metrics with data in the last three hours
    (``RecentlyActive=PT3H``), which is what an hourly refresh needs to ask for.
    """
    paginator = client.get_paginator("list_metrics")
    request: dict = {"Namespace": namespace, "Dimensions": [{"Name": DIMENSION}]}
    if recently_active:
        request["RecentlyActive"] = "PT3H"
    listed: dict[str, set[str]] = {}
    with aws_call("ListMetrics", client):
        for page in paginator.paginate(**request):
            for metric in page.get("Metrics", []):
                dimensions = metric.get("Dimensions", [])
                if len(dimensions) == 1 and dimensions[0]["Name"] == DIMENSION:
                    listed.setdefault(dimensions[0]["Value"], set()).add(metric["MetricName"])
    return listed


def list_model_ids(client, namespace: str = NAMESPACE) -> list[str]:
    """ModelIds with a series of their own in the namespace (ListMetrics, every page), sorted.

    CloudWatch leaves out series with no datapoint in the last two weeks, so callers add the ids they know of.
    """
    return sorted(list_metric_series(client, namespace))


def queries_for(listed: dict[str, set[str]], metrics: tuple[MetricSpec, ...] = METRICS) -> list[tuple[str, MetricSpec]]:
    """The (ModelId, statistic) queries worth paying for: every statistic we keep of each listed metric."""
    return [(model_id, spec) for model_id in sorted(listed) for spec in metrics if spec.metric in listed[model_id]]


def plan_queries(
    model_ids: Iterable[str],
    start: datetime,
    end: datetime,
    period: int,
    metrics: tuple[MetricSpec, ...] = METRICS,
) -> list[QueryBatch]:
    """The GetMetricData calls for every (ModelId, metric, stat) over [start, end) at ``period`` seconds."""
    return plan_pair_queries(
        [(model_id, spec) for model_id in sorted(set(model_ids)) for spec in metrics], start, end, period
    )


def plan_pair_queries(
    pairs: Iterable[tuple[str, MetricSpec]], start: datetime, end: datetime, period: int
) -> list[QueryBatch]:
    """The GetMetricData calls for the given (ModelId, statistic) queries over [start, end) at ``period`` s.

    Each call holds at most 500 queries and at most 100,800 datapoint slots (queries x periods in the range),
    so no call needs a NextToken page (every page bills each of its metrics again); the queries are spread
    evenly over the fewest calls that respect both, so the number of calls is
    ``max(ceil(slots / 100,800), ceil(queries / 500))``. Query ids restart at ``q0`` in every call (they only
    need to be unique within one) and match CloudWatch's ``^[a-z][a-zA-Z0-9_]*$``.
    """
    if period <= 0 or period % 60:
        raise ValueError(f"period {period} s is not a positive multiple of 60 s")
    if end <= start:
        return []
    slots_per_query = periods_in(start, end, period)
    # A single query longer than 100,800 periods still fits one call; CloudWatch pages it through NextToken.
    per_call = min(MAX_QUERIES_PER_CALL, max(1, MAX_DATAPOINTS_PER_CALL // slots_per_query))
    # In the order given, each once (dict keeps the first of equal pairs).
    wanted = list(dict.fromkeys(pairs))
    if not wanted:
        return []
    calls = -(-len(wanted) // per_call)
    size = -(-len(wanted) // calls)
    batches = []
    for first in range(0, len(wanted), size):
        chunk = wanted[first : first + size]
        queries = tuple(
            MetricQuery(query_id=f"q{index}", model_id=model_id, metric=spec.metric, stat=spec.stat)
            for index, (model_id, spec) in enumerate(chunk)
        )
        batches.append(QueryBatch(queries=queries, start=start, end=end, period_s=period))
    return batches


class RateLimiter:
    """Spaces calls ``1 / per_second`` apart across threads (CloudWatch allows 50 GetMetricData a second)."""

    def __init__(self, per_second: float = MAX_CALLS_PER_SECOND) -> None:
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        self._interval = 1.0 / per_second
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Block until this caller's slot comes up."""
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self._interval
        delay = slot - now
        if delay > 0:
            time.sleep(delay)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _naive(moment: datetime) -> datetime:
    return moment if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None)


def _metric_data_query(query: MetricQuery, period: int) -> dict:
    return {
        "Id": query.query_id,
        "MetricStat": {
            "Metric": {
                "Namespace": NAMESPACE,
                "MetricName": query.metric,
                "Dimensions": [{"Name": DIMENSION, "Value": query.model_id}],
            },
            "Period": period,
            "Stat": query.stat,
        },
        "ReturnData": True,
    }


def _fetch_batch(client, batch: QueryBatch, limiter: RateLimiter) -> tuple[dict[str, dict[datetime, float]], CallStats]:
    """One packed call and its NextToken pages: per query id, {period start: value}."""
    region = client.meta.region_name
    by_id = {query.query_id: query for query in batch.queries}
    series: dict[str, dict[datetime, float]] = {}
    request = {
        "MetricDataQueries": [_metric_data_query(query, batch.period_s) for query in batch.queries],
        "StartTime": _aware(batch.start),
        "EndTime": _aware(batch.end),
        "ScanBy": "TimestampAscending",
    }
    calls = datapoints = 0
    token: str | None = None
    while True:
        limiter.acquire()
        with aws_call("GetMetricData", client):
            response = client.get_metric_data(**request, **({"NextToken": token} if token else {}))
        calls += 1
        token = response.get("NextToken") or None
        for message in response.get("Messages", []):
            # A call-level message (e.g. too many metrics) means part of the request went unanswered.
            raise AwsApiError("GetMetricData", region, f"{message.get('Code')}: {message.get('Value')}")
        for result in response.get("MetricDataResults", []):
            query_id = result.get("Id")
            query = by_id.get(query_id)
            if query is None:
                raise AwsApiError("GetMetricData", region, f"answered unknown query id {query_id!r}")
            status = result.get("StatusCode", "Complete")
            if status == "PartialData" and token is None:
                raise AwsApiError(
                    "GetMetricData",
                    region,
                    f"{query.metric} {query.stat} of {query.model_id} came back PartialData without a NextToken",
                )
            if status not in ("Complete", "PartialData"):
                reasons = "; ".join(f"{m.get('Code')}: {m.get('Value')}" for m in result.get("Messages", []))
                raise AwsApiError(
                    "GetMetricData",
                    region,
                    f"{query.metric} {query.stat} of {query.model_id} returned {status}"
                    + (f" ({reasons})" if reasons else ""),
                )
            timestamps = result.get("Timestamps", [])
            values = result.get("Values", [])
            if len(timestamps) != len(values):
                raise AwsApiError(
                    "GetMetricData",
                    region,
                    f"{len(timestamps)} timestamps but {len(values)} values for {query_id}",
                )
            points = series.setdefault(query_id, {})
            for moment, value in zip(timestamps, values, strict=True):
                moment = _naive(moment)
                if not batch.start <= moment < batch.end:
                    raise AwsApiError(
                        "GetMetricData",
                        region,
                        f"returned {moment:%Y-%m-%d %H:%M} outside the requested "
                        f"[{batch.start:%Y-%m-%d %H:%M}, {batch.end:%Y-%m-%d %H:%M})",
                    )
                points[moment] = float(value)
            datapoints += len(timestamps)
        if token is None:
            break
    missing = by_id.keys() - series.keys()
    if missing:
        raise AwsApiError("GetMetricData", region, f"no result for {len(missing)} of {len(by_id)} queries")
    stats = CallStats(
        calls=calls,
        metrics_requested=calls * len(batch.queries),
        datapoints=datapoints,
        datapoint_slots=batch.datapoint_slots,
    )
    return series, stats


def fetch_metric_data(
    client,
    model_ids: Iterable[str],
    start: datetime,
    end: datetime,
    period: int,
    max_workers: int = 8,
    max_calls_per_second: float = MAX_CALLS_PER_SECOND,
    metrics: tuple[MetricSpec, ...] = METRICS,
    pairs: Iterable[tuple[str, MetricSpec]] | None = None,
) -> tuple[MetricPoints, CallStats]:
    """Every datapoint of ``metrics`` for ``model_ids`` (or of exactly ``pairs``) in [start, end) at ``period`` s,
    and what it cost.

    Calls come from ``plan_pair_queries`` and run on up to ``max_workers`` threads, never faster than
    ``max_calls_per_second`` together. Timestamps are period starts, naive UTC; rows are ordered by
    (model_id, metric, stat, ts). Any failed call (after botocore's retries), error status, call-level message
    or PartialData without a NextToken raises ``AwsApiError``; the remaining calls are cancelled.
    """
    if pairs is None:
        batches = plan_queries(model_ids, start, end, period, metrics)
    else:
        batches = plan_pair_queries(pairs, start, end, period)
    if not batches:
        return MetricPoints(), CallStats()
    limiter = RateLimiter(max_calls_per_second)
    results: list[tuple[dict[str, dict[datetime, float]], CallStats] | None] = [None] * len(batches)
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(batches)))) as executor:
        futures = {executor.submit(_fetch_batch, client, batch, limiter): index for index, batch in enumerate(batches)}
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in done:
            error = future.exception()
            if error is not None:
                raise error
        for future, index in futures.items():
            results[index] = future.result()

    # Rows ordered by (model_id, metric, stat, ts): order the queries, then each query's points by time.
    answered: list[tuple[MetricQuery, dict[datetime, float]]] = []
    total = CallStats()
    for batch, result in zip(batches, results, strict=True):
        assert result is not None
        series, stats = result
        total = total + stats
        answered.extend((query, series[query.query_id]) for query in batch.queries)
    answered.sort(key=lambda item: (item[0].model_id, item[0].metric, item[0].stat))
    model_id: list[str] = []
    metric: list[str] = []
    stat: list[str] = []
    ts: list[datetime] = []
    value: list[float] = []
    for query, points in answered:
        moments = sorted(points)
        count = len(moments)
        model_id += [query.model_id] * count
        metric += [query.metric] * count
        stat += [query.stat] * count
        ts += moments
        value += [points[moment] for moment in moments]
    points = MetricPoints(
        model_id=tuple(model_id),
        metric=tuple(metric),
        stat=tuple(stat),
        period_s=(period,) * len(ts),
        ts=tuple(ts),
        value=tuple(value),
    )
    return points, total

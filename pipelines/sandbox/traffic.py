"""The sandbox's traffic model: AWS/Bedrock CloudWatch datapoints as a function of (scenario, seed, minute).

Nothing is stored. Any range of minutes is computed on demand, one (region, endpoint, UTC day) block at a
time: every series of an endpoint is generated together because the endpoint's quotas throttle them jointly.
Blocks are vectorised numpy and kept in a small LRU cache, so serving GetMetricData is an array slice.

Per minute and series the model draws a demand (requests, and mean tokens per request) from a counter-based
generator (Philox keyed by a BLAKE2 hash of seed, region, series and day, never Python's ``hash()``), so a
minute's values are the same whether it is computed alone or inside a larger range, and they never change when
the server's clock moves. Then, per endpoint minute:

* quota tokens demanded = sum over series of requests x (input + cache write + output x burndown);
* if that exceeds the endpoint's TPM quota, or the requests exceed its RPM quota, every series of the endpoint
  keeps the same fraction of its requests (``floor``), the rest are InvocationThrottles and carry no tokens;
* a few accepted requests fail as client or server errors; the remainder are Invocations with tokens.

Publication rules (what ``minutes`` returns; ``count == 0`` means CloudWatch has no datapoint that minute):

* Invocations: one sample of 1 per successful request (sum = count = requests, min = max = 1).
* InputTokenCount, OutputTokenCount, EstimatedTPMQuotaUsage, InvocationLatency: one sample per successful
  request; min/max are the smallest/largest single request. EstimatedTPMQuotaUsage = input + cache write +
  output x burndown.
* CacheRead/CacheWriteInputTokenCount: as above, but only for series whose traffic uses prompt caching.
* TimeToFirstToken: one sample per successful streaming request.
* InvocationThrottles, InvocationClientErrors, InvocationServerErrors: one sample per request attempt in a
  minute with any attempt (value 1 if that attempt was throttled / failed, else 0), so 0-valued datapoints
  flow with the traffic as on AWS and Sum is the number of throttles / errors.
* A minute with no successful and no throttled request has no datapoint for any metric. Errors are only drawn
  among minutes with at least two accepted requests, so an error never stands alone.

TPD quotas are reported by the scenario but not enforced here; the bundled scenarios stay below them.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np

from pipelines.sandbox.scenario import Latency, Scenario, TrafficSpec

METRICS: tuple[str, ...] = (
    "Invocations",
    "InputTokenCount",
    "OutputTokenCount",
    "CacheReadInputTokenCount",
    "CacheWriteInputTokenCount",
    "InvocationThrottles",
    "InvocationClientErrors",
    "InvocationServerErrors",
    "InvocationLatency",
    "TimeToFirstToken",
    "EstimatedTPMQuotaUsage",
)

MINUTES_PER_DAY = 1440
_MINUTE = np.arange(MINUTES_PER_DAY, dtype=np.int64)
# One block is every series of one endpoint for one UTC day (~25 arrays of 1,440 floats per series). A day
# of a whole demo region is ~10 blocks; 256 blocks keep a 2-week, all-region backfill warm in under 200 MB.
DEFAULT_CACHE_BLOCKS = 256
# Spread of the per-day and per-hour demand multipliers (lognormal sigma): days and hours differ a little.
_DAY_SIGMA = 0.08
_HOUR_SIGMA = 0.10


@dataclass(frozen=True)
class Series:
    """One CloudWatch series: the ModelId dimension value and the endpoint it belongs to."""

    region: str
    model_id: str  # base model id, system profile id, or an APPLICATION profile's 12-character id
    endpoint_id: str


@dataclass(frozen=True)
class Samples:
    """Per-minute statistic sets; element i is minute ``start + i``; ``count == 0``: no datapoint."""

    sum: np.ndarray
    count: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray

    def __len__(self) -> int:
        return len(self.count)


@dataclass(frozen=True)
class EndpointMinutes:
    """Per-minute totals of one endpoint, to check throttling: demand against quota, and what was served."""

    demand_requests: np.ndarray
    demand_quota_tokens: np.ndarray  # input + cache write + output x burndown, had every request been served
    accepted_requests: np.ndarray  # not throttled (includes client/server errors)
    invocations: np.ndarray
    quota_tokens: np.ndarray  # input + cache write + output x burndown of the successful requests
    throttles: np.ndarray
    quota_tpm: float | None
    quota_rpm: float | None


@dataclass
class SeriesDay:
    """Everything one series published in one UTC day; each array has one element per minute."""

    spec: TrafficSpec
    burndown: float
    demand: np.ndarray
    demand_quota: np.ndarray
    accepted: np.ndarray
    ok: np.ndarray  # successful requests (Invocations)
    throttles: np.ndarray
    client_errors: np.ndarray
    server_errors: np.ndarray
    attempts: np.ndarray
    tokens: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # metric -> (sum, min, max)
    latency: tuple[np.ndarray, np.ndarray, np.ndarray]
    ttft: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # (count, sum, min, max)


@dataclass
class _Block:
    series: dict[str, SeriesDay]


class Traffic:
    """Deterministic CloudWatch datapoints for a scenario; ``minutes`` is what GetMetricData aggregates."""

    def __init__(
        self,
        scenario: Scenario,
        seed: int = 0,
        anchor: datetime | date | None = None,
        cache_blocks: int = DEFAULT_CACHE_BLOCKS,
    ) -> None:
        """``anchor``: UTC, cut to its day (default today); growth is relative to it; history ends on it.

        History starts ``scenario.history_days`` before the anchor; traffic continues after it.
        """
        self.scenario = scenario
        self.seed = int(seed)
        self.anchor_minute = _day_start_minute(anchor)
        self.history_start_minute = self.anchor_minute - scenario.history_days * MINUTES_PER_DAY
        self._anchor_day = self.anchor_minute // MINUTES_PER_DAY
        self._series: dict[str, tuple[Series, ...]] = {}
        self._specs: dict[tuple[str, str], TrafficSpec] = {}
        self._endpoint_specs: dict[tuple[str, str], tuple[TrafficSpec, ...]] = {}
        for region in scenario.regions:
            specs = scenario.traffic.get(region, ())
            self._series[region] = tuple(Series(region, s.model_id, s.endpoint_id) for s in specs)
            for spec in specs:
                self._specs[(region, spec.model_id)] = spec
                key = (region, spec.endpoint_id)
                self._endpoint_specs[key] = (*self._endpoint_specs.get(key, ()), spec)
        self._cache: OrderedDict[tuple[str, str, int], _Block] = OrderedDict()
        self._cache_blocks = max(1, int(cache_blocks))
        self._lock = threading.Lock()

    # -- public interface ----------------------------------------------------------------------------------

    def series(self, region: str) -> tuple[Series, ...]:
        """Every ModelId that carries traffic in the scenario for ``region`` (idle or not at a given time)."""
        return self._series.get(region, ())

    def minutes(self, region: str, model_id: str, metric: str, start: int, stop: int) -> Samples:
        """Per-minute samples of one metric over epoch minutes ``[start, stop)``; unknown series: all idle."""
        length = max(0, int(stop) - int(start))
        spec = self._specs.get((region, model_id))
        extract = _EXTRACTORS.get(metric)
        if spec is None or extract is None or length == 0:
            return _idle(length)
        parts: list[tuple[np.ndarray, ...]] = []
        for day, lo, hi in self._day_slices(int(start), int(stop)):
            if day is None:
                parts.append(tuple(np.zeros(hi - lo) for _ in range(4)))
                continue
            series_day = self._block(region, spec.endpoint_id, day).series[model_id]
            parts.append(tuple(a[lo:hi] for a in extract(series_day)))
        if len(parts) == 1:
            total, count, low, high = (np.array(a, dtype=np.float64) for a in parts[0])
        else:
            total, count, low, high = (np.concatenate([p[i] for p in parts]).astype(np.float64) for i in range(4))
        return Samples(sum=total, count=count, minimum=low, maximum=high)

    def last_active_minute(self, region: str, model_id: str, before: int) -> int | None:
        """The latest minute < ``before`` with a datapoint, or None (ListMetrics hides series idle 14 d)."""
        spec = self._specs.get((region, model_id))
        if spec is None or (spec.requests_per_minute == 0 and not spec.bursts):
            return None
        first_day = self.history_start_minute // MINUTES_PER_DAY
        if spec.start_day is not None:
            first_day = max(first_day, self._anchor_day + spec.start_day)
        last_day = (int(before) - 1) // MINUTES_PER_DAY
        if spec.end_day is not None:
            last_day = min(last_day, self._anchor_day + spec.end_day - 1)
        for day in range(last_day, first_day - 1, -1):
            attempts = self._block(region, spec.endpoint_id, day).series[model_id].attempts
            minutes = day * MINUTES_PER_DAY + _MINUTE
            active = np.flatnonzero((attempts > 0) & (minutes < before))
            if active.size:
                return int(minutes[active[-1]])
        return None

    def series_day(self, region: str, model_id: str, day: int) -> SeriesDay | None:
        """Everything one series published on one UTC day (epoch day number), or None for an unknown series or
        a day before the history; the invocation logs split these per-minute totals into single requests."""
        spec = self._specs.get((region, model_id))
        if spec is None or (day + 1) * MINUTES_PER_DAY <= self.history_start_minute:
            return None
        return self._block(region, spec.endpoint_id, day).series[model_id]

    def endpoint_minutes(self, region: str, endpoint_id: str, start: int, stop: int) -> EndpointMinutes:
        """Per-minute demand, service and throttles of one endpoint (series summed) over ``[start, stop)``."""
        endpoint = self.scenario.endpoint(region, endpoint_id)
        length = max(0, int(stop) - int(start))
        names = ("demand", "demand_quota", "accepted", "ok", "quota", "throttles")
        totals = {name: np.zeros(length) for name in names}
        if (region, endpoint_id) in self._endpoint_specs:
            offset = 0
            for day, lo, hi in self._day_slices(int(start), int(stop)):
                if day is not None:
                    for sd in self._block(region, endpoint_id, day).series.values():
                        window = slice(offset, offset + hi - lo)
                        totals["demand"][window] += sd.demand[lo:hi]
                        totals["demand_quota"][window] += sd.demand_quota[lo:hi]
                        totals["accepted"][window] += sd.accepted[lo:hi]
                        totals["ok"][window] += sd.ok[lo:hi]
                        totals["quota"][window] += _quota_usage(sd)[0][lo:hi]
                        totals["throttles"][window] += sd.throttles[lo:hi]
                offset += hi - lo
        return EndpointMinutes(
            demand_requests=totals["demand"],
            demand_quota_tokens=totals["demand_quota"],
            accepted_requests=totals["accepted"],
            invocations=totals["ok"],
            quota_tokens=totals["quota"],
            throttles=totals["throttles"],
            quota_tpm=None if endpoint is None else self.scenario.quota_value(region, endpoint.tpm_quota_code),
            quota_rpm=None if endpoint is None else self.scenario.quota_value(region, endpoint.rpm_quota_code),
        )

    # -- blocks --------------------------------------------------------------------------------------------

    def _day_slices(self, start: int, stop: int):
        """(day or None for before-history, lo, hi) pieces covering [start, stop) in order."""
        minute = start
        while minute < stop:
            day = minute // MINUTES_PER_DAY
            lo = minute - day * MINUTES_PER_DAY
            hi = min(MINUTES_PER_DAY, stop - day * MINUTES_PER_DAY)
            history_day = (day + 1) * MINUTES_PER_DAY > self.history_start_minute
            yield (day if history_day else None), lo, hi
            minute = day * MINUTES_PER_DAY + hi

    def _block(self, region: str, endpoint_id: str, day: int) -> _Block:
        key = (region, endpoint_id, day)
        with self._lock:
            block = self._cache.get(key)
            if block is not None:
                self._cache.move_to_end(key)
                return block
        # Computed outside the lock: two threads may both compute a block, with identical results.
        block = self._compute_block(region, endpoint_id, day)
        with self._lock:
            self._cache[key] = block
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_blocks:
                self._cache.popitem(last=False)
        return block

    def _compute_block(self, region: str, endpoint_id: str, day: int) -> _Block:
        specs = self._endpoint_specs[(region, endpoint_id)]
        minutes = day * MINUTES_PER_DAY + _MINUTE
        drafts = [self._demand(spec, minutes, day) for spec in specs]

        endpoint = self.scenario.endpoint(region, endpoint_id)
        tpm = rpm = None
        if endpoint is not None:
            tpm = self.scenario.quota_value(region, endpoint.tpm_quota_code)
            rpm = self.scenario.quota_value(region, endpoint.rpm_quota_code)
        demand_requests = np.sum([d.requests for d in drafts], axis=0)
        demand_quota = np.sum([d.quota for d in drafts], axis=0)
        fraction = np.ones(MINUTES_PER_DAY)
        # The tiny shave keeps floor(requests x fraction) x tokens within the quota despite float rounding.
        if tpm is not None:
            over = demand_quota > tpm
            fraction[over] = np.minimum(fraction[over], tpm / demand_quota[over] * (1 - 1e-12))
        if rpm is not None:
            over = demand_requests > rpm
            fraction[over] = np.minimum(fraction[over], rpm / demand_requests[over] * (1 - 1e-12))

        latency = self.scenario.latency
        block = _Block(series={})
        for draft in drafts:
            model_latency = latency.get(draft.spec.base_model_id, Latency())
            block.series[draft.spec.model_id] = _serve(draft, fraction, model_latency)
        return block

    def _demand(self, spec: TrafficSpec, minutes: np.ndarray, day: int) -> _Draft:
        rng = np.random.Generator(np.random.Philox(key=_philox_key(self.seed, spec.region, spec.model_id, day)))
        # Draw every random array at full size and in a fixed order, so values never depend on which minutes
        # happen to be active or requested.
        day_factor = np.exp(_DAY_SIGMA * rng.standard_normal())
        hour_knots = np.exp(_HOUR_SIGMA * rng.standard_normal(26))
        hour_noise = np.interp(_MINUTE / 60.0, np.arange(-1, 25), hour_knots)

        local = minutes + round(spec.utc_offset_hours * 60)
        local_hour = (local % MINUTES_PER_DAY) / 60.0
        local_weekday = (local // MINUTES_PER_DAY + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        rate = spec.requests_per_minute * _SHAPES[spec.shape](local_hour, spec.night_factor)
        rate = rate * np.where(local_weekday >= 5, spec.weekend_factor, 1.0)
        rate = rate * (1.0 + spec.growth_per_day) ** ((minutes - self.anchor_minute) / MINUTES_PER_DAY)
        rate = rate * day_factor * hour_noise
        utc_minute = minutes % MINUTES_PER_DAY
        utc_weekday = (day + 3) % 7
        for burst in spec.bursts:
            if utc_weekday in burst.days:
                in_burst = (utc_minute >= burst.start_minute) & (utc_minute < burst.start_minute + burst.minutes)
                rate = rate + np.where(in_burst, burst.requests_per_minute, 0.0)
        active = minutes >= self.history_start_minute
        if spec.start_day is not None:
            active &= minutes >= (self._anchor_day + spec.start_day) * MINUTES_PER_DAY
        if spec.end_day is not None:
            active &= minutes < (self._anchor_day + spec.end_day) * MINUTES_PER_DAY
        requests = rng.poisson(np.where(active, rate, 0.0)).astype(np.float64)

        # The mean of n requests varies less than one request: lognormal with sigma / sqrt(n), mean-corrected.
        sigma = spec.token_spread / np.sqrt(np.maximum(requests, 1.0))
        normals = rng.standard_normal((4, MINUTES_PER_DAY))
        means = [
            base * np.exp(sigma * z - sigma**2 / 2)
            for base, z in zip(
                (spec.input_tokens, spec.output_tokens, spec.cache_read_tokens, spec.cache_write_tokens),
                normals,
                strict=True,
            )
        ]
        burndown = self.scenario.burndown.get(spec.base_model_id, 1.0)
        per_request_quota = means[0] + means[3] + burndown * means[1]
        return _Draft(spec, rng, burndown, requests, means, requests * per_request_quota)


@dataclass
class _Draft:
    """A series' demand for one day, before the endpoint's quotas are applied."""

    spec: TrafficSpec
    rng: np.random.Generator
    burndown: float
    requests: np.ndarray
    means: list[np.ndarray]  # per-request mean tokens this minute: input, output, cache read, cache write
    quota: np.ndarray


def _serve(draft: _Draft, fraction: np.ndarray, latency: Latency) -> SeriesDay:
    """Apply the endpoint's accepted fraction to one series and derive every published statistic."""
    spec, rng = draft.spec, draft.rng
    accepted = np.floor(draft.requests * fraction)
    throttles = draft.requests - accepted
    # Errors only among minutes with two or more accepted requests, so a minute never holds errors alone.
    spare = np.maximum(accepted - 1, 0).astype(np.int64)
    client_errors = rng.binomial(spare, spec.client_error_rate).astype(np.float64)
    server_errors = rng.binomial(spare - client_errors.astype(np.int64), spec.server_error_rate).astype(np.float64)
    ok = accepted - client_errors - server_errors
    spread_jitter = rng.random((5, MINUTES_PER_DAY))

    tokens: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    names = ("InputTokenCount", "OutputTokenCount", "CacheReadInputTokenCount", "CacheWriteInputTokenCount")
    for i, name in enumerate(names):
        total = np.floor(ok * draft.means[i])
        tokens[name] = (total, *_spread(total, ok, spec.token_spread, spread_jitter[i]))

    out_sum, out_lo, out_hi = tokens["OutputTokenCount"]
    jitter = np.clip(np.exp(0.12 * rng.standard_normal(MINUTES_PER_DAY)), 0.7, 1.5)
    lat_sum = ok * latency.base_ms * jitter + latency.per_output_token_ms * out_sum
    several = ok >= 2
    lat_lo = np.where(several, 0.6 * latency.base_ms + latency.per_output_token_ms * out_lo, lat_sum)
    lat_hi = np.where(several, 1.6 * latency.base_ms * jitter + latency.per_output_token_ms * out_hi, lat_sum)

    streamed = rng.binomial(ok.astype(np.int64), spec.streaming_share).astype(np.float64)
    ttft_jitter = np.clip(np.exp(0.15 * rng.standard_normal(MINUTES_PER_DAY)), 0.7, 1.6)
    ttft_sum = streamed * latency.ttft_ms * ttft_jitter
    ttft_mean = ttft_sum / np.maximum(streamed, 1)
    several_streams = streamed >= 2
    ttft_lo = np.where(several_streams, 0.55 * ttft_mean, ttft_sum)
    ttft_hi = np.where(several_streams, ttft_mean * (1.6 + spread_jitter[4]), ttft_sum)

    return SeriesDay(
        spec=spec,
        burndown=draft.burndown,
        demand=draft.requests,
        demand_quota=draft.quota,
        accepted=accepted,
        ok=ok,
        throttles=throttles,
        client_errors=client_errors,
        server_errors=server_errors,
        attempts=ok + throttles + client_errors + server_errors,
        tokens=tokens,
        latency=(lat_sum, lat_lo, lat_hi),
        ttft=(streamed, ttft_sum, ttft_lo, ttft_hi),
    )


def _spread(total: np.ndarray, n: np.ndarray, sigma: float, jitter: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest single request of ``n`` requests summing to ``total``.

    Skewed right like real token counts; with ``r <= n - 1`` and ``r >= 1`` some set of n requests with that
    sum, minimum and maximum exists, and always ``min <= total / n <= max``. One request: min = max = total.
    """
    mean = total / np.maximum(n, 1)
    width = np.clip(sigma * (1 - 1 / np.sqrt(np.maximum(n, 1))) * (0.7 + 0.6 * jitter) + 0.02, 0, 0.9)
    skew = np.clip(n - 1, 1, 2.5)
    low = np.where(n >= 2, np.floor(mean * (1 - width)), total)
    high = np.where(n >= 2, np.ceil(mean * (1 + width * skew)), total)
    return low, high


def _quota_usage(sd: SeriesDay) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EstimatedTPMQuotaUsage per minute: input + cache write + output x burndown (sum, min, max)."""
    parts = [
        sd.tokens["InputTokenCount"],
        sd.tokens["CacheWriteInputTokenCount"],
        sd.tokens["OutputTokenCount"],
    ]
    weights = (1.0, 1.0, sd.burndown)
    return tuple(sum(w * p[i] for w, p in zip(weights, parts, strict=True)) for i in range(3))  # type: ignore[return-value]


def _ones_where(mask: np.ndarray) -> np.ndarray:
    return mask.astype(np.float64)


def _per_request(sd: SeriesDay, stats: tuple[np.ndarray, np.ndarray, np.ndarray]):
    return stats[0], sd.ok, stats[1], stats[2]


def _per_attempt(sd: SeriesDay, hits: np.ndarray):
    # One 0/1 sample per attempt: min is 0 unless every attempt was a hit, max is 1 if any was.
    some = sd.attempts > 0
    return hits, sd.attempts, _ones_where(some & (hits >= sd.attempts)), _ones_where(hits > 0)


def _cache_metric(name: str):
    def extract(sd: SeriesDay):
        if not sd.spec.uses_prompt_cache:
            zeros = np.zeros(MINUTES_PER_DAY)
            return zeros, zeros, zeros, zeros
        return _per_request(sd, sd.tokens[name])

    return extract


_EXTRACTORS: dict[str, Callable[[SeriesDay], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = {
    "Invocations": lambda sd: (sd.ok, sd.ok, _ones_where(sd.ok > 0), _ones_where(sd.ok > 0)),
    "InputTokenCount": lambda sd: _per_request(sd, sd.tokens["InputTokenCount"]),
    "OutputTokenCount": lambda sd: _per_request(sd, sd.tokens["OutputTokenCount"]),
    "CacheReadInputTokenCount": _cache_metric("CacheReadInputTokenCount"),
    "CacheWriteInputTokenCount": _cache_metric("CacheWriteInputTokenCount"),
    "InvocationThrottles": lambda sd: _per_attempt(sd, sd.throttles),
    "InvocationClientErrors": lambda sd: _per_attempt(sd, sd.client_errors),
    "InvocationServerErrors": lambda sd: _per_attempt(sd, sd.server_errors),
    "InvocationLatency": lambda sd: _per_request(sd, sd.latency),
    "TimeToFirstToken": lambda sd: (sd.ttft[1], sd.ttft[0], sd.ttft[2], sd.ttft[3]),
    "EstimatedTPMQuotaUsage": lambda sd: _per_request(sd, _quota_usage(sd)),
}


def _business(hour: np.ndarray, night: float) -> np.ndarray:
    # Office hours 07:00-19:00 local, peaking early afternoon.
    bump = np.where((hour >= 7) & (hour < 19), np.sin(np.pi * (hour - 7) / 12) ** 2, 0.0)
    return night + (1 - night) * bump


def _flat(hour: np.ndarray, night: float) -> np.ndarray:
    # Round the clock with a mild afternoon high; night_factor is the overnight low.
    low = max(night, 0.3)
    return low + (1 - low) * (0.5 + 0.5 * np.cos(2 * np.pi * (hour - 14) / 24))


def _nightly(hour: np.ndarray, night: float) -> np.ndarray:
    # A batch window 01:00-05:00 local with soft edges; night_factor is the daytime trickle.
    window = np.clip(np.minimum(hour - 0.5, 5.5 - hour) * 2, 0, 1)
    return night + (1 - night) * window


def _evening(hour: np.ndarray, night: float) -> np.ndarray:
    # Consumer traffic peaking at 20:00 local.
    bump = np.where((hour >= 10) & (hour < 24), np.sin(np.pi * (hour - 10) / 14) ** 2, 0.0)
    return night + (1 - night) * bump


_SHAPES: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "business": _business,
    "flat": _flat,
    "nightly": _nightly,
    "evening": _evening,
}


def _idle(length: int) -> Samples:
    return Samples(sum=np.zeros(length), count=np.zeros(length), minimum=np.zeros(length), maximum=np.zeros(length))


def _philox_key(seed: int, region: str, model_id: str, day: int) -> np.ndarray:
    digest = hashlib.blake2b(f"{seed}|{region}|{model_id}|{day}".encode(), digest_size=16).digest()
    return np.frombuffer(digest, dtype=np.uint64).copy()


def _day_start_minute(anchor: datetime | date | None) -> int:
    """Epoch minute of 00:00 UTC on the anchor's UTC day (default: today)."""
    if anchor is None:
        anchor = datetime.now(UTC)
    if isinstance(anchor, datetime):
        if anchor.tzinfo is None:
            anchor = anchor.replace(tzinfo=UTC)
        anchor = anchor.astimezone(UTC).date()
    midnight = datetime(anchor.year, anchor.month, anchor.day, tzinfo=UTC)
    return int(midnight.timestamp()) // 60

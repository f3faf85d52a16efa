"""The traffic model: deterministic, self-consistent, throttled where and only where demand passes quota."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from pipelines.sandbox.scenario import load_scenario
from pipelines.sandbox.traffic import METRICS, Traffic

ANCHOR = datetime(2026, 11, 27, tzinfo=UTC)  # a Friday
DAY = 1440
SONNET_US = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
TOKEN_METRICS = (
    "InputTokenCount",
    "OutputTokenCount",
    "CacheReadInputTokenCount",
    "CacheWriteInputTokenCount",
)


@pytest.fixture(scope="module")
def demo():
    return load_scenario("demo")


@pytest.fixture(scope="module")
def traffic(demo):
    return Traffic(demo, seed=7, anchor=ANCHOR)


@pytest.fixture(scope="module")
def tiny():
    return Traffic(load_scenario("tiny"), seed=1, anchor=ANCHOR)


def app_id(scenario, region: str, name: str) -> str:
    return next(p.profile_id for p in scenario.application_profiles(region) if p.name == name)


def all_series(traffic):
    return [(region, s) for region in traffic.scenario.regions for s in traffic.series(region)]


def endpoints(traffic):
    return sorted({(region, s.endpoint_id) for region, s in all_series(traffic)})


def test_anchor_is_truncated_to_the_utc_day(demo):
    late = Traffic(demo, seed=7, anchor=datetime(2026, 11, 27, 17, 33, tzinfo=UTC))
    assert late.anchor_minute == int(ANCHOR.timestamp()) // 60
    assert late.history_start_minute == late.anchor_minute - 45 * DAY


def test_series_are_every_model_id_with_traffic(demo, traffic):
    ids = {s.model_id for s in traffic.series("us-east-1")}
    assert app_id(demo, "us-east-1", "code-review-bot") in ids
    assert SONNET_US in ids  # direct use of the system profile is its own series
    assert app_id(demo, "us-east-1", "prototype-playground") not in ids  # created, never used
    assert {s.endpoint_id for s in traffic.series("us-west-2")} >= {"amazon.nova-lite-v1:0"}
    assert traffic.series("eu-west-1") == ()


def test_same_seed_same_values_different_seed_different(demo, traffic):
    model = app_id(demo, "us-east-1", "support-assistant-prod")
    start, stop = traffic.anchor_minute - 2 * DAY, traffic.anchor_minute
    again = Traffic(demo, seed=7, anchor=ANCHOR)
    other = Traffic(demo, seed=8, anchor=ANCHOR)
    for metric in METRICS:
        a = traffic.minutes("us-east-1", model, metric, start, stop)
        b = again.minutes("us-east-1", model, metric, start, stop)
        for field in ("sum", "count", "minimum", "maximum"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    a = traffic.minutes("us-east-1", model, "InputTokenCount", start, stop)
    c = other.minutes("us-east-1", model, "InputTokenCount", start, stop)
    assert not np.array_equal(a.sum, c.sum)


def test_any_sub_range_equals_the_slice_of_a_bigger_range(demo):
    model = app_id(demo, "us-east-1", "code-review-bot")
    big_traffic = Traffic(demo, seed=3, anchor=ANCHOR)
    start = big_traffic.anchor_minute - 3 * DAY - 17
    big = big_traffic.minutes("us-east-1", model, "InvocationThrottles", start, start + 3 * DAY)
    for lo, hi in ((0, 1), (5, 1500), (DAY - 3, 2 * DAY + 40), (2 * DAY, 3 * DAY)):
        # A fresh instance, so the sub-range is computed on its own, in a different order, with a cold cache.
        alone = Traffic(demo, seed=3, anchor=ANCHOR, cache_blocks=1)
        piece = alone.minutes("us-east-1", model, "InvocationThrottles", start + lo, start + hi)
        for field in ("sum", "count", "minimum", "maximum"):
            np.testing.assert_array_equal(getattr(piece, field), getattr(big, field)[lo:hi])


def test_values_do_not_depend_on_when_they_are_asked_for(demo):
    """The server clock only masks; a minute computed today equals the same minute computed tomorrow."""
    model = app_id(demo, "us-east-1", "ticket-triage")
    first = Traffic(demo, seed=7, anchor=datetime(2026, 11, 27, 0, 5, tzinfo=UTC))
    later = Traffic(demo, seed=7, anchor=datetime(2026, 11, 27, 23, 59, tzinfo=UTC))
    minute = first.anchor_minute + 600
    a = first.minutes("us-east-1", model, "OutputTokenCount", minute - 90, minute + 90)
    b = later.minutes("us-east-1", model, "OutputTokenCount", minute - 90, minute + 90)
    np.testing.assert_array_equal(a.sum, b.sum)


def test_no_datapoints_before_history_or_for_unknown_series(traffic):
    model = traffic.series("us-east-1")[0].model_id
    before = traffic.minutes(
        "us-east-1",
        model,
        "Invocations",
        traffic.history_start_minute - 100,
        traffic.history_start_minute + 2000,
    )
    assert not before.count[:100].any()
    assert before.count[100:].any()
    assert not traffic.minutes("us-east-1", "nope", "Invocations", 0, 50).count.any()
    assert not traffic.minutes("us-east-1", model, "NoSuchMetric", 0, 50).count.any()
    assert len(traffic.minutes("us-east-1", model, "Invocations", 10, 10)) == 0


@pytest.fixture(scope="module")
def history(traffic):
    """Every metric of every series over the last 10 days of history."""
    start, stop = traffic.anchor_minute - 10 * DAY, traffic.anchor_minute
    return {
        (region, s.model_id): {m: traffic.minutes(region, s.model_id, m, start, stop) for m in METRICS}
        for region, s in all_series(traffic)
    }


def test_statistics_are_self_consistent(history):
    for key, metrics in history.items():
        for metric, samples in metrics.items():
            has = samples.count > 0
            assert np.all(samples.count >= 0), (key, metric)
            assert not np.any(samples.sum[~has]) and not np.any(samples.maximum[~has]), (key, metric)
            mean = samples.sum[has] / samples.count[has]
            assert np.all(samples.minimum[has] <= mean + 1e-9), (key, metric)
            assert np.all(mean <= samples.maximum[has] + 1e-9), (key, metric)
        invocations = metrics["Invocations"]
        np.testing.assert_array_equal(invocations.sum, invocations.count)
        assert set(np.unique(invocations.maximum)) <= {0.0, 1.0}
        for metric in ("InputTokenCount", "OutputTokenCount", "InvocationLatency", "EstimatedTPMQuotaUsage"):
            np.testing.assert_array_equal(metrics[metric].count, invocations.count)
        assert np.all(metrics["TimeToFirstToken"].count <= invocations.count)


def test_estimated_tpm_quota_usage_is_input_plus_cache_write_plus_burndown_output(demo, history):
    for (region, model_id), metrics in history.items():
        spec = next(t for t in demo.traffic[region] if t.model_id == model_id)
        burndown = demo.burndown[spec.base_model_id]
        expected = (
            metrics["InputTokenCount"].sum
            + metrics["CacheWriteInputTokenCount"].sum
            + burndown * metrics["OutputTokenCount"].sum
        )
        np.testing.assert_allclose(metrics["EstimatedTPMQuotaUsage"].sum, expected, rtol=0, atol=1e-6)


def test_idle_minutes_publish_nothing_at_all(history):
    idle_seen = 0
    for metrics in history.values():
        idle = (metrics["Invocations"].count == 0) & (metrics["InvocationThrottles"].sum == 0)
        idle_seen += int(idle.sum())
        for samples in metrics.values():
            assert not samples.count[idle].any()
    assert idle_seen > 1000  # small profiles sleep at night


def test_error_and_throttle_metrics_flow_with_the_traffic(history):
    for metrics in history.values():
        attempts = metrics["InvocationThrottles"].count
        np.testing.assert_array_equal(metrics["InvocationClientErrors"].count, attempts)
        served = metrics["Invocations"].count + metrics["InvocationThrottles"].sum
        np.testing.assert_array_equal(attempts > 0, served > 0)
        np.testing.assert_array_equal(
            attempts,
            metrics["Invocations"].count
            + metrics["InvocationThrottles"].sum
            + metrics["InvocationClientErrors"].sum
            + metrics["InvocationServerErrors"].sum,
        )
    total_errors = sum(m["InvocationClientErrors"].sum.sum() for m in history.values())
    assert total_errors > 0


def test_prompt_cache_and_streaming_metrics_only_where_used(demo, history):
    cached = history[("us-east-1", app_id(demo, "us-east-1", "agent-platform-prod"))]
    plain = history[("us-east-1", app_id(demo, "us-east-1", "code-review-bot"))]
    assert cached["CacheReadInputTokenCount"].sum.sum() > cached["InputTokenCount"].sum.sum()
    assert cached["CacheWriteInputTokenCount"].count.any()
    assert not plain["CacheReadInputTokenCount"].count.any()
    assert not plain["TimeToFirstToken"].count.any()  # streaming_share 0
    assert cached["TimeToFirstToken"].count.any()


def test_haiku_answers_faster_than_sonnet(demo, history):
    def average_latency(name: str) -> float:
        latency = history[("us-east-1", app_id(demo, "us-east-1", name))]["InvocationLatency"]
        return latency.sum.sum() / latency.count.sum()

    assert average_latency("ticket-triage") < average_latency("support-assistant-prod") / 2


def test_throttled_requests_are_refused_not_invoked(traffic):
    start, stop = traffic.history_start_minute, traffic.anchor_minute
    for region, endpoint_id in endpoints(traffic):
        em = traffic.endpoint_minutes(region, endpoint_id, start, stop)
        np.testing.assert_array_equal(em.demand_requests, em.accepted_requests + em.throttles)
        assert np.all(em.invocations <= em.accepted_requests)
        if em.quota_tpm is not None:
            assert np.all(em.quota_tokens <= em.quota_tpm), (region, endpoint_id)
        if em.quota_rpm is not None:
            assert np.all(em.accepted_requests <= em.quota_rpm), (region, endpoint_id)
        over = np.zeros(len(em.throttles), dtype=bool)
        if em.quota_tpm is not None:
            over |= em.demand_quota_tokens > em.quota_tpm
        if em.quota_rpm is not None:
            over |= em.demand_requests > em.quota_rpm
        assert not np.any(em.throttles[~over]), (region, endpoint_id)


def test_endpoint_totals_match_the_series_metrics(demo, traffic):
    start, stop = traffic.anchor_minute - DAY, traffic.anchor_minute
    em = traffic.endpoint_minutes("us-east-1", SONNET_US, start, stop)
    series = [s for s in traffic.series("us-east-1") if s.endpoint_id == SONNET_US]
    quota = sum(traffic.minutes("us-east-1", s.model_id, "EstimatedTPMQuotaUsage", start, stop).sum for s in series)
    throttles = sum(traffic.minutes("us-east-1", s.model_id, "InvocationThrottles", start, stop).sum for s in series)
    np.testing.assert_allclose(em.quota_tokens, quota)
    np.testing.assert_array_equal(em.throttles, throttles)


def test_bursts_throttle_the_sonnet_endpoint_every_weekday_and_nothing_else(demo, traffic):
    start, stop = traffic.history_start_minute, traffic.anchor_minute
    minutes = np.arange(start, stop)
    weekday = (minutes // DAY + 3) % 7
    burst = (weekday < 5) & (minutes % DAY >= 14 * 60) & (minutes % DAY < 14 * 60 + 25)
    for region, endpoint_id in endpoints(traffic):
        em = traffic.endpoint_minutes(region, endpoint_id, start, stop)
        if (region, endpoint_id) == ("us-east-1", SONNET_US):
            assert np.all(em.throttles[burst] > 0)
            assert not em.throttles[~burst].any()
            assert np.all(em.demand_quota_tokens[~burst] < 0.8 * em.quota_tpm)
        else:
            assert not em.throttles.any(), endpoint_id
            assert np.all(em.demand_quota_tokens < 0.8 * em.quota_tpm), endpoint_id


def test_every_series_of_a_throttled_endpoint_keeps_the_same_fraction(demo, traffic):
    tuesday_burst = traffic.anchor_minute - 3 * DAY + 14 * 60  # the anchor is a Friday
    start, stop = tuesday_burst, tuesday_burst + 25
    series = [s.model_id for s in traffic.series("us-east-1") if s.endpoint_id == SONNET_US]
    throttles = np.array([traffic.minutes("us-east-1", m, "InvocationThrottles", start, stop).sum for m in series])
    demand = np.array([traffic.minutes("us-east-1", m, "InvocationThrottles", start, stop).count for m in series])
    accepted = demand - throttles
    assert throttles.sum() > 0
    # accepted = floor(demand x f) with one f per minute for all series: some f fits every series at once.
    with np.errstate(divide="ignore", invalid="ignore"):
        lowest_f = np.where(demand > 0, accepted / demand, 0).max(axis=0)
        highest_f = np.where(demand > 0, (accepted + 1) / demand, np.inf).min(axis=0)
    assert np.all(lowest_f < highest_f)
    bot = series.index(app_id(demo, "us-east-1", "code-review-bot"))
    assert throttles[bot].sum() > 0.5 * throttles.sum()  # who caused it is visible


def test_growth_weekly_and_daily_rhythm(demo, traffic):
    anchor = traffic.anchor_minute

    def invocations(name: str, start: int, stop: int) -> float:
        model = app_id(demo, "us-east-1", name)
        return traffic.minutes("us-east-1", model, "Invocations", start, stop).sum.sum()

    # +1 %/day: the last week carries clearly more than the first full week of history.
    growing = "agent-platform-prod"
    assert invocations(growing, anchor - 7 * DAY, anchor) > 1.2 * invocations(
        growing, anchor - 42 * DAY, anchor - 35 * DAY
    )
    model = "support-assistant-prod"
    saturday, thursday = anchor - 6 * DAY, anchor - DAY
    assert invocations(model, thursday, thursday + DAY) > 2 * invocations(model, saturday, saturday + DAY)
    us_afternoon = invocations(model, thursday + 17 * 60, thursday + 19 * 60)
    us_night = invocations(model, thursday + 7 * 60, thursday + 9 * 60)
    assert us_afternoon > 5 * us_night


def test_idle_profile_is_last_seen_more_than_two_weeks_before_the_anchor(demo, traffic):
    legacy = app_id(demo, "us-east-1", "legacy-chatbot")
    last = traffic.last_active_minute("us-east-1", legacy, traffic.anchor_minute + 5 * DAY)
    assert last is not None and last < traffic.anchor_minute - 14 * DAY
    assert traffic.minutes("us-east-1", legacy, "Invocations", last, last + 1).count[0] > 0
    assert not traffic.minutes("us-east-1", legacy, "Invocations", last + 1, traffic.anchor_minute).count.any()
    busy = app_id(demo, "us-east-1", "ticket-triage")
    assert traffic.last_active_minute("us-east-1", busy, traffic.anchor_minute) == traffic.anchor_minute - 1
    assert traffic.last_active_minute("us-east-1", busy, traffic.history_start_minute) is None
    assert traffic.last_active_minute("us-east-1", "unknown", traffic.anchor_minute) is None


def test_profile_started_mid_history(demo, traffic):
    model = app_id(demo, "us-east-1", "search-query-rewrite")
    first_day = traffic.anchor_minute - 20 * DAY
    before = traffic.minutes("us-east-1", model, "Invocations", traffic.history_start_minute, first_day)
    after = traffic.minutes("us-east-1", model, "Invocations", first_day, first_day + DAY)
    assert not before.count.any()
    assert after.count.sum() > 1000


def test_traffic_continues_after_the_anchor(demo, traffic):
    model = app_id(demo, "us-east-1", "ticket-triage")
    future = traffic.minutes("us-east-1", model, "Invocations", traffic.anchor_minute, traffic.anchor_minute + DAY)
    assert future.count.sum() > 10_000


def test_tiny_scenario_throttles_its_daily_burst(tiny):
    start = tiny.anchor_minute - DAY
    em = tiny.endpoint_minutes("us-east-1", "us.anthropic.claude-haiku-4-5-20251001-v1:0", start, start + DAY)
    throttled = np.flatnonzero(em.throttles > 0)
    assert throttled.size and throttled.min() >= 12 * 60 and throttled.max() < 12 * 60 + 10
    nova = tiny.endpoint_minutes("us-east-1", "amazon.nova-lite-v1:0", start, start + DAY)
    assert not nova.throttles.any()

"""Every figure says its resolution: 1-minute statistics, coarse buckets, coverage, sliding days, weighted latency.

Each expected value is derived here from the fixture's own numbers (numpy for percentiles), never copied from the
marts' output.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from tests.models.lakes import OWN_MODELS, SONNET_4, FixtureLake, one, rows, stat

AS_OF = datetime(2025, 6, 10, 12, 0)
SERIES = "profileaaaaa"


def minutes_before(n: int) -> datetime:
    return AS_OF - timedelta(minutes=n)


def test_five_minute_data_never_becomes_five_active_minutes(lake: FixtureLake) -> None:
    """One request of 5,000 tokens every fifth minute: 1-minute data for the last day, 5-minute data before."""
    request_tokens = 5_000
    # 1-minute data for the last day: the request lands in minutes 5, 10, ..., 1440 before as_of.
    lake.coverage(AS_OF - timedelta(days=1), AS_OF, period_s=60)
    one_minute = [5 * k for k in range(1, 1440 // 5 + 1)]
    for n in one_minute:
        lake.minute(SERIES, minutes_before(n), input=request_tokens, invocations=1)
    # 5-minute data for days 3 to 5 before as_of, with the request in 24 of its buckets (two hours' worth).
    lake.coverage(AS_OF - timedelta(days=5), AS_OF - timedelta(days=3), period_s=300)
    buckets = [AS_OF - timedelta(days=4) + timedelta(minutes=5 * k) for k in range(24)]
    for start in buckets:
        lake.minute(SERIES, start, period_s=300, input=request_tokens, invocations=1)
    connection = lake.build(AS_OF)

    day = stat(connection, SERIES, "1d", "tpm")
    assert (day["p50"], day["avg"], day["max"]) == (request_tokens, request_tokens, request_tokens)
    assert (day["active_points"], day["window_points"]) == (len(one_minute), 1440)

    week = stat(connection, SERIES, "7d", "tpm")
    # Spreading each bucket over its five minutes would add 5 x 24 active minutes of 1,000 tokens each.
    assert week["active_points"] == len(one_minute)
    assert (week["p50"], week["avg"], week["max"]) == (request_tokens, request_tokens, request_tokens)
    assert week["resolution_s"] == 60 and week["coarsest_resolution_s"] == 300
    # The buckets are counted as buckets, their rate is bucket sum / 5, and the busiest minute is bracketed.
    assert week["buckets_5min"] == len(buckets)
    assert (week["p50_5min"], week["avg_5min"]) == (request_tokens / 5, request_tokens / 5)
    assert week["max_5min"] <= request_tokens <= week["max_bound_5min"]
    assert (week["max_5min"], week["max_bound_5min"]) == (request_tokens / 5, request_tokens)
    # Totals count every resolution.
    assert week["total_1min"] == request_tokens * len(one_minute)
    assert week["total_5min"] == request_tokens * len(buckets)
    assert week["total"] == request_tokens * (len(one_minute) + len(buckets))
    # Coverage: the last day at 1 minute, two days at 5 minutes, the rest never read.
    assert (week["covered_minutes_1min"], week["covered_minutes_5min"], week["uncovered_minutes"]) == (
        1440,
        2 * 1440,
        7 * 1440 - 3 * 1440,
    )


def test_a_five_minute_bucket_with_one_throttle_is_not_five_throttled_minutes(lake: FixtureLake) -> None:
    lake.coverage(AS_OF - timedelta(days=5), AS_OF - timedelta(days=3), period_s=300)
    lake.minute(SERIES, AS_OF - timedelta(days=4), period_s=300, input=1_000, invocations=4, throttles=1)
    connection = lake.build(AS_OF)

    assert rows(
        connection,
        "select throttles, throttled_minutes, throttled_buckets_5min from throttle_attribution "
        "where series_id = '*' and \"window\" = '7d'",
    ) == [(1, 0, 1)]
    throttles = stat(connection, SERIES, "7d", "throttles")
    assert (throttles["total"], throttles["active_points"], throttles["buckets_5min"]) == (1, 0, 1)
    assert one(connection, "select count(*) from throttle_minutes") == 0


def test_coarse_percentiles_are_their_own_figures_not_minute_percentiles(tmp_path: Path) -> None:
    """Two buckets of [1, 1, 1, 1, 496] and eight of [50] x 5: the bucket-rate p90 exceeds the true minute p90."""
    minutes = [[1, 1, 1, 1, 496]] * 2 + [[50] * 5] * 8
    starts = [AS_OF - timedelta(days=4) + timedelta(minutes=5 * k) for k in range(len(minutes))]

    fine = FixtureLake(tmp_path / "fine")
    fine.coverage(AS_OF - timedelta(days=5), AS_OF, period_s=60)
    coarse = FixtureLake(tmp_path / "coarse")
    coarse.coverage(AS_OF - timedelta(days=5), AS_OF - timedelta(days=3), period_s=300)
    for start, bucket in zip(starts, minutes, strict=True):
        for offset, tokens in enumerate(bucket):
            fine.minute(SERIES, start + timedelta(minutes=offset), input=tokens)
        coarse.minute(SERIES, start, period_s=300, input=sum(bucket))

    true_p90 = float(np.quantile([v for bucket in minutes for v in bucket], 0.9))
    bucket_p90 = float(np.quantile([sum(bucket) / 5 for bucket in minutes], 0.9))
    assert bucket_p90 > true_p90  # the counterexample: spreading does not give a lower bound

    measured = stat(fine.build(AS_OF), SERIES, "7d", "tpm")
    assert measured["p90"] == pytest.approx(true_p90)
    bucketed = stat(coarse.build(AS_OF), SERIES, "7d", "tpm")
    assert (bucketed["p90"], bucketed["active_points"]) == (None, 0)
    assert bucketed["p90_5min"] == pytest.approx(bucket_p90)
    assert bucketed["total"] == measured["total"] == sum(sum(bucket) for bucket in minutes)


def test_latency_average_is_weighted_by_requests(lake: FixtureLake) -> None:
    requests = {2: (1_000, 200.0), 1: (1, 5_000.0)}  # minutes before as_of: (requests, average latency ms)
    for n, (count, latency) in requests.items():
        lake.minute(SERIES, minutes_before(n), invocations=count, latency=latency, latency_samples=count)
    connection = lake.build(AS_OF)

    latency = stat(connection, SERIES, "1h", "latency_ms")
    weighted = sum(count * ms for count, ms in requests.values()) / sum(count for count, _ in requests.values())
    assert latency["avg"] == pytest.approx(weighted)  # ~205 ms, not the 2,600 ms mean of the two minutes
    assert latency["p50"] == pytest.approx(float(np.quantile([ms for _, ms in requests.values()], 0.5)))
    assert latency["percentile_basis"] == "per-minute averages"
    assert latency["total"] is None


def test_window_points_count_covered_minutes_and_zero_filled_percentiles_use_them(lake: FixtureLake) -> None:
    covered = 10  # only the last 10 minutes of the hour were read
    lake.coverage(minutes_before(covered), AS_OF, period_s=60)
    active = {1: 5, 2: 10, 3: 20, 5: 40, 7: 80, 9: 160}
    for n, tokens in active.items():
        lake.minute(SERIES, minutes_before(n), input=tokens, invocations=1)
    connection = lake.build(AS_OF)

    hour = stat(connection, SERIES, "1h", "tpm")
    assert (hour["active_points"], hour["window_points"]) == (len(active), covered)
    assert (hour["covered_minutes_1min"], hour["uncovered_minutes"]) == (covered, 60 - covered)
    zero_filled = [*active.values(), *[0] * (covered - len(active))]
    expected = np.quantile(zero_filled, [0.5, 0.9, 0.99])
    assert [hour["p50_zero_filled"], hour["p90_zero_filled"], hour["p99_zero_filled"]] == pytest.approx(list(expected))
    assert [hour["p50"], hour["p90"]] == pytest.approx(list(np.quantile(list(active.values()), [0.5, 0.9])))
    # The zero-filled mean divides by the minutes known to be idle or active, not by the hour's 60.
    assert hour["total"] / hour["window_points"] == pytest.approx(np.mean(zero_filled))
    rpm = stat(connection, "*", "1h", "rpm")
    assert rpm["p50_zero_filled"] == pytest.approx(float(np.quantile([1] * len(active) + [0] * 4, 0.5)))


def with_sonnet_quotas(lake: FixtureLake, *, tpm: float, rpm: float, tpd: float) -> None:
    """Claude Sonnet 4 on demand in the region, with its TPM, RPM and TPD quotas (quota_map pairs them by name)."""
    lake.foundation_model(SONNET_4, "Claude Sonnet 4")
    for code, kind, value in (("L-0000000A", "tokens per minute", tpm), ("L-0000000B", "requests per minute", rpm)):
        lake.quota(code, f"On-demand model inference {kind} for Anthropic Claude Sonnet 4 V1", value)
    lake.quota(
        "L-0000000C",
        "Model invocation max tokens per day for Anthropic Claude Sonnet 4 V1 (doubled for cross-region calls)",
        tpd,
    )


def test_tpd_sliding_day_catches_usage_straddling_the_anchored_boundary(lake: FixtureLake) -> None:
    quota, half = 500_000, 300_000
    with_sonnet_quotas(lake, tpm=10_000_000, rpm=10_000, tpd=quota)
    lake.minute(SONNET_4, minutes_before(1441), input=half)  # the last minute of anchored day 1
    lake.minute(SONNET_4, minutes_before(1440), input=half)  # the first minute of anchored day 0
    connection = lake.build(AS_OF, models=(*OWN_MODELS, "quota_headroom"))

    days = rows(
        connection,
        "select day_index, tokens, sliding_tokens, sliding_start, sliding_end from tpd_daily "
        "where series_id = '*' order by day_index",
    )
    # The busiest 1,440 minutes end right after the second minute, inside day 0, and hold both.
    sliding_end = minutes_before(1440) + timedelta(minutes=1)
    assert days == [
        (0, half, 2 * half, sliding_end - timedelta(minutes=1440), sliding_end),
        (1, half, half, minutes_before(1441) + timedelta(minutes=1) - timedelta(minutes=1440), minutes_before(1440)),
    ]
    headroom = rows(
        connection,
        "select utilisation_max, utilisation_max_sliding from quota_headroom "
        "where quota_type = 'tpd' and \"window\" = '7d'",
    )
    assert headroom == [(pytest.approx(half / quota), pytest.approx(2 * half / quota))]  # 60 % vs 120 %


def test_throttle_shares_by_quota_tokens_and_requests_and_the_quota_at_its_limit(lake: FixtureLake) -> None:
    tpm_quota, rpm_quota = 1_000, 10
    with_sonnet_quotas(lake, tpm=tpm_quota, rpm=rpm_quota, tpd=10_000_000)
    lake.profile("profileaaaaa", [f"arn:aws:bedrock:us-east-1::foundation-model/{SONNET_4}"])
    lake.profile("profilebbbbb", [f"arn:aws:bedrock:us-east-1::foundation-model/{SONNET_4}"])
    burndown = 5  # Claude Sonnet 4's output burndown (the seed)
    # Minute -3: A writes 150 output tokens in 1 request, B reads 100 input tokens in 4 requests; throttled.
    a = {"input": 0, "output": 150, "invocations": 1}
    b = {"input": 100, "output": 0, "invocations": 4}
    lake.minute("profileaaaaa", minutes_before(3), **a, throttles=1)
    lake.minute("profilebbbbb", minutes_before(3), **b)
    # Minute -1: B alone sends 9 tiny requests; throttled at the request quota.
    lake.minute("profilebbbbb", minutes_before(1), input=9, invocations=9, throttles=2)
    connection = lake.build(AS_OF)

    quota_a = a["input"] + burndown * a["output"]
    quota_b = b["input"] + burndown * b["output"]
    assert rows(connection, "select ts, limiting_quota from throttle_minutes order by ts") == [
        # (750 + 100) / 1,000 = 85 % of TPM, 5 of 10 requests.
        (minutes_before(3), "tpm" if (quota_a + quota_b) >= 0.8 * tpm_quota else "neither"),
        (minutes_before(1), "rpm"),  # 9 of 10 requests, 9 of 1,000 tokens
    ]
    found = {
        row[0]: row[1:]
        for row in rows(
            connection,
            """
            select series_id, share, share_quota_tokens, share_invocations, throttled_minutes_at_tpm,
                throttled_minutes_at_rpm, window_minutes
            from throttle_attribution where "window" = '1h'
            """,
        )
    }
    tokens_a, tokens_b = a["input"] + a["output"], b["input"] + b["output"] + 9
    requests_b = b["invocations"] + 9
    assert found["profileaaaaa"] == (
        pytest.approx(tokens_a / (tokens_a + tokens_b)),
        pytest.approx(quota_a / (quota_a + quota_b + 9)),
        pytest.approx(a["invocations"] / (a["invocations"] + requests_b)),
        1,
        0,
        60,
    )
    assert found["*"][3:5] == (1, 1)


def test_quota_headroom_rule_warns_when_a_burning_claude_model_has_no_burndown_row(lake: FixtureLake) -> None:
    unknown = "anthropic.claude-opus-4-9-20990101-v1:0"
    lake.foundation_model(unknown, "Claude Opus 4.9")
    lake.quota("L-0000000D", "On-demand model inference tokens per minute for Anthropic Claude Opus 4.9 V1", 1_000)
    lake.quota("L-0000000E", "On-demand model inference requests per minute for Anthropic Claude Opus 4.9 V1", 10)
    lake.minute(unknown, minutes_before(1), input=10, output=10, invocations=1)
    connection = lake.build(AS_OF, models=(*OWN_MODELS, "quota_headroom"))

    found = dict(
        rows(
            connection,
            "select quota_type, rule from quota_headroom where endpoint = ? and \"window\" = '1h'",
            unknown,
        )
    )
    assert found["tpm"].endswith("; warning: no burndown rate in the seed, output counted at 1x")
    assert "warning" not in found["rpm"]  # requests do not burn down
    warning = one(
        connection,
        "select burndown_warning from quota_headroom where quota_type = 'tpm' and \"window\" = '1h'",
    )
    assert unknown in warning

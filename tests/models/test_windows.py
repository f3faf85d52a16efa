"""endpoint_minute, window_stats and tpd_daily: aggregates, window boundaries, active minutes, rolling days."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from tests.models.lakes import US_SONNET_4, US_SONNET_4_ARNS, FixtureLake, rows, stat

AS_OF = datetime(2025, 6, 10, 12, 0)


def minutes_before(n: int) -> datetime:
    return AS_OF - timedelta(minutes=n)


@pytest.fixture
def two_profiles(lake: FixtureLake) -> FixtureLake:
    """Profiles A and B on the us. endpoint: A steady at 100 TPM for 4 minutes, B 300 TPM in one of them."""
    lake.profile(US_SONNET_4, US_SONNET_4_ARNS, kind="SYSTEM")
    lake.profile("profileaaaaa", US_SONNET_4_ARNS)
    lake.profile("profilebbbbb", US_SONNET_4_ARNS)
    lake.coverage(AS_OF - timedelta(days=30), AS_OF, period_s=60)
    for n in (1, 2, 3, 4):
        lake.minute("profileaaaaa", minutes_before(n), input=80, output=20, invocations=2)
    lake.minute("profilebbbbb", minutes_before(4), input=200, output=100, invocations=1)
    return lake


def test_endpoint_percentiles_are_over_per_minute_sums_not_pooled_series_values(two_profiles: FixtureLake) -> None:
    connection = two_profiles.build(AS_OF)
    aggregate = stat(connection, "*", "1h", "tpm")

    per_minute_sums = [400.0, 100.0, 100.0, 100.0]
    expected = np.quantile(per_minute_sums, [0.5, 0.9, 0.99])
    pooled = np.quantile([100.0, 100.0, 100.0, 100.0, 300.0], [0.5, 0.9, 0.99])
    assert not np.allclose(expected, pooled)  # the fixture tells the two apart
    assert [aggregate["p50"], aggregate["p90"], aggregate["p99"]] == pytest.approx(list(expected))
    assert (aggregate["p90"], aggregate["avg"], aggregate["max"], aggregate["total"]) == pytest.approx(
        (310.0, 175.0, 400.0, 700.0)
    )
    assert (aggregate["active_points"], aggregate["window_points"]) == (4, 60)


def test_series_rows_and_endpoint_minutes(two_profiles: FixtureLake) -> None:
    connection = two_profiles.build(AS_OF)

    b = stat(connection, "profilebbbbb", "1h", "tpm")
    assert (b["p50"], b["avg"], b["max"], b["total"], b["active_points"]) == (300.0, 300.0, 300.0, 300.0, 1)
    assert rows(connection, "select ts, tpm, rpm, series_count from endpoint_minute order by ts") == [
        (minutes_before(4), 400.0, 3.0, 2),
        (minutes_before(3), 100.0, 2.0, 1),
        (minutes_before(2), 100.0, 2.0, 1),
        (minutes_before(1), 100.0, 2.0, 1),
    ]
    # rpm is invocations under the quota's name.
    assert stat(connection, "*", "1h", "rpm")["p90"] == stat(connection, "*", "1h", "invocations")["p90"]


def test_window_boundaries_include_as_of_minus_w_and_exclude_as_of(lake: FixtureLake) -> None:
    series = "profileaaaaa"
    for n, tokens in ((60, 1), (61, 10), (0, 100), (1440, 1000), (1441, 10000)):
        lake.minute(series, minutes_before(n), input=tokens)
    connection = lake.build(AS_OF)

    totals = {w: stat(connection, series, w, "input_tokens")["total"] for w in ("1h", "1d", "7d")}
    assert totals == {"1h": 1.0, "1d": 1011.0, "7d": 11011.0}
    # The minute starting at as_of is in the warehouse, just in no window yet.
    assert rows(connection, "select input_tokens from usage_minute where ts = ?", AS_OF) == [(100.0,)]


def test_stats_are_over_active_minutes_and_idle_windows_still_have_a_row(lake: FixtureLake) -> None:
    series = "profileaaaaa"
    lake.coverage(AS_OF - timedelta(days=30), AS_OF, period_s=60)
    for n, tokens in ((5, 10), (6, 20), (7, 60)):
        lake.minute(series, minutes_before(n), input=tokens, latency=100 * n, latency_samples=1)
    lake.minute(series, minutes_before(3 * 1440), input=1)  # three days ago: only the 7d+ windows see it
    connection = lake.build(AS_OF)

    hour = stat(connection, series, "1h", "input_tokens")
    assert (hour["p50"], hour["avg"], hour["total"], hour["active_points"], hour["window_points"]) == (
        20.0,
        30.0,
        90.0,
        3,
        60,
    )
    # Zero-filled figures follow from the counts: the mean over all 60 minutes of the hour.
    assert hour["total"] / hour["window_points"] == 1.5
    latency = stat(connection, series, "1h", "latency_ms")
    assert (latency["p50"], latency["max"], latency["total"], latency["active_points"]) == (600.0, 700.0, None, 3)
    week = stat(connection, series, "7d", "input_tokens")
    assert (week["total"], week["active_points"], week["window_points"]) == (91.0, 4, 10080)
    # The series is active in the 30-day horizon, so every window has its row, idle or not.
    assert rows(
        connection,
        'select count(*), count(distinct "window"), count(distinct metric) from window_stats where series_id = ?',
        series,
    ) == [(70, 5, 14)]


def test_endpoint_latency_is_weighted_by_sample_count(lake: FixtureLake) -> None:
    lake.profile("profileaaaaa", US_SONNET_4_ARNS)
    lake.profile("profilebbbbb", US_SONNET_4_ARNS)
    lake.profile(US_SONNET_4, US_SONNET_4_ARNS, kind="SYSTEM")
    lake.minute("profileaaaaa", minutes_before(1), invocations=1, latency=100, latency_samples=1, ttft=10)
    lake.minute("profilebbbbb", minutes_before(1), invocations=3, latency=400, latency_samples=3, ttft=50)
    connection = lake.build(AS_OF)

    # ttft without SampleCount falls back to invocations as the weight: (10 * 1 + 50 * 3) / 4 = 40.
    assert rows(connection, "select latency_ms, latency_samples, ttft_ms from endpoint_minute") == [(325.0, 4.0, 40.0)]


def test_tpd_uses_rolling_24_hour_days_ending_at_as_of(two_profiles: FixtureLake) -> None:
    lake = two_profiles
    lake.minute("profileaaaaa", minutes_before(1440), input=1000)  # still day 0
    lake.minute("profileaaaaa", minutes_before(1441), input=5000)  # day 1
    lake.minute("profileaaaaa", minutes_before(29 * 1440 + 1), input=7)  # day 29, the last one
    lake.minute("profileaaaaa", minutes_before(30 * 1440 + 1), input=99999)  # outside the 30 days
    connection = lake.build(AS_OF)

    assert rows(
        connection,
        "select series_id, day_index, day_start, day_end, tokens, active_minutes from tpd_daily "
        "where series_id in ('*', 'profileaaaaa') order by series_id, day_index",
    ) == [
        ("*", 0, AS_OF - timedelta(days=1), AS_OF, 1700.0, 5),
        ("*", 1, AS_OF - timedelta(days=2), AS_OF - timedelta(days=1), 5000.0, 1),
        ("*", 29, AS_OF - timedelta(days=30), AS_OF - timedelta(days=29), 7.0, 1),
        ("profileaaaaa", 0, AS_OF - timedelta(days=1), AS_OF, 1400.0, 5),
        ("profileaaaaa", 1, AS_OF - timedelta(days=2), AS_OF - timedelta(days=1), 5000.0, 1),
        ("profileaaaaa", 29, AS_OF - timedelta(days=30), AS_OF - timedelta(days=29), 7.0, 1),
    ]
    # tpd in window_stats: the 1h window reads the last 24 hours, 7d the active days among the last seven.
    assert stat(connection, "*", "1h", "tpd")["total"] == 1700.0
    week = stat(connection, "*", "7d", "tpd")
    assert (week["max"], week["total"], week["active_points"], week["window_points"]) == (5000.0, 6700.0, 2, 7)
    month = stat(connection, "*", "30d", "tpd")
    assert (month["p50"], month["total"], month["active_points"], month["window_points"]) == (1700.0, 6707.0, 3, 30)


def test_coverage_columns_report_what_each_window_read_at_each_resolution(lake: FixtureLake) -> None:
    # 1-minute coverage for the last 2 days, 5-minute coverage for the 20 days before.
    lake.coverage(AS_OF - timedelta(days=2), AS_OF + timedelta(minutes=30), period_s=60)
    lake.coverage(AS_OF - timedelta(days=22), AS_OF - timedelta(days=2), period_s=300)
    lake.minute("profileaaaaa", minutes_before(10), input=1)
    lake.minute("profileaaaaa", AS_OF - timedelta(days=10), period_s=300, input=50)
    connection = lake.build(AS_OF)

    found = {
        row[0]: row[1:]
        for row in rows(
            connection,
            'select "window", covered_minutes_1min, covered_minutes_5min, covered_minutes_1h, coverage_start, '
            "coarsest_resolution_s from window_stats where series_id = 'profileaaaaa' and metric = 'tpm'",
        )
    }
    assert found == {
        "1h": (60, 0, 0, AS_OF - timedelta(hours=1), 60),
        "1d": (1440, 0, 0, AS_OF - timedelta(days=1), 60),
        "7d": (2880, 5 * 1440, 0, AS_OF - timedelta(days=7), 60),
        "14d": (2880, 12 * 1440, 0, AS_OF - timedelta(days=14), 300),
        "30d": (2880, 20 * 1440, 0, AS_OF - timedelta(days=22), 300),
    }
    assert stat(connection, "profileaaaaa", "14d", "input_tokens")["total"] == 51.0

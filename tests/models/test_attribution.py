"""tag_attribution and throttle_attribution on fixture rows."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.models.lakes import US_SONNET_4, US_SONNET_4_ARNS, FixtureLake, rows

AS_OF = datetime(2025, 6, 10, 12, 0)


def minutes_before(n: int) -> datetime:
    return AS_OF - timedelta(minutes=n)


@pytest.fixture
def tagged(lake: FixtureLake) -> FixtureLake:
    """One us. endpoint: direct traffic, profile A (team=a), B (team=b, project=x) and C without tags."""
    lake.profile(US_SONNET_4, US_SONNET_4_ARNS, kind="SYSTEM")
    for profile_id in ("profileaaaaa", "profilebbbbb", "profileccccc"):
        lake.profile(profile_id, US_SONNET_4_ARNS)
    lake.tags("profileaaaaa", {"team": "a"})
    lake.tags("profilebbbbb", {"team": "b", "project": "x"})
    lake.minute(US_SONNET_4, minutes_before(2), input=100, invocations=1)
    lake.minute("profileaaaaa", minutes_before(2), input=100, invocations=1)
    lake.minute("profileaaaaa", minutes_before(1), input=150, output=50, invocations=2)
    lake.minute("profilebbbbb", minutes_before(2), input=600, invocations=3)
    lake.minute("profileccccc", minutes_before(1), input=200, invocations=1)
    return lake


def test_tag_shares_add_up_to_one_with_direct_and_untagged_traffic(tagged: FixtureLake) -> None:
    connection = tagged.build(AS_OF)

    found = rows(
        connection,
        "select tag_key, tag_value, tokens, share, invocations, peak_tpm from tag_attribution "
        "where \"window\" = '1h' order by tag_key, tag_value",
    )
    assert found == [
        ("project", "(direct)", 100.0, pytest.approx(100 / 1200), 1.0, 100.0),
        ("project", "(untagged)", 500.0, pytest.approx(500 / 1200), 4.0, 400.0),
        ("project", "x", 600.0, pytest.approx(600 / 1200), 3.0, 600.0),
        ("team", "(direct)", 100.0, pytest.approx(100 / 1200), 1.0, 100.0),
        ("team", "(untagged)", 200.0, pytest.approx(200 / 1200), 1.0, 200.0),
        ("team", "a", 300.0, pytest.approx(300 / 1200), 3.0, 200.0),
        ("team", "b", 600.0, pytest.approx(600 / 1200), 3.0, 600.0),
    ]
    assert rows(
        connection,
        "select tag_key, sum(share) from tag_attribution where \"window\" = '1h' group by tag_key order by 1",
    ) == [("project", pytest.approx(1.0)), ("team", pytest.approx(1.0))]


def test_peak_tpm_of_a_tag_value_is_the_peak_of_its_per_minute_sum(tagged: FixtureLake) -> None:
    # A second team=a profile busy in the minute A was quiet, and quiet when A was busy.
    tagged.profile("profileddddd", US_SONNET_4_ARNS)
    tagged.tags("profileddddd", {"team": "a"})
    tagged.minute("profileddddd", minutes_before(2), input=150)
    connection = tagged.build(AS_OF)

    # Minute -2: 100 + 150 = 250; minute -1: 200. The peak is 250, not max(200, 150) of either profile.
    assert rows(
        connection,
        "select tokens, peak_tpm from tag_attribution where \"window\" = '1h' and tag_key = 'team' and tag_value = 'a'",
    ) == [(450.0, 250.0)]


def test_throttle_attribution_ranks_series_by_their_tokens_in_throttled_minutes(lake: FixtureLake) -> None:
    lake.profile(US_SONNET_4, US_SONNET_4_ARNS, kind="SYSTEM")
    lake.profile("profileaaaaa", US_SONNET_4_ARNS)
    lake.profile("profilebbbbb", US_SONNET_4_ARNS)
    # Minute -3: A throttled; B busy. Minute -2: no throttles. Minute -1: B throttled, A idle.
    lake.minute("profileaaaaa", minutes_before(3), input=100, throttles=2)
    lake.minute("profilebbbbb", minutes_before(3), input=300)
    lake.minute("profileaaaaa", minutes_before(2), input=50)
    lake.minute("profilebbbbb", minutes_before(2), input=50)
    lake.minute("profilebbbbb", minutes_before(1), input=200, throttles=1)
    lake.minute("profileaaaaa", minutes_before(2 * 1440), input=10, throttles=5)  # in 7d and 30d only
    connection = lake.build(AS_OF)

    assert rows(
        connection,
        "select series_id, throttles, throttled_minutes, tokens_in_throttled_minutes, share "
        "from throttle_attribution where \"window\" = '1h' order by series_id",
    ) == [
        ("*", 3.0, 2, 600.0, 1.0),
        ("profileaaaaa", 2.0, 1, 100.0, pytest.approx(100 / 600)),
        ("profilebbbbb", 1.0, 2, 500.0, pytest.approx(500 / 600)),
    ]
    assert rows(
        connection,
        "select series_id, throttles, throttled_minutes, tokens_in_throttled_minutes "
        "from throttle_attribution where \"window\" = '7d' order by series_id",
    ) == [("*", 8.0, 3, 610.0), ("profileaaaaa", 7.0, 2, 110.0), ("profilebbbbb", 1.0, 2, 500.0)]


def test_an_endpoint_never_throttled_has_no_throttle_rows(lake: FixtureLake) -> None:
    lake.minute("profileaaaaa", minutes_before(3), input=100)
    connection = lake.build(AS_OF)

    assert rows(connection, "select count(*) from throttle_attribution") == [(0,)]


def test_a_profile_whose_tags_were_all_removed_is_untagged(lake: FixtureLake) -> None:
    yesterday, today = datetime(2025, 6, 9, 12, 0), datetime(2025, 6, 10, 11, 0)
    lake.profile(US_SONNET_4, US_SONNET_4_ARNS, kind="SYSTEM", snapshot_at=yesterday)
    lake.profile(US_SONNET_4, US_SONNET_4_ARNS, kind="SYSTEM", snapshot_at=today)
    lake.profile("profileaaaaa", US_SONNET_4_ARNS, snapshot_at=yesterday)
    lake.profile("profileaaaaa", US_SONNET_4_ARNS, snapshot_at=today)
    lake.tags("profileaaaaa", {"team": "a"}, snapshot_at=yesterday)  # today's listing has no tags for it
    lake.profile("profilebbbbb", US_SONNET_4_ARNS, snapshot_at=today)
    lake.tags("profilebbbbb", {"team": "b"}, snapshot_at=today)
    lake.minute("profileaaaaa", minutes_before(1), input=100, invocations=1)
    lake.minute("profilebbbbb", minutes_before(1), input=300, invocations=1)
    connection = lake.build(AS_OF)

    assert rows(connection, "select profile_id, tag_key, tag_value from stg_profile_tags") == [
        ("profilebbbbb", "team", "b")
    ]
    assert rows(
        connection,
        """select tag_value, tokens, share from tag_attribution
        where "window" = '1h' and tag_key = 'team' order by tag_value""",
    ) == [("(untagged)", 100.0, 0.25), ("b", 300.0, 0.75)]


def test_a_deleted_profile_keeps_the_tags_of_its_last_listing(lake: FixtureLake) -> None:
    """Profile A was listed (team=a, cost=x) yesterday and deleted before today's listing; its history stays tagged."""
    yesterday, today = datetime(2025, 6, 9, 12, 0), datetime(2025, 6, 10, 11, 0)
    for snapshot in (yesterday, today):
        lake.profile(US_SONNET_4, US_SONNET_4_ARNS, kind="SYSTEM", snapshot_at=snapshot)
        lake.profile("profilebbbbb", US_SONNET_4_ARNS, snapshot_at=snapshot)
        lake.tags("profilebbbbb", {"team": "b"}, snapshot_at=snapshot)
    lake.profile("profileaaaaa", US_SONNET_4_ARNS, snapshot_at=yesterday)
    # cost is a tag key no listed profile has any more: only the deleted one had it.
    lake.tags("profileaaaaa", {"team": "a", "cost": "x"}, snapshot_at=yesterday)
    a_tokens, b_tokens = 100, 300
    lake.minute("profileaaaaa", minutes_before(30), input=a_tokens, invocations=1)
    lake.minute("profilebbbbb", minutes_before(1), input=b_tokens, invocations=1)
    connection = lake.build(AS_OF)

    whole = a_tokens + b_tokens
    assert rows(
        connection,
        """select tag_key, tag_value, tokens, share from tag_attribution
        where "window" = '1h' order by tag_key, tag_value""",
    ) == [
        ("cost", "(untagged)", b_tokens, pytest.approx(b_tokens / whole)),
        ("cost", "x", a_tokens, pytest.approx(a_tokens / whole)),
        ("team", "a", a_tokens, pytest.approx(a_tokens / whole)),
        ("team", "b", b_tokens, pytest.approx(b_tokens / whole)),
    ]


def test_throttle_tag_attribution_groups_the_throttled_minutes_by_tag(lake: FixtureLake) -> None:
    lake.profile(US_SONNET_4, US_SONNET_4_ARNS, kind="SYSTEM")
    for profile_id in ("profileaaaaa", "profilebbbbb", "profileccccc"):
        lake.profile(profile_id, US_SONNET_4_ARNS)
    lake.tags("profileaaaaa", {"team": "search"})
    lake.tags("profilebbbbb", {"team": "search"})
    # Minute -3 throttled: A 100, B 300, direct 50. Minute -2 not throttled. Minute -1 throttled: C 200 (untagged).
    lake.minute("profileaaaaa", minutes_before(3), input=100, throttles=2, invocations=1)
    lake.minute("profilebbbbb", minutes_before(3), input=300, invocations=2)
    lake.minute(US_SONNET_4, minutes_before(3), input=50, invocations=1)
    lake.minute("profileaaaaa", minutes_before(2), input=999, invocations=9)
    lake.minute("profileccccc", minutes_before(1), input=200, throttles=1, invocations=1)
    connection = lake.build(AS_OF)

    assert rows(
        connection,
        "select tag_value, throttles, throttled_minutes, tokens_in_throttled_minutes, share, "
        "invocations_in_throttled_minutes from throttle_tag_attribution "
        "where \"window\" = '1h' and tag_key = 'team' order by tag_value",
    ) == [
        ("(direct)", 0.0, 1, 50.0, pytest.approx(50 / 650), 1.0),
        ("(untagged)", 1.0, 1, 200.0, pytest.approx(200 / 650), 1.0),
        ("search", 2.0, 1, 400.0, pytest.approx(400 / 650), 3.0),
    ]

"""pipelines.checks_sql on fixture warehouses: each check passes on good data and counts the violations."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.checks_sql import (
    check_aggregate_totals,
    check_burndown_rates_complete,
    check_duplicate_points,
    check_expected_partitions,
    check_unique_usage_minutes,
)
from pipelines.lake import Partition, read_partition, write_partition
from tests.models.lakes import REGION, SONNET_4, US_SONNET_4, US_SONNET_4_ARNS, FixtureLake, rows

AS_OF = datetime(2025, 6, 10, 12, 0)


def built(lake: FixtureLake):
    lake.profile(US_SONNET_4, US_SONNET_4_ARNS, kind="SYSTEM")
    lake.profile("profileaaaaa", US_SONNET_4_ARNS)
    for n in range(1, 4):
        lake.minute("profileaaaaa", AS_OF - timedelta(minutes=n), input=10 * n, output=n, invocations=1)
        lake.minute(US_SONNET_4, AS_OF - timedelta(minutes=n), input=7, throttles=n % 2)
    return lake.build(AS_OF)


def test_duplicate_points_are_counted(lake: FixtureLake) -> None:
    connection = built(lake)
    assert check_duplicate_points(connection, lake=lake.root, as_of=AS_OF) == (
        True,
        0,
        {"duplicate_keys": 0, "examples": ""},
    )


def test_a_datapoint_held_twice_in_the_lake_fails_the_check(lake: FixtureLake) -> None:
    connection = built(lake)
    # What a broken writer would leave: one series-minute row written twice more into its partition file.
    partition = Partition("metric_points", REGION, AS_OF.date())
    table = read_partition(lake.root, partition)
    minute = AS_OF - timedelta(minutes=3)
    again = table.filter(pc.and_(pc.equal(table["model_id"], US_SONNET_4), pc.equal(table["ts"], minute)))
    assert again.num_rows == 1
    write_partition(lake.root, partition, pa.concat_tables([table, again, again]))
    outcome = check_duplicate_points(connection, lake=lake.root, as_of=AS_OF)
    assert (outcome.passed, outcome.violations) == (False, 1)
    assert f"{US_SONNET_4} period 60s at 2025-06-10 11:57: 3 rows" in outcome.metadata["examples"]


def test_a_minute_in_usage_minute_twice_is_counted(lake: FixtureLake) -> None:
    connection = built(lake)
    assert check_unique_usage_minutes(connection, lake=lake.root, as_of=AS_OF).passed

    connection.execute(
        "insert into usage_minute select * replace (300 as resolution_s) from usage_minute "
        "where series_id = 'profileaaaaa' and ts = ?",
        [AS_OF - timedelta(minutes=1)],
    )
    outcome = check_unique_usage_minutes(connection, lake=lake.root, as_of=AS_OF)
    assert (outcome.passed, outcome.violations) == (False, 1)
    assert "resolutions [60, 300]" in outcome.metadata["examples"]


def test_missing_partitions_are_listed_per_dataset(lake: FixtureLake) -> None:
    for day in (1, 3):
        start = datetime(2025, 6, day)
        lake.minute("profileaaaaa", start, input=1)
        lake.coverage(start, start + timedelta(days=1))
    lake.minute("profileaaaaa", datetime(2025, 6, 4), input=1)  # no coverage written for the 4th
    lake.write()
    connection = lake.build(datetime(2025, 6, 5, 0, 0), models=("stg_metric_points",))

    outcome = check_expected_partitions(connection, lake=lake.root, as_of=datetime(2025, 6, 5, 0, 0))
    assert (outcome.passed, outcome.violations) == (False, 3)
    assert outcome.metadata["expected_partitions"] == 8  # 4 days x 2 datasets; as_of's own day has no minute yet
    assert outcome.metadata["examples"].splitlines() == [
        "metric_coverage region=us-east-1 date=2025-06-02",
        "metric_coverage region=us-east-1 date=2025-06-04",
        "metric_points region=us-east-1 date=2025-06-02",
    ]

    explicit = check_expected_partitions(
        connection,
        lake=lake.root,
        as_of=datetime(2025, 6, 5, 0, 0),
        expected=[("us-east-1", date(2025, 6, 1)), ("eu-west-1", date(2025, 6, 1))],
    )
    assert (explicit.passed, explicit.violations, explicit.metadata["expected_partitions"]) == (False, 2, 4)


def test_all_partitions_present_passes(lake: FixtureLake) -> None:
    start = datetime(2025, 6, 9)
    lake.minute("profileaaaaa", start, input=1)
    lake.coverage(start, start + timedelta(days=1))
    connection = lake.build(datetime(2025, 6, 10, 0, 0), models=("stg_metric_points",))

    assert check_expected_partitions(connection, lake=lake.root, as_of=datetime(2025, 6, 10, 0, 0)).passed


def test_aggregate_totals_equal_the_sum_of_series_totals(lake: FixtureLake) -> None:
    connection = built(lake)
    outcome = check_aggregate_totals(connection, lake=lake.root, as_of=AS_OF)
    assert (outcome.passed, outcome.violations) == (True, 0)

    connection.execute("update window_stats set total = total + 1 where series_id = '*' and metric = 'tpm'")
    connection.execute(
        "update endpoint_minute set throttles = throttles + 1 where ts = ?", [AS_OF - timedelta(minutes=1)]
    )
    outcome = check_aggregate_totals(connection, lake=lake.root, as_of=AS_OF)
    assert (outcome.passed, outcome.violations) == (False, 6)
    assert outcome.metadata["window_stats_mismatches"] == 5
    assert outcome.metadata["endpoint_minute_mismatches"] == 1
    assert f"{US_SONNET_4} 1h tpm: aggregate 88.0 vs sum of series 87.0" in outcome.metadata["examples"]


def test_a_claude_model_without_a_burndown_row_is_a_warning_not_a_silent_1x(lake: FixtureLake) -> None:
    """A Claude 4 family model the seed does not know yet burns output down too: say so, do not count 1x quietly."""
    unknown = "anthropic.claude-opus-4-9-20990101-v1:0"
    older = "anthropic.claude-3-5-haiku-20241022-v1:0"  # no burndown for Claude 3.5: not a gap
    for model in (unknown, older, SONNET_4):
        lake.minute(model, AS_OF - timedelta(minutes=1), input=10, output=10)
    connection = lake.build(AS_OF)

    assert rows(connection, "select base_model_id from model_burndown where missing_burndown") == [(unknown,)]
    outcome = check_burndown_rates_complete(connection, lake=lake.root, as_of=AS_OF)
    assert (outcome.passed, outcome.violations) == (False, 1)
    assert unknown in outcome.metadata["examples"]
    # Sonnet 4 has its seed row (5x); the unknown model is counted at 1x and flagged rather than guessed.
    assert rows(connection, "select series_id, quota_tpm from usage_minute order by quota_tpm, series_id") == [
        (older, 20.0),
        (unknown, 20.0),
        (SONNET_4, 60.0),
    ]


def test_burndown_check_passes_when_every_claude_model_has_a_rate(lake: FixtureLake) -> None:
    connection = built(lake)
    assert check_burndown_rates_complete(connection, lake=lake.root, as_of=AS_OF).passed

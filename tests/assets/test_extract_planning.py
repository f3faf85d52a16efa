"""Incremental planning and the merge rule of the metric partitions, as plain functions (no AWS)."""

from datetime import date, datetime, timedelta

import pyarrow as pa

from pipelines import lake as lake_io
from pipelines.assets.extract import (
    FetchRange,
    held_partitions,
    merge_coverage,
    merge_points,
    partitions_to_refresh,
    plan_backfill,
    plan_ranges,
)

AS_OF = datetime(2026, 11, 20, 12, 0)


def points(*rows: tuple[str, int, datetime, float], fetched_at: datetime = AS_OF) -> pa.Table:
    return lake_io.to_table(
        "metric_points",
        [
            {
                "account_id": "111122223333",
                "model_id": model_id,
                "metric": "Invocations",
                "stat": "Sum",
                "period_s": period,
                "ts": ts,
                "value": value,
                "fetched_at": fetched_at,
            }
            for model_id, period, ts, value in rows
        ],
    )


def keys(table: pa.Table) -> list[tuple]:
    return list(
        zip(
            table["model_id"].to_pylist(),
            table["period_s"].to_pylist(),
            table["ts"].to_pylist(),
            table["value"].to_pylist(),
            strict=True,
        )
    )


# Periods by age ---


def test_today_is_read_at_one_minute_up_to_as_of():
    assert plan_ranges(date(2026, 11, 20), AS_OF) == [
        FetchRange(datetime(2026, 11, 20), datetime(2026, 11, 20, 12, 0), 60)
    ]


def test_a_day_inside_fifteen_days_is_read_whole_at_one_minute():
    assert plan_ranges(date(2026, 11, 10), AS_OF) == [FetchRange(datetime(2026, 11, 10), datetime(2026, 11, 11), 60)]


def test_the_day_crossing_fifteen_days_splits_at_a_five_minute_boundary():
    ranges = plan_ranges(date(2026, 11, 5), datetime(2026, 11, 20, 12, 3))
    fine, coarse = ranges
    assert (fine.period_s, coarse.period_s) == (60, 300)
    # 1-minute data only where it is surely still kept (15 days minus the margin), cut on a 5-minute mark.
    assert fine.start >= datetime(2026, 11, 5, 12, 3)
    assert fine.start.minute % 5 == 0 and fine.start.second == 0
    assert coarse == FetchRange(datetime(2026, 11, 5), fine.start, 300)
    assert fine.end == datetime(2026, 11, 6)


def test_older_days_are_read_at_five_minutes_then_one_hour():
    assert [r.period_s for r in plan_ranges(date(2026, 10, 1), AS_OF)] == [300]
    assert [r.period_s for r in plan_ranges(date(2026, 8, 1), AS_OF)] == [3600]


def test_future_days_and_days_past_retention_read_nothing():
    assert plan_ranges(date(2026, 11, 21), AS_OF) == []
    assert plan_ranges(date(2025, 8, 1), AS_OF) == []


# Incremental runs ---


def test_first_run_backfills_thirty_days_plus_today():
    days = plan_backfill(AS_OF)
    assert days[0] == date(2026, 10, 21) and days[-1] == date(2026, 11, 20)
    assert len(days) == 31  # the 30-day window ending at 12:00 starts inside 2026-10-21


def test_later_runs_refresh_only_today():
    held = {("us-east-1", day) for day in plan_backfill(AS_OF)}
    assert partitions_to_refresh(AS_OF, held, ["us-east-1"]) == [("us-east-1", date(2026, 11, 20))]


def test_just_after_midnight_yesterday_is_refreshed_too():
    as_of = datetime(2026, 11, 20, 0, 7)
    held = {("us-east-1", day) for day in plan_backfill(as_of)}
    assert partitions_to_refresh(as_of, held, ["us-east-1"]) == [
        ("us-east-1", date(2026, 11, 19)),
        ("us-east-1", date(2026, 11, 20)),
    ]


def test_missing_days_are_filled_per_region():
    held = {("us-east-1", day) for day in plan_backfill(AS_OF)} - {("us-east-1", date(2026, 11, 2))}
    wanted = partitions_to_refresh(AS_OF, held, ["us-east-1", "us-west-2"])
    assert ("us-east-1", date(2026, 11, 2)) in wanted
    assert len([key for key in wanted if key[0] == "us-east-1"]) == 2
    assert len([key for key in wanted if key[0] == "us-west-2"]) == 31


def test_held_means_coverage_reaches_the_end_of_the_day(tmp_path):
    def cover(day, *spans):
        rows = [
            {
                "account_id": "111122223333",
                "period_s": period,
                "range_start": start,
                "range_end": end,
                "model_ids": 3,
                "fetched_at": AS_OF,
            }
            for start, end, period in spans
        ]
        lake_io.write_partition(
            tmp_path,
            lake_io.Partition("metric_coverage", "us-east-1", day),
            lake_io.to_table("metric_coverage", rows),
        )

    cover(date(2026, 11, 18), (datetime(2026, 11, 18), datetime(2026, 11, 19), 60))
    # Last read at 10:00 on the day itself: incomplete, so the next run re-reads it.
    cover(date(2026, 11, 19), (datetime(2026, 11, 19), datetime(2026, 11, 19, 10), 60))
    cover(
        date(2026, 11, 4),
        (datetime(2026, 11, 4), datetime(2026, 11, 4, 13), 300),
        (datetime(2026, 11, 4, 13), datetime(2026, 11, 5), 60),
    )
    assert held_partitions(tmp_path, AS_OF) == {
        ("us-east-1", date(2026, 11, 18)),
        ("us-east-1", date(2026, 11, 4)),
    }


# Merge rule ---


def test_a_rerun_replaces_what_it_reads_again():
    minute = datetime(2026, 11, 20, 10, 0)
    old = points(("m", 60, minute, 1.0), ("m", 60, minute + timedelta(minutes=1), 2.0))
    new = points(("m", 60, minute, 1.0), ("m", 60, minute + timedelta(minutes=1), 5.0))
    merged = merge_points(old, new, [FetchRange(datetime(2026, 11, 20), AS_OF, 60)])
    assert keys(merged) == [("m", 60, minute, 1.0), ("m", 60, minute + timedelta(minutes=1), 5.0)]


def test_a_minute_that_became_idle_is_dropped_on_reread():
    minute = datetime(2026, 11, 20, 10, 0)
    merged = merge_points(points(("m", 60, minute, 1.0)), points(), [FetchRange(datetime(2026, 11, 20), AS_OF, 60)])
    assert merged.num_rows == 0


def test_finer_rows_are_never_replaced_by_a_coarser_read():
    day = datetime(2026, 11, 4)
    old = points(("m", 60, day + timedelta(minutes=1), 3.0), ("m", 60, day + timedelta(minutes=2), 4.0))
    new = points(("m", 300, day, 7.0))
    merged = merge_points(old, new, [FetchRange(day, day + timedelta(days=1), 300)])
    assert keys(merged) == [
        ("m", 60, day + timedelta(minutes=1), 3.0),
        ("m", 60, day + timedelta(minutes=2), 4.0),
        ("m", 300, day, 7.0),
    ]


def test_rows_outside_the_ranges_read_now_are_kept():
    # A run pinned to an earlier as_of reads less of the day than the partition already holds.
    old = points(("m", 60, datetime(2026, 11, 20, 11, 30), 9.0))
    new = points(("m", 60, datetime(2026, 11, 20, 9, 0), 1.0))
    merged = merge_points(old, new, [FetchRange(datetime(2026, 11, 20), datetime(2026, 11, 20, 10), 60)])
    assert merged.num_rows == 2


def test_coverage_keeps_finer_ranges_and_replaces_same_period_ones():
    day = datetime(2026, 11, 4)
    old = lake_io.to_table(
        "metric_coverage",
        [
            {
                "account_id": "a",
                "period_s": 60,
                "range_start": day,
                "range_end": day + timedelta(days=1),
                "model_ids": 3,
                "fetched_at": AS_OF - timedelta(days=15),
            },
            {
                "account_id": "a",
                "period_s": 300,
                "range_start": day,
                "range_end": day + timedelta(hours=6),
                "model_ids": 2,
                "fetched_at": AS_OF - timedelta(days=15),
            },
        ],
    )
    merged = merge_coverage(old, [FetchRange(day, day + timedelta(hours=13), 300)], 4, "a", AS_OF)
    spans = sorted(
        zip(
            merged["period_s"].to_pylist(),
            merged["range_start"].to_pylist(),
            merged["range_end"].to_pylist(),
            strict=True,
        )
    )
    assert spans == [(60, day, day + timedelta(days=1)), (300, day, day + timedelta(hours=13))]

"""Incremental planning and the merge rule of the metric partitions, as plain functions (no AWS)."""

from datetime import date, datetime, timedelta

import pyarrow as pa

from pipelines import lake as lake_io
from pipelines.aws.cloudwatch import METRICS
from pipelines.extraction import (
    FetchRange,
    backfill_days,
    contiguous_spans,
    covered_until,
    days_to_read,
    held_days,
    merge_coverage,
    merge_points,
    plan_ranges,
)

AS_OF = datetime(2026, 11, 20, 12, 0)


def points(*rows: tuple, fetched_at: datetime = AS_OF) -> pa.Table:
    """metric_points rows from (model_id, period, ts, value[, metric]) datapoints; the metric is Invocations
    unless given."""
    return lake_io.widen_points(
        pa.Table.from_pylist(
            [
                {
                    "account_id": "111122223333",
                    "model_id": model_id,
                    "metric": metric[0] if metric else "Invocations",
                    "stat": "Sum",
                    "period_s": period,
                    "ts": ts,
                    "value": value,
                    "fetched_at": fetched_at,
                }
                for model_id, period, ts, value, *metric in rows
            ],
            schema=lake_io.DATAPOINTS_SCHEMA,
        )
    )


def keys(table: pa.Table, column: str = "invocations") -> list[tuple]:
    return list(
        zip(
            table["model_id"].to_pylist(),
            table["period_s"].to_pylist(),
            table["ts"].to_pylist(),
            table[column].to_pylist(),
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


def cover(lake, region, day, *spans, points_file=True):
    """What a finished read leaves for ``day``: its points file and the coverage of the spans read."""
    rows = [
        {
            "account_id": "111122223333",
            "period_s": span[2],
            "range_start": span[0],
            "range_end": span[1],
            "model_ids": 3,
            "fetched_at": AS_OF,
            "series_ids": span[3] if len(span) > 3 else None,
        }
        for span in spans
    ]
    if points_file:
        lake_io.write_partition(
            lake, lake_io.Partition("metric_points", region, day), lake_io.empty_table("metric_points")
        )
    lake_io.write_partition(
        lake, lake_io.Partition("metric_coverage", region, day), lake_io.to_table("metric_coverage", rows)
    )


def hold(lake, region, first: date, last: date):
    day = first
    while day <= last:
        start = datetime.combine(day, datetime.min.time())
        cover(lake, region, day, (start, start + timedelta(days=1), 60))
        day += timedelta(days=1)


def test_first_run_backfills_thirty_days_plus_today(tmp_path):
    assert backfill_days(AS_OF) == [date(2026, 10, 21) + timedelta(days=n) for n in range(31)]
    wanted, problems = days_to_read(tmp_path, AS_OF, ["us-east-1", "us-west-2"])
    assert wanted == backfill_days(AS_OF) and problems == []
    assert contiguous_spans(wanted) == [(date(2026, 10, 21), date(2026, 11, 20))]


def test_later_runs_read_only_today(tmp_path):
    hold(tmp_path, "us-east-1", date(2026, 10, 21), date(2026, 11, 19))
    assert days_to_read(tmp_path, AS_OF, ["us-east-1"]) == ([date(2026, 11, 20)], [])


def test_just_after_midnight_yesterday_is_read_too_when_the_last_run_stopped_before_midnight(tmp_path):
    as_of = datetime(2026, 11, 20, 0, 7)
    hold(tmp_path, "us-east-1", date(2026, 10, 21), date(2026, 11, 18))
    # The last run (at 23:07) read up to its as_of, 23:02.
    cover(tmp_path, "us-east-1", date(2026, 11, 19), (datetime(2026, 11, 19), datetime(2026, 11, 19, 23, 2), 60))
    assert days_to_read(tmp_path, as_of, ["us-east-1"])[0] == [date(2026, 11, 19), date(2026, 11, 20)]
    assert covered_until(tmp_path, "us-east-1", datetime(2026, 11, 19), as_of) == (datetime(2026, 11, 19, 23, 2), [])


def test_missing_days_are_read_for_every_region_that_lacks_them(tmp_path):
    hold(tmp_path, "us-east-1", date(2026, 10, 21), date(2026, 11, 19))
    (tmp_path / "metric_coverage" / "region=us-east-1" / "date=2026-11-02" / "data.parquet").unlink()
    assert days_to_read(tmp_path, AS_OF, ["us-east-1"])[0] == [date(2026, 11, 2), date(2026, 11, 20)]
    assert days_to_read(tmp_path, AS_OF, ["us-east-1", "us-west-2"])[0] == backfill_days(AS_OF)


def test_a_lost_or_unreadable_points_file_is_not_held_whatever_its_coverage_says(tmp_path):
    hold(tmp_path, "us-east-1", date(2026, 10, 21), date(2026, 11, 19))
    (tmp_path / "metric_points" / "region=us-east-1" / "date=2026-11-02" / "data.parquet").unlink()
    (tmp_path / "metric_points" / "region=us-east-1" / "date=2026-11-05" / "data.parquet").write_bytes(b"not parquet")
    wanted, problems = days_to_read(tmp_path, AS_OF, ["us-east-1"])
    assert wanted == [date(2026, 11, 2), date(2026, 11, 5), date(2026, 11, 20)]
    assert len(problems) == 2
    assert "date=2026-11-02/data.parquet is missing" in problems[0]
    assert "date=2026-11-05/data.parquet is unreadable" in problems[1]


def test_held_means_coverage_reaches_the_end_of_the_day(tmp_path):
    cover(tmp_path, "us-east-1", date(2026, 11, 18), (datetime(2026, 11, 18), datetime(2026, 11, 19), 60))
    # Last read at 10:00 on the day itself: incomplete, so the next run reads the rest.
    cover(tmp_path, "us-east-1", date(2026, 11, 19), (datetime(2026, 11, 19), datetime(2026, 11, 19, 10), 60))
    cover(
        tmp_path,
        "us-east-1",
        date(2026, 11, 4),
        (datetime(2026, 11, 4), datetime(2026, 11, 4, 13), 300),
        (datetime(2026, 11, 4, 13), datetime(2026, 11, 5), 60),
    )
    days = [date(2026, 11, 4), date(2026, 11, 18), date(2026, 11, 19)]
    assert held_days(tmp_path, "us-east-1", AS_OF, days) == {date(2026, 11, 4), date(2026, 11, 18)}


def test_a_narrowed_read_covers_its_own_series_only(tmp_path):
    day = date(2026, 11, 18)
    start, end = datetime(2026, 11, 18), datetime(2026, 11, 19)
    cover(tmp_path, "us-east-1", day, (start, end, 60, ["app-1", "us.model"]))
    assert covered_until(tmp_path, "us-east-1", start, end)[0] == start
    assert covered_until(tmp_path, "us-east-1", start, end, ["us.model"])[0] == end
    assert covered_until(tmp_path, "us-east-1", start, end, ["us.model", "other"])[0] == start


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


def test_a_narrowed_read_replaces_only_the_queries_it_made():
    minute = datetime(2026, 11, 20, 10, 0)
    invocations = next(spec for spec in METRICS if spec.metric == "Invocations")
    old = points(("chosen", 60, minute, 1.0), ("other", 60, minute, 2.0))
    new = points(("chosen", 60, minute, 3.0))
    window = FetchRange(datetime(2026, 11, 20), AS_OF, 60)
    merged = merge_points(old, new, [(window, [("chosen", invocations)])])
    assert keys(merged) == [("chosen", 60, minute, 3.0), ("other", 60, minute, 2.0)]


def test_a_read_of_some_statistics_keeps_the_others_of_the_same_minute():
    # One row holds every statistic of a series-minute: re-reading the input tokens alone (a narrowed query
    # list) replaces that cell and leaves the invocations beside it.
    minute = datetime(2026, 11, 20, 10, 0)
    tokens = next(spec for spec in METRICS if spec.metric == "InputTokenCount")
    old = points(("m", 60, minute, 2.0), ("m", 60, minute, 700.0, "InputTokenCount"))
    new = points(("m", 60, minute, 900.0, "InputTokenCount"), fetched_at=AS_OF + timedelta(hours=1))
    merged = merge_points(old, new, [(FetchRange(datetime(2026, 11, 20), AS_OF, 60), [("m", tokens)])])
    assert keys(merged) == [("m", 60, minute, 2.0)]
    assert keys(merged, "input_tokens") == [("m", 60, minute, 900.0)]
    assert merged["fetched_at"].to_pylist() == [AS_OF + timedelta(hours=1)]

    # And a re-read that finds the tokens gone clears that cell only; a row left with no value goes.
    emptied = merge_points(merged, points(), [(FetchRange(datetime(2026, 11, 20), AS_OF, 60), [("m", tokens)])])
    assert keys(emptied, "input_tokens") == [("m", 60, minute, None)]
    invocations = next(spec for spec in METRICS if spec.metric == "Invocations")
    gone = merge_points(emptied, points(), [(FetchRange(datetime(2026, 11, 20), AS_OF, 60), [("m", invocations)])])
    assert gone.num_rows == 0


def test_a_narrowed_read_leaves_the_whole_region_coverage_in_place():
    day = datetime(2026, 11, 4)
    full = merge_coverage(None, [FetchRange(day, day + timedelta(days=1), 60)], 9, "a", AS_OF)
    narrowed = merge_coverage(full, [FetchRange(day, day + timedelta(hours=2), 60)], 2, "a", AS_OF, ["x", "y"])
    rows = sorted((row["range_start"], row["range_end"], row["series_ids"]) for row in narrowed.to_pylist())
    assert rows == [(day, day + timedelta(hours=2), ["x", "y"]), (day, day + timedelta(days=1), None)]
    again = merge_coverage(narrowed, [FetchRange(day, day + timedelta(days=1), 60)], 9, "a", AS_OF)
    assert [(row["range_start"], row["range_end"], row["series_ids"]) for row in again.to_pylist()] == [
        (day, day + timedelta(days=1), None)
    ]

"""Data-quality checks on the warehouse as plain functions: SQL that counts violating rows.

Each check takes the DuckDB connection the models were built in (plus ``lake`` and ``as_of``, which not every
check needs, so that all checks share one call shape) and returns a :class:`CheckOutcome`. They know nothing of
Dagster: ``pipelines.assets.models`` wraps them as asset checks, and the tests call them directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import duckdb

from pipelines.lake import dataset_glob

# Measures whose endpoint aggregate must equal the sum over the endpoint's series (latency is an average).
ADDITIVE_METRICS: tuple[str, ...] = (
    "tpm",
    "quota_tpm",
    "rpm",
    "tpd",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "invocations",
    "throttles",
    "client_errors",
    "server_errors",
)

_EXAMPLES = 10


class CheckOutcome(NamedTuple):
    """A check's verdict: passed, how many rows (or partitions) violate it, and details for the UI."""

    passed: bool
    violations: int
    metadata: dict[str, Any]


def check_duplicate_points(
    connection: duckdb.DuckDBPyConnection, *, lake: Path | None = None, as_of: datetime | None = None
) -> CheckOutcome:
    """No (series, period, minute) appears twice in the lake's metric_points files.

    Re-reading a day replaces the cells it re-read, so every datapoint is held once; stg_metric_points relies on
    it (it reads the rows as they are), and a duplicate would be counted twice in every mart.
    """
    rows = connection.execute(
        """
        select region, model_id, period_s, ts, count(*) as copies
        from raw_metric_points
        group by region, model_id, period_s, ts
        having count(*) > 1
        order by copies desc, region, model_id, ts
        """
    ).fetchall()
    examples = [
        f"{region} {series} period {period}s at {ts:%Y-%m-%d %H:%M}: {n} rows"
        for region, series, period, ts, n in rows[:_EXAMPLES]
    ]
    return CheckOutcome(
        passed=not rows,
        violations=len(rows),
        metadata={"duplicate_keys": len(rows), "examples": "\n".join(examples)},
    )


def check_unique_usage_minutes(
    connection: duckdb.DuckDBPyConnection, *, lake: Path | None = None, as_of: datetime | None = None
) -> CheckOutcome:
    """usage_minute has at most one row per (region, series_id, ts): a minute is never taken from two periods."""
    rows = connection.execute(
        """
        select region, series_id, ts, count(*) as copies, list(resolution_s order by resolution_s) as resolutions
        from usage_minute
        group by region, series_id, ts
        having count(*) > 1
        order by region, series_id, ts
        """
    ).fetchall()
    examples = [
        f"{region} {series} at {ts:%Y-%m-%d %H:%M}: {n} rows (resolutions {resolutions})"
        for region, series, ts, n, resolutions in rows[:_EXAMPLES]
    ]
    return CheckOutcome(not rows, len(rows), {"duplicate_minutes": len(rows), "examples": "\n".join(examples)})


def check_expected_partitions(
    connection: duckdb.DuckDBPyConnection,
    *,
    lake: Path,
    as_of: datetime,
    expected: Iterable[tuple[str, date]] | None = None,
) -> CheckOutcome:
    """Every expected (region, UTC day) partition of metric_points and metric_coverage is in the lake.

    ``expected`` defaults to every day from a region's first partition (in either dataset) through the day of the
    last minute before ``as_of``, for every region the lake holds: a gap means a day was never extracted, and the
    windows over it would silently read as idle.
    """
    last_day = (as_of - timedelta(minutes=1)).date()
    regions: list[str] | None = None
    days: list[date] | None = None
    if expected is not None:
        pairs = sorted(set(expected))
        regions = [region for region, _ in pairs]
        days = [day for _, day in pairs]
    rows = connection.execute(
        """
        with files as (
            select 'metric_points' as dataset, file from glob($points_glob)
            union all
            select 'metric_coverage' as dataset, file from glob($coverage_glob)
        ),

        present as (
            select distinct
                dataset,
                regexp_extract(file, 'region=([^/\\\\]+)', 1) as region,
                cast(regexp_extract(file, 'date=([0-9]{4}-[0-9]{2}-[0-9]{2})', 1) as date) as day
            from files
        ),

        derived as (
            select
                region,
                unnest(generate_series(min(day), greatest(min(day), $last_day::date), interval 1 day))::date as day
            from present
            group by region
        ),

        given as (
            select
                unnest($regions::varchar[]) as region,
                unnest($days::date[]) as day
        ),

        expected as (
            select * from derived where $regions::varchar[] is null
            union all
            select * from given
        ),

        datasets as (
            select unnest(['metric_points', 'metric_coverage']) as dataset
        )

        select
            datasets.dataset,
            expected.region,
            expected.day,
            present.day is not null as is_present
        from expected
        cross join datasets
        left join present
            on
                datasets.dataset = present.dataset
                and expected.region = present.region
                and expected.day = present.day
        order by datasets.dataset, expected.region, expected.day
        """,
        {
            "points_glob": dataset_glob(lake, "metric_points"),
            "coverage_glob": dataset_glob(lake, "metric_coverage"),
            "last_day": last_day,
            "regions": regions,
            "days": days,
        },
    ).fetchall()
    missing = [
        f"{dataset} region={region} date={day.isoformat()}" for dataset, region, day, present in rows if not present
    ]
    return CheckOutcome(
        passed=not missing,
        violations=len(missing),
        metadata={
            "expected_partitions": len(rows),
            "missing_partitions": len(missing),
            "examples": "\n".join(missing[:_EXAMPLES]),
        },
    )


def check_aggregate_totals(
    connection: duckdb.DuckDBPyConnection,
    *,
    lake: Path | None = None,
    as_of: datetime | None = None,
    relative_tolerance: float = 1e-9,
) -> CheckOutcome:
    """The endpoint aggregate's totals equal the sum of its series' totals.

    Checked twice: in window_stats (the '*' row's total against the sum of the series rows, for every additive
    metric and window) and between endpoint_minute and usage_minute (all-time totals per endpoint).
    """
    window_rows = connection.execute(
        """
        with totals as (
            select
                region,
                endpoint,
                "window",
                metric,
                sum(total) filter (where series_id = '*') as aggregate_total,
                sum(total) filter (where series_id <> '*') as series_total
            from window_stats
            where metric in (select unnest($metrics::varchar[]))
            group by region, endpoint, "window", metric
        )

        select region, endpoint, "window", metric, aggregate_total, series_total
        from totals
        where
            abs(coalesce(aggregate_total, 0) - coalesce(series_total, 0))
            > $tolerance * greatest(1, abs(coalesce(aggregate_total, 0)))
        order by region, endpoint, "window", metric
        """,
        {"metrics": list(ADDITIVE_METRICS), "tolerance": relative_tolerance},
    ).fetchall()
    minute_rows = connection.execute(
        """
        with series as (
            select
                region,
                endpoint,
                sum(tpm) as tpm,
                sum(quota_tpm) as quota_tpm,
                sum(invocations) as invocations,
                sum(throttles) as throttles
            from usage_minute
            group by region, endpoint
        ),

        aggregate as (
            select
                region,
                endpoint,
                sum(tpm) as tpm,
                sum(quota_tpm) as quota_tpm,
                sum(invocations) as invocations,
                sum(throttles) as throttles
            from endpoint_minute
            group by region, endpoint
        ),

        compared as (
            select
                coalesce(series.region, aggregate.region) as region,
                coalesce(series.endpoint, aggregate.endpoint) as endpoint,
                unnest(['tpm', 'quota_tpm', 'invocations', 'throttles']) as metric,
                unnest([aggregate.tpm, aggregate.quota_tpm, aggregate.invocations, aggregate.throttles])
                    as aggregate_total,
                unnest([series.tpm, series.quota_tpm, series.invocations, series.throttles]) as series_total
            from series
            full outer join aggregate
                on series.region = aggregate.region and series.endpoint = aggregate.endpoint
        )

        select region, endpoint, 'all' as "window", metric, aggregate_total, series_total
        from compared
        where
            abs(coalesce(aggregate_total, 0) - coalesce(series_total, 0))
            > $tolerance * greatest(1, abs(coalesce(aggregate_total, 0)))
        order by region, endpoint, metric
        """,
        {"tolerance": relative_tolerance},
    ).fetchall()
    mismatches = window_rows + minute_rows
    examples = [
        f"{region} {endpoint} {window} {metric}: aggregate {aggregate} vs sum of series {series}"
        for region, endpoint, window, metric, aggregate, series in mismatches[:_EXAMPLES]
    ]
    return CheckOutcome(
        passed=not mismatches,
        violations=len(mismatches),
        metadata={
            "window_stats_mismatches": len(window_rows),
            "endpoint_minute_mismatches": len(minute_rows),
            "examples": "\n".join(examples),
        },
    )


def check_burndown_rates_complete(
    connection: duckdb.DuckDBPyConnection, *, lake: Path | None = None, as_of: datetime | None = None
) -> CheckOutcome:
    """Every model Bedrock burns output tokens down for (Claude 3.7, Claude 4 and later) has a burndown seed row.

    Without one its output counts 1x in quota TPM and TPD, so the headroom figures look better than they are.
    The model step runs this as a warning: the numbers are still built, but the user is told which models to add
    to sql/seeds/burndown_rates.csv.
    """
    rows = connection.execute(
        """
        select distinct region, base_model_id from model_burndown
        where missing_burndown
        order by region, base_model_id
        """
    ).fetchall()
    examples = [
        f"{region} {model}: no row in sql/seeds/burndown_rates.csv, output tokens counted at 1x"
        for region, model in rows[:_EXAMPLES]
    ]
    return CheckOutcome(
        passed=not rows,
        violations=len(rows),
        metadata={"models_without_burndown": len(rows), "examples": "\n".join(examples)},
    )

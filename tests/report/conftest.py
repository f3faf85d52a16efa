"""Fixtures of the report tests: warehouses built by :mod:`report_fixtures` and their rendered reports."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from .report_fixtures import ACCOUNT_ID, AS_OF, BIG_SERIES, build_warehouse


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small warehouse: three endpoints in two regions, quotas for the first only."""
    return build_warehouse(tmp_path_factory.mktemp("warehouse") / "usage.duckdb")


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory, warehouse: Path):
    """Every report of the small warehouse rendered once: (out_dir, files)."""
    from pipelines.report import render_reports

    out_dir = tmp_path_factory.mktemp("reports")
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        files = render_reports(connection, out_dir, AS_OF, account_id=ACCOUNT_ID)
    return out_dir, files


@pytest.fixture(scope="session")
def big_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One endpoint, 15 series, 30 days of 1-minute data (statistics for the aggregate only, to stay fast)."""
    return build_warehouse(
        tmp_path_factory.mktemp("big") / "usage.duckdb",
        BIG_SERIES,
        days_1min=30,
        days_5min=0,
        series_stats=False,
    )


@pytest.fixture(scope="session")
def coverage_lake(tmp_path_factory: pytest.TempPathFactory):
    """The real models over a fixture lake read partly at 5 minutes, and its reports: (connection, out_dir, files).

    us-east-1 (Claude Sonnet 4, direct traffic and one application profile) was read at 1 minute for the last two
    days and at 5 minutes for the eight days before, with two throttled minutes and one throttled 5-minute
    bucket; nothing older was read. eu-west-1 was read at 1 minute for all 30 days.
    """
    from pipelines.report import render_reports
    from tests.models.lakes import OWN_MODELS, FixtureLake

    from .report_fixtures import build_coverage_lake

    lake = FixtureLake(tmp_path_factory.mktemp("coverage-lake") / "lake")
    build_coverage_lake(lake)
    connection = lake.build(AS_OF, models=(*OWN_MODELS, "quota_headroom"))
    out_dir = tmp_path_factory.mktemp("coverage-reports")
    files = render_reports(connection, out_dir, AS_OF)
    yield connection, out_dir, files
    connection.close()


@pytest.fixture(scope="session")
def caller_lake(tmp_path_factory: pytest.TempPathFactory):
    """The coverage lake with invocation logs for us-east-1 (none for eu-west-1), built by the real models
    including the caller marts, and its reports: (connection, calls, out_dir, files)."""
    from pipelines.report import render_reports
    from tests.models.lakes import OWN_MODELS, FixtureLake

    from .report_fixtures import build_caller_lake

    lake = FixtureLake(tmp_path_factory.mktemp("caller-lake") / "lake")
    calls = build_caller_lake(lake)
    connection = lake.build(AS_OF, models=(*OWN_MODELS, "quota_headroom", "caller_minute", "caller_attribution"))
    out_dir = tmp_path_factory.mktemp("caller-reports")
    files = render_reports(connection, out_dir, AS_OF)
    yield connection, calls, out_dir, files
    connection.close()

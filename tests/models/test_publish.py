"""Publishing the warehouse file: all or nothing, in the supported storage format, one build at a time."""

from __future__ import annotations

import duckdb
import pytest

from pipelines.publish import WarehouseBusy, build_lock, building, stale_temp_files, storage_version
from pipelines.settings import STORAGE_VERSION


def _tables(database) -> dict[str, list[tuple]]:
    with duckdb.connect(str(database), read_only=True) as connection:
        names = [name for (name,) in connection.execute("select table_name from duckdb_tables()").fetchall()]
        return {name: connection.execute(f'select * from "{name}" order by all').fetchall() for name in names}


def test_a_file_written_in_place_by_a_newer_duckdb_is_republished_in_the_supported_format(tmp_path):
    database = tmp_path / "usage.duckdb"
    with duckdb.connect(str(database)) as connection:  # how the model step wrote it before publishing existed
        connection.execute("create table endpoints as select 'a' as endpoint")
        connection.execute("comment on column endpoints.endpoint is 'Endpoint id.'")
        connection.execute("create table usage_minute as select 1 as tpm")

    with building(database, "partial", copy_current=True) as connection:
        connection.execute("create or replace table usage_minute as select 2 as tpm")

    assert _tables(database) == {"endpoints": [("a",)], "usage_minute": [(2,)]}
    with duckdb.connect(str(database), read_only=True) as connection:
        assert storage_version(connection) == f"{STORAGE_VERSION}+"
        comment = connection.execute("select comment from duckdb_columns() where column_name = 'endpoint'").fetchall()
        assert comment == [("Endpoint id.",)]


def test_a_failing_build_publishes_nothing_and_leaves_no_temporary_file(tmp_path):
    database = tmp_path / "usage.duckdb"
    with building(database, "first", copy_current=False) as connection:
        connection.execute("create table endpoints as select 'a' as endpoint")
    published = database.stat().st_ino

    with pytest.raises(duckdb.Error), building(database, "second", copy_current=False) as connection:
        connection.execute("create table endpoints as select 'b' as endpoint")
        connection.execute("select * from no_such_table")

    assert database.stat().st_ino == published
    assert _tables(database) == {"endpoints": [("a",)]}
    assert stale_temp_files(database) == []


def test_a_full_build_starts_empty_and_drops_tables_no_model_builds_any_more(tmp_path):
    database = tmp_path / "usage.duckdb"
    with building(database, "first", copy_current=False) as connection:
        connection.execute("create table retired_mart as select 1 as x")
    with building(database, "second", copy_current=False) as connection:
        connection.execute("create table endpoints as select 'a' as endpoint")
    assert set(_tables(database)) == {"endpoints"}


def test_the_lock_names_the_build_that_holds_it_and_is_released_after(tmp_path):
    database = tmp_path / "usage.duckdb"
    busy = pytest.raises(WarehouseBusy, match=r"another model build \(run run-1, pid")
    with build_lock(database, "run-1"), busy, building(database, "run-2", copy_current=False):
        pass
    assert not database.exists()
    with building(database, "run-3", copy_current=False) as connection:
        connection.execute("create table endpoints as select 'a' as endpoint")
    assert set(_tables(database)) == {"endpoints"}

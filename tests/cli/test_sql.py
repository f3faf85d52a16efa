"""`buw sql` as a user runs it: formats, hints for common mistakes, a read-only session, never blocked by a build."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from pipelines.models import build_all
from pipelines.publish import building
from tests import cli_env
from tests.cli_env import run_buw
from tests.models.lakes import OWN_MODELS, SONNET_4, FixtureLake

AS_OF = datetime(2025, 6, 1, 12, 0)


def _one_sentence(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("buw: ")
    return lines[0]


def _build(root: Path, *, input_tokens: float) -> None:
    """Build the warehouse file under root the way the model step does: a new file, published over the old one."""
    lake = FixtureLake(root / "warehouse" / "lake")
    lake.minute(SONNET_4, AS_OF - timedelta(minutes=1), input=input_tokens, output=1, invocations=1)
    lake.write()
    with building(root / "warehouse" / "usage.duckdb", f"test-{input_tokens:g}", copy_current=False) as connection:
        build_all(connection, lake=lake.root, as_of=AS_OF, select=OWN_MODELS)


@pytest.fixture(scope="module")
def warehouse_env(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("sql")
    _build(root, input_tokens=5)
    return cli_env.isolated_env(root)


def test_json_csv_and_table_formats(warehouse_env):
    query = "select endpoint, tpm from usage_minute order by ts"
    as_json = run_buw("sql", query, "--format", "json", env=warehouse_env)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == [{"endpoint": SONNET_4, "tpm": 6.0}]

    as_csv = run_buw("sql", query, "--format", "csv", env=warehouse_env)
    assert list(csv.reader(io.StringIO(as_csv.stdout))) == [["endpoint", "tpm"], [SONNET_4, "6.0"]]

    as_table = run_buw("sql", query, env=warehouse_env)
    assert as_table.returncode == 0 and SONNET_4 in as_table.stdout and "tpm" in as_table.stdout


def test_unquoted_window_gets_the_quoting_hint(warehouse_env):
    line = _one_sentence(run_buw("sql", "select window, p90 from window_stats", env=warehouse_env))
    assert 'write the column as "window"' in line
    quoted = run_buw("sql", 'select distinct "window" from window_stats', "--format", "csv", env=warehouse_env)
    assert quoted.returncode == 0 and "1h" in quoted.stdout


def test_an_unknown_table_lists_the_marts(warehouse_env):
    line = _one_sentence(run_buw("sql", "select * from window_stat", env=warehouse_env))
    assert "window_stat does not exist" in line
    marts = line.split("the marts are ", 1)[1].split(" (", 1)[0]
    assert {"window_stats", "usage_minute", "endpoints"} <= set(marts.split(", "))
    assert "burndown_rates" not in marts and "stg_metric_points" not in marts


def test_the_staging_view_over_the_lake_points_at_the_marts_that_hold_its_rows(warehouse_env):
    line = _one_sentence(run_buw("sql", "select count(*) from stg_metric_points", env=warehouse_env))
    assert "stg_metric_points is read from the lake while the models build" in line
    assert "usage_minute" in line and "usage_bucket" in line


@pytest.mark.parametrize("query", ["", "   \n\t", " ; "])
def test_an_empty_query_is_an_error(warehouse_env, query):
    assert "the query is empty" in _one_sentence(run_buw("sql", query, env=warehouse_env))


@pytest.mark.parametrize(
    "query",
    [
        "select * from read_text('/etc/passwd')",
        "select * from read_csv('/etc/passwd')",
        "attach '/tmp/other.duckdb' as other",
    ],
)
def test_the_session_cannot_read_files(warehouse_env, query):
    line = _one_sentence(run_buw("sql", query, env=warehouse_env))
    assert "only reads the warehouse's tables" in line


def test_copy_to_a_file_fails_and_writes_nothing(warehouse_env, tmp_path):
    target = tmp_path / "stolen.csv"
    line = _one_sentence(run_buw("sql", f"copy endpoints to '{target}'", env=warehouse_env))
    assert "only reads the warehouse's tables" in line
    assert not target.exists()


def test_the_session_cannot_write(warehouse_env):
    line = _one_sentence(run_buw("sql", "create table mine as select 1", env=warehouse_env))
    assert "read-only" in line


def test_sql_works_while_a_model_build_runs_and_an_open_reader_keeps_its_version(tmp_path):
    _build(tmp_path, input_tokens=5)
    env = cli_env.isolated_env(tmp_path)
    database = tmp_path / "warehouse" / "usage.duckdb"
    query = ["sql", "select sum(input_tokens) as tokens from usage_minute", "--format", "json"]

    with duckdb.connect(str(database), read_only=True) as notebook:
        # A build in progress: the writer holds its own new file, so readers open the published one as usual.
        lake = FixtureLake(tmp_path / "warehouse" / "lake")
        lake.minute(SONNET_4, AS_OF - timedelta(minutes=1), input=7, output=1, invocations=1)
        lake.write()
        with building(database, "in-progress", copy_current=False) as writer:
            build_all(writer, lake=lake.root, as_of=AS_OF, select=OWN_MODELS)
            during = run_buw(*query, env=env)
            assert during.returncode == 0, during.stderr
            assert json.loads(during.stdout) == [{"tokens": 5.0}]
        # Published: new sessions see the new build, the session opened before it still sees its own version.
        after = run_buw(*query, env=env)
        assert json.loads(after.stdout) == [{"tokens": 7.0}]
        assert notebook.execute("select sum(input_tokens) from usage_minute").fetchall() == [(5.0,)]


def test_sql_imports_neither_dagster_nor_boto3(warehouse_env):
    """What keeps `buw sql` quick to start: its path loads DuckDB and the settings, not the orchestration stack."""
    probe = (
        "import sys; from pipelines.cli import main; code = main(['sql', 'select 1', '--format', 'csv']); "
        "heavy = sorted(name for name in sys.modules if name.split('.')[0] in {'dagster', 'boto3', 'botocore'}); "
        "print(code, heavy)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=warehouse_env, cwd=cli_env.ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0 []"

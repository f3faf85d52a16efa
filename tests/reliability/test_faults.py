"""The fault campaign: whatever goes wrong during `buw analyze`, the warehouse ends as an undisturbed run leaves it.

Every case runs the real CLI in a private environment on three days of one region of the sandbox's demo account
(clock pinned at 2026-11-20 12:00 UTC, as_of 11:55), disturbs it — AWS failing one call in ten, the process
killed with SIGKILL at three moments, a lake file lost or damaged, a second run on the same warehouse, Ctrl-C —
and compares the lake (every Parquet file's rows, ``fetched_at`` aside) and the marts (every table of
usage.duckdb, rows sorted) with those of a clean run. Each test prints how long it took (``pytest -s``); the whole
file takes about 7 minutes on a busy 2-core machine (a dozen runs of 25-45 s, some cut short).
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest
from dagster._core.instance.ref import InstanceRef

from pipelines.pipeline import PROCESS_TAG
from pipelines.sandbox.server import SandboxServer
from tests.cli_env import isolated_env, run_buw, start_buw

# One worker runs the whole campaign: every case compares with the one clean run of the module fixture.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("faults")]

PINNED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ANALYZE = ("analyze", "-r", "us-east-1", "-y", "--as-of", "2026-11-20T11:55Z", "--days", "3")
# The lake's log of the runs (run ids, calls made): it tells runs apart by design, so it is compared only where
# both warehouses saw one run each.
RUN_LOG = "extract_run_log"
# Time columns that say when this machine wrote a row, not what AWS holds.
WALL_CLOCK_COLUMNS = {"fetched_at"}


@pytest.fixture(autouse=True)
def _timed(request) -> Iterator[None]:
    started = time.monotonic()
    yield
    print(f"\n{request.node.name}: {time.monotonic() - started:.1f} s")


def _env(root: Path, endpoint_url: str) -> dict[str, str]:
    return {
        **isolated_env(root),
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }


def lake_rows(root: Path, *, with_run_log: bool = True) -> dict[str, list[str]]:
    """Every Parquet file of the warehouse's lake by relative path: its rows, sorted, without wall-clock columns."""
    lake = root / "warehouse" / "lake"
    found = {}
    for path in sorted(lake.rglob("*.parquet")):
        name = str(path.relative_to(lake))
        if not with_run_log and name.startswith(RUN_LOG + "/"):
            continue
        table = pq.read_table(path)
        table = table.drop([column for column in table.column_names if column in WALL_CLOCK_COLUMNS])
        if name.startswith(RUN_LOG + "/"):
            table = table.drop(["run_id"])
        found[name] = sorted(repr(tuple(row.values())) for row in table.to_pylist())
    return found


def mart_rows(root: Path, *, with_run_log: bool = True) -> dict[str, list[tuple]]:
    """Every table of usage.duckdb, rows sorted; extract_runs without its run ids and times of recording."""
    found = {}
    with duckdb.connect(str(root / "warehouse" / "usage.duckdb"), read_only=True) as connection:
        for (table,) in connection.execute("select table_name from duckdb_tables() order by 1").fetchall():
            if table == "extract_runs" and not with_run_log:
                continue
            columns = [row[0] for row in connection.execute(f'describe "{table}"').fetchall()]
            dropped = WALL_CLOCK_COLUMNS | ({"run_id", "recorded_at"} if table == "extract_runs" else set())
            kept = ", ".join(f'"{column}"' for column in columns if column not in dropped)
            found[table] = connection.execute(f'select {kept} from "{table}" order by all').fetchall()
    return found


def assert_same_warehouse(root: Path, clean: Path, *, with_run_log: bool = True) -> None:
    lake, expected_lake = lake_rows(root, with_run_log=with_run_log), lake_rows(clean, with_run_log=with_run_log)
    assert sorted(lake) == sorted(expected_lake)
    for name, rows in expected_lake.items():
        assert lake[name] == rows, f"the lake file {name} differs from the clean run's"
    marts, expected_marts = mart_rows(root, with_run_log=with_run_log), mart_rows(clean, with_run_log=with_run_log)
    assert sorted(marts) == sorted(expected_marts)
    for table, rows in expected_marts.items():
        assert marts[table] == rows, f"the table {table} differs from the clean run's"


def temp_files(root: Path) -> list[Path]:
    """Temporary files (of the lake, the model build or the reports) under the warehouse and reports folders."""
    return sorted(
        path for folder in ("warehouse", "reports") for path in (root / folder).rglob("*") if ".tmp" in path.name
    )


def wait_for(process: subprocess.Popen, moment: Callable[[], bool], what: str, timeout: float = 300) -> None:
    """Poll until ``moment()`` holds; fail if the process ends first."""
    deadline = time.monotonic() + timeout
    while not moment():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"buw ended (exit {process.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no sign of {what} after {timeout} s")
        time.sleep(0.005)


def _any(root: Path, pattern: str) -> Callable[[], bool]:
    return lambda: next(root.glob(pattern), None) is not None


MOMENTS = {
    # The first metric day reached the lake; others are still being read.
    "extraction": "warehouse/lake/metric_points/region=*/date=*/*",
    # The model step is writing its new warehouse file.
    "model-build": "warehouse/.usage.*.duckdb.tmp",
    # A report page (or its temporary file) is being written.
    "rendering": "reports/us-east-1/*",
}


@pytest.fixture(scope="module")
def clean(tmp_path_factory, sandbox) -> Path:
    """A private root holding what one undisturbed `buw analyze` leaves."""
    root = tmp_path_factory.mktemp("clean")
    result = run_buw(*ANALYZE, env=_env(root, sandbox.endpoint_url))
    assert result.returncode == 0, result.stderr
    return root


def test_aws_failing_one_call_in_ten_changes_nothing_in_the_warehouse(clean, tmp_path):
    kinds = ("throttle", "500", "reset", "slow")
    # The run makes a few dozen AWS calls; this fault sequence puts each kind among them.
    faults = {"fault_rate": 0.1, "fault_kinds": kinds, "fault_seed": 34}
    with SandboxServer("demo", seed=0, now=PINNED, **faults) as faulty:
        result = run_buw(*ANALYZE, env=_env(tmp_path, faulty.endpoint_url))
        assert result.returncode == 0, result.stderr
        faults = faulty.stats()["faults"]
    # Every kind happened, several times: the run got through real trouble.
    assert set(faults) == set(kinds) and sum(faults.values()) >= 4, faults
    assert_same_warehouse(tmp_path, clean)
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_run_killed_at_any_moment_is_completed_by_the_next(moment, clean, sandbox, tmp_path):
    env = _env(tmp_path, sandbox.endpoint_url)
    process = start_buw(*ANALYZE, env=env)
    wait_for(process, _any(tmp_path, MOMENTS[moment]), moment)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    killed = process.pid

    again = run_buw(*ANALYZE, env=env)
    assert again.returncode == 0, again.stderr
    # The killed run may have logged its reads before it died: two runs, so the run log is not the clean one's.
    assert_same_warehouse(tmp_path, clean, with_run_log=False)
    assert temp_files(tmp_path) == []
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path / "dagster"))) as instance:
        runs = [run for run in instance.get_runs() if run.tags.get(PROCESS_TAG, "").endswith(f":{killed}")]
    assert [run.status for run in runs] == [dg.DagsterRunStatus.FAILURE]


def test_a_lost_and_a_damaged_day_are_named_and_read_again(clean, sandbox, tmp_path):
    subprocess.run(["cp", "-a", f"{clean}/.", str(tmp_path)], check=True)
    days = tmp_path / "warehouse" / "lake" / "metric_points" / "region=us-east-1"
    lost, damaged = days / "date=2026-11-18" / "data.parquet", days / "date=2026-11-19" / "data.parquet"
    lost.unlink()
    damaged.write_bytes(b"not parquet\n" * 100)

    result = run_buw(*ANALYZE, env=_env(tmp_path, sandbox.endpoint_url))
    assert result.returncode == 0, result.stderr
    said = " ".join((result.stdout + result.stderr).split())
    assert f"{lost} is missing: reading that day again" in said
    assert f"the lake file {damaged} is unreadable" in said
    assert said.count("reading that day again") == 2
    assert_same_warehouse(tmp_path, clean, with_run_log=False)
    assert temp_files(tmp_path) == []


def test_a_second_run_on_the_same_warehouse_is_refused_at_once(clean, sandbox, tmp_path):
    env = _env(tmp_path, sandbox.endpoint_url)
    first = start_buw(*ANALYZE, env=env)
    # The first run holds the warehouse once it has started extracting.
    wait_for(first, _any(tmp_path, "warehouse/lake/*"), "the first run's extraction")
    started = time.monotonic()
    second = run_buw(*ANALYZE, env=env, timeout=120)
    refused_after = time.monotonic() - started
    first_still_running = first.poll() is None
    _, err = first.communicate(timeout=400)
    assert first.returncode == 0, err

    assert second.returncode == 1
    warehouse = tmp_path / "warehouse"
    assert second.stderr.strip() == (
        f"buw: another buw run (pid {first.pid}) is using {warehouse}; wait for it to finish."
    )
    # It did not wait for the first run to finish, and it wrote nothing of its own (the warehouse is the clean one).
    assert first_still_running and refused_after < 30
    assert_same_warehouse(tmp_path, clean)
    assert temp_files(tmp_path) == []


def test_ctrl_c_exits_130_and_leaves_a_warehouse_the_next_run_completes(clean, sandbox, tmp_path):
    env = _env(tmp_path, sandbox.endpoint_url)
    process = start_buw(*ANALYZE, env=env)
    wait_for(process, _any(tmp_path, MOMENTS["extraction"]), "extraction")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)

    assert process.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and re.fullmatch(r"buw: interrupted; .*\.", lines[0]), err
    # As it was (no marts yet) or complete: never a half-built warehouse file, and every lake file reads.
    database = tmp_path / "warehouse" / "usage.duckdb"
    assert not database.exists() or mart_rows(tmp_path, with_run_log=False) == mart_rows(clean, with_run_log=False)
    lake_rows(tmp_path)
    assert [path for path in temp_files(tmp_path) if "duckdb" in path.name] == []

    again = run_buw(*ANALYZE, env=env)
    assert again.returncode == 0, again.stderr
    assert_same_warehouse(tmp_path, clean, with_run_log=False)
    assert temp_files(tmp_path) == []

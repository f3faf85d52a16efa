"""The warehouse file opens in the oldest DuckDB the project promises (pyproject.toml's lower bound for duckdb).

The marts are built by the DuckDB of the project's own environment, which may write a newer storage format than
older clients read; the model step writes the file in the oldest supported format instead. This test installs that
oldest DuckDB from PyPI into a virtual environment of its own, cached under ``<repo>/.cache/`` and reused while its
version matches, and reads a mart built by the current DuckDB with it, comments included.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
import shutil
import subprocess
import sys
import tomllib
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from pipelines.models import build_all
from pipelines.publish import building, storage_version
from pipelines.settings import OLDEST_READER, STORAGE_VERSION
from tests.models.lakes import OWN_MODELS, SONNET_4, US_SONNET_4, FixtureLake

pytestmark = [pytest.mark.interop, pytest.mark.xdist_group("old-duckdb")]

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache"
INSTALL_TIMEOUT_S = 600
AS_OF = datetime(2025, 6, 1, 12, 0)

READ_MART = """
import json, sys
import duckdb
with duckdb.connect(sys.argv[1], read_only=True) as connection:
    rows = connection.execute(
        "select endpoint, sum(tpm), count(*) from usage_minute group by endpoint order by endpoint"
    ).fetchall()
    comment = connection.execute(
        "select comment from duckdb_columns() where table_name = 'window_stats' and column_name = 'p90'"
    ).fetchall()[0][0]
    print(json.dumps({"version": duckdb.__version__, "rows": rows, "comment": comment}))
"""


def _promised_minimum() -> str:
    """The lower bound pyproject.toml gives for duckdb, e.g. ``1.3`` from ``duckdb>=1.3``."""
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (bound,) = [match.group(1) for spec in dependencies if (match := re.fullmatch(r"duckdb\s*>=\s*([\d.]+)", spec))]
    return bound


def _old_duckdb_python(version: str) -> Path:
    """A Python with ``duckdb==version`` from PyPI, in a cached virtual environment (built once, then reused)."""
    venv = CACHE / f"duckdb-{version}-venv"
    CACHE.mkdir(exist_ok=True)
    ignore = CACHE / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# cached virtual environments of the tests\n*\n")
    python = venv / "bin" / "python"
    marker = venv / "buw-old-duckdb.json"
    wanted = {"python": sys.version.split()[0], "duckdb": version}
    # Two pytest workers may get here at once; the second one waits and reuses the first one's environment.
    with open(CACHE / f"duckdb-{version}-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with contextlib.suppress(OSError, ValueError):
            if python.exists() and json.loads(marker.read_text()) == wanted:
                return python
        shutil.rmtree(venv, ignore_errors=True)
        _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], "python -m venv")
        uv = Path(sys.executable).with_name("uv")
        if uv.exists():
            install = [str(uv), "pip", "install", "--quiet", "--python", str(python), f"duckdb=={version}"]
        else:
            _run([sys.executable, "-m", "venv", "--upgrade-deps", str(venv)], "python -m venv --upgrade-deps")
            install = [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                f"duckdb=={version}",
            ]
        _run(install, f"installing duckdb=={version}")
        marker.write_text(json.dumps(wanted))
    return python


def _run(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} did not finish within {INSTALL_TIMEOUT_S} s")
    if done.returncode != 0:
        pytest.fail(f"{what} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def test_the_storage_format_matches_the_promised_duckdb_range():
    minimum = [int(part) for part in _promised_minimum().split(".")]
    oldest = [int(part) for part in OLDEST_READER.split(".")]
    assert oldest == [*minimum, 0, 0][:3]
    assert STORAGE_VERSION.removeprefix("v") == OLDEST_READER


def test_the_oldest_promised_duckdb_reads_a_warehouse_built_now(tmp_path):
    lake = FixtureLake(tmp_path / "lake")
    for minute in range(1, 4):
        lake.minute(SONNET_4, AS_OF - timedelta(minutes=minute), input=10 * minute, output=1, invocations=1)
        lake.minute(US_SONNET_4, AS_OF - timedelta(minutes=minute), input=5, output=2, invocations=1)
    lake.write()
    database = tmp_path / "usage.duckdb"
    with building(database, "old-reader", copy_current=False) as connection:
        build_all(connection, lake=lake.root, as_of=AS_OF, select=OWN_MODELS)
    with duckdb.connect(str(database), read_only=True) as connection:
        assert storage_version(connection) == f"{STORAGE_VERSION}+"
        expected = connection.execute(
            "select endpoint, sum(tpm), count(*) from usage_minute group by endpoint order by endpoint"
        ).fetchall()

    python = _old_duckdb_python(OLDEST_READER)
    done = subprocess.run([str(python), "-c", READ_MART, str(database)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["version"] == OLDEST_READER
    assert [tuple(row) for row in answer["rows"]] == [tuple(row) for row in expected]
    assert len(expected) == 2 and expected[0][1] > 0
    assert answer["comment"].startswith("90th percentile")

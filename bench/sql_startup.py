"""How long `buw sql "select 1"` takes from start to exit, next to the same query through DuckDB's Python API.

Builds an empty warehouse (every model, no data) in a temporary directory, then runs each command several times in
a fresh process and prints the median and fastest wall time. The gap between the two lines is what `buw` adds to
DuckDB: Python start-up is in both.

    .venv/bin/python bench/sql_startup.py [--runs 9]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.models import build_all  # noqa: E402
from pipelines.publish import building  # noqa: E402


def _times(command: list[str], env: dict[str, str], runs: int) -> list[float]:
    elapsed = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True, cwd=REPO)
        elapsed.append(time.perf_counter() - start)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    buw = Path(sys.executable).with_name("buw")
    with tempfile.TemporaryDirectory() as tmp:
        warehouse = Path(tmp) / "warehouse"
        database = warehouse / "usage.duckdb"
        with building(database, "bench", copy_current=False) as connection:
            build_all(connection, lake=warehouse / "lake", as_of=datetime(2026, 11, 20, 12, 0))
        env = {**os.environ, "BUW_WAREHOUSE": str(warehouse)}
        raw = (
            "import duckdb, sys; "
            "c = duckdb.connect(sys.argv[1], read_only=True); c.execute(\"set timezone = 'UTC'\"); "
            "print(c.sql('select 1').fetchall())"
        )
        commands = {
            'buw sql "select 1"': [str(buw), "sql", "select 1"],
            'buw sql "select 1" --format csv': [str(buw), "sql", "select 1", "--format", "csv"],
            "python + duckdb, select 1": [sys.executable, "-c", raw, str(database)],
            "python, nothing imported": [sys.executable, "-c", "pass"],
        }
        print(f"{'command':<36} {'median s':>9} {'fastest s':>10}   ({args.runs} runs each)")
        for label, command in commands.items():
            elapsed = _times(command, env, args.runs)
            print(f"{label:<36} {statistics.median(elapsed):>9.3f} {min(elapsed):>10.3f}")


if __name__ == "__main__":
    main()

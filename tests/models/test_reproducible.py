"""Two builds from the same lake give bit-identical marts: every value of every table, doubles compared bitwise."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np

from pipelines.models import build_all
from tests.models.lakes import US_SONNET_4, US_SONNET_4_ARNS, FixtureLake

AS_OF = datetime(2025, 6, 10, 12, 0)
PROFILES = [f"profile{index:05d}" for index in range(5)]


def busy_lake(root: Path) -> FixtureLake:
    """Five tagged profiles and the system profile: two days of 1-minute data, three days of 5-minute data before.

    Counts are integers as CloudWatch's are, latency averages fractions; the 5-minute buckets spread into
    fractional minute shares, which is where summing doubles in another order used to change the last bits.
    """
    rng = np.random.default_rng(11)
    lake = FixtureLake(root)
    lake.profile(US_SONNET_4, US_SONNET_4_ARNS, kind="SYSTEM")
    for index, profile_id in enumerate(PROFILES):
        lake.profile(profile_id, US_SONNET_4_ARNS)
        lake.tags(profile_id, {"team": f"team-{index % 2}"})
    lake.coverage(AS_OF - timedelta(days=2), AS_OF, period_s=60)
    lake.coverage(AS_OF - timedelta(days=5), AS_OF - timedelta(days=2), period_s=300)
    for series in (US_SONNET_4, *PROFILES):
        for n in np.flatnonzero(rng.random(2 * 1440) < 0.6) + 1:
            requests = int(rng.integers(1, 40))
            lake.minute(
                series,
                AS_OF - timedelta(minutes=int(n)),
                input=int(rng.integers(1, 90_000)),
                output=int(rng.integers(1, 9_000)),
                cache_write=int(rng.integers(0, 500)),
                invocations=requests,
                throttles=int(rng.random() < 0.05),
                latency=float(rng.uniform(100, 9_000)),
                latency_samples=requests,
            )
        for k in np.flatnonzero(rng.random(3 * 288) < 0.7):
            requests = int(rng.integers(1, 200))
            lake.minute(
                series,
                AS_OF - timedelta(days=5) + timedelta(minutes=5 * int(k)),
                period_s=300,
                input=int(rng.integers(1, 400_000)),
                output=int(rng.integers(1, 40_000)),
                invocations=requests,
                throttles=int(rng.random() < 0.05),
                latency=float(rng.uniform(100, 9_000)),
                latency_samples=requests,
            )
    lake.write()
    return lake


def mart_digests(lake: FixtureLake, threads: int) -> dict[str, str]:
    with duckdb.connect() as connection:
        connection.execute(f"set threads = {threads}")
        build_all(connection, lake=lake.root, as_of=AS_OF)
        tables = [
            name for (name,) in connection.execute("select table_name from duckdb_tables() order by 1").fetchall()
        ]
        digests = {}
        for table in tables:
            digest = hashlib.sha256()
            for row in connection.execute(f'select * from "{table}" order by all').fetchall():
                digest.update(repr([value.hex() if isinstance(value, float) else value for value in row]).encode())
            digests[table] = digest.hexdigest()
        return digests


def test_two_builds_of_the_same_lake_give_bit_identical_marts(tmp_path: Path) -> None:
    lake = busy_lake(tmp_path / "lake")
    first = mart_digests(lake, threads=4)
    second = mart_digests(lake, threads=1)

    assert {"window_stats", "tpd_daily", "tag_attribution", "throttle_attribution", "quota_headroom"} <= set(first)
    assert first == second

"""metric_points files of the earlier one-row-per-datapoint layout: read as today's rows, rewritten once, same marts."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import lake as lake_io
from pipelines.models import build_all
from tests.models.lakes import HAIKU_35, OWN_MODELS, US_SONNET_4, US_SONNET_4_ARNS, FixtureLake

AS_OF = datetime(2025, 6, 10, 12, 0)
MARTS = ("usage_minute", "window_stats", "tpd_daily", "tag_attribution", "throttle_attribution")


@pytest.fixture
def lakes(tmp_path) -> tuple[FixtureLake, FixtureLake]:
    """The same datapoints twice: ``wide`` written as the extraction writes today, ``old`` as earlier versions did."""
    built = []
    for name in ("wide", "old"):
        lake = FixtureLake(tmp_path / name)
        lake.profile(US_SONNET_4, US_SONNET_4_ARNS, kind="SYSTEM")
        lake.profile("profileaaaaa", US_SONNET_4_ARNS)
        lake.tags("profileaaaaa", {"team": "search"})
        for n in range(1, 2 * 24 * 60, 7):
            ts = AS_OF - timedelta(minutes=n)
            lake.minute("profileaaaaa", ts, input=10 * n, output=n, invocations=1 + n % 3, latency=200 + n)
            lake.minute(US_SONNET_4, ts, input=7, throttles=n % 2, invocations=1, latency_samples=1)
            lake.minute(HAIKU_35, ts, input=n % 5, cache_read=3)
        lake.coverage(AS_OF - timedelta(days=2), AS_OF)
        built.append(lake)
    wide, old = built
    wide.write()
    old.write()
    # Earlier versions wrote one row per datapoint: overwrite the points files in that layout.
    for (dataset, _region, day), rows in old.rows.items():
        if dataset == "metric_points":
            path = lake_io.Partition("metric_points", _region, day).path(old.root)
            pq.write_table(pa.Table.from_pylist(rows, schema=lake_io.DATAPOINTS_SCHEMA), path)
    return wide, old


def test_an_old_points_file_reads_as_todays_rows(lakes) -> None:
    wide, old = lakes
    for partition in lake_io.partitions(old.root, "metric_points"):
        assert "metric" in pq.read_schema(partition.path(old.root)).names
        assert lake_io.read_partition(old.root, partition).equals(lake_io.read_partition(wide.root, partition))


def test_an_old_lake_is_rewritten_once_and_builds_the_same_marts(lakes) -> None:
    wide, old = lakes
    expected = wide.build(AS_OF, models=OWN_MODELS)
    untouched = old.root.parent / "untouched"
    shutil.copytree(old.root, untouched)

    connection = duckdb.connect()
    build_all(connection, lake=old.root, as_of=AS_OF, select=OWN_MODELS)
    for mart in MARTS:
        query = f"select * from {mart} order by all"
        assert connection.execute(query).fetchall() == expected.execute(query).fetchall(), mart
    assert connection.execute("select count(*) from usage_minute").fetchone()[0] > 0

    for partition in lake_io.partitions(old.root, "metric_points"):
        assert pq.read_schema(partition.path(old.root)).names == lake_io.SCHEMAS["metric_points"].names
        assert pq.read_table(partition.path(old.root)).equals(pq.read_table(partition.path(wide.root)))
    # Every datapoint of the old files is a cell of the new ones.
    datapoints = sum(
        pq.read_metadata(p.path(untouched)).num_rows for p in lake_io.partitions(untouched, "metric_points")
    )
    cells = 0
    for partition in lake_io.partitions(old.root, "metric_points"):
        table = pq.read_table(partition.path(old.root))
        cells += sum(table.num_rows - table[column].null_count for column in lake_io.POINT_COLUMNS)
    assert cells == datapoints > 0
    # Once done, later builds skip the scan.
    assert (old.root / "metric_points" / ".layout-series-bucket").exists()
    assert lake_io.upgrade_metric_points(old.root) == []


def test_every_statistic_the_extract_reads_has_its_column() -> None:
    from pipelines.aws.cloudwatch import METRICS

    assert [(spec.metric, spec.stat) for spec in METRICS] == list(lake_io.POINT_MEASURES)

"""metric_points files of the earlier one-row-per-datapoint layout: read as today's rows, rewritten once, same marts."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

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
    # Earlier versions wrote one row per datapoint: overwrite the points files of all days but the last in that
    # layout (the last day was written since, as an extraction that had not rewritten the rest yet would).
    for (dataset, _region, day), rows in old.rows.items():
        if dataset == "metric_points" and day < AS_OF.date():
            path = lake_io.Partition("metric_points", _region, day).path(old.root)
            pq.write_table(pa.Table.from_pylist(rows, schema=lake_io.DATAPOINTS_SCHEMA), path)
    return wide, old


def test_an_old_points_file_reads_as_todays_rows(lakes) -> None:
    wide, old = lakes
    for partition in lake_io.partitions(old.root, "metric_points"):
        assert ("metric" in pq.read_schema(partition.path(old.root)).names) == (partition.day < AS_OF.date())
        assert lake_io.read_partition(old.root, partition).equals(lake_io.read_partition(wide.root, partition))


def built_marts(lake: Path) -> dict[str, list[tuple]]:
    connection = duckdb.connect()
    build_all(connection, lake=lake, as_of=AS_OF, select=OWN_MODELS)
    return {mart: connection.execute(f"select * from {mart} order by all").fetchall() for mart in MARTS}


def test_an_old_lake_builds_the_same_marts_and_the_extraction_rewrites_it_once(lakes) -> None:
    wide, old = lakes
    expected = built_marts(wide.root)
    assert expected["usage_minute"]
    # A lake with nothing of the earlier layout is marked so by its first build: later binds read no footer.
    assert (wide.root / "metric_points" / ".layout-series-bucket").exists()
    before = {p: p.path(old.root).read_bytes() for p in lake_io.partitions(old.root, "metric_points")}
    earlier = [p for p in before if p.day < AS_OF.date()]
    assert len(earlier) == 2 and len(before) == 3

    # The models read the old files through the extraction's pivot and leave them as they are: only the
    # extraction, which never runs twice at once, rewrites them.
    assert built_marts(old.root) == expected
    assert {p: p.path(old.root).read_bytes() for p in before} == before

    assert lake_io.earlier_layout_files(old.root) == earlier
    rewritten = lake_io.upgrade_metric_points(old.root)
    assert rewritten == [p.path(old.root) for p in earlier]
    for partition in before:
        assert pq.read_table(partition.path(old.root)).equals(pq.read_table(partition.path(wide.root)))
    # Every datapoint of the old files is a cell of the new ones.
    datapoints = sum(len(old.rows["metric_points", p.region, p.day]) for p in earlier)
    cells = 0
    for partition in earlier:
        table = pq.read_table(partition.path(old.root))
        cells += sum(table.num_rows - table[column].null_count for column in lake_io.POINT_COLUMNS)
    assert cells == datapoints > 0
    assert built_marts(old.root) == expected
    # Once done, later runs skip the scan.
    assert (old.root / "metric_points" / ".layout-series-bucket").exists()
    assert lake_io.earlier_layout_files(old.root) == []
    assert lake_io.upgrade_metric_points(old.root) == []


def test_a_new_lake_is_marked_as_todays_layout_before_its_first_file(tmp_path) -> None:
    assert lake_io.upgrade_metric_points(tmp_path / "lake") == []
    assert (tmp_path / "lake" / "metric_points" / ".layout-series-bucket").exists()


def test_every_statistic_the_extract_reads_has_its_column() -> None:
    from pipelines.aws.cloudwatch import METRICS

    assert [(spec.metric, spec.stat) for spec in METRICS] == list(lake_io.POINT_MEASURES)

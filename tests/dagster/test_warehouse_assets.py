"""What Dagster users see of the warehouse, and the model step as readers meet it.

- Every table asset shows its columns (names, DuckDB types, descriptions) before any run; every asset has an
  owner, a freshness expectation and a link to its code; check descriptions read as plain text.
- A model run on a fixture lake records ``dagster/row_count`` equal to the rows of the table it published.
- The model step publishes a new file: an open reader neither blocks it nor sees a half-built file, a partial build
  still publishes every table, a second concurrent build refuses with one sentence, and files that killed builds
  left behind are swept.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipelines.definitions import ASSET_DATASETS, defs
from pipelines.lake import SCHEMAS, dataset_glob
from pipelines.models import READ_THROUGH, _duckdb_type, data_dictionary
from pipelines.publish import build_lock, lock_path, temp_path
from pipelines.resources import WarehouseResource
from tests.models.lakes import HAIKU_35, SONNET_4, US_SONNET_4, US_SONNET_4_ARNS, FixtureLake

AS_OF = datetime(2025, 6, 1, 12, 0)
MODELS = "window_stats"  # any key of the model multi-asset


def _graph():
    return defs.resolve_asset_graph()


def _keys() -> list[str]:
    return sorted(key.to_user_string() for key in _graph().get_all_asset_keys())


@pytest.mark.parametrize("name", [key for key in _keys() if key != "reports"])
def test_every_table_asset_shows_its_documented_columns(name):
    schema = _graph().get(dg.AssetKey(name)).metadata.get("dagster/column_schema")
    assert isinstance(schema, dg.TableSchema), f"{name} has no column schema"
    columns = [(column.name, column.type) for column in schema.columns]
    assert all(column.description for column in schema.columns), name
    dataset = ASSET_DATASETS.get(name, name)
    if dataset in SCHEMAS:
        # Raw lake datasets: the Parquet schema plus the partition columns a reader gets back from the path.
        expected = [(field.name, _duckdb_type(field.type)) for field in SCHEMAS[dataset]]
        assert columns == [*expected, ("region", "varchar"), ("date", "date")]
    else:
        documented = data_dictionary()[name]
        assert columns == [(column.name, column.type) for column in documented.columns]


def test_every_asset_has_an_owner_a_freshness_policy_and_a_code_reference():
    graph = _graph()
    for name in _keys():
        node = graph.get(dg.AssetKey(name))
        assert node.owners == ["team:platform"], name
        assert node.freshness_policy is not None, name
        references = node.metadata["dagster/code_references"].code_references
        assert references and all(Path(reference.file_path).exists() for reference in references), name
    window_stats = graph.get(dg.AssetKey("window_stats")).metadata["dagster/code_references"].code_references
    assert window_stats[0].file_path.endswith("sql/marts/window_stats.sql")
    metrics = graph.get(dg.AssetKey("metric_points")).freshness_policy
    marts = graph.get(dg.AssetKey("window_stats")).freshness_policy
    assert metrics.fail_window.to_timedelta() <= timedelta(hours=2) < marts.fail_window.to_timedelta()


def test_descriptions_are_plain_text():
    graph = _graph()
    texts = [graph.get_check_spec(key).description or "" for key in graph.asset_check_keys]
    texts += [graph.get(key).description or "" for key in graph.get_all_asset_keys()]
    assert all(texts)
    for text in texts:
        assert "``" not in text and ":func:" not in text, text
        # Paragraphs are whole lines: no docstring line breaks inside a sentence.
        assert all("\n" not in paragraph for paragraph in text.split("\n\n")), text


# ---- the model step on a fixture lake


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WarehouseResource:
    monkeypatch.setenv("BUW_DATA_DIR", str(tmp_path / "data"))
    lake = FixtureLake(tmp_path / "warehouse" / "lake")
    lake.profile(US_SONNET_4, US_SONNET_4_ARNS, kind="SYSTEM_DEFINED")
    lake.profile("team-a", US_SONNET_4_ARNS)
    lake.tags("team-a", {"team": "a"})
    for minute in range(1, 4):
        ts = AS_OF - timedelta(minutes=minute)
        lake.minute(US_SONNET_4, ts, input=100 * minute, output=10, invocations=2)
        lake.minute("team-a", ts, input=50, output=5, invocations=1, throttles=minute - 1)
        lake.minute(HAIKU_35, ts, input=7, output=1, invocations=1)
    lake.minute(SONNET_4, AS_OF - timedelta(days=2), input=3, output=1, invocations=1)
    lake.coverage(AS_OF - timedelta(days=3), AS_OF)
    lake.write()
    return WarehouseResource(warehouse_dir=str(tmp_path / "warehouse"), as_of="2025-06-01T12:00:00Z")


def _models_asset() -> dg.AssetsDefinition:
    """The model multi-asset as the code location defines it (with its UI metadata), before resources are bound."""
    (models,) = [
        asset
        for asset in defs.assets or ()
        if isinstance(asset, dg.AssetsDefinition) and dg.AssetKey(MODELS) in asset.keys
    ]
    return models


def _run(warehouse: WarehouseResource, selection: list[str] | None = None) -> dg.ExecuteInProcessResult:
    models = _models_asset()
    return dg.materialize(
        [models],
        selection=selection,
        resources={"warehouse": warehouse},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _counts(database: Path) -> dict[str, int]:
    with duckdb.connect(str(database), read_only=True) as connection:
        tables = [name for (name,) in connection.execute("select table_name from duckdb_tables()").fetchall()]
        return {name: connection.execute(f'select count(*) from "{name}"').fetchall()[0][0] for name in tables}


def test_each_materialization_records_the_published_row_count(warehouse):
    result = _run(warehouse)
    assert result.success
    counts = _counts(warehouse.database())
    events = result.get_asset_materialization_events()
    assert len(events) == len(_models_asset().keys)
    for event in events:
        name = event.asset_key.to_user_string()
        metadata = event.materialization.metadata
        assert "rows" not in metadata
        if name in READ_THROUGH:
            # A view over the lake in the build connection: its rows are the lake's, and the file has no table.
            assert name not in counts
            with duckdb.connect() as connection:
                lake_rows = connection.execute(
                    "select count(*) from read_parquet(?)", [dataset_glob(warehouse.lake(), "metric_points")]
                ).fetchall()[0][0]
            assert metadata["dagster/row_count"].value == lake_rows > 0, name
        else:
            assert metadata["dagster/row_count"].value == counts[name], name
        assert metadata["as_of"].value == "2025-06-01T12:00:00Z"
        # The table as built carries the very columns, types and descriptions the UI showed before the run.
        declared = _graph().get(event.asset_key).metadata["dagster/column_schema"]
        assert metadata["dagster/column_schema"].value == declared, name
    assert counts["usage_minute"] > 0 and counts["window_stats"] > 0 and counts["tag_attribution"] > 0


def test_an_open_reader_neither_blocks_the_build_nor_sees_it_until_it_reconnects(warehouse):
    assert _run(warehouse).success
    database = warehouse.database()
    stale = temp_path(database, "killed-run")
    stale.write_bytes(b"left by a build that was killed")
    with duckdb.connect(str(database), read_only=True) as notebook:
        before = notebook.execute("select count(*) from endpoint_minute").fetchall()
        # The lake grows by a day's partition; the reader's session stays open through the rebuild and publish.
        lake = FixtureLake(warehouse.lake())
        lake.minute(HAIKU_35, AS_OF - timedelta(days=1), input=1, output=1, invocations=1)
        lake.write()
        assert _run(warehouse).success
        assert notebook.execute("select count(*) from endpoint_minute").fetchall() == before
    with duckdb.connect(str(database), read_only=True) as fresh:
        assert fresh.execute("select count(*) from endpoint_minute").fetchall()[0][0] == before[0][0] + 1
    leftovers = sorted(path.name for path in database.parent.iterdir() if path.name.startswith("."))
    assert leftovers == [lock_path(database).name]


def test_a_partial_build_publishes_a_complete_file(warehouse):
    assert _run(warehouse).success
    everything = _counts(warehouse.database())
    result = _run(warehouse, selection=["endpoints"])
    assert result.success
    assert [event.asset_key.to_user_string() for event in result.get_asset_materialization_events()] == ["endpoints"]
    assert _counts(warehouse.database()) == everything


def test_a_second_concurrent_build_refuses_in_one_sentence(warehouse):
    assert _run(warehouse).success
    database = warehouse.database()
    published = database.stat().st_ino
    with build_lock(database, "other-run"):
        result = _run(warehouse)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert failure.description.startswith("another model build (run other-run, pid ")
    assert failure.description.count(". ") == 0 and failure.description.endswith("then run again.")
    assert database.stat().st_ino == published

"""pipelines.models: discovery, dependency order, inputs, empty lakes, comments from the data dictionary."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from pipelines.lake import dataset_glob
from pipelines.models import (
    ModelError,
    build_all,
    build_model,
    build_order,
    data_dictionary,
    discover_models,
    load_seeds,
)
from tests.models.lakes import OWN_MARTS, OWN_MODELS, SONNET_4, FixtureLake, one, rows

AS_OF = datetime(2025, 6, 10, 12, 0)


def test_models_are_found_with_their_layer_and_the_models_and_seeds_they_read() -> None:
    models = {model.name: model for model in discover_models()}

    assert set(OWN_MARTS) <= set(models)
    assert {models[name].layer for name in OWN_MARTS} == {"marts"}
    assert models["stg_metric_points"].layer == "staging"
    assert models["usage_minute"].depends_on == ("endpoints", "model_burndown", "stg_metric_points", "usage_bucket")
    assert models["model_burndown"].depends_on == ("burndown_rates", "endpoints")
    assert models["window_stats"].depends_on == (
        "endpoint_minute",
        "time_windows",
        "tpd_daily",
        "usage_bucket",
        "usage_minute",
        "window_coverage",
    )
    assert models["window_stats"].description.startswith("Distribution of every measure")
    assert "Grain: one row per region x endpoint x series_id x window x metric." in models["window_stats"].description


def test_build_order_puts_every_model_after_what_it_reads() -> None:
    models = discover_models()
    order = build_order(models)

    assert sorted(order) == sorted(model.name for model in models)
    for model in models:
        for dependency in model.depends_on:
            if dependency in order:
                assert order.index(dependency) < order.index(model.name), (dependency, model.name)


def test_dependencies_ignore_names_in_comments_and_strings(tmp_path: Path) -> None:
    (tmp_path / "staging").mkdir()
    (tmp_path / "marts").mkdir()
    (tmp_path / "staging" / "stg_a.sql").write_text("select 1 as x\n")
    (tmp_path / "marts" / "b.sql").write_text("-- not from stg_a\nselect 'stg_a' as name, x from stg_a;\n")
    (tmp_path / "marts" / "c.sql").write_text("-- reads b only\nselect * from b\n")

    models = {model.name: model for model in discover_models(tmp_path)}
    assert models["b"].depends_on == ("stg_a",)
    assert models["b"].sql.endswith("from stg_a")  # the trailing semicolon is dropped
    assert models["c"].depends_on == ("b",)
    assert build_order(models.values()) == ["stg_a", "b", "c"]


def test_a_cycle_is_reported_by_name(tmp_path: Path) -> None:
    (tmp_path / "marts").mkdir()
    (tmp_path / "marts" / "a.sql").write_text("select * from b\n")
    (tmp_path / "marts" / "b.sql").write_text("select * from a\n")

    with pytest.raises(ModelError, match="cycle"):
        build_order(discover_models(tmp_path))


def test_a_failing_model_names_itself_and_leaves_the_previous_table(tmp_path: Path) -> None:
    (tmp_path / "marts").mkdir()
    model_file = tmp_path / "marts" / "answer.sql"
    model_file.write_text("select 42 as value\n")
    connection = duckdb.connect()
    build_all(connection, lake=tmp_path / "lake", as_of=AS_OF, sql_dir=tmp_path)

    model_file.write_text("select no_such_column from range(1)\n")
    with pytest.raises(ModelError, match=r"model answer \(.*answer.sql\) failed"):
        build_all(connection, lake=tmp_path / "lake", as_of=AS_OF, sql_dir=tmp_path)
    assert one(connection, "select value from answer") == 42


def test_unknown_models_in_select_are_refused_with_the_known_names() -> None:
    with pytest.raises(ModelError, match=r"unknown model.*usage_minutes.*known models: .*usage_minute"):
        build_all(duckdb.connect(), lake=Path("/nonexistent"), as_of=AS_OF, select=["usage_minutes"])


def test_as_of_must_be_a_whole_minute_and_is_taken_as_utc(lake: FixtureLake) -> None:
    lake.minute(SONNET_4, AS_OF - timedelta(minutes=1), input=5)
    lake.write()
    connection = duckdb.connect()
    with pytest.raises(ValueError, match="whole minute"):
        build_all(connection, lake=lake.root, as_of=AS_OF + timedelta(seconds=30), select=["stg_metric_points"])

    aware = (AS_OF + timedelta(hours=2)).replace(tzinfo=timezone(timedelta(hours=2)))
    build_all(connection, lake=lake.root, as_of=aware, select=OWN_MODELS)
    assert one(connection, "select getvariable('as_of')") == AS_OF
    assert one(connection, "select distinct as_of from window_stats") == AS_OF


def test_lake_globs_reach_the_sql_as_variables(lake: FixtureLake) -> None:
    connection = lake.build(AS_OF, models=("stg_metric_points",))

    assert one(connection, "select getvariable('lake_metric_points')") == dataset_glob(lake.root, "metric_points")


def test_an_empty_lake_builds_every_model_empty_with_its_columns(tmp_path: Path) -> None:
    connection = duckdb.connect()
    counts = build_all(connection, lake=tmp_path / "no-lake-yet", as_of=AS_OF, select=OWN_MODELS)

    assert counts == dict.fromkeys(counts, 0)
    assert set(counts) == set(OWN_MODELS)
    assert [
        name
        for (name,) in rows(connection, "select column_name from duckdb_columns() where table_name = 'window_stats'")
    ][:6] == [
        "region",
        "endpoint",
        "series_id",
        "window",
        "window_minutes",
        "metric",
    ]


def test_every_column_is_documented_with_its_type_and_commented_in_duckdb(lake: FixtureLake) -> None:
    lake.minute(SONNET_4, AS_OF - timedelta(minutes=1), input=5)
    connection = lake.build(AS_OF)
    documentation = data_dictionary()
    tables = ("burndown_rates", "time_windows", *OWN_MODELS)

    for table in tables:
        assert table in documentation, f"docs/data-dictionary.md has no section ## {table}"
        actual = rows(
            connection,
            "select column_name, lower(data_type), comment from duckdb_columns() where table_name = ? "
            "order by column_index",
            table,
        )
        documented = [(column.name, column.type, column.description) for column in documentation[table].columns]
        assert [(name, data_type) for name, data_type, _ in actual] == [(n, t) for n, t, _ in documented], table
        assert [comment for _, _, comment in actual] == [description for _, _, description in documented], table
        assert all(description for _, _, description in documented), table
        # stg_metric_points is a view over the lake in the build connection (READ_THROUGH), the rest tables.
        table_comment = one(
            connection,
            "select comment from duckdb_tables() where table_name = ? "
            "union all select comment from duckdb_views() where view_name = ?",
            table,
            table,
        )
        assert table_comment == documentation[table].description and table_comment


def test_seeds_load_with_their_documented_types() -> None:
    connection = duckdb.connect()
    load_seeds(connection)

    assert rows(connection, 'select "window", window_minutes from time_windows order by window_minutes') == [
        ("1h", 60),
        ("1d", 1440),
        ("7d", 10080),
        ("14d", 20160),
        ("30d", 43200),
    ]
    assert (
        one(
            connection,
            "select output_multiplier from burndown_rates where model_id_prefix = 'anthropic.claude-sonnet-4-20250514'",
        )
        == 5.0
    )


def test_build_model_alone_binds_its_inputs_and_loads_missing_seeds(lake: FixtureLake) -> None:
    lake.minute(SONNET_4, AS_OF - timedelta(minutes=1), input=5, output=1)
    connection = lake.build(
        AS_OF,
        models=("stg_metric_points", "stg_metric_coverage", "stg_inference_profiles", "endpoints"),
    )
    connection.execute("drop table if exists burndown_rates")
    models = {model.name: model for model in discover_models()}

    assert build_model(connection, models["model_burndown"], lake=lake.root, as_of=AS_OF) == 1
    assert build_model(connection, models["usage_bucket"], lake=lake.root, as_of=AS_OF) == 0
    assert build_model(connection, models["usage_minute"], lake=lake.root, as_of=AS_OF) == 1
    assert one(connection, "select quota_tpm from usage_minute") == 10.0


def test_build_all_builds_every_model_including_the_python_ones(tmp_path) -> None:
    """An empty lake builds every mart, quota_map and quota_headroom too, in one call."""
    import duckdb

    from pipelines.models import all_models, build_all

    with duckdb.connect() as connection:
        counts = build_all(connection, lake=tmp_path / "lake", as_of=datetime(2025, 6, 10, 12, 0))
    assert set(counts) == {model.name for model in all_models()}
    assert {"quota_map", "quota_headroom", "window_stats"} <= set(counts)

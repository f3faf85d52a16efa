"""SQL models as Dagster assets: one asset per file in sql/, named after the file, built in one step.

DuckDB allows one writer per database file, so every model is built by a single multi-asset step in dependency
order (the "single-writer model step" of DESIGN §8); each SQL file is still its own asset in the graph, with its
own materialization, metadata and checks. The quality checks run inside the same step for the same reason.
"""

import dagster as dg

from pipelines.checks_sql import (
    check_aggregate_totals,
    check_duplicate_points,
    check_expected_partitions,
)
from pipelines.models import SqlModel, build_model, discover_models, load_seeds
from pipelines.resources import WarehouseResource, run_as_of

# Raw datasets each staging model reads (asset keys of the extract group).
RAW_INPUTS = {
    "stg_metric_points": ("metric_points",),
    "stg_metric_coverage": ("metric_points",),
    "stg_inference_profiles": ("inference_profiles",),
    "stg_profile_tags": ("profile_tags",),
    "stg_foundation_models": ("foundation_models",),
    "stg_service_quotas": ("service_quotas",),
}

CHECKS = (
    ("stg_metric_points", "no_duplicate_points", check_duplicate_points, True),
    ("stg_metric_points", "expected_partitions_present", check_expected_partitions, False),
    ("window_stats", "aggregate_equals_sum_of_series", check_aggregate_totals, True),
)


def _preview(connection, name: str) -> str:
    relation = connection.table(name).limit(5)
    columns = relation.columns
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in relation.fetchall():
        lines.append("| " + " | ".join("" if value is None else str(value) for value in row) + " |")
    return "\n".join(lines)


def _spec(model: SqlModel) -> dg.AssetSpec:
    deps = [*RAW_INPUTS.get(model.name, ()), *model.depends_on]
    return dg.AssetSpec(
        key=model.name,
        deps=deps,
        group_name="models",
        kinds={"duckdb", "sql"},
        description=f"Runs sql/{model.layer}/{model.path.name}.\n\n{model.description}".strip(),
        skippable=True,
    )


def build_models_asset() -> dg.AssetsDefinition:
    """The multi-asset that builds every SQL model found in sql/."""
    models = discover_models()
    names = {model.name for model in models}
    check_specs = [
        dg.AssetCheckSpec(name=check_name, asset=asset, blocking=blocking, description=function.__doc__)
        for asset, check_name, function, blocking in CHECKS
        if asset in names
    ]

    @dg.multi_asset(
        name="sql_models",
        specs=[_spec(model) for model in models],
        check_specs=check_specs,
        can_subset=True,
    )
    def sql_models(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        """Builds the selected SQL models in dependency order in warehouse/usage.duckdb."""
        as_of = run_as_of(context, warehouse)
        selected = {key.to_user_string() for key in context.selected_asset_keys}
        lake = warehouse.lake()
        with warehouse.connect() as connection:
            load_seeds(connection)
            for model in models:
                if model.name not in selected:
                    continue
                rows = build_model(connection, model, lake=lake, as_of=as_of)
                yield dg.MaterializeResult(
                    asset_key=model.name,
                    metadata={
                        "rows": dg.MetadataValue.int(rows),
                        "as_of": dg.MetadataValue.text(as_of.isoformat() + "Z"),
                        "path": dg.MetadataValue.path(str(warehouse.database())),
                        "preview": dg.MetadataValue.md(_preview(connection, model.name)),
                    },
                )
                for asset, check_name, function, _ in CHECKS:
                    if asset != model.name or dg.AssetCheckKey(dg.AssetKey(asset), check_name) not in (
                        context.selected_asset_check_keys
                    ):
                        continue
                    outcome = function(connection, lake=lake, as_of=as_of)
                    yield dg.AssetCheckResult(
                        asset_key=asset,
                        check_name=check_name,
                        passed=outcome.passed,
                        metadata={"violations": outcome.violations, **outcome.metadata},
                    )

    return sql_models

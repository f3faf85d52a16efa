"""SQL models as Dagster assets: one asset per file in sql/, named after the file, built in one step.

DuckDB allows one writer per database file, so every model is built by a single multi-asset step in dependency
order (the "single-writer model step" of DESIGN §8); each model is still its own asset in the graph, with its
own materialization, metadata and checks. The quality checks run inside the same step for the same reason.
One model is Python rather than SQL: ``quota_map`` parses quota names (pipelines/quotas/), which SQL cannot do
well; it sits in the same graph and order.
"""

import dagster as dg

from pipelines.checks_sql import (
    check_aggregate_totals,
    check_burndown_rates_complete,
    check_duplicate_points,
    check_expected_partitions,
    check_unique_usage_minutes,
)
from pipelines.models import PYTHON_MODELS, SqlModel, all_models, build_any, build_order, load_seeds, seed_names
from pipelines.quotas.checks import check_rpm_headroom, check_tpd_headroom, check_tpm_headroom
from pipelines.resources import WarehouseResource, run_as_of

# Rebuild when any upstream landed (a metric day or a snapshot), once nothing upstream is still running and every
# upstream model and snapshot has been built at least once (a model step builds its selection on top of the tables
# it reads). Unlike AutomationCondition.eager(), it does not wait for every day of metric_points: most days of the
# partition space are never read (only the last 30 are backfilled), and the marts are built from what the lake holds.
MARTS_AUTOMATION = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
    & ~dg.AutomationCondition.any_deps_missing().ignore(dg.AssetSelection.assets("metric_points"))
).with_label("rebuild after new extracted data")

# Raw datasets each staging model reads (asset keys of the extract group).
RAW_INPUTS = {
    "stg_metric_points": ("metric_points",),
    "stg_metric_coverage": ("metric_points",),
    "extract_runs": ("metric_points",),
    "stg_inference_profiles": ("inference_profiles",),
    "stg_profile_tags": ("profile_tags", "inference_profiles"),
    "stg_foundation_models": ("foundation_models",),
    "stg_service_quotas": ("service_quotas",),
    "stg_service_quotas_history": ("service_quotas",),
}

# (asset, check name, function, blocking, severity). Blocking checks stop the report on bad data; the
# headroom checks only warn: being near a quota is news for the user, not broken data.
CHECKS = (
    ("stg_metric_points", "no_duplicate_points", check_duplicate_points, True, dg.AssetCheckSeverity.ERROR),
    ("usage_minute", "one_row_per_series_minute", check_unique_usage_minutes, True, dg.AssetCheckSeverity.ERROR),
    (
        "stg_metric_points",
        "expected_partitions_present",
        check_expected_partitions,
        False,
        dg.AssetCheckSeverity.WARN,
    ),
    (
        "window_stats",
        "aggregate_equals_sum_of_series",
        check_aggregate_totals,
        True,
        dg.AssetCheckSeverity.ERROR,
    ),
    (
        "model_burndown",
        "burndown_rates_complete",
        check_burndown_rates_complete,
        False,
        dg.AssetCheckSeverity.WARN,
    ),
    ("quota_headroom", "tpm_headroom", check_tpm_headroom, False, dg.AssetCheckSeverity.WARN),
    ("quota_headroom", "rpm_headroom", check_rpm_headroom, False, dg.AssetCheckSeverity.WARN),
    ("quota_headroom", "tpd_headroom", check_tpd_headroom, False, dg.AssetCheckSeverity.WARN),
)


def _preview(connection, name: str) -> str:
    relation = connection.table(name).limit(5)
    columns = relation.columns
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in relation.fetchall():
        lines.append("| " + " | ".join("" if value is None else str(value) for value in row) + " |")
    return "\n".join(lines)


def _description(model: SqlModel) -> str:
    if model.name in PYTHON_MODELS:
        return "Maps each endpoint to its Service Quotas codes (pipelines/quotas/warehouse.py, no LLM)."
    header = []
    for line in model.sql.splitlines():
        if not line.startswith("--"):
            break
        header.append(line.removeprefix("--").strip())
    return f"Runs sql/{model.layer}/{model.path.name}.\n\n" + " ".join(header)


def _spec(model: SqlModel, seeds: set[str]) -> dg.AssetSpec:
    # Seeds (sql/seeds/*.csv) are loaded by the model step itself, so they are not upstream assets.
    return dg.AssetSpec(
        key=model.name,
        deps=[*RAW_INPUTS.get(model.name, ()), *(name for name in model.depends_on if name not in seeds)],
        group_name="models",
        kinds={"duckdb", "python"} if model.name in PYTHON_MODELS else {"duckdb", "sql"},
        description=_description(model),
        skippable=True,
        automation_condition=MARTS_AUTOMATION,
    )


def build_models_asset() -> dg.AssetsDefinition:
    """The multi-asset that builds every model (sql/ and PYTHON_MODELS) and runs their checks."""
    models = {model.name: model for model in all_models()}
    order = build_order(models.values())
    seeds = set(seed_names())
    check_specs = [
        dg.AssetCheckSpec(name=name, asset=asset, blocking=blocking, description=function.__doc__)
        for asset, name, function, blocking, _ in CHECKS
        if asset in models
    ]

    @dg.multi_asset(
        name="sql_models",
        specs=[_spec(models[name], seeds) for name in order],
        check_specs=check_specs,
        can_subset=True,
    )
    def sql_models(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        """Builds the selected models in dependency order in warehouse/usage.duckdb, then their checks."""
        as_of = run_as_of(context, warehouse)
        selected = {key.to_user_string() for key in context.selected_asset_keys}
        lake = warehouse.lake()
        with warehouse.connect() as connection:
            load_seeds(connection)
            for name in order:
                if name not in selected:
                    continue
                rows = build_any(connection, models[name], lake=lake, as_of=as_of)
                yield dg.MaterializeResult(
                    asset_key=name,
                    metadata={
                        "rows": dg.MetadataValue.int(rows),
                        "as_of": dg.MetadataValue.text(as_of.isoformat() + "Z"),
                        "path": dg.MetadataValue.path(str(warehouse.database())),
                        "preview": dg.MetadataValue.md(_preview(connection, name)),
                    },
                )
                for asset, check_name, function, _, severity in CHECKS:
                    key = dg.AssetCheckKey(dg.AssetKey(asset), check_name)
                    if asset != name or key not in context.selected_asset_check_keys:
                        continue
                    outcome = function(connection, lake=lake, as_of=as_of)
                    yield dg.AssetCheckResult(
                        asset_key=asset,
                        check_name=check_name,
                        passed=outcome.passed,
                        severity=severity,
                        metadata={"violations": outcome.violations, **outcome.metadata},
                    )

    return sql_models

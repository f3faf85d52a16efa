"""SQL models as Dagster assets: one asset per file in sql/, named after the file, built in one step.

DuckDB allows one writer per database file, so every model is built by a single multi-asset step in dependency
order; each model is still its own asset in the graph, with its own materialization, metadata and checks. The
quality checks run inside the same step for the same reason. The step writes a new file and publishes it over
``usage.duckdb`` at the end (pipelines/publish.py), so readers of the warehouse never wait for it.
One model is Python rather than SQL: ``quota_map`` parses quota names (pipelines/quotas/), which SQL cannot do
well; it sits in the same graph and order.
"""

import inspect
import re
import warnings

import dagster as dg

from pipelines.checks_sql import (
    check_aggregate_totals,
    check_burndown_rates_complete,
    check_duplicate_points,
    check_expected_partitions,
    check_unique_usage_minutes,
)
from pipelines.models import (
    PYTHON_MODELS,
    READ_THROUGH,
    SqlModel,
    TableDoc,
    all_models,
    build_any,
    build_order,
    load_seeds,
    seed_names,
    table_docs,
)
from pipelines.publish import WarehouseBusy, building
from pipelines.quotas.checks import check_rpm_headroom, check_tpd_headroom, check_tpm_headroom
from pipelines.quotas.warehouse import build_quota_map
from pipelines.resources import WarehouseResource, run_as_of
from pipelines.settings import utc_text

# Rebuild when any upstream landed (a metric day or a snapshot), once nothing upstream is still running and every
# upstream model and snapshot has been built at least once (a model step builds its selection on top of the tables
# it reads). Unlike AutomationCondition.eager(), it does not wait for every day of metric_points: most days of the
# partition space are never read (only the last 30 are backfilled), and the marts are built from what the lake holds.
MARTS_AUTOMATION = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
    & ~dg.AutomationCondition.any_deps_missing().ignore(dg.AssetSelection.assets("metric_points", "invocation_logs"))
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
    "stg_caller_minutes": ("invocation_logs",),
    "stg_principal_tags": ("invocation_logs",),
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


def plain_text(docstring: str | None) -> str:
    """A docstring as the plain text the Dagster UI shows: code markup removed, wrapped lines joined."""
    text = inspect.cleandoc(docstring or "").replace("``", "")
    text = re.sub(r":(?:func|class|mod|meth|attr):`~?([^`]+)`", r"\1", text)
    paragraphs = [" ".join(part.split()) for part in text.split("\n\n")]
    return "\n\n".join(part for part in paragraphs if part)


def _built_schema(connection, name: str) -> dg.TableSchema:
    """The table as DuckDB built it: column names, types and the comments the model step wrote on them."""
    rows = connection.execute(
        "select column_name, lower(data_type), comment from duckdb_columns() "
        "where table_name = ? and schema_name = current_schema() order by column_index",
        [name],
    ).fetchall()
    return dg.TableSchema(
        columns=[dg.TableColumn(column, data_type, description=comment) for column, data_type, comment in rows]
    )


def _description(model: SqlModel) -> str:
    if model.name in PYTHON_MODELS:
        return "Maps each endpoint to its Service Quotas codes (pipelines/quotas/warehouse.py, no LLM)."
    return f"Runs sql/{model.layer}/{model.path.name}.\n\n{model.description}"


def column_schema(doc: TableDoc) -> dg.TableSchema:
    """The table's columns as Dagster shows them: the data dictionary's types and descriptions, which the model
    step also writes into DuckDB as column comments."""
    return dg.TableSchema(
        columns=[dg.TableColumn(column.name, column.type, description=column.description) for column in doc.columns]
    )


# The code of each Python model: what its asset's code reference points at.
PYTHON_MODEL_CODE = {"quota_map": build_quota_map}


def _code_reference(model: SqlModel) -> dg.CodeReferencesMetadataValue:
    # For a SQL model the SQL file is the code. Dagster marks code references beta and warns on each one; the
    # warning would reach every `buw analyze` terminal, and the link in the UI is all they are used for.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        if model.name in PYTHON_MODEL_CODE:
            function = PYTHON_MODEL_CODE[model.name]
            reference = dg.LocalFileCodeReference(
                file_path=inspect.getsourcefile(function) or str(model.path),
                line_number=inspect.getsourcelines(function)[1],
                label=f"{model.name} ({function.__module__}.{function.__name__})",
            )
        else:
            reference = dg.LocalFileCodeReference(
                file_path=str(model.path), line_number=1, label=f"sql/{model.layer}/{model.path.name}"
            )
        return dg.CodeReferencesMetadataValue(code_references=[reference])


def _spec(model: SqlModel, seeds: set[str], docs: dict[str, TableDoc]) -> dg.AssetSpec:
    metadata: dict[str, object] = {"dagster/code_references": _code_reference(model)}
    if model.name in docs:
        metadata["dagster/column_schema"] = column_schema(docs[model.name])
    # Seeds (sql/seeds/*.csv) are loaded by the model step itself, so they are not upstream assets.
    return dg.AssetSpec(
        key=model.name,
        deps=[*RAW_INPUTS.get(model.name, ()), *(name for name in model.depends_on if name not in seeds)],
        group_name="models",
        kinds={"duckdb", "python"} if model.name in PYTHON_MODELS else {"duckdb", "sql"},
        description=_description(model),
        metadata=metadata,
        skippable=True,
        automation_condition=MARTS_AUTOMATION,
    )


def build_models_asset() -> dg.AssetsDefinition:
    """The multi-asset that builds every model (sql/ and PYTHON_MODELS) and runs their checks."""
    models = {model.name: model for model in all_models()}
    order = build_order(models.values())
    seeds = set(seed_names())
    docs = table_docs()
    check_specs = [
        dg.AssetCheckSpec(name=name, asset=asset, blocking=blocking, description=plain_text(function.__doc__))
        for asset, name, function, blocking, _ in CHECKS
        if asset in models
    ]

    @dg.multi_asset(
        name="sql_models",
        specs=[_spec(models[name], seeds, docs) for name in order],
        check_specs=check_specs,
        can_subset=True,
    )
    def sql_models(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        """Builds the selected models in dependency order into a new DuckDB file, runs their checks on it, then
        publishes it as warehouse/usage.duckdb (pipelines/publish.py), so readers are never locked out."""
        as_of = run_as_of(context, warehouse)
        selected = {key.to_user_string() for key in context.selected_asset_keys}
        lake = warehouse.lake()
        database = warehouse.database()
        # Events are yielded once the file is published: a materialization then means readers can see the table.
        events: list[dg.MaterializeResult | dg.AssetCheckResult] = []
        try:
            with building(database, context.run.run_id, copy_current=not set(order) <= selected) as connection:
                load_seeds(connection)
                for name in order:
                    if name not in selected:
                        continue
                    rows = build_any(connection, models[name], lake=lake, as_of=as_of)
                    events.append(
                        dg.MaterializeResult(
                            asset_key=name,
                            metadata={
                                "dagster/row_count": dg.MetadataValue.int(rows),
                                "as_of": dg.MetadataValue.text(utc_text(as_of)),
                                # A read-through model is a view over the lake in the build, not in the file.
                                "path": dg.MetadataValue.path(str(lake if name in READ_THROUGH else database)),
                                "preview": dg.MetadataValue.md(_preview(connection, name)),
                                # What was built, read back from DuckDB: the Columns tab then shows the table as
                                # it is, whatever the spec (from the data dictionary) says.
                                "dagster/column_schema": dg.MetadataValue.table_schema(_built_schema(connection, name)),
                            },
                        )
                    )
                    for asset, check_name, function, _, severity in CHECKS:
                        key = dg.AssetCheckKey(dg.AssetKey(asset), check_name)
                        if asset != name or key not in context.selected_asset_check_keys:
                            continue
                        outcome = function(connection, lake=lake, as_of=as_of)
                        events.append(
                            dg.AssetCheckResult(
                                asset_key=asset,
                                check_name=check_name,
                                passed=outcome.passed,
                                severity=severity,
                                metadata={"violations": outcome.violations, **outcome.metadata},
                            )
                        )
        except WarehouseBusy as error:
            raise dg.Failure(description=str(error)) from error
        context.log.info(f"published {len(selected & set(order))} models in {database}")
        yield from events

    return sql_models

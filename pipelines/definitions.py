"""The one Dagster code location: extract, models and report assets, checks, resources, jobs and schedules.

Loaded by ``dagster dev -w workspace.yaml``. Resources read their settings when a run uses them, not here.

What every asset carries for the UI is applied here, in one place: its owner, its freshness expectation, the
column schema of each raw lake dataset (the models' schemas are set where their specs are built), a link to
the code that builds it, and its description as plain text.
"""

from __future__ import annotations

import warnings
from datetime import timedelta

import dagster as dg

from pipelines.assets.extract import EXTRACT_ASSETS
from pipelines.assets.models import build_models_asset, column_schema, plain_text
from pipelines.assets.report import reports
from pipelines.models import TableDoc, lake_docs
from pipelines.resources import AwsResource, WarehouseResource
from pipelines.schedules import JOBS, SCHEDULES, SENSORS

OWNERS = ["team:platform"]

# hourly_metrics reads CloudWatch at :02 and hourly_refresh rebuilds snapshots, marts and reports at :12, so a
# healthy deployment materializes metric_points about every hour and everything else about ten minutes after it.
# Each expectation warns after one missed tick and fails after two.
METRICS_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=2), warn_window=timedelta(minutes=70))
DERIVED_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=2, minutes=10), warn_window=timedelta(minutes=80)
)


# Extract assets whose main lake dataset has another name than the asset.
ASSET_DATASETS = {"invocation_logs": "caller_minutes"}


def _with_ui_metadata(spec: dg.AssetSpec, raw: dict[str, TableDoc]) -> dg.AssetSpec:
    """Owner, freshness and (for a raw lake dataset) column schema, unless the spec already sets them; the
    description (often a docstring) as plain text."""
    name = spec.key.to_user_string()
    dataset = ASSET_DATASETS.get(name, name)
    metadata = dict(spec.metadata)
    if dataset in raw and "dagster/column_schema" not in metadata:
        metadata["dagster/column_schema"] = column_schema(raw[dataset])
    return spec.replace_attributes(
        description=plain_text(spec.description),
        owners=spec.owners or OWNERS,
        freshness_policy=spec.freshness_policy or (METRICS_FRESHNESS if name == "metric_points" else DERIVED_FRESHNESS),
        metadata=metadata,
    )


def _assets() -> list:
    with warnings.catch_warnings():
        # Code references are marked beta; they are what links an asset to its code in the UI.
        warnings.simplefilter("ignore", dg.BetaWarning)
        raw = lake_docs()
        assets = dg.map_asset_specs(
            lambda spec: _with_ui_metadata(spec, raw), [*EXTRACT_ASSETS, build_models_asset(), reports]
        )
        return list(dg.with_source_code_references(assets))


defs = dg.Definitions(
    assets=_assets(),
    resources={"aws": AwsResource(), "warehouse": WarehouseResource()},
    jobs=JOBS,
    schedules=SCHEDULES,
    sensors=SENSORS,
)

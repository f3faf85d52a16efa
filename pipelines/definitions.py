"""The one Dagster code location: extract, models and report assets, checks, resources, jobs and schedules.

Loaded by ``dagster dev -w workspace.yaml``. Resources read their settings when a run uses them, not here.
"""

from __future__ import annotations

import dagster as dg

from pipelines.assets.extract import EXTRACT_ASSETS
from pipelines.assets.models import build_models_asset
from pipelines.assets.report import reports
from pipelines.resources import AwsResource, WarehouseResource
from pipelines.schedules import JOBS, SCHEDULES, SENSORS

defs = dg.Definitions(
    assets=[*EXTRACT_ASSETS, build_models_asset(), reports],
    resources={"aws": AwsResource(), "warehouse": WarehouseResource()},
    jobs=JOBS,
    schedules=SCHEDULES,
    sensors=SENSORS,
)

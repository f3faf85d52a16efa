"""The report asset: HTML + JSON per endpoint and an index page, rendered from the marts."""

import json
from datetime import datetime

import dagster as dg

from pipelines.assets.models import MARTS_AUTOMATION
from pipelines.endpoint_lookup import endpoints_with_usage, resolve_endpoints
from pipelines.errors import UserError
from pipelines.report import ReportError, render_reports
from pipelines.resources import AS_OF_TAG, WarehouseResource, run_as_of
from pipelines.settings import pinned_as_of, utc_text

# Run tags `buw analyze` sets: which (region, endpoint) pairs to render (JSON list) and the chart bucket per
# window (JSON object, from --granularity). Without them every endpoint is rendered at the default buckets.
ENDPOINTS_TAG = "buw/endpoints"
GRANULARITY_TAG = "buw/granularity"
# `buw analyze -r REGION [-m ID ...]`: render the endpoints the ids name (as the endpoints mart resolves them),
# or without ids every endpoint of the region with usage.
REPORT_REGION_TAG = "buw/report_region"
MODEL_IDS_TAG = "buw/model_ids"


def selected_endpoints(tags, connection) -> list[tuple[str, str]] | None:
    """The (region, endpoint) pages a run asks for, or None for every endpoint with usage."""
    if ENDPOINTS_TAG in tags:
        return [tuple(pair) for pair in json.loads(tags[ENDPOINTS_TAG])]
    if REPORT_REGION_TAG not in tags:
        return None
    region = tags[REPORT_REGION_TAG]
    if MODEL_IDS_TAG in tags:
        return resolve_endpoints(connection, region, json.loads(tags[MODEL_IDS_TAG]))
    return endpoints_with_usage(connection, region)


REPORT_INPUTS = (
    "endpoints",
    "endpoint_minute",
    "window_stats",
    "tpd_daily",
    "tag_attribution",
    "throttle_attribution",
    "quota_headroom",
)


def _report_as_of(context: dg.AssetExecutionContext, warehouse: WarehouseResource, connection) -> datetime:
    """The run's as_of when this run also builds the marts or pins one; else the as_of the marts were built for.

    Rendering alone (materialising only `reports` in the UI) must use the windows the marts hold, not the minute
    the run was created, which the marts were never built for.
    """
    built_here = any(key.to_user_string() == "window_stats" for key in (context.run.asset_selection or ()))
    if built_here or AS_OF_TAG in context.run.tags or pinned_as_of(warehouse.as_of):
        return run_as_of(context, warehouse)
    stored = connection.execute("select max(as_of) from window_stats").fetchone()[0]
    return stored if stored is not None else run_as_of(context, warehouse)


@dg.asset(
    name="reports",
    group_name="report",
    kinds={"html", "json", "plotly"},
    deps=list(REPORT_INPUTS),
    automation_condition=MARTS_AUTOMATION,
)
def reports(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Renders reports/templates/ (Jinja2 + Plotly) for every endpoint into BUW_REPORTS, plotly.js shared in
    BUW_REPORTS/assets/ (or inline with BUW_REPORT_PLOTLYJS=inline)."""
    tags = context.run.tags
    out_dir = warehouse.reports()
    granularity = json.loads(tags[GRANULARITY_TAG]) if GRANULARITY_TAG in tags else None
    with warehouse.connect(read_only=True) as connection:
        as_of = _report_as_of(context, warehouse, connection)
        try:
            select = selected_endpoints(tags, connection)
        except UserError as error:
            raise dg.Failure(description=str(error), allow_retries=False) from error
        try:
            files = render_reports(
                connection,
                out_dir,
                as_of=as_of,
                select=select,
                chart_granularity=granularity,
                plotlyjs=warehouse.plotlyjs(),
            )
        except ReportError as error:
            raise dg.Failure(description=str(error)) from error
    pages = [file for file in files if file.kind == "endpoint"]
    largest = max((file.html_bytes for file in pages), default=0)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(len(pages)),
            "index": dg.MetadataValue.path(str(out_dir / "index.html")),
            "largest_html_bytes": dg.MetadataValue.int(largest),
            "as_of": dg.MetadataValue.text(utc_text(as_of)),
            "reports": dg.MetadataValue.md(
                "\n".join(f"- {file.region} `{file.endpoint}`: {file.html_path}" for file in pages)
            ),
        }
    )

"""The report asset: HTML + JSON per endpoint and an index page, rendered from the marts."""

import dagster as dg

from pipelines.assets.models import run_as_of
from pipelines.report import render_reports
from pipelines.resources import WarehouseResource

REPORT_INPUTS = (
    "endpoints",
    "endpoint_minute",
    "window_stats",
    "tpd_daily",
    "tag_attribution",
    "throttle_attribution",
    "quota_headroom",
)


@dg.asset(
    name="reports",
    group_name="report",
    kinds={"html", "json", "plotly"},
    deps=list(REPORT_INPUTS),
)
def reports(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Renders reports/templates/ (Jinja2 + Plotly, plotly.js inline) for every endpoint into BUW_REPORTS."""
    as_of = run_as_of(context, warehouse)
    out_dir = warehouse.reports()
    with warehouse.connect(read_only=True) as connection:
        files = render_reports(connection, out_dir, as_of=as_of)
    index = out_dir / "index.html"
    largest = max((file.html_path.stat().st_size for file in files), default=0)
    return dg.MaterializeResult(
        metadata={
            "endpoints": dg.MetadataValue.int(len(files)),
            "index": dg.MetadataValue.path(str(index)),
            "largest_html_bytes": dg.MetadataValue.int(largest),
            "as_of": dg.MetadataValue.text(as_of.isoformat() + "Z"),
            "reports": dg.MetadataValue.md(
                "\n".join(f"- {file.region} `{file.endpoint}`: {file.html_path}" for file in files)
            ),
        }
    )

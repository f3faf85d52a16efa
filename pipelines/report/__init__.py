"""Usage reports: one HTML and one JSON file per endpoint, and an index page of every endpoint's headroom.

Three modules, each importing only the ones before it:

- :mod:`pipelines.report.queries` reads the numbers from the marts (tables, quota cards, alerts, index rows);
- :mod:`pipelines.report.charts` computes the chart series (typed-array blocks at the data's own resolution) and
  the index's quota-utilisation overview;
- :mod:`pipelines.report.render` turns the documents into plotly figures and HTML pages and writes the files.

Everything is a pure function of the database and ``as_of``: the same warehouse and ``as_of`` give byte-identical
files. The JSON document holds every number the HTML shows; the HTML is rendered from that document alone.
"""

from pipelines.report.charts import MAX_CHART_SERIES, build_report_data
from pipelines.report.queries import SUMMARY_WINDOW, WINDOWS, ReportError, build_index_data
from pipelines.report.render import (
    KEEP_PAGES,
    PAGE_BYTES_TARGET,
    PLOTLYJS_MODES,
    ReportFile,
    plotly_asset_name,
    render_index_html,
    render_report_html,
    render_reports,
    report_stem,
    safe_filename,
    sweep_stale_temp_files,
)

__all__ = [
    "KEEP_PAGES",
    "MAX_CHART_SERIES",
    "PAGE_BYTES_TARGET",
    "PLOTLYJS_MODES",
    "SUMMARY_WINDOW",
    "WINDOWS",
    "ReportError",
    "ReportFile",
    "build_index_data",
    "build_report_data",
    "plotly_asset_name",
    "render_index_html",
    "render_report_html",
    "render_reports",
    "report_stem",
    "safe_filename",
    "sweep_stale_temp_files",
]

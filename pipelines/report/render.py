"""Report pages and files: plotly figures, Jinja2 templates, atomic writes, the shared plotly.js, clean-up.

The HTML is rendered from the JSON documents of :mod:`pipelines.report.charts` and
:mod:`pipelines.report.queries` alone. plotly.js (~4.8 MB) is written once per reports folder as
``assets/plotly-<version>.min.js`` and every page loads it by relative path, so the folder opens offline and can
be moved or copied whole while each page stays small; ``plotlyjs="inline"`` (``BUW_REPORT_PLOTLYJS=inline``)
puts plotly.js inside every page instead, for single files to mail or attach. Chart values travel as typed-array
blocks (see :mod:`pipelines.report.charts`) that a short script on the page decodes and slices per window.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import html
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from pipelines.report.charts import (
    AGGREGATE_COLOR,
    QUOTA_COLOR,
    build_charts,
    build_overview,
    chart_floor,
)
from pipelines.report.queries import (
    SUMMARY_WINDOW,
    WINDOWS,
    ReportError,
    build_index_data,
    check_marts,
    epoch_ms,
    headroom_alerts,
    plotly_time,
    report_tables,
    utc_minute,
)

log = logging.getLogger(__name__)

# Templates live beside the package in the source tree (reports/templates/).
TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "reports" / "templates"

# An endpoint page (without plotly.js) above this size is logged: it opens slowly.
PAGE_BYTES_TARGET = 1_000_000

PLOTLYJS_MODES = ("shared", "inline")
ASSETS_FOLDER = "assets"
_ASSET_REFERENCE = re.compile(r'src="(?:\.\./)*' + ASSETS_FOLDER + r'/(plotly-[^"/]+\.js)"')
# How much of a page holds its <head>, where the plotly.js script element is.
_HEAD_BYTES = 16_384

# A writer keeps its temporary file only while it writes one page (well under a second), so one older than this
# belongs to a writer that was killed; younger ones may belong to a render running beside this one.
STALE_TEMP_SECONDS = 600
_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")


@dataclass(frozen=True)
class ReportFile:
    """One written report: an endpoint's page (``kind="endpoint"``) or the index page (``kind="index"``)."""

    kind: str
    region: str | None
    endpoint: str | None
    html_path: Path
    json_path: Path
    html_bytes: int


def safe_filename(text: str) -> str:
    """A file-name-safe form of an endpoint id or region: ``:`` and anything unusual become ``_``."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip(".")
    return cleaned or "_"


def report_stem(endpoint: str, as_of: datetime) -> str:
    """``<endpoint-safe-name>-<as_of YYYYmmddTHHMMZ>``, the file name of a report without extension."""
    return f"{safe_filename(endpoint)}-{utc_minute(as_of).strftime('%Y%m%dT%H%MZ')}"


KEEP_PAGES = 3
"""Pages kept per endpoint: the hourly schedule writes one per as_of."""

_AS_OF_SUFFIX = re.compile(r"-\d{8}T\d{4}Z$")


def _prune_older_pages(folder: Path, stem: str, keep: int = KEEP_PAGES) -> None:
    """Delete an endpoint's pages (and their JSON) older than its ``keep`` newest as_of values."""
    prefix = _AS_OF_SUFFIX.sub("", stem)
    pages = sorted(
        (path for path in folder.glob(f"{glob.escape(prefix)}-*.html") if _AS_OF_SUFFIX.sub("", path.stem) == prefix),
        key=lambda path: path.stem[len(prefix) + 1 :],
    )
    for old in pages[:-keep]:
        old.unlink(missing_ok=True)
        old.with_suffix(".json").unlink(missing_ok=True)


def prune_orphaned_assets(out_dir: Path) -> list[Path]:
    """Delete the shared plotly.js files no page of ``out_dir`` loads any more (an older plotly version, or every
    page now inline); return what was deleted."""
    folder = Path(out_dir) / ASSETS_FOLDER
    if not folder.is_dir():
        return []
    used: set[str] = set()
    for page in [*Path(out_dir).glob("*.html"), *Path(out_dir).glob("*/*.html")]:
        try:
            with page.open("rb") as stream:
                head = stream.read(_HEAD_BYTES).decode("utf-8", errors="replace")
        except FileNotFoundError:
            continue
        used.update(_ASSET_REFERENCE.findall(head))
    removed = []
    for asset in folder.glob("plotly-*.js"):
        if asset.name not in used:
            asset.unlink(missing_ok=True)
            removed.append(asset)
    return removed


def sweep_stale_temp_files(out_dir: Path, now: float | None = None, max_age: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Delete the temporary files of writers that died mid-write (killed renders) in ``out_dir``.

    Only files named like :func:`_write_atomic`'s and older than ``max_age`` seconds go: a render running beside
    this one may be writing a younger one right now, and renaming it away would fail that render.
    """
    now = time.time() if now is None else now
    removed = []
    for candidate in [*Path(out_dir).glob(".*.tmp"), *Path(out_dir).glob("*/.*.tmp")]:
        if not _TEMP_NAME.match(candidate.name):
            continue
        try:
            if now - candidate.stat().st_mtime < max_age:
                continue
            candidate.unlink()
        except FileNotFoundError:
            continue
        removed.append(candidate)
    return removed


def script_json(value: Any) -> str:
    """JSON that is safe inside an HTML ``<script>`` element.

    ``<``, ``>`` and ``&`` become ``\\u003c`` etc. so no value can close the element or open a comment, and
    U+2028/U+2029 are escaped because they end a line in older JavaScript parsers.
    """
    text = json.dumps(value, ensure_ascii=False, sort_keys=False, separators=(",", ":"), default=_json_default)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# ---------------------------------------------------------------------------------------------------- figures


def _label(text: str) -> str:
    # plotly.js renders a few HTML tags (<b>, <br>, <a>) in text and decodes &lt; &gt; &amp; but not &quot;,
    # so escaping exactly those three shows any label literally.
    return html.escape(text, quote=False)


def _layout(
    title: str,
    y_title: str,
    x_range: tuple[str, str] | None = None,
    subtitle: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": _label(title), "font": {"size": 14}},
        "height": 340,
        "margin": {"l": 60, "r": 20, "t": (40 + 16 * (subtitle.count("\n") + 1)) if subtitle else 40, "b": 40},
        "legend": {"orientation": "h", "y": -0.2, "yanchor": "top"},
        "hovermode": "x unified",
        "yaxis": {"title": {"text": y_title}, "rangemode": "tozero"},
        "xaxis": {"type": "date"},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
    }
    if subtitle:
        # One line per "\n": plotly.js does not wrap titles.
        text = "<br>".join(_label(line) for line in subtitle.split("\n"))
        layout["title"]["subtitle"] = {"text": text, "font": {"size": 11, "color": "#5f6b76"}}
    if x_range:
        layout["xaxis"]["range"] = [plotly_time(x_range[0]), plotly_time(x_range[1])]
    layout.update(extra)
    return layout


def _figure(traces: list[Any], layout: dict[str, Any]) -> dict[str, Any]:
    import plotly.graph_objects as go

    figure = go.Figure(data=traces, layout=layout).to_plotly_json()
    # The default template is ~10 KB per figure; plotly.js defaults look the same for these charts.
    figure["layout"].pop("template", None)
    return {"data": figure["data"], "layout": figure["layout"]}


def _block_trace(trace: dict[str, Any], block: str, start: str, end: str) -> dict[str, Any]:
    # The page's script fills x and y from the block, keeping the points in [start, end).
    return {**trace, "buw_block": block, "buw_range": [_iso_ms(start), _iso_ms(end)]}


def _iso_ms(text: str) -> int:
    return epoch_ms(datetime.fromisoformat(text.removesuffix("Z")))


def _quota_trace(label: str, value: float, start: str, end: str) -> Any:
    import plotly.graph_objects as go

    return go.Scatter(
        x=[plotly_time(start), plotly_time(end)],
        y=[value, value],
        mode="lines",
        name=_label(f"{label} ({value:,})"),
        line={"color": QUOTA_COLOR, "dash": "dash", "width": 2},
    )


def _size_text(minutes: int) -> str:
    return f"{minutes // 60}-hour" if minutes % 60 == 0 else f"{minutes}-min"


def _steps_in(block: Mapping[str, Any], start_ms: int, end_ms: int) -> set[int]:
    steps, moment = set(), block["start_ms"]
    for step, count in block["segments"]:
        stop = moment + count * step * 60_000
        if moment < end_ms and stop > start_ms:
            steps.add(step)
        moment = stop
    return steps


def _resolution_text(chart: Mapping[str, Any], blocks: Mapping[str, Any], kind: str, profile_lines: bool = True) -> str:
    """What one point of a window's chart is, in words: the page never buckets without saying so."""
    if chart["bucket_minutes"] is not None:
        text = f"{kind} of each {_size_text(chart['bucket_minutes'])} bucket"
    else:
        reference = next((line["block"] for line in chart["tpm"] if line["block"]), None)
        steps = _steps_in(blocks[reference], _iso_ms(chart["start"]), _iso_ms(chart["end"])) if reference else {1}
        if steps <= {1}:
            text = "1-min points"
        elif 1 in steps:
            text = "1-min points; 5-min where only 5-min data remain"
        else:
            text = "5-min points: only 5-min data remain"
    profile = chart["profile_bucket_minutes"]
    if profile_lines and profile is not None and profile != chart["bucket_minutes"]:
        text += f"\nprofile lines: {kind} of each {_size_text(profile)} bucket (keeps the page small)"
    return text


def _figures(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    import plotly.graph_objects as go

    charts = report["charts"]
    blocks = charts["blocks"]
    colors = [line["color"] for line in charts["lines"]]
    quotas = {card["quota_type"]: card["quota_value"] for card in report["quotas"]["cards"]}
    figures: list[dict[str, Any]] = []
    burndown = report["output_burndown"]["value"]
    quota_note = ""
    if burndown is not None and burndown > 1:
        quota_note = f"; output tokens count ×{burndown:,}"
    metric_titles = {
        "tpm": ("TPM", "tokens/min", "tpm"),
        "quota_tpm": ("Quota TPM vs TPM quota", "quota tokens/min", "tpm"),
        "rpm": ("RPM", "requests/min", "rpm"),
    }
    for chart in charts["windows"]:
        if not chart["has_data"]:
            continue
        x_range = (chart["start"], chart["end"])
        for metric, (title, unit, quota_type) in metric_titles.items():
            traces = []
            palette = colors
            if metric == "quota_tpm":
                palette = [AGGREGATE_COLOR, *(["#ff7f0e"] if len(chart[metric]) == 3 else []), "#9e9e9e"]
            for index, line in enumerate(chart[metric]):
                traces.append(
                    go.Scatter(
                        mode="lines",
                        name=_label(line["label"]),
                        line={"color": palette[index], "width": 2.5 if index == 0 else 1.5},
                        **({} if line["block"] else {"x": [], "y": []}),
                    )
                )
            if quotas.get(quota_type) is not None:
                traces.append(
                    _quota_trace(f"{quota_type.upper()} quota", quotas[quota_type], chart["start"], chart["end"])
                )
            subtitle = _resolution_text(chart, blocks, "peak minute", profile_lines=metric != "quota_tpm")
            figure = _figure(
                traces,
                _layout(
                    f"{title}, {chart['window']}",
                    unit,
                    x_range,
                    subtitle=subtitle + (quota_note if metric == "quota_tpm" else ""),
                ),
            )
            for index, line in enumerate(chart[metric]):
                if line["block"]:
                    figure["data"][index] = _block_trace(
                        figure["data"][index], line["block"], chart["start"], chart["end"]
                    )
            figures.append(
                {
                    "id": f"chart-{metric.replace('_', '-')}-{chart['window']}",
                    "window": chart["window"],
                    "metric": metric,
                    **figure,
                }
            )
    tpd = charts["tpd"]
    if any(line["values"] for line in tpd["lines"]):
        traces = [
            go.Scatter(
                x=[plotly_time(x) for x in line["x"]],
                y=np.asarray(line["values"], dtype=np.uint64),
                mode="lines+markers",
                name=_label(line["label"]),
                line={"color": colors[index], "width": 2.5 if index == 0 else 1.5},
                marker={"size": 4},
            )
            for index, line in enumerate(tpd["lines"])
            if line["values"]
        ]
        if quotas.get("tpd") is not None:
            traces.append(_quota_trace("TPD quota", quotas["tpd"], tpd["start"], tpd["end"]))
        figures.append(
            {
                "id": "chart-tpd",
                "window": tpd["window"],
                "metric": "tpd",
                **_figure(
                    traces,
                    _layout(
                        f"Tokens per rolling 24 h, {tpd['window']}",
                        "tokens/24 h",
                        (tpd["start"], tpd["end"]),
                        subtitle="each point: input + output tokens of the 24 h ending there",
                    ),
                ),
            }
        )
    timeline = charts["throttle_timeline"]
    if timeline["block"] is not None:
        bucket = timeline["bucket_minutes"]
        figure = _figure(
            [
                go.Scatter(
                    mode="lines",
                    name="throttles",
                    line={"color": QUOTA_COLOR, "width": 1, "shape": "hv"},
                    fill="tozeroy",
                )
            ],
            _layout(
                f"Throttles, {timeline['window']}",
                "throttles" if bucket else "throttles/min",
                (timeline["start"], timeline["end"]),
                subtitle=f"sum of each {_size_text(bucket)} bucket"
                if bucket
                else "throttled requests per minute\n(5-min data: the count spread over its five minutes)",
                showlegend=False,
            ),
        )
        figure["data"] = [_block_trace(figure["data"][0], timeline["block"], timeline["start"], timeline["end"])]
        figures.append({"id": "chart-throttles", "window": timeline["window"], "metric": "throttles", **figure})
    for index, tag in enumerate(report["tags"]):
        values: list[Any] = []
        for window in reversed(tag["windows"]):
            for row in window["rows"]:
                if row["tag_value"] not in values:
                    values.append(row["tag_value"])
        if not values:
            continue
        traces = []
        for window in tag["windows"]:
            shares = {row["tag_value"]: row["share_pct"] for row in window["rows"]}
            if not shares:
                continue
            traces.append(
                go.Bar(
                    x=[_label(_tag_text(value)) for value in values],
                    y=[shares.get(value) for value in values],
                    name=window["window"],
                )
            )
        figures.append(
            {
                "id": f"chart-tag-{index}",
                "window": None,
                "metric": "tag_share",
                **_figure(
                    traces,
                    _layout(
                        f"Share of tokens by {_tag_text(tag['tag_key'], key=True)}",
                        "% of tokens",
                        subtitle="share of the tokens of each window",
                        barmode="group",
                        xaxis={"type": "category"},
                        hovermode="closest",
                    ),
                ),
            }
        )
    figures += _caller_figures(charts.get("callers", {"windows": []}))
    return figures


def _caller_figures(callers: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Tokens by caller, stacked, per caller chart: the stacks add up to the endpoint's tokens per minute."""
    import plotly.graph_objects as go

    figures = []
    for chart in callers["windows"]:
        traces = [
            go.Scatter(
                mode="lines",
                name=_label(line["label"]),
                stackgroup="callers",
                line={"color": line["color"], "width": 0.5},
                fillcolor=line["color"],
                # The part the invocation logs do not cover is hatched, so it never reads as one more caller.
                **({"fillpattern": {"shape": "/", "fgcolor": "#8a8a8a"}} if line["kind"] == "remainder" else {}),
            )
            for line in chart["lines"]
        ]
        figure = _figure(
            traces,
            _layout(
                f"Tokens by caller, {chart['window']}",
                "tokens/min",
                (chart["start"], chart["end"]),
                subtitle=f"average of each {_size_text(chart['bucket_minutes'])} bucket, stacked: the largest "
                "principals, the other callers,\nand the endpoint's tokens the invocation logs do not hold",
                # Taller than the other charts: up to nine legend entries of long principal names sit below it.
                height=460,
            ),
        )
        figure["data"] = [
            _block_trace(trace, line["block"], chart["start"], chart["end"])
            for trace, line in zip(figure["data"], chart["lines"], strict=True)
        ]
        figures.append(
            {"id": f"chart-callers-{chart['window']}", "window": chart["window"], "metric": "callers", **figure}
        )
    return figures


def _used_blocks(figures: Sequence[Mapping[str, Any]], blocks: Mapping[str, Any]) -> dict[str, Any]:
    used = sorted({trace["buw_block"] for figure in figures for trace in figure["data"] if "buw_block" in trace})
    return {key: {name: blocks[key][name] for name in ("start_ms", "segments", "per_point", "values")} for key in used}


def _overview_figures(overview: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One heatmap per quota type: endpoints (flagged first, top row) by time, colour = % of the quota."""
    import plotly.graph_objects as go

    if not overview or not overview["rows"]:
        return []
    figures = []
    rows = [_label(row) for row in overview["rows"]]
    for panel in overview["panels"]:
        if not panel["x"] or all(value is None for row in panel["z"] for value in row):
            continue
        heatmap = go.Heatmap(
            x=[plotly_time(x) for x in panel["x"]],
            y=rows,
            z=panel["z"],
            zmin=0,
            zmax=100,
            colorscale="YlOrRd",
            colorbar={"title": {"text": "% of quota"}, "ticksuffix": " %"},
            hovertemplate="%{y}<br>%{x}<br>%{z:.1f} % of the " + panel["label"] + " quota<extra></extra>",
            hoverongaps=False,
        )
        layout = _layout(
            f"{panel['label']} quota utilisation, {overview['window']}",
            "",
            (overview["start"], overview["end"]),
            subtitle=panel["note"] + "\n100 % and above: darkest red; empty: no quota found",
            height=110 + 24 * len(rows),
            hovermode="closest",
            margin={"l": 20, "r": 20, "t": 56, "b": 40},
        )
        layout["yaxis"] = {"autorange": "reversed", "automargin": True, "type": "category"}
        figures.append(
            {"id": f"overview-{panel['quota_type']}", "metric": panel["quota_type"], **_figure([heatmap], layout)}
        )
    return figures


def _tag_text(value: str | None, key: bool = False) -> str:
    if value is None:
        return "(no tag key)" if key else "(untagged)"
    return value


def _format_number(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:,}"


def _format_pct(value: Any) -> str:
    return "—" if value is None else f"{value:,} %"


def _format_time(text: str | None) -> str:
    return "—" if text is None else plotly_time(text)[:16] + " UTC"


# ---------------------------------------------------------------------------------------------------- plotly.js


@functools.lru_cache(maxsize=1)
def _plotly_js() -> str:
    import plotly.offline

    script = plotly.offline.get_plotlyjs()
    # Inlined verbatim inside <script>; this would end the element early.
    if "</script" in script.lower():
        raise RuntimeError("plotly.js contains '</script' and cannot be inlined")
    return script


def plotly_asset_name() -> str:
    """The shared plotly.js file's name, versioned so pages of an older render keep the script they were made with."""
    import plotly.offline

    return f"plotly-{plotly.offline.get_plotlyjs_version()}.min.js"


def write_plotly_asset(out_dir: Path) -> Path:
    """``<out_dir>/assets/plotly-<version>.min.js`` from the installed plotly package, written once."""
    path = Path(out_dir) / ASSETS_FOLDER / plotly_asset_name()
    script = _plotly_js()
    if not path.exists() or path.stat().st_size != len(script.encode("utf-8")):
        _write_atomic(path, script)
    return path


def check_plotlyjs_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`PLOTLYJS_MODES`; else a :class:`ReportError` that says what to set."""
    if mode not in PLOTLYJS_MODES:
        raise ReportError(
            f"plotly.js mode {mode!r} is not known; set BUW_REPORT_PLOTLYJS to shared (one plotly.js file beside "
            "the reports, the default) or inline (a self-contained page)."
        )
    return mode


def _plotly_tag(page: Path, out_dir: Path, mode: str) -> Any:
    import markupsafe

    if mode == "inline":
        return markupsafe.Markup(f"<script>{_plotly_js()}</script>")
    asset = Path(out_dir) / ASSETS_FOLDER / plotly_asset_name()
    relative = Path(os.path.relpath(asset, Path(page).parent)).as_posix()
    return markupsafe.Markup('<script src="{}"></script>').format(relative)


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2
    import markupsafe

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["num"] = _format_number
    environment.filters["pct"] = _format_pct
    environment.filters["when"] = _format_time
    environment.filters["tag"] = _tag_text
    environment.filters["script_json"] = lambda value: markupsafe.Markup(script_json(value))
    return environment


def render_report_html(report: Mapping[str, Any], plotly_tag: Any = None) -> str:
    """The HTML page of one report document (from :func:`build_report_data`).

    ``plotly_tag`` is the script element that loads plotly.js (default: plotly.js inline).
    """
    import markupsafe

    figures = _figures(report)
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            report=report,
            windows=[window for window, _ in WINDOWS],
            figures=figures,
            blocks=_used_blocks(figures, report["charts"]["blocks"]),
            figure_ids={figure["id"] for figure in figures},
            plotly_tag=plotly_tag or markupsafe.Markup(f"<script>{_plotly_js()}</script>"),
        )
    )


def render_index_html(index: Mapping[str, Any], plotly_tag: Any = None) -> str:
    """The HTML index page of an index document (from :func:`build_index_data`)."""
    import markupsafe

    figures = _overview_figures(index.get("overview"))
    return (
        _environment()
        .get_template("index.html.j2")
        .render(
            index=index,
            figures=figures,
            blocks={},
            plotly_tag=plotly_tag or markupsafe.Markup(f"<script>{_plotly_js()}</script>"),
        )
    )


def _write_atomic(path: Path, text: str) -> int:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``.

    The file is created with mode 0o666 less the process umask (0644 under the usual 022), like any file a shell
    writes, so a web server or a colleague can read the reports; ``tempfile.mkstemp`` would make it 0600.
    Creating it with that mode lets the kernel apply the umask, which cannot be read without changing it.
    A writer killed between create and rename leaves the temporary file; :func:`sweep_stale_temp_files` removes
    it on a later render.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _attempt in range(100):
        temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            handle = os.open(temporary, flags, 0o666)
        except FileExistsError:
            continue
        break
    else:
        raise FileExistsError(f"no free temporary name beside {path}")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return len(data)


def _document_json(document: Mapping[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, sort_keys=True, indent=1, default=_json_default) + "\n"


def render_reports(
    connection: duckdb.DuckDBPyConnection,
    out_dir: Path,
    as_of: datetime,
    account_id: str | None = None,
    select: Iterable[tuple[str, str]] | None = None,
    *,
    chart_granularity: Mapping[str, int | str] | None = None,
    plotlyjs: str = "shared",
) -> list[ReportFile]:
    """Write every endpoint's report and the index page; return the files written (the index last).

    Reports go to ``<out_dir>/<region>/<endpoint-safe-name>-<as_of YYYYmmddTHHMMZ>.html`` and ``.json``;
    the index to ``<out_dir>/index.html`` and ``index.json`` and lists every endpoint of the warehouse.
    ``select`` limits the run to (region, endpoint) pairs. ``chart_granularity`` (window -> minutes or
    ``1min``/``5min``/``1hour``, e.g. from ``--granularity``) sets a chart bucket per window. ``plotlyjs`` is
    ``shared`` (pages load ``<out_dir>/assets/plotly-<version>.min.js`` by relative path) or ``inline`` (each page
    carries plotly.js). ``account_id`` defaults to the marts' own account_id column when they carry one.
    """
    mode = check_plotlyjs_mode(plotlyjs)
    floor = chart_floor(chart_granularity)
    alerts = headroom_alerts(connection, check_marts(connection))
    out_dir = Path(out_dir)
    as_of = utc_minute(as_of)
    if out_dir.is_dir():
        for stale in sweep_stale_temp_files(out_dir):
            log.info("removed %s, left by a writer that was stopped mid-write", stale)
    # Endpoints with usage: a region lists about a hundred system profiles, most never called, and a page for
    # each would be noise.
    known = connection.execute(
        "select distinct region, endpoint from endpoint_minute order by region, endpoint"
    ).fetchall()
    if select is None:
        pairs = [(str(region), str(endpoint)) for region, endpoint in known]
    else:
        wanted = sorted({(str(region), str(endpoint)) for region, endpoint in select})
        unknown = [pair for pair in wanted if pair not in set(known)]
        if unknown:
            region, endpoint = unknown[0]
            raise ReportError(
                f"Endpoint {endpoint!r} in region {region!r} has no usage in the warehouse; list those that do with "
                "`select distinct region, endpoint from endpoint_minute` and pick one of them."
            )
        pairs = wanted
    stems = _unique_stems(pairs, as_of)
    stems_for_all = _unique_stems([(str(region), str(endpoint)) for region, endpoint in known], as_of)
    if mode == "shared":
        write_plotly_asset(out_dir)
    files: list[ReportFile] = []
    reports: list[dict[str, Any]] = []
    links: list[str] = []
    for region, endpoint in pairs:
        context, report = report_tables(connection, region, endpoint, as_of, account_id, alerts)
        report["charts"] = build_charts(connection, context, floor, report["callers"]["status"])
        folder = out_dir / safe_filename(region)
        stem = stems[(region, endpoint)]
        html_path, json_path = folder / f"{stem}.html", folder / f"{stem}.json"
        page = render_report_html(report, _plotly_tag(html_path, out_dir, mode))
        written = _write_atomic(html_path, page)
        if mode == "shared" and written > PAGE_BYTES_TARGET:
            log.warning("report %s/%s is %d bytes, above %d", region, endpoint, written, PAGE_BYTES_TARGET)
        _write_atomic(json_path, _document_json(report))
        _prune_older_pages(folder, stem)
        files.append(ReportFile("endpoint", region, endpoint, html_path, json_path, written))
        reports.append(report)
        links.append(f"{safe_filename(region)}/{stem}.html")
    # The index covers every endpoint of the warehouse, not only those rendered now, so rendering one endpoint
    # (`buw analyze -m ...`) does not shrink it. Endpoints not rendered in this call link to their newest page
    # for this as_of if one exists; their numbers are computed from the marts like the others'.
    rendered = dict(zip(pairs, zip(reports, links, strict=True), strict=True))
    index_reports, index_links = [], []
    for region, endpoint in ((str(region), str(endpoint)) for region, endpoint in known):
        if (region, endpoint) in rendered:
            report, link = rendered[(region, endpoint)]
        else:
            _, report = report_tables(connection, region, endpoint, as_of, account_id, alerts)
            existing = out_dir / safe_filename(region) / f"{stems_for_all[(region, endpoint)]}.html"
            link = f"{safe_filename(region)}/{existing.name}" if existing.exists() else None
        index_reports.append(report)
        index_links.append(link)
    index = build_index_data(index_reports, as_of, account_id, index_links)
    quotas = {
        (report["header"]["region"], report["header"]["endpoint"]): {
            card["quota_type"]: card["quota_value"] for card in report["quotas"]["cards"]
        }
        for report in index_reports
    }
    index["overview"] = build_overview(connection, index["endpoints"], quotas, epoch_ms(as_of), SUMMARY_WINDOW)
    index_html, index_json = out_dir / "index.html", out_dir / "index.json"
    written = _write_atomic(index_html, render_index_html(index, _plotly_tag(index_html, out_dir, mode)))
    _write_atomic(index_json, _document_json(index))
    files.append(ReportFile("index", None, None, index_html, index_json, written))
    for orphan in prune_orphaned_assets(out_dir):
        log.info("removed %s: no page loads it any more", orphan)
    if mode == "shared":
        # An inline render into the same folder at the same moment may have pruned it before our pages existed.
        write_plotly_asset(out_dir)
    return files


def _unique_stems(pairs: Sequence[tuple[str, str]], as_of: datetime) -> dict[tuple[str, str], str]:
    """File stems per endpoint; two ids that clean to the same name in one region get a short hash each."""
    stems = {pair: report_stem(pair[1], as_of) for pair in pairs}
    seen: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for pair, stem in stems.items():
        seen.setdefault((safe_filename(pair[0]), stem), []).append(pair)
    for clashing in seen.values():
        if len(clashing) > 1:
            for pair in clashing:
                digest = hashlib.sha1(pair[1].encode("utf-8")).hexdigest()[:8]
                stems[pair] = f"{safe_filename(pair[1])}-{digest}-{utc_minute(as_of).strftime('%Y%m%dT%H%MZ')}"
    return stems

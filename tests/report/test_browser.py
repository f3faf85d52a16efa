"""Every report in a real headless Chromium: no console errors, every chart drawn, quota lines and profiles visible.

Uses Debian's /usr/bin/chromium through Playwright (never ``playwright install``). Full-page screenshots go to
``test-artifacts/`` at the repository root so CI can keep them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from pipelines.report import plotly_asset_name, render_reports

from .report_fixtures import AS_OF, BASE, GEO

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
QUOTA_RED = "rgb(214, 39, 40)"


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


def open_report(browser, path: Path):
    """Load a report from file:// and wait until plotly has drawn every chart; return (page, problems)."""
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    # A dialog would mean a tag value ran as script.
    page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_function(
        "Array.from(document.querySelectorAll('.js-chart')).every(n => n.querySelector('.main-svg'))",
        timeout=30_000,
    )
    return page, problems


def test_every_report_loads_without_errors_and_draws_every_chart(browser, rendered):
    _out, files = rendered
    ARTIFACTS.mkdir(exist_ok=True)
    for file in files:
        page, problems = open_report(browser, file.html_path)
        try:
            charts = page.locator(".js-chart").count()
            plots = page.locator(".js-plotly-plot").count()
            drawn = page.eval_on_selector_all(
                ".js-plotly-plot",
                "nodes => nodes.filter(n => n.querySelector('.main-svg .trace, .main-svg .hm')).length",
            )
            assert problems == [], (file.html_path.name, problems)
            # Every chart div became a plotly plot with an SVG holding its traces.
            assert plots == charts == drawn, (file.html_path.name, charts, plots, drawn)
            if file.kind == "endpoint":
                # Three charts per window with data, the TPD and throttle charts and one per tag key.
                assert charts >= 15
            else:
                # The overview: one utilisation heatmap per quota type.
                assert charts == 3
            # plotly.js came from the one shared file beside the reports, by relative path over file://.
            scripts = page.evaluate(
                "Array.from(document.querySelectorAll('script[src]')).map(n => [n.getAttribute('src'), n.src])"
            )
            assert not scripts[0][0].startswith(("/", "file:", "http"))
            assert page.evaluate("typeof window.Plotly") == "object"
            scripts = [resolved for _given, resolved in scripts]
            assert scripts == [
                (file.html_path.parents[0 if file.kind == "index" else 1] / "assets" / plotly_asset_name()).as_uri()
            ]
            page.screenshot(path=str(ARTIFACTS / f"report-{file.html_path.stem}.png"), full_page=True)
        finally:
            page.close()


def test_charts_show_the_quota_lines_and_every_profile(browser, rendered):
    _out, files = rendered
    file = next(file for file in files if file.endpoint == GEO)
    page, problems = open_report(browser, file.html_path)
    try:
        assert problems == []
        for chart_id, quota in (("chart-tpm-1d", "TPM quota (70,000)"), ("chart-rpm-7d", "RPM quota (40)")):
            legend = page.locator(f"#{chart_id} .legendtext").all_text_contents()
            assert legend == ["all profiles", "direct", "chat-bot", "evil-profile", "search-api", quota]
            # The quota trace is drawn as a red dashed line across the plot.
            styles = page.eval_on_selector_all(
                f"#{chart_id} .scatterlayer .trace path.js-line", "paths => paths.map(p => p.getAttribute('style'))"
            )
            quota_style = styles[-1]
            assert QUOTA_RED in quota_style and "stroke-dasharray" in quota_style
            lines = page.eval_on_selector_all(
                f"#{chart_id} .scatterlayer .trace path.js-line",
                "paths => paths.map(p => p.getTotalLength())",
            )
            assert all(length > 0 for length in lines), lines
        # The evil tag value is shown literally as an axis label, not interpreted.
        labels = page.locator(".js-plotly-plot .xtick text").all_text_contents()
        assert any(label.startswith('<script>alert("owned")') for label in labels)
        page.locator("#charts").screenshot(path=str(ARTIFACTS / "report-charts.png"))
    finally:
        page.close()


def test_the_alert_is_visible_right_under_the_header(browser, rendered):
    _out, files = rendered
    file = next(file for file in files if file.endpoint == GEO)
    page, problems = open_report(browser, file.html_path)
    try:
        assert problems == []
        alert = page.locator("#alert")
        assert alert.is_visible()
        header, box, quotas = (page.locator(selector).bounding_box() for selector in ("#header", "#alert", "#quotas"))
        # Within the first screen, between the header and the quota cards.
        assert header["y"] + header["height"] <= box["y"] < quotas["y"] and box["y"] < 1000
        assert "TPM quota L-TEST0001" in alert.inner_text()
        # Drawn as an alert: the red left border stands out from the page.
        assert page.eval_on_selector("#alert", "n => getComputedStyle(n).borderLeftColor") == "rgb(198, 40, 40)"
        ARTIFACTS.mkdir(exist_ok=True)
        alert.screenshot(path=str(ARTIFACTS / "report-alert.png"))
    finally:
        page.close()
    index = next(file for file in files if file.kind == "index")
    page, problems = open_report(browser, index.html_path)
    try:
        assert problems == []
        badges = page.locator("#endpoints tbody tr .badge").all_text_contents()
        assert badges == ["TPM", "RPM"]
        assert page.locator("#endpoints tbody tr").first.get_attribute("data-endpoint") == GEO
    finally:
        page.close()


def test_the_30d_chart_holds_every_minute_of_the_json(browser, rendered):
    _out, files = rendered
    file = next(file for file in files if file.endpoint == GEO)
    report = json.loads(file.json_path.read_text(encoding="utf-8"))
    block = report["charts"]["blocks"][report["charts"]["windows"][-1]["tpm"][0]["block"]]
    expected = sum(count for _step, count in block["segments"])
    page, problems = open_report(browser, file.html_path)
    try:
        assert problems == []
        drawn = page.evaluate("document.getElementById('chart-tpm-30d').data[0].x.length")
        one_day = page.evaluate("document.getElementById('chart-tpm-1d').data[0].x.length")
        assert drawn == expected and one_day == 1440
    finally:
        page.close()


def test_a_copied_reports_folder_and_an_inline_page_open_offline(browser, rendered, warehouse, tmp_path):
    out_dir, files = rendered
    copy = tmp_path / "moved" / "reports"
    shutil.copytree(out_dir, copy)
    for name in ("index.html", next(file for file in files if file.endpoint == GEO).html_path.relative_to(out_dir)):
        page, problems = open_report(browser, copy / name)
        try:
            assert problems == []
            assert page.locator(".js-plotly-plot").count() == page.locator(".js-chart").count() > 0
        finally:
            page.close()
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        single = render_reports(connection, tmp_path / "single", AS_OF, select=[("us-east-1", BASE)], plotlyjs="inline")
    alone = tmp_path / "alone.html"
    shutil.copy(single[0].html_path, alone)
    page, problems = open_report(browser, alone)
    try:
        assert problems == []
        assert page.evaluate("document.querySelectorAll('script[src]').length") == 0
        assert page.locator(".js-plotly-plot").count() == page.locator(".js-chart").count() >= 15
    finally:
        page.close()


def test_the_coverage_note_shows_on_a_partly_read_page_and_not_on_a_fully_read_one(browser, coverage_lake):
    _connection, _out, files = coverage_lake
    partial = next(file for file in files if file.region == "us-east-1" and file.kind == "endpoint")
    page, problems = open_report(browser, partial.html_path)
    try:
        assert problems == []
        note = page.locator("#coverage-note-7d")
        assert note.is_visible()
        text = note.inner_text()
        # 2 days at 1 minute, 5 days at 5 minutes, nothing unread in the 7d window.
        assert "2,880 at 1-minute resolution" in text and "7,200 at 5-minute/1-hour resolution" in text
        assert "0 not at all" in text
        # The coarse figures are set apart from the 1-minute ones and labelled.
        header = page.locator("#stats-7d thead").inner_text()
        assert "p90 of 5-min bucket rates" in header and "busiest minute in 5-min data" in header
        assert page.locator("#stats-7d tr[data-metric='tpm'] td.coarse").first.is_visible()
        assert page.locator("#quota-tpm-coarse-7d").is_visible()
        # Windows read wholly at 1 minute carry none of it.
        assert page.locator("#coverage-note-1d").count() == 0
        assert page.locator("#stats-1d td.coarse").count() == 0
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#stats").screenshot(path=str(ARTIFACTS / "report-coverage-note.png"))
    finally:
        page.close()
    full = next(file for file in files if file.region == "eu-west-1" and file.kind == "endpoint")
    page, problems = open_report(browser, full.html_path)
    try:
        assert problems == []
        assert page.locator("#stats").is_visible()
        assert page.locator(".coverage-note").count() == 0 and page.locator("td.coarse").count() == 0
    finally:
        page.close()
    index = next(file for file in files if file.kind == "index")
    page, problems = open_report(browser, index.html_path)
    try:
        assert problems == []
        flags = page.locator("#endpoints .partial")
        assert flags.count() == 1 and flags.first.is_visible()
        assert flags.first.inner_text() == "2,880 of 10,080 min at 1-min"
    finally:
        page.close()


def test_the_callers_chart_stacks_every_caller_and_the_part_not_in_the_logs(browser, caller_lake):
    _connection, _calls, _out, files = caller_lake
    file = next(file for file in files if file.region == "us-east-1" and file.endpoint.startswith("anthropic.claude-s"))
    report = json.loads(file.json_path.read_text(encoding="utf-8"))
    page, problems = open_report(browser, file.html_path)
    try:
        assert problems == []
        for chart in report["charts"]["callers"]["windows"]:
            chart_id = f"chart-callers-{chart['window']}"
            legend = page.locator(f"#{chart_id} .legendtext").all_text_contents()
            # plotly lists a stack top first, as it is drawn: the remainder on top, then the other callers.
            assert legend == [line["label"] for line in reversed(chart["lines"])]
            assert legend[0] == "(not in logs)" and legend[1].startswith("other (")
            # Every line is drawn as a filled area of the stack, none empty.
            fills = page.eval_on_selector_all(
                f"#{chart_id} .scatterlayer .trace path.js-fill", "paths => paths.map(p => p.getBBox().width)"
            )
            assert len(fills) == len(chart["lines"]) and all(width > 0 for width in fills), fills
            # Each line holds every bucket of its block: one point per 5 minutes or hour from the data's start.
            points = page.evaluate(f"document.getElementById('{chart_id}').data.map(trace => trace.x.length)")
            blocks = [report["charts"]["blocks"][line["block"]] for line in chart["lines"]]
            assert points == [sum(count for _step, count in block["segments"]) for block in blocks]
        # The remainder row of the tables is set apart from the callers.
        remainder = page.locator("#callers-1d tr.remainder")
        assert remainder.inner_text().startswith("(not in logs)")
        assert page.eval_on_selector("#callers-1d tr.remainder td", "n => getComputedStyle(n).fontStyle") == "italic"
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#callers").screenshot(path=str(ARTIFACTS / "report-callers.png"))
    finally:
        page.close()
    # A page without caller data shows the sentence and no caller chart.
    quiet = next(file for file in files if file.region == "eu-west-1" and file.kind == "endpoint")
    page, problems = open_report(browser, quiet.html_path)
    try:
        assert problems == []
        assert page.locator("#callers-off").is_visible()
        assert page.locator("[id^='chart-callers-']").count() == 0
    finally:
        page.close()

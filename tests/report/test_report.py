"""The report on a small fixture warehouse: files, sections, numbers (HTML = JSON = marts), escaping, size."""

from __future__ import annotations

import html
import itertools
import json
import os
import shutil
import stat
from datetime import UTC, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipelines.quotas.checks import check_rpm_headroom, check_tpd_headroom, check_tpm_headroom
from pipelines.report import (
    MAX_CHART_SERIES,
    PAGE_BYTES_TARGET,
    ReportError,
    build_report_data,
    plotly_asset_name,
    render_reports,
    report_stem,
    safe_filename,
)
from pipelines.report.charts import decode_block

from .report_fixtures import (
    ACCOUNT_ID,
    AS_OF,
    BASE,
    BIG,
    EU_GEO,
    EVIL_TAG,
    GEO,
    RPM_QUOTA,
    TPD_QUOTA,
    TPM_QUOTA,
    build_warehouse,
)

WINDOWS = ("1h", "1d", "7d", "14d", "30d")
VOID = {"meta", "br", "img", "input", "link", "hr"}


class Page(HTMLParser):
    """The parts of a report page the tests read: sections, tables by id, fields, figures, script count."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: set[str] = set()
        self.tables: dict[str, dict[str, Any]] = {}
        self.fields: dict[str, str] = {}
        self.values: dict[tuple[str, str], str] = {}
        self.scripts: list[tuple[dict[str, str], str]] = []
        self.links: list[str] = []
        self._stack: list[tuple[str, dict[str, str]]] = []
        self._text: list[str] | None = None
        self._table: dict[str, Any] | None = None
        self._row: dict[str, Any] | None = None
        self._in_head = False
        self.feed(text)

    def _owner(self) -> str:
        return next((attrs["id"] for _tag, attrs in reversed(self._stack) if "id" in attrs), "")

    def handle_starttag(self, tag: str, attributes: list[tuple[str, str | None]]) -> None:
        attrs = {name: value or "" for name, value in attributes}
        if tag in ("section", "header") and "id" in attrs:
            self.sections.add(attrs["id"])
        if tag == "a" and "href" in attrs:
            self.links.append(attrs["href"])
        if tag == "table":
            self._table = {"cols": [], "rows": []}
            self.tables[attrs.get("id", f"anonymous-{len(self.tables)}")] = self._table
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr" and self._table is not None and not self._in_head:
            self._row = {"attrs": attrs, "cells": []}
            self._table["rows"].append(self._row)
        elif tag in ("td", "th") and self._table is not None:
            self._text = []
            if self._in_head:
                self._table["cols"].append(attrs.get("data-col"))
        elif tag == "script" or "data-field" in attrs or "data-col" in attrs:
            self._text = []
        if tag not in VOID:
            self._stack.append((tag, attrs))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        opened, attrs = self._stack.pop()
        assert opened == tag, f"</{tag}> closes <{opened}>"
        text = "".join(self._text).strip() if self._text is not None else ""
        if tag == "script":
            self.scripts.append((attrs, text))
            self._text = None
        elif tag in ("td", "th") and self._table is not None:
            if self._row is not None and not self._in_head:
                self._row["cells"].append(text)
            self._text = None
        elif "data-field" in attrs:
            self.fields[attrs["data-field"]] = text
            self._text = None
        elif "data-col" in attrs:
            self.values[(self._owner(), attrs["data-col"])] = text
            self._text = None
        if tag == "thead":
            self._in_head = False
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def rows(self, table_id: str) -> list[tuple[dict[str, str], dict[str, str]]]:
        """(row attributes, {data-col of the column: cell text}) for each body row of a table."""
        table = self.tables[table_id]
        return [
            (row["attrs"], {col: cell for col, cell in zip(table["cols"], row["cells"], strict=True) if col})
            for row in table["rows"]
        ]

    def figures(self) -> dict[str, dict[str, Any]]:
        text = next(text for attrs, text in self.scripts if attrs.get("id") == "buw-figures")
        return {figure["id"]: figure for figure in json.loads(text)}

    def blocks(self) -> dict[str, dict[str, Any]]:
        text = next(text for attrs, text in self.scripts if attrs.get("id") == "buw-blocks")
        return json.loads(text)

    def points(self, trace: dict[str, Any]) -> tuple[list[int], list[float]]:
        """(epoch ms, value) of a trace as the page's script fills it: its block's points inside its range."""
        times, values = decode_block(self.blocks()[trace["buw_block"]])
        start, end = trace["buw_range"]
        kept = [(moment, value) for moment, value in zip(times, values, strict=True) if start <= moment < end]
        return [moment for moment, _ in kept], [value for _, value in kept]


def shown(text: str) -> Any:
    """A number as the page shows it ("1,234.5", "12.3 %", "—") back as the JSON value."""
    if text == "—":
        return None
    return float(text.removesuffix(" %").replace(",", ""))


def report_of(files, endpoint: str):
    return next(file for file in files if file.endpoint == endpoint)


def load(file) -> tuple[Page, dict[str, Any]]:
    return Page(file.html_path.read_text(encoding="utf-8")), json.loads(file.json_path.read_text(encoding="utf-8"))


def test_one_html_and_one_json_per_endpoint_plus_an_index(rendered):
    out_dir, files = rendered
    assert [(file.kind, file.region, file.endpoint) for file in files] == [
        ("endpoint", "eu-west-1", "eu.amazon.nova-pro-v1:0"),
        ("endpoint", "us-east-1", BASE),
        ("endpoint", "us-east-1", GEO),
        ("index", None, None),
    ]
    geo = report_of(files, GEO)
    assert geo.html_path == out_dir / "us-east-1" / "us.anthropic.claude-3-7-sonnet-20250219-v1_0-20250610T1200Z.html"
    assert geo.json_path == geo.html_path.with_suffix(".json")
    assert files[-1].html_path == out_dir / "index.html"
    assert (out_dir / "index.json").is_file()
    for file in files:
        assert file.html_path.stat().st_size == file.html_bytes
        assert ":" not in file.html_path.name
    # Nothing else (no temporary files) is left behind: the pages, their JSON and the one shared plotly.js.
    assert sorted(path.name for path in out_dir.rglob("*") if path.is_file()) == sorted(
        [path.name for file in files for path in (file.html_path, file.json_path)] + [plotly_asset_name()]
    )
    assert (out_dir / "assets" / plotly_asset_name()).stat().st_size > 1_000_000


def test_file_names_are_safe_and_carry_as_of():
    assert (
        safe_filename("us.anthropic.claude-3-7-sonnet-20250219-v1:0") == "us.anthropic.claude-3-7-sonnet-20250219-v1_0"
    )
    assert safe_filename("../etc/passwd") == "_etc_passwd"
    assert safe_filename("a b/c\\d") == "a_b_c_d"
    assert report_stem("amazon.nova-lite-v1:0", AS_OF + timedelta(seconds=42)) == "amazon.nova-lite-v1_0-20250610T1200Z"


def test_report_has_every_section_and_the_header_facts(rendered):
    _out, files = rendered
    page, report = load(report_of(files, GEO))
    assert {"header", "quotas", "stats", "charts", "tags", "throttles", "coverage"} <= page.sections
    assert page.fields["account_id"] == ACCOUNT_ID
    assert page.fields["region"] == "us-east-1"
    assert page.fields["endpoint"] == f"{GEO} (geo)"
    assert page.fields["as_of"] == "2025-06-10 12:00 UTC"
    assert "datapoints from 2025-05-20 12:00 UTC to 2025-06-10 11:59 UTC" in page.fields["coverage"]
    assert "1-minute data from 2025-05-27 12:00 UTC" in page.fields["coverage"]
    assert report["header"]["as_of"] == "2025-06-10T12:00:00Z"
    assert [series["label"] for series in report["series"]] == ["direct", "chat-bot", "evil-profile", "search-api"]


def test_stats_tables_show_the_json_numbers_which_are_the_marts(rendered, warehouse):
    _out, files = rendered
    for file in files[:-1]:
        page, report = load(file)
        for window in report["stats"]:
            rows = page.rows(f"stats-{window['window']}")
            assert [attrs["data-metric"] for attrs, _cells in rows] == [row["metric"] for row in window["metrics"]]
            assert len(rows) == 14
            # A window partly read at coarser resolution also shows its figures over 5-minute buckets.
            coarse = {"p90_5min", "peak_bracket_5min", "buckets_5min"}
            for (_attrs, cells), row in zip(rows, window["metrics"], strict=True):
                minute = {"p50", "p90", "p99", "avg", "max", "total", "active_points", "window_points"}
                assert set(cells) == minute | (set() if window["coverage"]["fully_covered_1min"] else coarse)
                for column in coarse & set(cells):
                    assert cells[column] == "—" or row[column.replace("peak_bracket", "max")] is not None
                    cells.pop(column)
                for column, text in cells.items():
                    assert shown(text) == row[column], (file.endpoint, window["window"], row["metric"], column)
    _page, report = load(report_of(files, GEO))
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        p90, total, active = connection.execute(
            """
            select p90, total, active_points from window_stats
            where endpoint = ? and series_id = '*' and "window" = '7d' and metric = 'tpm'
            """,
            [GEO],
        ).fetchone()
    tpm_7d = next(row for row in report["stats"][2]["metrics"] if row["metric"] == "tpm")
    assert tpm_7d["p90"] == round(p90, 1)
    assert tpm_7d["total"] == round(total)
    assert tpm_7d["active_points"] == active
    latency = next(row for row in report["stats"][2]["metrics"] if row["metric"] == "latency_ms")
    assert latency["p50"] is not None and latency["total"] is None


def test_quota_cards_show_headroom_or_say_no_quota_found(rendered):
    _out, files = rendered
    page, report = load(report_of(files, GEO))
    cards = {card["quota_type"]: card for card in report["quotas"]["cards"]}
    assert [cards[name]["quota_value"] for name in ("tpm", "rpm", "tpd")] == [TPM_QUOTA, RPM_QUOTA, TPD_QUOTA]
    for quota_type, card in cards.items():
        assert shown(page.values[(f"quota-{quota_type}", "quota_value")]) == card["quota_value"]
    tpm_7d = next(row for row in cards["tpm"]["windows"] if row["window"] == "7d")
    assert tpm_7d["utilisation_max_pct"] == round(100 * tpm_7d["max"] / TPM_QUOTA, 1)
    assert tpm_7d["minutes_over_100"] > 0
    html_text = report_of(files, GEO).html_path.read_text(encoding="utf-8")
    assert f"{tpm_7d['utilisation_max_pct']:,} %" in html_text

    page, report = load(report_of(files, BASE))
    assert [card["found"] for card in report["quotas"]["cards"]] == [False, False, False]
    assert not [key for key in page.values if key[1] == "quota_value"]
    assert report_of(files, BASE).html_path.read_text(encoding="utf-8").count("no quota found") == 3


def test_quota_card_tables_and_the_alert_match_the_json(rendered):
    _out, files = rendered
    text = report_of(files, GEO).html_path.read_text(encoding="utf-8")
    page, report = load(report_of(files, GEO))
    for card in report["quotas"]["cards"]:
        # Each card's table is the first table after the card's opening tag.
        start = text.index(f'id="quota-{card["quota_type"]}"')
        table = Page(text[text.index("<table>", start) : text.index("</table>", start) + len("</table>")])
        rows = table.rows("anonymous-0")
        assert [attrs["data-window"] for attrs, _cells in rows] == [row["window"] for row in card["windows"]]
        # Throttles have no meaning for a rolling day, so the TPD card has no throttled column.
        expected = {"minutes_at_quota", "throttled_minutes"} if card["quota_type"] != "tpd" else {"minutes_at_quota"}
        assert expected <= set(rows[0][1]) and ("throttled_minutes" in rows[0][1]) == (card["quota_type"] != "tpd")
        for (_attrs, cells), row in zip(rows, card["windows"], strict=True):
            for column, value in cells.items():
                assert shown(value) == row[column], (card["quota_type"], row["window"], column)
    alerts = report["alerts"]["flagged"]
    assert alerts
    for alert in alerts:
        owner = f"alert-{alert['quota_type']}"
        assert page.values[(owner, "quota_code")] == alert["quota_code"]
        for column in ("quota_value", "p90", "utilisation_p90_pct", "utilisation_max_pct", "minutes_at_quota"):
            assert shown(page.values[(owner, column)]) == alert[column], (owner, column)
        if alert["throttled_minutes"] is None:
            assert (owner, "throttled_minutes") not in page.values
        else:
            assert shown(page.values[(owner, "throttled_minutes")]) == alert["throttled_minutes"]


def test_the_alert_block_tops_the_page_with_the_numbers_of_the_headroom_checks(rendered, warehouse):
    _out, files = rendered
    text = report_of(files, GEO).html_path.read_text(encoding="utf-8")
    page, report = load(report_of(files, GEO))
    # Right after the header, before the quota cards.
    assert "alert" in page.sections
    assert text.index("</header>") < text.index('<section id="alert"') < text.index('<section id="quotas"')
    alerts = {alert["quota_type"]: alert for alert in report["alerts"]["flagged"]}
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        outcomes = {
            "tpm": check_tpm_headroom(connection),
            "rpm": check_rpm_headroom(connection),
            "tpd": check_tpd_headroom(connection),
        }
    # The fixture's endpoint reached its TPM and RPM quotas in some minutes; the day stayed under the TPD quota.
    assert {name for name, outcome in outcomes.items() if not outcome.passed} == set(alerts) == {"tpm", "rpm"}
    cards = {card["quota_type"]: card for card in report["quotas"]["cards"]}
    for quota_type, alert in alerts.items():
        checked = outcomes[quota_type].metadata
        assert checked["failing_endpoints"] == f"us-east-1 {GEO}"
        numbers = checked["endpoints"][f"us-east-1 {GEO}"]
        assert alert["check"] == f"{quota_type}_headroom" and alert["window"] == checked["window"] == "1d"
        assert (alert["quota_code"], alert["quota_value"]) == (numbers["quota_code"], numbers["quota_value"])
        assert alert["minutes_at_quota"] == numbers["minutes_at_quota"] > 0
        assert alert["throttled_minutes"] == numbers["throttled_minutes"] > 0
        assert alert["utilisation_p90_pct"] == pytest.approx(numbers["utilisation_p90_pct"], abs=0.051)
        assert alert["utilisation_max_pct"] == pytest.approx(numbers["utilisation_max_pct"], abs=0.051)
        # The same numbers as the card's 1d row, and the quota's name from quota_map when there is one.
        one_day = next(row for row in cards[quota_type]["windows"] if row["window"] == "1d")
        for column in ("p90", "utilisation_p90_pct", "minutes_at_quota", "throttled_minutes"):
            assert alert[column] == one_day[column], (quota_type, column)
    assert "The <code>tpm_headroom</code>, <code>rpm_headroom</code> asset checks" in text
    heading = text[text.index('<section id="alert"') :]
    assert "Quota alert: TPM and RPM at or near their quotas over the last 1d" in heading[: heading.index("</h2>")]
    for endpoint in (BASE, EU_GEO):
        page, report = load(report_of(files, endpoint))
        assert report["alerts"] == {"available": True, "window": "1d", "p90_threshold_pct": 80, "flagged": []}
        assert "alert" not in page.sections
        assert "Quota alert" not in report_of(files, endpoint).html_path.read_text(encoding="utf-8")


def test_the_alert_follows_the_verdict_of_the_checks(warehouse, tmp_path):
    copy = tmp_path / "usage.duckdb"
    shutil.copy(warehouse, copy)
    with duckdb.connect(str(copy)) as connection:
        # TPM now comfortably under its quota; RPM busy at p90 but never at the quota.
        connection.execute(
            """
            update quota_headroom set
                utilisation_p90 = case quota_type when 'rpm' then 0.81 else 0.5 end,
                minutes_at_quota = 0
            where "window" = '1d'
            """
        )
        assert check_tpm_headroom(connection).passed and not check_rpm_headroom(connection).passed
        files = render_reports(connection, tmp_path / "out", AS_OF, select=[("us-east-1", GEO)])
    page, report = load(files[0])
    (alert,) = report["alerts"]["flagged"]
    assert (alert["quota_type"], alert["utilisation_p90_pct"], alert["minutes_at_quota"]) == ("rpm", 81, 0)
    assert shown(page.values[("alert-rpm", "utilisation_p90_pct")]) == 81
    assert ("alert-tpm", "quota_code") not in page.values
    _index_page, index = load(files[-1])
    assert index["endpoints"][0]["alerts"] == [alert]


def test_an_old_quota_headroom_without_minutes_at_quota_is_a_clear_error(warehouse, tmp_path):
    copy = tmp_path / "usage.duckdb"
    shutil.copy(warehouse, copy)
    with duckdb.connect(str(copy)) as connection:
        connection.execute("alter table quota_headroom drop column minutes_at_quota")
        with pytest.raises(ReportError, match=r"no minutes_at_quota column.*rebuild the models"):
            render_reports(connection, tmp_path / "out", AS_OF)


def test_generated_files_are_readable_by_everyone_under_the_usual_umask(warehouse, tmp_path):
    def modes(files) -> set[int]:
        return {stat.S_IMODE(path.stat().st_mode) for file in files for path in (file.html_path, file.json_path)}

    previous = os.umask(0o022)
    try:
        with duckdb.connect(str(warehouse), read_only=True) as connection:
            select = [("us-east-1", BASE)]
            files = render_reports(connection, tmp_path / "shared", AS_OF, select=select)
            assert modes(files) == {0o644}
            # A stricter umask is respected, also when the files are rewritten.
            os.umask(0o077)
            again = render_reports(connection, tmp_path / "shared", AS_OF, select=select)
            assert modes(again) == {0o600}
    finally:
        os.umask(previous)


def test_report_renders_without_the_quota_marts(tmp_path):
    database = build_warehouse(tmp_path / "usage.duckdb", with_quotas=False)
    with duckdb.connect(str(database), read_only=True) as connection:
        files = render_reports(connection, tmp_path / "out", AS_OF, select=[("us-east-1", GEO)])
    page, report = load(files[0])
    assert report["quotas"]["headroom_available"] is False
    assert [card["found"] for card in report["quotas"]["cards"]] == [False, False, False]
    text = files[0].html_path.read_text(encoding="utf-8")
    assert text.count("no quota found") == 3
    assert "no quota_headroom mart yet" in text
    figures = page.figures()
    assert not any("quota (" in trace.get("name", "") for trace in figures["chart-tpm-1d"]["data"])
    index_page, index = load(files[-1])
    assert index["endpoints"][0]["tpm_quota"] is None
    assert report["alerts"]["available"] is False and index["endpoints_flagged"] == 0
    assert index_page.rows("endpoints")[0][1]["tpm_quota"] == "no quota found"
    assert page.fields["account_id"] == "unknown"


def test_an_evil_tag_value_is_escaped_everywhere(rendered):
    _out, files = rendered
    file = report_of(files, GEO)
    text = file.html_path.read_text(encoding="utf-8")
    # Only the report's own four script elements exist: plotly.js, the chart blocks, the figures and the loader.
    assert text.count("<script") == 4
    assert text.lower().count("</script") == 4
    assert 'alert("owned")' not in text
    assert "<!--" not in text
    assert "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;" in text
    page, report = load(file)
    team = next(tag for tag in report["tags"] if tag["tag_key"] == "team")
    assert EVIL_TAG in {row["tag_value"] for window in team["windows"] for row in window["rows"]}
    cells = {cells["tag_value"] for _attrs, cells in page.rows(f"tags-{report['tags'].index(team)}")}
    assert EVIL_TAG.strip() in cells
    # Inside the figure JSON it is \u003c-escaped; plotly then gets an HTML-escaped label it shows literally.
    assert r"\u0026lt;script\u0026gt;alert(\"owned\")" in text
    figures_script = next(body for attrs, body in page.scripts if attrs.get("id") == "buw-figures")
    assert "\u2028" not in figures_script and "\\u2028" in figures_script
    figure = page.figures()[f"chart-tag-{report['tags'].index(team)}"]
    assert html.escape(EVIL_TAG, quote=False) in figure["data"][0]["x"]
    # The JSON file carries the value verbatim (plain JSON string escaping, UTF-8).
    assert json.dumps(EVIL_TAG, ensure_ascii=False) in file.json_path.read_text(encoding="utf-8")


def test_charts_hold_the_json_series_with_dashed_red_quota_lines(rendered):
    _out, files = rendered
    page, report = load(report_of(files, GEO))
    figures = page.figures()
    # The page carries exactly the JSON document's blocks, and each window's chart shows its slice of them.
    assert page.blocks() == {
        key: {name: block[name] for name in ("start_ms", "segments", "per_point", "values")}
        for key, block in report["charts"]["blocks"].items()
    }
    labels = ["all profiles", "direct", "chat-bot", "evil-profile", "search-api"]
    for chart in report["charts"]["windows"]:
        for metric in ("tpm", "rpm", "quota_tpm"):
            figure = figures[f"chart-{metric.replace('_', '-')}-{chart['window']}"]
            lines = [trace for trace in figure["data"] if "quota (" not in trace["name"]]
            assert [trace["name"] for trace in lines] == [line["label"] for line in chart[metric]]
            for trace, line in zip(lines, chart[metric], strict=True):
                assert trace["buw_block"] == line["block"]
                times, _values = page.points(trace)
                assert times[0] >= trace["buw_range"][0] and times[-1] < trace["buw_range"][1]
            quota = [trace for trace in figure["data"] if "quota (" in trace["name"]]
            assert len(quota) == 1
            assert quota[0]["line"] == {"color": "#d62728", "dash": "dash", "width": 2}
            expected = TPM_QUOTA if metric != "rpm" else RPM_QUOTA
            assert quota[0]["y"] == [expected, expected]
        assert [line["label"] for line in chart["tpm"]] == labels
        # The windows share one block per line: the 1h chart is the last hour of the 30d one.
        assert chart["tpm"][0]["block"] == report["charts"]["windows"][-1]["tpm"][0]["block"]
    tpd = figures["chart-tpd"]
    assert any(trace["name"] == f"TPD quota ({TPD_QUOTA:,})" for trace in tpd["data"])
    _times, throttles = page.points(figures["chart-throttles"]["data"][0])
    assert round(sum(throttles)) > 0
    assert "output tokens count ×5" in figures["chart-quota-tpm-1d"]["layout"]["title"]["subtitle"]["text"]
    assert report["output_burndown"] == {"value": 5, "source": "estimated"}
    assert page.values[("burndown", "value")] == "5"


def test_charts_keep_every_minute_and_5_minute_data_at_its_own_resolution(rendered, warehouse):
    _out, files = rendered
    page, report = load(report_of(files, GEO))
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        minutes = connection.execute(
            """
            select epoch_ms(ts), tpm, rpm, throttles, resolution_s from endpoint_minute
            where endpoint = ? and ts >= ? and ts < ?
            """,
            [GEO, AS_OF - timedelta(days=30), AS_OF],
        ).fetchall()
    by_minute = {row[0]: row for row in minutes}
    figures = page.figures()
    times, tpm = page.points(figures["chart-tpm-30d"]["data"][0])
    points = dict(zip(times, tpm, strict=True))
    one_minute = [row for row in minutes if row[4] == 60]
    five_minute = [row for row in minutes if row[4] == 300]
    assert one_minute and five_minute
    # Every minute of 1-minute data is a point of its own, with the mart's value (idle minutes are zero).
    for moment, value, *_rest in one_minute:
        assert points[moment] == round(value)
    first_1min = min(row[0] for row in one_minute)
    # Minutes without a row in the mart are idle: zero.
    assert all(value == 0 for moment, value in points.items() if moment >= first_1min and moment not in by_minute)
    assert sum(1 for moment in times if moment >= first_1min) == (epoch(AS_OF) - first_1min) // 60_000
    # 5-minute data is one point per 5-minute bucket (its minutes hold the same spread value), not five.
    coarse = [moment for moment in times if moment < first_1min]
    assert coarse and all(later - earlier == 300_000 for earlier, later in itertools.pairwise(coarse))
    for moment in coarse:
        # The per-minute rate of the bucket, exactly (not rounded to whole tokens per minute).
        assert points[moment] == pytest.approx(by_minute.get(moment, (0, 0))[1])
    # The 30d chart starts where the data does instead of drawing 9 empty days as zero usage.
    assert times[0] == epoch(AS_OF - timedelta(days=21))
    # The 7d chart is the same 1-minute points, not buckets, and the page says what a point is.
    seven_times, _ = page.points(figures["chart-tpm-7d"]["data"][0])
    assert len(seven_times) == 7 * 1440
    assert figures["chart-tpm-7d"]["layout"]["title"]["subtitle"]["text"] == "1-min points"
    assert "5-min where only 5-min data remain" in figures["chart-tpm-30d"]["layout"]["title"]["subtitle"]["text"]
    # Throttles per minute add up to the window's throttles (5-minute counts are spread over their minutes).
    times, throttles = page.points(figures["chart-throttles"]["data"][0])
    steps = [(later - earlier) // 60_000 for earlier, later in itertools.pairwise(times)] + [1]
    total = report["throttles"]["windows"][-1]["throttles"]
    assert sum(value * step for value, step in zip(throttles, steps, strict=True)) == pytest.approx(total)


def epoch(moment) -> int:
    return int(moment.replace(tzinfo=UTC).timestamp() * 1000)


def test_tag_and_throttle_tables_match_the_json_and_shares_add_up(rendered):
    _out, files = rendered
    page, report = load(report_of(files, GEO))
    for index, tag in enumerate(report["tags"]):
        rows = page.rows(f"tags-{index}")
        expected = [(window["window"], row) for window in tag["windows"] for row in window["rows"]]
        assert len(rows) == len(expected)
        for (attrs, cells), (window, row) in zip(rows, expected, strict=True):
            assert attrs["data-window"] == window
            for column in ("tokens", "share_pct", "invocations", "peak_tpm"):
                assert shown(cells[column]) == row[column]
        for window in tag["windows"]:
            assert sum(row["share_pct"] for row in window["rows"]) == pytest.approx(100, abs=0.05)
    for window in report["throttles"]["windows"]:
        if not window["rows"]:
            continue
        rows = page.rows(f"throttles-{window['window']}")
        assert [attrs["data-series"] for attrs, _cells in rows] == [row["series_id"] for row in window["rows"]]
        for (_attrs, cells), row in zip(rows, window["rows"], strict=True):
            for column, value in cells.items():
                assert shown(value) == row[column]
        assert sum(row["share_pct"] for row in window["rows"]) == pytest.approx(100, abs=0.05)
    for window in report["throttles"]["windows"]:
        owner = f"throttle-summary-{window['window']}"
        assert shown(page.values[(owner, "throttled_minutes")]) == window["throttled_minutes"]
        assert shown(page.values[(owner, "throttles")]) == window["throttles"]
    worst = report["throttles"]["worst_minutes"]
    assert len(worst) == 10
    assert [row["throttles"] for row in worst] == sorted((row["throttles"] for row in worst), reverse=True)
    assert worst[0]["top_label"] in {"direct", "search-api", "chat-bot", "evil-profile"}
    for (_attrs, cells), row in zip(page.rows("throttle-minutes"), worst, strict=True):
        assert cells["top_label"] == row["top_label"]
        assert shown(cells["throttles"]) == row["throttles"]
        assert shown(cells["top_share_pct"]) == row["top_share_pct"]


def test_coverage_reports_resolution_and_the_limitations(rendered):
    _out, files = rendered
    page, report = load(report_of(files, GEO))
    windows = {row["window"]: row for row in report["coverage"]["windows"]}
    assert windows["1d"]["resolution"] == "1-min" and windows["1d"]["fully_covered_1min"]
    assert windows["30d"]["resolution"] == "1-min and 5-min, partly not read"
    # Minutes read at each resolution, from window_coverage: 14 days at 1 minute, 7 days at 5 minutes before.
    assert windows["30d"]["covered_minutes_1min"] == 14 * 1440
    assert windows["30d"]["covered_minutes_5min"] == 7 * 1440
    assert windows["30d"]["uncovered_minutes"] == 9 * 1440
    assert windows["30d"]["coverage_start"] == "2025-05-20T12:00:00Z"
    for attrs, cells in page.rows("coverage-windows"):
        row = windows[attrs["data-window"]]
        assert cells["resolution"] == row["resolution"]
        for column in ("covered_minutes_1min", "covered_minutes_5min", "covered_minutes_1h", "uncovered_minutes"):
            assert shown(cells[column]) == row[column]
    text = report_of(files, GEO).html_path.read_text(encoding="utf-8")
    assert "max_tokens" in text and "EstimatedTPMQuotaUsage" in text and "5-minute" in text


def test_index_lists_every_endpoint_by_utilisation_with_links(rendered):
    out_dir, files = rendered
    page, index = load(files[-1])
    assert index["endpoints"][0]["endpoint"] == GEO  # the only endpoint with quotas, and flagged
    assert index["as_of"] == "2025-06-10T12:00:00Z" and index["account_id"] == ACCOUNT_ID
    assert (index["endpoints_flagged"], index["alert_window"]) == (1, "1d")
    assert shown(page.values[("alert-summary", "endpoints_flagged")]) == 1
    rows = page.rows("endpoints")
    assert [attrs["data-endpoint"] for attrs, _cells in rows] == [row["endpoint"] for row in index["endpoints"]]
    for (attrs, cells), row in zip(rows, index["endpoints"], strict=True):
        assert (out_dir / row["link"]).is_file()
        report = json.loads((out_dir / row["link"]).with_suffix(".json").read_text(encoding="utf-8"))
        stats_7d = {metric["metric"]: metric for metric in report["stats"][2]["metrics"]}
        assert row["tpm_p90"] == stats_7d["tpm"]["p90"] and row["rpm_max"] == stats_7d["rpm"]["max"]
        assert row["throttled_minutes"] == report["throttles"]["windows"][2]["throttled_minutes"]
        # The alert column marks what the endpoint's page alerts on, with the same numbers in the JSON.
        assert row["alerts"] == report["alerts"]["flagged"] and row["alert"] == bool(row["alerts"])
        assert attrs["data-alert"] == ("true" if row["alert"] else "false")
        assert cells.pop("alert") == " ".join(alert["label"] for alert in row["alerts"])
        for column, text in cells.items():
            if row[column] is None:
                assert text in ("—", "no quota found")
            else:
                assert shown(text) == row[column], (row["endpoint"], column)
    assert sorted(page.links) == sorted(row["link"] for row in index["endpoints"])


def test_output_is_byte_identical_for_the_same_warehouse_and_as_of(rendered, warehouse, tmp_path):
    out_dir, files = rendered
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        again = render_reports(connection, tmp_path, AS_OF + timedelta(seconds=30), account_id=ACCOUNT_ID)
    assert len(again) == len(files)
    for first, second in zip(files, again, strict=True):
        assert second.html_path.relative_to(tmp_path) == first.html_path.relative_to(out_dir)
        assert second.html_path.read_bytes() == first.html_path.read_bytes()
        assert second.json_path.read_bytes() == first.json_path.read_bytes()


def test_the_largest_endpoint_stays_under_1_mb_and_says_where_it_buckets(big_warehouse, tmp_path):
    with duckdb.connect(str(big_warehouse), read_only=True) as connection:
        files = render_reports(connection, tmp_path, AS_OF)
    page_file = files[0]
    print(f"largest fixture page: {page_file.html_bytes:,} bytes (plotly.js apart)")
    assert page_file.html_bytes <= PAGE_BYTES_TARGET
    page, report = load(page_file)
    lines = [line["label"] for line in report["charts"]["lines"]]
    assert len(lines) == MAX_CHART_SERIES + 1
    assert lines[-1] == "other (8 profiles)"
    figures = page.figures()
    # The endpoint aggregate keeps every minute of all 30 days.
    times, _ = page.points(figures["chart-tpm-30d"]["data"][0])
    assert len(times) == 30 * 1440
    # Nine lines of 30 days of minutes do not fit 1 MB, so the profile lines of the long windows are bucketed,
    # and the chart says so; the 1h and 1d charts keep every minute of every line.
    bucket = report["charts"]["profile_bucket_minutes"]
    assert bucket is not None and bucket > 1
    subtitle = figures["chart-tpm-30d"]["layout"]["title"]["subtitle"]["text"]
    assert f"profile lines: peak minute of each {bucket}-min bucket" in subtitle
    profile_times, _ = page.points(figures["chart-tpm-30d"]["data"][1])
    assert len(profile_times) == 30 * 1440 // bucket
    day = [trace for trace in figures["chart-tpm-1d"]["data"] if "buw_block" in trace]
    assert {len(page.points(trace)[0]) for trace in day} == {1440}
    assert "profile lines" not in figures["chart-tpm-1d"]["layout"]["title"]["subtitle"]["text"]
    # The "other" line is the per-minute sum of the profiles it stands for, never more than the total.
    _, total = page.points(day[0])
    _, other = page.points(day[-1])
    assert all(part <= whole for part, whole in zip(other, total, strict=True))
    assert max(other) > 0
    assert report["header"]["endpoint"] == BIG


def test_the_inline_option_gives_self_contained_pages(warehouse, tmp_path):
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        files = render_reports(connection, tmp_path, AS_OF, select=[("us-east-1", BASE)], plotlyjs="inline")
        with pytest.raises(ReportError, match="BUW_REPORT_PLOTLYJS"):
            render_reports(connection, tmp_path, AS_OF, plotlyjs="cdn")
    assert not (tmp_path / "assets").exists()
    for file in files:
        text = file.html_path.read_text(encoding="utf-8")
        assert "<script src=" not in text and "assets/plotly" not in text
        assert file.html_bytes > 4_000_000  # plotly.js itself is inside


def test_shared_pages_load_plotly_by_relative_path_and_unused_copies_go(warehouse, tmp_path):
    old = tmp_path / "assets" / "plotly-0.0.1.min.js"
    old.parent.mkdir(parents=True)
    old.write_text("// an older plotly.js no page loads")
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        files = render_reports(connection, tmp_path, AS_OF)
    for file in files:
        page = Page(file.html_path.read_text(encoding="utf-8"))
        source = next(attrs["src"] for attrs, _text in page.scripts if "src" in attrs)
        assert not source.startswith(("/", "http", "file:"))
        assert (file.html_path.parent / source).resolve() == (tmp_path / "assets" / plotly_asset_name()).resolve()
    assert not old.exists()
    # Once every page is inline, the shared copy is an orphan too.
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        render_reports(connection, tmp_path, AS_OF, plotlyjs="inline")
    assert not (tmp_path / "assets" / plotly_asset_name()).exists()


def test_the_reports_asset_takes_the_plotlyjs_setting(warehouse, tmp_path, monkeypatch):
    import dagster as dg

    from pipelines.assets.report import reports
    from pipelines.resources import WarehouseResource

    def materialize(out_dir: Path, **fields: str) -> None:
        resource = WarehouseResource(warehouse_dir=str(warehouse.parent), reports_dir=str(out_dir), **fields)
        with dg.instance_for_test() as instance:
            assert dg.materialize([reports], resources={"warehouse": resource}, instance=instance).success

    monkeypatch.setenv("BUW_REPORT_PLOTLYJS", "inline")
    materialize(tmp_path / "inline")
    assert not (tmp_path / "inline" / "assets").exists()
    assert "<script src=" not in (tmp_path / "inline" / "index.html").read_text(encoding="utf-8")
    # The resource field wins over the environment.
    materialize(tmp_path / "shared", report_plotlyjs="shared")
    assert (tmp_path / "shared" / "assets" / plotly_asset_name()).is_file()
    assert '<script src="assets/' in (tmp_path / "shared" / "index.html").read_text(encoding="utf-8")


def test_temporary_files_of_a_killed_render_are_swept(warehouse, tmp_path):
    folder = tmp_path / "us-east-1"
    folder.mkdir()
    stale = [
        folder / ".amazon.nova-lite-v1_0-20250610T1200Z.html.0123456789ab.tmp",
        tmp_path / ".index.json.ba9876543210.tmp",
    ]
    fresh = folder / ".amazon.nova-lite-v1_0-20250610T1200Z.json.aaaaaaaaaaaa.tmp"
    unrelated = folder / ".notes.tmp"
    for path in [*stale, fresh, unrelated]:
        path.write_text("half a page")
    an_hour_ago = os.path.getmtime(fresh) - 3600
    for path in [*stale, unrelated]:
        os.utime(path, (an_hour_ago, an_hour_ago))
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        render_reports(connection, tmp_path, AS_OF, select=[("us-east-1", BASE)])
    # Old temporary files are gone; a young one may be a concurrent writer's and stays, as do files not ours.
    assert not any(path.exists() for path in stale)
    assert fresh.exists() and unrelated.exists()


def test_a_missing_mart_is_a_clear_error(tmp_path):
    with (
        duckdb.connect(str(tmp_path / "empty.duckdb")) as connection,
        pytest.raises(ReportError, match="build them first with buw analyze"),
    ):
        render_reports(connection, tmp_path / "out", AS_OF)
    assert not (tmp_path / "out").exists()


def test_an_as_of_the_models_did_not_use_is_refused(warehouse):
    with (
        duckdb.connect(str(warehouse), read_only=True) as connection,
        pytest.raises(ReportError, match="window_stats was computed for as_of 2025-06-10T12:00:00Z"),
    ):
        build_report_data(connection, "us-east-1", GEO, AS_OF + timedelta(hours=1))


def test_an_unknown_endpoint_is_a_clear_error(warehouse, tmp_path):
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        with pytest.raises(ReportError, match="has no usage in the warehouse"):
            render_reports(connection, tmp_path, AS_OF, select=[("us-east-1", "no.such-model-v1:0")])
        with pytest.raises(ReportError, match="is not in the warehouse"):
            build_report_data(connection, "eu-west-1", GEO, AS_OF)


def test_build_report_data_is_the_json_file(rendered, warehouse):
    _out, files = rendered
    file = report_of(files, "eu.amazon.nova-pro-v1:0")
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        report = build_report_data(connection, "eu-west-1", "eu.amazon.nova-pro-v1:0", AS_OF, account_id=ACCOUNT_ID)
    assert json.loads(json.dumps(report)) == json.loads(file.json_path.read_text(encoding="utf-8"))
    assert Path(file.html_path).read_text(encoding="utf-8").count("Plotly.newPlot") == 1


def test_extra_columns_of_the_models_and_a_quota_map_are_used(tmp_path):
    database = build_warehouse(tmp_path / "usage.duckdb", with_quotas=False, with_quota_map=True, model_columns=True)
    with duckdb.connect(str(database), read_only=True) as connection:
        files = render_reports(connection, tmp_path / "out", AS_OF, select=[("us-east-1", GEO)])
    page, report = load(files[0])
    # No account given: it comes from the data.
    assert report["header"]["account_id"] == ACCOUNT_ID and page.fields["account_id"] == ACCOUNT_ID
    assert report["output_burndown"] == {"value": 5, "source": "output_multiplier"}
    # Quota values come from quota_map (the effective, doubled TPD) while quota_headroom does not exist yet.
    cards = {card["quota_type"]: card for card in report["quotas"]["cards"]}
    assert {name: (card["quota_value"], card["source"]) for name, card in cards.items()} == {
        "tpm": (TPM_QUOTA, "quota_map"),
        "rpm": (RPM_QUOTA, "quota_map"),
        "tpd": (TPD_QUOTA, "quota_map"),
    }
    assert cards["tpm"]["quota_name"] == "Cross-region model inference tokens per minute"
    assert "From quota_map; headroom not computed yet." in files[0].html_path.read_text(encoding="utf-8")
    # AWS's EstimatedTPMQuotaUsage differs from the computed quota TPM, so both are charted.
    one_day = report["charts"]["windows"][1]
    assert [line["label"] for line in one_day["quota_tpm"]] == [
        "all profiles (quota TPM)",
        "all profiles (computed quota TPM)",
        "all profiles (TPM)",
    ]
    blocks = report["charts"]["blocks"]
    estimated = decode_block(blocks[one_day["quota_tpm"][0]["block"]])[1]
    computed = decode_block(blocks[one_day["quota_tpm"][1]["block"]])[1]
    assert max(estimated) < max(computed)
    figure = page.figures()["chart-quota-tpm-1d"]
    assert [trace["name"] for trace in figure["data"]][-1] == f"TPM quota ({TPM_QUOTA:,})"


def test_a_requested_granularity_coarsens_the_charts(warehouse, tmp_path):
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        files = render_reports(
            connection,
            tmp_path,
            AS_OF,
            select=[("eu-west-1", "eu.amazon.nova-pro-v1:0")],
            chart_granularity={"1h": "5min", "7d": "1hour", "30d": 240},
        )
        with pytest.raises(ReportError, match="not valid"):
            build_report_data(connection, "eu-west-1", "eu.amazon.nova-pro-v1:0", AS_OF, chart_granularity={"2d": 5})
    page, report = load(files[0])
    buckets = {chart["window"]: chart["bucket_minutes"] for chart in report["charts"]["windows"]}
    assert buckets == {"1h": 5, "1d": None, "7d": 60, "14d": None, "30d": 240}
    figures = page.figures()
    assert len(page.points(figures["chart-tpm-1h"]["data"][0])[0]) == 12
    assert len(page.points(figures["chart-tpm-1d"]["data"][0])[0]) == 1440
    assert "peak minute of each 1-hour bucket" in figures["chart-tpm-7d"]["layout"]["title"]["subtitle"]["text"]


def test_the_index_overview_shows_quota_utilisation_flagged_endpoints_first(rendered, warehouse):
    _out, files = rendered
    page, index = load(files[-1])
    overview = index["overview"]
    assert overview["rows"] == [f"{row['region']} · {row['endpoint']}" for row in index["endpoints"]]
    assert overview["rows"][0] == f"us-east-1 · {GEO}" and index["endpoints"][0]["alert"]
    panels = {panel["quota_type"]: panel for panel in overview["panels"]}
    assert set(panels) == {"tpm", "rpm", "tpd"}
    tpm = panels["tpm"]
    assert len(tpm["x"]) == 7 * 24 and tpm["x"][0] == "2025-06-03T12:30:00Z"
    # A cell is the hour's busiest minute of quota TPM as % of the TPM quota.
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        (peak,) = connection.execute(
            "select max(quota_tpm) from endpoint_minute where endpoint = ? and ts >= ? and ts < ?",
            [GEO, AS_OF - timedelta(hours=1), AS_OF],
        ).fetchone()
    assert tpm["z"][0][-1] == round(100 * peak / TPM_QUOTA, 1)
    # Endpoints without quotas have empty rows rather than zero utilisation.
    assert all(value is None for row in tpm["z"][1:] for value in row)
    assert len(panels["tpd"]["x"]) == 7
    figures = page.figures()
    assert set(figures) == {"overview-tpm", "overview-rpm", "overview-tpd"}
    assert figures["overview-tpm"]["data"][0]["type"] == "heatmap"


def test_rendering_one_endpoint_keeps_every_endpoint_in_the_index(warehouse, tmp_path):
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        everything = render_reports(connection, tmp_path / "all", AS_OF)
        one = render_reports(connection, tmp_path / "one", AS_OF, select=[("us-east-1", GEO)])
    _page, full = load(everything[-1])
    _page, partial = load(one[-1])
    assert [row["endpoint"] for row in partial["endpoints"]] == [row["endpoint"] for row in full["endpoints"]]
    assert len(partial["endpoints"]) > 1
    for row in partial["endpoints"]:
        # Rows match the full index number for number; only pages that exist are linked.
        expected = next(
            r for r in full["endpoints"] if (r["region"], r["endpoint"]) == (row["region"], row["endpoint"])
        )
        assert {k: v for k, v in row.items() if k != "link"} == {k: v for k, v in expected.items() if k != "link"}
        assert (row["link"] is not None) == (row["endpoint"] == GEO)


def test_only_the_newest_pages_of_an_endpoint_are_kept(tmp_path):
    from pipelines.report.render import KEEP_PAGES, _prune_older_pages

    stems = [f"us.anthropic.claude-sonnet-4-5-v1_0-202611{day:02d}T1200Z" for day in range(10, 16)]
    neighbour = "us.anthropic.claude-sonnet-4-5-v1_0-extra-20261110T1200Z"  # another endpoint's page
    for stem in [*stems, neighbour]:
        (tmp_path / f"{stem}.html").write_text("page")
        (tmp_path / f"{stem}.json").write_text("{}")
    _prune_older_pages(tmp_path, stems[-1])
    assert sorted(path.stem for path in tmp_path.glob("*.html")) == sorted([*stems[-KEEP_PAGES:], neighbour])
    assert sorted(path.stem for path in tmp_path.glob("*.json")) == sorted([*stems[-KEEP_PAGES:], neighbour])

"""Resolution and coverage on the page, from the real models over a lake read partly at 5 minutes.

The JSON carries the marts' own coverage counts and 5-minute figures, a page shows them only for windows not wholly
read at 1 minute, and a throttled 5-minute bucket never becomes five throttled minutes.
"""

from __future__ import annotations

import json
from typing import Any

from tests.models.lakes import SONNET_4

from .report_fixtures import (
    AS_OF,
    COVERAGE_1MIN_DAYS,
    COVERAGE_5MIN_DAYS,
    COVERAGE_EU_MODEL,
    COVERAGE_THROTTLED_MINUTES,
)
from .test_report import Page, shown

WINDOWS = (("1h", 60), ("1d", 1440), ("7d", 10080), ("14d", 20160), ("30d", 43200))
COVERAGE_COLUMNS = ("covered_minutes_1min", "covered_minutes_5min", "covered_minutes_1h", "uncovered_minutes")


def page_of(files, region: str, endpoint: str) -> tuple[Page, dict[str, Any]]:
    file = next(file for file in files if (file.region, file.endpoint) == (region, endpoint))
    return Page(file.html_path.read_text(encoding="utf-8")), json.loads(file.json_path.read_text(encoding="utf-8"))


def mart_rows(connection, sql: str, *params: Any) -> list[dict[str, Any]]:
    cursor = connection.execute(sql, list(params))
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def rounded(value: Any, digits: int = 1) -> Any:
    if value is None:
        return None
    number = round(float(value), digits)
    return int(number) if digits <= 0 or number.is_integer() else number


def test_the_json_carries_the_coverage_and_resolution_of_the_marts(coverage_lake):
    connection, _out, files = coverage_lake
    _page, report = page_of(files, "us-east-1", SONNET_4)
    coverage = {
        row["window"]: row for row in mart_rows(connection, "select * from window_coverage where region = 'us-east-1'")
    }
    # The fixture's own shape: two days at 1 minute, eight days at 5 minutes before them, nothing older.
    assert coverage["30d"]["covered_minutes_1min"] == COVERAGE_1MIN_DAYS * 1440
    assert coverage["30d"]["covered_minutes_5min"] == COVERAGE_5MIN_DAYS * 1440
    for stats, listed in zip(report["stats"], report["coverage"]["windows"], strict=True):
        window = stats["window"]
        assert listed["window"] == window
        for column in COVERAGE_COLUMNS:
            assert stats["coverage"][column] == listed[column] == coverage[window][column], (window, column)
        assert stats["coverage"]["fully_covered_1min"] == (
            coverage[window]["covered_minutes_1min"] == dict(WINDOWS)[window]
        )
    assert [window["coverage"]["fully_covered_1min"] for window in report["stats"]] == [True, True, False, False, False]
    assert report["coverage"]["windows"][2]["resolution"] == "1-min and 5-min"
    assert report["coverage"]["windows"][4]["resolution"] == "1-min and 5-min, partly not read"

    marts = {
        (row["window"], row["metric"]): row
        for row in mart_rows(connection, "select * from window_stats where endpoint = ? and series_id = '*'", SONNET_4)
    }
    for stats in report["stats"]:
        for row in stats["metrics"]:
            mart = marts[(stats["window"], row["metric"])]
            assert row["resolution_s"] == mart["resolution_s"] and row["percentile_basis"] == mart["percentile_basis"]
            assert row["coarsest_resolution_s"] == mart["coarsest_resolution_s"]
            for column in ("p90_5min", "max_5min", "max_bound_5min"):
                assert row[column] == rounded(mart[column]), (stats["window"], row["metric"], column)
            assert row["buckets_5min"] == rounded(mart["buckets_5min"], 0)
    tpm_7d = next(row for row in report["stats"][2]["metrics"] if row["metric"] == "tpm")
    # 5-minute data lie in the 7d window: its busiest minute there is bracketed, sum / 5 to sum.
    assert tpm_7d["buckets_5min"] > 0 and tpm_7d["coarsest_resolution_s"] == 300
    assert tpm_7d["max_bound_5min"] == 5 * tpm_7d["max_5min"]

    headroom = {
        (row["quota_type"], row["window"]): row
        for row in mart_rows(connection, "select * from quota_headroom where endpoint = ?", SONNET_4)
    }
    card = next(card for card in report["quotas"]["cards"] if card["quota_type"] == "tpm")
    assert card["found"]
    for window in card["windows"]:
        mart = headroom[("tpm", window["window"])]
        for column in ("p90_5min", "max_5min", "max_bound_5min"):
            assert window[column] == rounded(mart[column]), (window["window"], column)
    assert report["summary"]["coverage"]["fully_covered_1min"] is False
    assert report["summary"]["coverage"]["covered_minutes_1min"] == coverage["7d"]["covered_minutes_1min"]


def test_the_page_shows_the_coverage_note_and_coarse_figures_only_where_needed(coverage_lake):
    connection, out_dir, files = coverage_lake
    page, report = page_of(files, "us-east-1", SONNET_4)
    for stats in report["stats"]:
        window, covered = stats["window"], stats["coverage"]
        owner = f"coverage-note-{window}"
        if covered["fully_covered_1min"]:
            assert (owner, "covered_minutes_1min") not in page.values
            assert "p90_5min" not in page.tables[f"stats-{window}"]["cols"]
            continue
        assert shown(page.values[(owner, "covered_minutes_1min")]) == covered["covered_minutes_1min"]
        assert shown(page.values[(owner, "covered_minutes_coarse")]) == (
            covered["covered_minutes_5min"] + covered["covered_minutes_1h"]
        )
        assert shown(page.values[(owner, "uncovered_minutes")]) == covered["uncovered_minutes"]
        by_metric = {row["metric"]: row for row in stats["metrics"]}
        for attrs, cells in page.rows(f"stats-{window}"):
            row = by_metric[attrs["data-metric"]]
            assert shown(cells["p90_5min"]) == row["p90_5min"]
            if row["max_bound_5min"] is not None:
                low, high = cells["peak_bracket_5min"].split(" ≤ peak ≤ ")
                assert (shown(low), shown(high)) == (row["max_5min"], row["max_bound_5min"])
    # The quota card says the same beside its 1-minute row.
    card = next(card for card in report["quotas"]["cards"] if card["quota_type"] == "tpm")
    seven = next(window for window in card["windows"] if window["window"] == "7d")
    owner = "quota-tpm-coarse-7d"
    assert shown(page.values[(owner, "p90_5min")]) == seven["p90_5min"]
    assert shown(page.values[(owner, "max_5min")]) == seven["max_5min"]
    assert shown(page.values[(owner, "max_bound_5min")]) == seven["max_bound_5min"]
    assert ("quota-tpm-coarse-1d", "p90_5min") not in page.values
    # Tag groups: the busiest minute of a group inside the 5-minute data is bracketed too, as tag_attribution says.
    tags = {
        (row["window"], row["tag_value"]): row
        for row in mart_rows(connection, "select * from tag_attribution where endpoint = ?", SONNET_4)
    }
    (team,) = report["tags"]
    for window in team["windows"]:
        for row in window["rows"]:
            mart = tags[(window["window"], row["tag_value"])]
            assert (row["peak_tpm"], row["peak_tpm_5min"]) == (
                rounded(mart["peak_tpm"], 0),
                rounded(mart["peak_tpm_5min"]),
            )
            assert row["peak_tpm_bound_5min"] == rounded(mart["peak_tpm_bound_5min"], 0)
    direct_7d = next(row for row in team["windows"][2]["rows"] if row["tag_value"] == "(direct)")
    assert direct_7d["peak_tpm_5min"] is not None
    shown_rows = [
        cells
        for attrs, cells in page.rows("tags-0")
        if attrs["data-window"] == "7d" and cells["tag_value"] == "(direct)"
    ]
    low, high = shown_rows[0]["peak_tpm_bracket_5min"].split(" ≤ peak ≤ ")
    assert (shown(low), shown(high)) == (direct_7d["peak_tpm_5min"], direct_7d["peak_tpm_bound_5min"])
    assert all(
        cells["peak_tpm_bracket_5min"] == "—"
        for attrs, cells in page.rows("tags-0")
        if attrs["data-window"] in ("1h", "1d")
    )

    # A region read at 1 minute for all 30 days: no note, no coarse column anywhere.
    eu_page, eu_report = page_of(files, "eu-west-1", COVERAGE_EU_MODEL)
    assert all(stats["coverage"]["fully_covered_1min"] for stats in eu_report["stats"])
    assert not any(owner.startswith(("coverage-note-", "quota-")) for owner, _col in eu_page.values)
    assert all("p90_5min" not in table["cols"] for table in eu_page.tables.values())

    # The index flags the endpoint whose summary window is only partly read at 1 minute.
    index = json.loads((out_dir / "index.json").read_text(encoding="utf-8"))
    flags = {(row["region"], row["endpoint"]): row["coverage"]["fully_covered_1min"] for row in index["endpoints"]}
    assert flags == {("us-east-1", SONNET_4): False, ("eu-west-1", COVERAGE_EU_MODEL): True}
    index_html = (out_dir / "index.html").read_text(encoding="utf-8")
    assert index_html.count('class="partial"') == 1


def test_a_throttled_five_minute_bucket_is_not_five_throttled_minutes(coverage_lake):
    connection, _out, files = coverage_lake
    page, report = page_of(files, "us-east-1", SONNET_4)
    seven = next(window for window in report["throttles"]["windows"] if window["window"] == "7d")
    # Spread over its minutes, the bucket would look like five more throttled minutes in the chart mart.
    spread = connection.execute(
        """
        select count(*) from endpoint_minute
        where endpoint = ? and throttles > 0 and ts >= ?::timestamp - interval 7 day
        """,
        [SONNET_4, AS_OF],
    ).fetchone()[0]
    assert spread == len(COVERAGE_THROTTLED_MINUTES) + 5
    assert seven["throttled_minutes"] == len(COVERAGE_THROTTLED_MINUTES)
    assert seven["throttled_buckets_5min"] == 1
    assert seven["throttles"] == 3 * len(COVERAGE_THROTTLED_MINUTES) + 7
    assert shown(page.values[("throttle-summary-7d", "throttled_minutes")]) == len(COVERAGE_THROTTLED_MINUTES)
    assert shown(page.values[("throttle-summary-7d", "throttled_buckets_5min")]) == 1
    # The same count as the marts, on the page, in the summary and in the quota card.
    (marts,) = connection.execute(
        "select count(*) from throttle_minutes where endpoint = ? and ts >= ?::timestamp - interval 7 day",
        [SONNET_4, AS_OF],
    ).fetchone()
    assert report["summary"]["throttled_minutes"] == marts == len(COVERAGE_THROTTLED_MINUTES)
    card = next(card for card in report["quotas"]["cards"] if card["quota_type"] == "tpm")
    assert next(w for w in card["windows"] if w["window"] == "7d")["throttled_minutes"] == marts
    # The most throttled minutes are minutes: none of them is a share of the bucket.
    worst = report["throttles"]["worst_minutes"]
    assert [row["throttles"] for row in worst] == [3] * len(COVERAGE_THROTTLED_MINUTES)

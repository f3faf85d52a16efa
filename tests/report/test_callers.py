"""The Callers section of an endpoint page, on a lake with invocation logs built by the real models: its numbers
against the logged calls of the fixture and the metrics, the HTML against the JSON, and the sentence a page shows
when the warehouse holds no caller data."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import timedelta
from typing import Any

import duckdb
import numpy as np
import pytest

from pipelines.report import PAGE_BYTES_TARGET
from pipelines.report.charts import CALLER_CHARTS, decode_block
from pipelines.report.queries import CALLER_ROWS

from .report_fixtures import (
    AS_OF,
    CALLER_BATCH_ROLES,
    CALLER_LOGS_FROM,
    CALLER_LOGS_TO,
    CALLER_THROTTLED,
    CALLER_UNLOGGED_MODEL,
    COVERAGE_THROTTLED_BUCKET_DAYS,
    Call,
)
from .test_report import Page

WINDOWS = {"1h": 60, "1d": 1440, "7d": 10080, "14d": 20160, "30d": 43200}
SONNET_4 = "anthropic.claude-sonnet-4-20250514-v1:0"


def _page(files, region: str, endpoint: str):
    file = next(file for file in files if file.region == region and file.endpoint == endpoint)
    return file, json.loads(file.json_path.read_text(encoding="utf-8"))


def _iso(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _in_window(calls: list[Call], window: str) -> list[Call]:
    # A window holds the minutes as_of - W <= ts < as_of.
    return [call for call in calls if 1 <= call.minutes_before <= WINDOWS[window]]


def _metric_tokens(connection: duckdb.DuckDBPyConnection, window: str) -> int:
    """The endpoint's tokens in the window by the metrics (every resolution): what the shares are of."""
    (total,) = connection.execute(
        """
        select total from window_stats
        where endpoint = ? and series_id = '*' and metric = 'tpm' and "window" = ?
        """,
        [SONNET_4, window],
    ).fetchone()
    return int(total)


def _by_principal(calls: list[Call]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"tokens": 0, "requests": 0, "minutes": defaultdict(int), "sessions": defaultdict(int)}
    )
    for call in calls:
        held = found[call.principal]
        held["tokens"] += call.tokens
        held["requests"] += call.requests
        held["minutes"][call.minutes_before] += call.tokens
        if call.session is not None:
            held["sessions"][call.session] += call.tokens
    return found


def test_the_top_callers_are_the_logged_calls_with_the_rest_of_the_metrics_as_its_own_row(caller_lake):
    connection, calls, _out, files = caller_lake
    file, report = _page(files, "us-east-1", SONNET_4)
    callers = report["callers"]
    assert callers["status"] == "ok" and callers["dimension"] == "principal"
    # The first logged minute to the end of the last one.
    newest, oldest = min(call.minutes_before for call in calls), max(call.minutes_before for call in calls)
    assert oldest == CALLER_LOGS_FROM and newest >= CALLER_LOGS_TO
    assert callers["logged_from"] == _iso(AS_OF - timedelta(minutes=oldest))
    assert callers["logged_to"] == _iso(AS_OF - timedelta(minutes=newest - 1))
    page = Page(file.html_path.read_text(encoding="utf-8"))
    assert "callers" in page.sections
    for window in callers["windows"]:
        name = window["window"]
        logged = _by_principal(_in_window(calls, name))
        whole = _metric_tokens(connection, name)
        ranked = sorted(logged, key=lambda principal: (-logged[principal]["tokens"], principal))
        assert window["callers"] == len(logged)
        rows = window["rows"]
        shown = min(len(logged), CALLER_ROWS)
        rest = ranked[shown:]
        assert [row["kind"] for row in rows] == ["caller"] * shown + ["other"] * bool(rest) + ["remainder"]
        for row, principal in zip(rows[:shown], ranked, strict=False):
            held = logged[principal]
            assert row["principal"] == principal
            assert (row["tokens"], row["requests"]) == (held["tokens"], held["requests"])
            assert row["share_pct"] == pytest.approx(100 * held["tokens"] / whole, abs=0.006)
            # The busiest minute: its tokens and, of equal minutes, the earliest.
            peak = max(held["minutes"].values())
            earliest = max(n for n, tokens in held["minutes"].items() if tokens == peak)
            assert row["peak_tpm"] == peak
            assert row["peak_minute"] == _iso(AS_OF - timedelta(minutes=earliest))
            if held["sessions"]:
                top = max(held["sessions"].values())
                assert row["top_session"] == min(s for s, tokens in held["sessions"].items() if tokens == top)
                assert row["sessions"] == len(held["sessions"])
                assert row["top_session_share_pct"] == pytest.approx(100 * top / held["tokens"], abs=0.006)
            else:
                assert row["top_session"] is None
        if rest:
            other = rows[shown]
            assert other["principal"] == f"other ({len(rest)} callers)"
            assert other["tokens"] == sum(logged[principal]["tokens"] for principal in rest)
            assert other["requests"] == sum(logged[principal]["requests"] for principal in rest)
            assert other["peak_tpm"] is None
        # What the metrics hold beyond the logs: the newest minutes not delivered yet, the days before logging.
        remainder = rows[-1]
        assert remainder["principal"] == "(not in logs)"
        assert remainder["tokens"] == whole - sum(held["tokens"] for held in logged.values()) > 0
        assert sum(row["share_pct"] for row in rows) == pytest.approx(100, abs=0.02)
        assert sum(row["share_requests_pct"] for row in rows) == pytest.approx(100, abs=0.02)
        assert sum(row["share_quota_tokens_pct"] for row in rows) == pytest.approx(100, abs=0.02)
        # The page shows the document's numbers, the remainder row labelled as such.
        table = page.tables[f"callers-{name}"]
        assert [cell[0] for cell in (row["cells"] for row in table["rows"])] == [row["principal"] for row in rows]
        assert table["rows"][-1]["attrs"]["class"] == "remainder"
        tokens_column = table["cols"].index("tokens")
        assert [r["cells"][tokens_column] for r in table["rows"]] == [f"{row['tokens']:,}" for row in rows]
    # Over the day every caller of the fixture called: more than a table shows.
    assert {window["window"]: window["callers"] for window in callers["windows"]}["1d"] == CALLER_BATCH_ROLES + 2
    # The logs cover the whole last day but its newest minutes; the longer windows also hold days before logging.
    remainders = {window["window"]: window["rows"][-1]["tokens"] for window in callers["windows"]}
    assert remainders["1h"] == remainders["1d"] < remainders["7d"]


def test_the_callers_of_throttled_minutes_are_those_active_in_them(caller_lake):
    _connection, calls, _out, files = caller_lake
    file, report = _page(files, "us-east-1", SONNET_4)
    throttled = {window["window"]: window for window in report["callers"]["throttled"]}
    in_throttled = [call for call in calls if call.minutes_before in CALLER_THROTTLED]
    whole = sum(call.tokens for call in in_throttled)
    day = throttled["1d"]
    assert day["throttled_minutes"] == len(CALLER_THROTTLED)
    expected = {}
    for principal in {call.principal for call in in_throttled}:
        mine = [call for call in in_throttled if call.principal == principal]
        expected[principal] = {
            "throttles": sum(call.throttles for call in mine),
            "throttled_minutes": len({call.minutes_before for call in mine}),
            "tokens_in_throttled_minutes": sum(call.tokens for call in mine),
            "share_in_throttled_minutes_pct": round(100 * sum(call.tokens for call in mine) / whole, 2),
        }
    got = {
        row["principal"]: {key: row[key] for key in expected[row["principal"]]}
        for row in day["rows"]
        if row["kind"] == "caller"
    }
    assert got == expected
    # user/alice called in both throttled minutes without being throttled herself.
    alice = next(row for row in day["rows"] if row["principal"] == "user/alice")
    assert (alice["throttles"], alice["throttled_minutes_pct"]) == (0, 100)
    # The throttled 5-minute bucket three days back is in the metrics only: its throttles are the remainder's.
    assert WINDOWS["1d"] < COVERAGE_THROTTLED_BUCKET_DAYS * 1440 < WINDOWS["7d"]
    week = throttled["7d"]
    remainder = next(row for row in week["rows"] if row["kind"] == "remainder")
    logged_throttles = sum(call.throttles for call in _in_window(calls, "7d"))
    assert remainder["throttles"] == week["throttles"] - logged_throttles > 0
    page = Page(file.html_path.read_text(encoding="utf-8"))
    table = page.tables["callers-throttled-1d"]
    assert [row["cells"][0] for row in table["rows"]] == [row["principal"] for row in day["rows"]]
    # The most throttled minutes name the principal with the most logged tokens in each.
    worst = {minute["ts"]: minute for minute in report["throttles"]["worst_minutes"]}
    for n in CALLER_THROTTLED:
        mine = [call for call in in_throttled if call.minutes_before == n]
        heaviest = max(mine, key=lambda call: call.tokens)
        minute = worst[_iso(AS_OF - timedelta(minutes=n))]
        assert (minute["top_caller"], minute["top_caller_tokens"]) == (heaviest.principal, heaviest.tokens)
        assert minute["top_caller_share_pct"] == round(100 * heaviest.tokens / sum(call.tokens for call in mine), 2)
    table = page.tables["throttle-minutes"]
    assert {row["cells"][7] for row in table["rows"]} == {minute["top_caller"] for minute in worst.values()}


def test_the_caller_chart_stacks_up_to_the_endpoint_tokens(caller_lake):
    connection, calls, _out, files = caller_lake
    _file, report = _page(files, "us-east-1", SONNET_4)
    charts = report["charts"]["callers"]["windows"]
    assert [(chart["window"], chart["bucket_minutes"]) for chart in charts] == list(CALLER_CHARTS)
    for chart in charts:
        bucket = chart["bucket_minutes"]
        lines = chart["lines"]
        assert [line["kind"] for line in lines][-2:] == ["other", "remainder"]
        stacked: dict[int, float] = defaultdict(float)
        per_line = {}
        for line in lines:
            times, values = decode_block(report["charts"]["blocks"][line["block"]])
            # Drawn as average tokens per minute of each bucket: times the bucket gives the bucket's tokens.
            per_line[line["label"]] = round(sum(values) * bucket)
            for moment, value in zip(times, values, strict=True):
                stacked[moment] += value * bucket
        window_calls = _in_window(calls, chart["window"])
        for line in lines:
            if line["kind"] != "remainder":
                mine = [call for call in window_calls if call.principal in line["principals"]]
                assert per_line[line["label"]] == sum(call.tokens for call in mine), line["label"]
        endpoint = dict(
            connection.execute(
                """
                select epoch_ms(ts) // ? * ?, sum(tpm) from endpoint_minute
                where endpoint = ? and ts >= ? and ts < ? group by all
                """,
                [
                    bucket * 60_000,
                    bucket * 60_000,
                    SONNET_4,
                    AS_OF - timedelta(minutes=WINDOWS[chart["window"]]),
                    AS_OF,
                ],
            ).fetchall()
        )
        for moment, tokens in endpoint.items():
            assert stacked[moment] == pytest.approx(float(tokens), abs=0.5), moment
        assert np.isclose(sum(stacked.values()), float(sum(endpoint.values())), atol=1)


def test_a_page_without_caller_data_says_how_to_get_it(caller_lake, rendered):
    _connection, _calls, _out, files = caller_lake
    # eu-west-1 has no invocation logs at all.
    file, report = _page(files, "eu-west-1", "anthropic.claude-3-5-haiku-20241022-v1:0")
    assert report["callers"]["status"] == "no_logs" and report["callers"]["windows"] == []
    assert report["charts"]["callers"]["windows"] == []
    page = Page(file.html_path.read_text(encoding="utf-8"))
    text = file.html_path.read_text(encoding="utf-8")
    assert 'id="callers-off"' in text and "buw analyze --breakdown principal" in text and "invocation_logs" in text
    assert not [name for name in page.tables if name.startswith("callers")]
    assert "chart-callers" not in text
    assert all(minute["top_caller"] is None for minute in report["throttles"]["worst_minutes"])
    # The logs of us-east-1 never name this endpoint: the page says so rather than how to turn logging on.
    file, report = _page(files, "us-east-1", CALLER_UNLOGGED_MODEL)
    assert report["callers"]["status"] == "no_calls"
    text = file.html_path.read_text(encoding="utf-8")
    assert 'id="callers-none"' in text and 'id="callers-off"' not in text
    # A warehouse built before the caller marts existed renders the sentence too.
    _out_dir, small = rendered
    for file in small:
        if file.kind == "endpoint":
            text = file.html_path.read_text(encoding="utf-8")
            assert 'id="callers-off"' in text


def test_the_callers_section_keeps_the_page_small(caller_lake):
    _connection, _calls, _out, files = caller_lake
    file, report = _page(files, "us-east-1", SONNET_4)
    # Two stacked charts of at most nine lines, at 5-minute and hourly buckets: a few tens of kilobytes.
    blocks = report["charts"]["blocks"]
    size = sum(len(run["bdata"]) for key in blocks if key.startswith("callers|") for run in blocks[key]["values"])
    assert 0 < size < 60_000
    assert file.html_bytes < PAGE_BYTES_TARGET

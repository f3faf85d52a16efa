"""End to end through the CLI: `buw demo` on the sandbox, then `buw sql`, `buw report`, the browser, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from tests.cli_env import ROOT, isolated_env, run_buw

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("e2e-demo")]

AS_OF = "2026-11-20T12:00:00Z"
THROTTLED = ("us-east-1", "us.anthropic.claude-sonnet-4-5-20250929-v1:0")
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    env = isolated_env(root)
    result = run_buw("demo", "--as-of", AS_OF, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, env, result.stdout


def _connect(root: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(root / "warehouse" / "usage.duckdb"), read_only=True)


def test_demo_prints_the_index_and_a_summary(demo):
    root, _, stdout = demo
    assert f"Report index: {root / 'reports' / 'index.html'}" in stdout
    assert THROTTLED[1] in stdout
    assert (root / "reports" / "index.html").exists()


def test_every_endpoint_with_usage_has_an_html_and_json_report_under_1_mb(demo):
    root, _, _ = demo
    with _connect(root) as connection:
        endpoints = connection.execute("select distinct region, endpoint from endpoint_minute").fetchall()
    assert len(endpoints) >= 6
    index = json.loads((root / "reports" / "index.json").read_text())
    listed = json.dumps(index)
    for region, endpoint in endpoints:
        pages = list((root / "reports" / region).glob("*.html"))
        assert endpoint in listed
        assert pages
    pages = [page for page in (root / "reports").glob("*/*.html")]
    for page in pages:
        # plotly.js is one shared file, so a page is its tables and chart data only.
        assert page.stat().st_size < 1_000_000, page
        assert page.with_suffix(".json").exists()
    assets = list((root / "reports" / "assets").glob("plotly-*.min.js"))
    assert len(assets) == 1 and assets[0].stat().st_size > 4_000_000
    sizes = sorted(page.stat().st_size for page in pages)
    print(f"demo pages: {len(pages)}, largest {sizes[-1]:,} bytes, all {sum(sizes):,} bytes + plotly.js once")


def test_headroom_shows_for_every_endpoint_that_has_a_quota(demo):
    root, _, _ = demo
    with _connect(root) as connection:
        missing = connection.execute(
            """
            select distinct m.region, m.endpoint
            from endpoint_minute as m
            join quota_map as q on q.region = m.region and q.endpoint = m.endpoint and q.quota_type = 'tpm'
            anti join quota_headroom as h
                on h.region = m.region and h.endpoint = m.endpoint and h.quota_type = 'tpm'
            """
        ).fetchall()
    assert missing == []


def test_the_headroom_check_fires_on_the_throttled_endpoint_and_no_other(demo):
    root, _env, _ = demo
    from pipelines.quotas.checks import check_tpm_headroom

    with _connect(root) as connection:
        outcome = check_tpm_headroom(connection)
    assert not outcome.passed
    flagged = json.dumps(outcome.metadata, default=str)
    assert THROTTLED[1] in flagged
    with _connect(root) as connection:
        others = connection.execute("select distinct endpoint from endpoint_minute where endpoint <> ?", [THROTTLED[1]])
        for (endpoint,) in others.fetchall():
            assert f'"{endpoint}"' not in flagged, endpoint


def test_buw_sql_reads_the_marts(demo):
    _, env, _ = demo
    result = run_buw(
        "sql",
        "select count(*) as n from window_stats where series_id = '*' and metric = 'tpm'",
        "--format",
        "json",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["n"] > 0


def test_buw_report_rerenders_without_aws(demo):
    root, env, _ = demo
    page = next((root / "reports" / THROTTLED[0]).glob("us.anthropic.claude-sonnet-4-5*.html"))
    before = page.read_bytes()
    page.unlink()
    offline = {**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}  # nothing listens: any AWS call would fail
    result = run_buw("report", env=offline)
    assert result.returncode == 0, result.stderr
    assert page.read_bytes() == before


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)")
def test_every_demo_report_renders_in_chromium_without_errors(demo):
    from playwright.sync_api import sync_playwright

    from pipelines.report import safe_filename

    root, _, _ = demo
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    pages = [*sorted((root / "reports").glob("*/*.html")), root / "reports" / "index.html"]
    shot = False
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        for path in pages:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("console", lambda message, errors=errors: message.type == "error" and errors.append(message.text))
            page.on("pageerror", lambda error, errors=errors: errors.append(str(error)))
            page.goto(path.as_uri())
            page.wait_for_load_state("load")
            page.wait_for_function(
                "Array.from(document.querySelectorAll('.js-chart')).every(n => n.querySelector('.main-svg'))",
                timeout=30_000,
            )
            plots = page.locator(".js-plotly-plot")
            assert plots.count() == page.locator(".js-chart").count() > 0, path.name
            if path.name == "index.html":
                # The quota overview: one heatmap per quota type.
                assert page.locator("#overview .js-plotly-plot .hm").count() == 3
            assert errors == [], (path.name, errors)
            if path.name.startswith(safe_filename(THROTTLED[1])):
                page.screenshot(path=str(artifacts / "demo-throttled-endpoint.png"), full_page=True)
                shot = True
            page.close()
        browser.close()
    assert shot, "the throttled endpoint's page was not among the demo reports"


def test_a_corrupt_lake_file_is_named_and_loses_nothing(demo, tmp_path):
    root, env, _ = demo
    with _connect(root) as connection:
        before = connection.execute("select count(*) from usage_minute").fetchone()[0]
    victim = sorted((root / "warehouse" / "lake" / "metric_points").glob("region=us-west-2/date=*/data.parquet"))[0]
    saved = victim.read_bytes()
    victim.write_bytes(b"this is not parquet")
    try:
        result = run_buw("report", "--as-of", "2026-11-20T12:05:00Z", env=env)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert str(victim) in result.stderr
    finally:
        victim.write_bytes(saved)
    with _connect(root) as connection:
        assert connection.execute("select count(*) from usage_minute").fetchone()[0] == before


def test_cli_runs_show_in_the_dagster_instance(demo):
    """The demo is one run in DAGSTER_HOME, where `dagster dev` reads it: every day and every asset."""
    import dagster as dg

    root, _, _ = demo
    with dg.DagsterInstance.from_config(str(root / "dagster")) as instance:
        partitions = instance.get_materialized_partitions(dg.AssetKey("metric_points"))
        assert {"2026-10-21", "2026-11-20"} <= partitions and len(partitions) == 31
        for asset in ("foundation_models", "inference_profiles", "window_stats", "quota_headroom", "reports"):
            assert instance.get_latest_materialization_event(dg.AssetKey(asset)) is not None, asset
        # Other tests of this module add runs of their own (one fails on purpose); the demo's run succeeded.
        demo_runs = [run for run in instance.get_runs() if run.tags.get("buw/as_of", "").startswith("2026-11-20T12:00")]
        assert demo_runs and all(run.status == dg.DagsterRunStatus.SUCCESS for run in demo_runs)


def test_materializing_only_the_reports_uses_the_as_of_the_marts_were_built_for(demo, tmp_path):
    """In the UI a user may materialise `reports` alone, long after the models ran."""
    import dagster as dg

    from pipelines.assets.report import reports
    from pipelines.resources import WarehouseResource

    root, _, _ = demo
    warehouse = WarehouseResource(warehouse_dir=str(root / "warehouse"), reports_dir=str(tmp_path / "out"))
    with dg.instance_for_test() as instance:
        result = dg.materialize([reports], resources={"warehouse": warehouse}, instance=instance)
        assert result.success
    assert (tmp_path / "out" / "index.html").exists()
    assert any(page.name.endswith("-20261120T1200Z.html") for page in (tmp_path / "out").glob("*/*.html"))

"""One execution path: the CLI, Dagster's own CLI, the schedule with the automation, and a UI backfill all run
the same assets as real Dagster runs, and end in the same warehouse."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipelines import lake as lake_io
from pipelines.sandbox.server import SandboxServer
from tests.cli_env import ROOT, isolated_env, run_buw

pytestmark = pytest.mark.integration
# The tests that compare with the module's `buw analyze` run share a worker, so that the run is made once.
ONE_PATH = pytest.mark.xdist_group("one-path")

T = datetime(2026, 11, 20, 12, 0)
AS_OF = T - timedelta(minutes=5)  # AWS's clock less the default lag
REGION = "us-east-1"
FIRST_DAY = "2026-10-21"
LAST_DAY = "2026-11-20"
EXTRACT = ("foundation_models", "inference_profiles", "profile_tags", "service_quotas")
ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@pytest.fixture(scope="module")
def sandbox():
    with SandboxServer("demo", seed=0, now=T.replace(tzinfo=UTC)) as server:
        yield server


def environment(root: Path, sandbox) -> dict[str, str]:
    env = isolated_env(root)
    env.update(
        {
            "AWS_ENDPOINT_URL": sandbox.endpoint_url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": REGION,
            "BUW_REGIONS": REGION,
        }
    )
    return env


def instance_at(home: Path) -> dg.DagsterInstance:
    from dagster._core.instance.ref import InstanceRef

    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))


def marts(database: Path) -> dict[str, list[tuple]]:
    """Every table of the warehouse, rows sorted; without the run's own id and the wall-clock time of a read."""
    with duckdb.connect(str(database), read_only=True) as connection:
        names = [row[0] for row in connection.execute("select table_name from duckdb_tables() order by 1").fetchall()]
        tables = {}
        for name in names:
            columns = [
                row[0]
                for row in connection.execute(f'describe "{name}"').fetchall()
                if row[0] not in ("run_id", "fetched_at")
            ]
            projection = ", ".join(f'"{column}"' for column in columns)
            tables[name] = sorted(
                connection.execute(f'select {projection} from "{name}"').fetchall(), key=lambda row: repr(row)
            )
    return tables


def lake_rows(lake: Path) -> dict:
    return {
        (partition.dataset, partition.region, partition.day): lake_io.read_partition(lake, partition).drop_columns(
            ["fetched_at"]
        )
        for dataset in ("metric_points", "metric_coverage")
        for partition in lake_io.partitions(lake, dataset)
    }


@pytest.fixture(scope="module")
def analyzed(sandbox, tmp_path_factory):
    """`buw analyze -r us-east-1 -y` on a fresh warehouse, as a user runs it."""
    root = tmp_path_factory.mktemp("analyze")
    env = environment(root, sandbox)
    result = run_buw("analyze", "-r", REGION, "-y", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, env, result.stdout


@ONE_PATH
def test_analyze_is_one_real_dagster_run_with_materializations_and_checks(analyzed):
    root, _, stdout = analyzed
    assert "metrics requested" in stdout
    with instance_at(root / "dagster") as instance:
        runs = instance.get_runs()
        assert len(runs) == 1
        run = runs[0]
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["dagster/asset_partition_range_start"] == FIRST_DAY
        assert run.tags["dagster/asset_partition_range_end"] == LAST_DAY
        records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
        materialized = {}
        for record in records:
            event = record.event_log_entry.dagster_event
            materialized.setdefault(event.asset_key.to_user_string(), []).append(event.partition)
        assert len(materialized["metric_points"]) == 31
        assert set(EXTRACT) <= set(materialized)
        assert {"window_stats", "quota_headroom", "extract_runs", "reports"} <= set(materialized)
        checks = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
        names = {record.event_log_entry.dagster_event.event_specific_data.check_name for record in checks}
        assert {"no_duplicate_points", "aggregate_equals_sum_of_series"} <= names
        # Nothing is recorded outside a run: every materialization in the instance belongs to this run.
        every = instance.fetch_materializations(dg.AssetKey("metric_points"), limit=1000).records
        assert {record.run_id for record in every} == {run.run_id}


def test_dagster_own_cli_materializes_a_range_in_one_run_in_the_ui_instance(sandbox, tmp_path):
    env = environment(tmp_path, sandbox)
    printed = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "env"], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout
    shell = f'{printed}\ncd "{tmp_path}"\n"{sys.executable}" -m dagster asset materialize -m pipelines.definitions '
    shell += "--select metric_points --partition-range 2026-11-18...2026-11-19"
    # From a fresh shell in another directory: only what `buw env` printed tells Dagster where things are.
    fresh = {key: value for key, value in env.items() if not key.startswith(("DAGSTER_", "BUW_WAREHOUSE"))}
    fresh["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(["bash", "-c", shell], env=fresh, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    with instance_at(tmp_path / "dagster") as instance:
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS
        partitions = {
            record.partition_key
            for record in instance.fetch_materializations(dg.AssetKey("metric_points"), limit=10).records
        }
    assert partitions == {"2026-11-18", "2026-11-19"}
    days = {p.day.isoformat() for p in lake_io.partitions(tmp_path / "warehouse" / "lake", "metric_points")}
    assert days == {"2026-11-18", "2026-11-19"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _graphql(url: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    assert "errors" not in answer, answer
    return answer["data"]


# `dagster-daemon run`, its backfill daemon looking for work every 2 s instead of every 30: a constant of Dagster's
# (no dagster.yaml setting), which this backfill would wait on twice, to launch its run and then to mark itself
# done so that the automation may rebuild the marts after it.
DAGSTER_DAEMON = """
import sys
import dagster._daemon.controller as controller
from dagster._daemon.cli import main

assert controller.DEFAULT_DAEMON_INTERVAL_SECONDS == 30, "Dagster changed its daemon interval: revisit this test"
controller.DEFAULT_DAEMON_INTERVAL_SECONDS = 2
sys.argv[0] = "dagster-daemon"
sys.exit(main())
"""

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""


@ONE_PATH
@pytest.mark.timeout(1200)
def test_a_ui_backfill_ends_in_the_same_warehouse_as_analyze(analyzed, sandbox, tmp_path):
    """The UI's way: a backfill of the extract assets over 31 days, the daemon running it, the automation
    rebuilding marts and reports after it."""
    analyze_root, _, _ = analyzed
    env = environment(tmp_path, sandbox)
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n"
        "auto_materialize:\n  minimum_interval_seconds: 5\n"
    )
    port = _free_port()
    workspace = str(ROOT / "workspace.yaml")
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "dagster_webserver", "-w", workspace, "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [sys.executable, "-c", DAGSTER_DAEMON, "run", "-w", workspace],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "dagster-webserver did not start"
                time.sleep(1)
        days = [(datetime(2026, 10, 21) + timedelta(days=n)).date().isoformat() for n in range(31)]
        launched = _graphql(
            url,
            LAUNCH_BACKFILL,
            {
                "params": {
                    "assetSelection": [{"path": ["metric_points"]}] + [{"path": [name]} for name in EXTRACT],
                    "partitionNames": days,
                    "fromFailure": False,
                }
            },
        )["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        with instance_at(home) as instance:
            deadline = time.monotonic() + 600
            while True:
                points = instance.fetch_materializations(dg.AssetKey("metric_points"), limit=100).records
                reports = instance.fetch_materializations(dg.AssetKey("reports"), limit=1).records
                active = instance.get_runs(filters=dg.RunsFilter(statuses=ACTIVE))
                # Done once every day landed, the reports were rendered after the last of them, and nothing runs.
                if len(points) == 31 and reports and reports[0].storage_id > points[0].storage_id and not active:
                    break
                failed = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
                assert not failed, [
                    str(getattr(record.event_log_entry.dagster_event.event_specific_data, "error", ""))[-1500:]
                    for run in failed
                    for record in instance.get_records_for_run(run.run_id).records
                    if record.event_log_entry.dagster_event and record.event_log_entry.dagster_event.is_failure
                ]
                runs = [(run.run_id[:8], run.status.value) for run in instance.get_runs()]
                assert time.monotonic() < deadline, (
                    f"the backfill and the automation did not finish in time: {len(points)} days, "
                    f"reports {bool(reports)}, runs {runs}"
                )
                time.sleep(3)
            # 31 days, one run: the single-run backfill policy.
            assert len({record.run_id for record in points}) == 1
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    assert lake_rows(tmp_path / "warehouse" / "lake") == lake_rows(analyze_root / "warehouse" / "lake")
    from_ui = marts(tmp_path / "warehouse" / "usage.duckdb")
    from_cli = marts(analyze_root / "warehouse" / "usage.duckdb")
    # The caller marts read the opt-in invocation_logs asset, which neither path read: the CLI builds them empty,
    # the automation waits for their input to exist.
    only_cli = set(from_cli) - set(from_ui)
    assert only_cli <= {"stg_caller_minutes", "stg_principal_tags", "caller_minute", "caller_attribution"}
    assert all(from_cli[name] == [] for name in only_cli)
    assert from_ui == {name: rows for name, rows in from_cli.items() if name not in only_cli}


@ONE_PATH
def test_an_hourly_tick_then_the_automation_rebuild_marts_and_reports_at_the_new_as_of(analyzed, tmp_path, monkeypatch):
    """The scheduled path, step by step as the daemon takes it: the tick's run, then the automation's."""
    import shutil

    from pipelines.definitions import defs
    from pipelines.pipeline import pipeline_assets
    from pipelines.resources import AwsResource, WarehouseResource
    from pipelines.schedules import hourly_extract

    analyze_root, _, _ = analyzed
    for folder in ("warehouse", "dagster"):
        shutil.copytree(analyze_root / folder, tmp_path / folder)
    later = T + timedelta(hours=1)
    with SandboxServer("demo", seed=0, now=later.replace(tzinfo=UTC)) as own:
        for name, value in environment(tmp_path, own).items():
            monkeypatch.setenv(name, value)
        with instance_at(tmp_path / "dagster") as instance:
            resources = {"aws": AwsResource(), "warehouse": WarehouseResource()}
            with dg.build_schedule_context(
                instance=instance, scheduled_execution_time=later.replace(minute=2, tzinfo=UTC), resources=resources
            ) as ctx:
                requests = list(hourly_extract(ctx))
            assert [
                (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
                for r in requests
            ] == [(LAST_DAY, LAST_DAY)]
            # The automation sensor has been evaluating all along: its cursor predates the tick's run.
            evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance)
            assert evaluation.total_requested == 0
            job = defs.get_job_def("extract_job")
            tick_run = job.execute_in_process(instance=instance, tags=requests[0].tags)
            assert tick_run.success

            evaluation = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=evaluation.cursor)
            keys = [result.key for result in evaluation.results if result.true_subset.size > 0]
            names = {key.to_user_string() for key in keys}
            assert {"window_stats", "quota_headroom", "reports"} <= names
            assert not names & {"metric_points", *EXTRACT}
            rebuilt = dg.materialize(pipeline_assets(), selection=keys, instance=instance, resources=resources)
            assert rebuilt.success
            # Handled: a second evaluation asks for nothing more.
            again = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=evaluation.cursor)
            assert again.total_requested == 0

    new_as_of = later - timedelta(minutes=5)
    with duckdb.connect(str(tmp_path / "warehouse" / "usage.duckdb"), read_only=True) as connection:
        assert connection.execute("select distinct as_of from window_stats").fetchall() == [(new_as_of,)]
    index = json.loads((tmp_path / "reports" / "index.json").read_text())
    assert new_as_of.isoformat() in json.dumps(index)

"""Extract assets against the sandbox: what lands in the lake, what it costs, and that re-runs are safe."""

import math
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipelines import lake as lake_io
from pipelines.assets import extract
from pipelines.assets.extract import (
    ExtractError,
    extract_metrics_partition,
    foundation_models,
    inference_profiles_and_tags,
    metric_points,
    partitions_to_refresh,
    refresh_metrics,
    service_quotas,
)
from pipelines.aws.bedrock import list_inference_profiles
from pipelines.aws.cloudwatch import METRICS, list_model_ids
from pipelines.resources import AwsResource, WarehouseResource
from pipelines.sandbox.server import SandboxServer

pytestmark = pytest.mark.integration

AS_OF = datetime(2026, 11, 20, 12, 0)
ACCOUNT = "123456789012"  # the demo scenario's account
REGION = "us-east-1"


def resources(endpoint_url: str, warehouse: Path, as_of: datetime = AS_OF) -> dict:
    return {
        "aws": AwsResource(regions=[REGION], endpoint_url=endpoint_url),
        "warehouse": WarehouseResource(warehouse_dir=str(warehouse), as_of=as_of.isoformat() + "Z"),
    }


def materialize_day(endpoint_url: str, warehouse: Path, day: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [metric_points],
        partition_key=f"{day}|{REGION}",
        resources=resources(endpoint_url, warehouse),
        instance=dg.DagsterInstance.ephemeral(),
    )


def without_fetched_at(table: pa.Table) -> pa.Table:
    return table.drop_columns(["fetched_at"])


def lake_contents(lake: Path) -> dict[tuple[str, str, date], pa.Table]:
    """Every partition of the metric datasets, fetched_at left out (it records when, not what)."""
    return {
        (partition.dataset, partition.region, partition.day): without_fetched_at(
            lake_io.read_partition(lake, partition)
        )
        for dataset in ("metric_points", "metric_coverage")
        for partition in lake_io.partitions(lake, dataset)
    }


@pytest.fixture
def own_sandbox(aws_env):
    """A private demo sandbox whose clock and stats this test may move and read."""
    with SandboxServer("demo", seed=0, now=AS_OF) as server:
        yield server


def test_a_day_partition_lands_in_the_lake_with_its_cost(aws_env, sandbox, tmp_path):
    result = materialize_day(sandbox.endpoint_url, tmp_path, "2026-11-19")
    assert result.success
    metadata = result.asset_materializations_for_node("metric_points")[0].metadata

    table = lake_io.read_partition(tmp_path / "lake", lake_io.Partition("metric_points", REGION, date(2026, 11, 19)))
    assert table.num_rows == metadata["rows"].value > 0
    assert set(table["period_s"].to_pylist()) == {60}
    assert pc.min(table["ts"]).as_py() >= datetime(2026, 11, 19)
    assert pc.max(table["ts"]).as_py() < datetime(2026, 11, 20)
    assert set(zip(table["metric"].to_pylist(), table["stat"].to_pylist(), strict=True)) <= {
        (spec.metric, spec.stat) for spec in METRICS
    }
    assert set(table["account_id"].to_pylist()) == {ACCOUNT}

    # Each (ModelId, metric, stat) is requested once, packed 70 queries a call for a day of minutes.
    queries = metadata["model_ids"].value * len(METRICS)
    assert metadata["metrics_requested"].value == queries
    assert metadata["calls"].value == math.ceil(queries / 70)
    assert metadata["periods"].value == "60 s"
    assert "| model_id |" in metadata["preview"].value

    coverage = lake_io.read_partition(
        tmp_path / "lake", lake_io.Partition("metric_coverage", REGION, date(2026, 11, 19))
    )
    assert coverage.to_pylist()[0]["range_start"] == datetime(2026, 11, 19)
    assert coverage.to_pylist()[0]["range_end"] == datetime(2026, 11, 20)


def test_a_rerun_leaves_identical_content(aws_env, sandbox, tmp_path):
    partition = lake_io.Partition("metric_points", REGION, date(2026, 11, 19))
    assert materialize_day(sandbox.endpoint_url, tmp_path, "2026-11-19").success
    first = lake_io.read_partition(tmp_path / "lake", partition)
    assert materialize_day(sandbox.endpoint_url, tmp_path, "2026-11-19").success
    second = lake_io.read_partition(tmp_path / "lake", partition)
    assert without_fetched_at(second).equals(without_fetched_at(first))


def test_ten_repeated_runs_leave_the_same_rows(aws_env, sandbox, tmp_path):
    # A short morning keeps ten runs quick; the rule is the same for a whole day.
    as_of = datetime(2026, 11, 20, 1, 30)
    aws = AwsResource(regions=[REGION], endpoint_url=sandbox.endpoint_url)
    partition = lake_io.Partition("metric_points", REGION, date(2026, 11, 20))
    contents = []
    for _ in range(10):
        result = extract_metrics_partition(aws, tmp_path, REGION, partition.day, as_of, ACCOUNT)
        assert result.kept_rows == 0  # every row was read again and replaced, none piled up
        contents.append(without_fetched_at(lake_io.read_partition(tmp_path, partition)))
    assert contents[0].num_rows > 0
    assert all(table.equals(contents[0]) for table in contents[1:])
    keys = contents[-1].select(["model_id", "metric", "stat", "period_s", "ts"])
    assert keys.group_by(keys.column_names).aggregate([]).num_rows == keys.num_rows


def test_series_hidden_by_list_metrics_are_still_read(aws_env, sandbox, tmp_path, boto3_client):
    # legacy-chatbot stopped 20 days before the anchor: ListMetrics hides it, its profile still exists.
    profiles = list_inference_profiles(boto3_client("bedrock"), "APPLICATION")
    legacy = next(profile.profile_id for profile in profiles if profile.name == "legacy-chatbot")
    assert legacy not in list_model_ids(boto3_client("cloudwatch"))

    aws = AwsResource(regions=[REGION], endpoint_url=sandbox.endpoint_url)
    result = extract_metrics_partition(aws, tmp_path, REGION, date(2026, 10, 25), AS_OF, ACCOUNT)
    assert result.periods == (300,)  # 26 days old: 5-minute data only
    table = lake_io.read_partition(tmp_path, lake_io.Partition("metric_points", REGION, date(2026, 10, 25)))
    invocations = table.filter(pc.and_(pc.equal(table["model_id"], legacy), pc.equal(table["metric"], "Invocations")))
    assert pc.sum(invocations["value"]).as_py() > 0


def test_an_hour_later_only_today_is_read_and_only_new_minutes_are_added(own_sandbox, tmp_path):
    aws = AwsResource(regions=[REGION], endpoint_url=own_sandbox.endpoint_url)
    today = date(2026, 11, 20)
    held = {(REGION, today - timedelta(days=back)) for back in range(1, 31)}
    partition = lake_io.Partition("metric_points", REGION, today)
    extract_metrics_partition(aws, tmp_path, REGION, today, AS_OF, ACCOUNT)
    before = lake_io.read_partition(tmp_path, partition)

    own_sandbox.advance(timedelta(hours=1))
    own_sandbox.reset_stats()
    later = AS_OF + timedelta(hours=1)
    assert partitions_to_refresh(later, held, [REGION]) == [(REGION, today)]
    result = extract_metrics_partition(aws, tmp_path, REGION, today, later, ACCOUNT)
    after = lake_io.read_partition(tmp_path, partition)

    stats = own_sandbox.stats()
    assert stats["metrics_requested"] == result.stats.metrics_requested == len(result.model_ids) * len(METRICS)
    assert stats["calls"]["monitoring:GetMetricData"] == result.stats.calls
    assert [(r.start, r.end, r.period_s) for r in result.ranges] == [(datetime(2026, 11, 20), later, 60)]

    old_minutes = after.filter(pc.less(after["ts"], AS_OF))
    new_minutes = after.filter(pc.greater_equal(after["ts"], AS_OF))
    assert without_fetched_at(old_minutes).equals(without_fetched_at(before))
    assert new_minutes.num_rows > 0
    assert pc.max(new_minutes["ts"]).as_py() < later


def test_a_run_killed_halfway_then_rerun_equals_an_uninterrupted_run(aws_env, sandbox, tmp_path, monkeypatch):
    aws = AwsResource(regions=[REGION], endpoint_url=sandbox.endpoint_url)
    as_of = datetime(2026, 11, 20, 3, 0)
    uninterrupted = tmp_path / "uninterrupted"
    refresh_metrics(aws, uninterrupted, as_of, [REGION], ACCOUNT, days=1)

    interrupted = tmp_path / "interrupted"
    real_write = lake_io.write_partition
    writes = []

    def write_then_die(lake, partition, table):
        # Yesterday's points and coverage, then today's points: the run dies before today's coverage.
        if len(writes) == 3:
            raise KeyboardInterrupt("killed")
        writes.append(partition)
        return real_write(lake, partition, table)

    monkeypatch.setattr(extract.lake_io, "write_partition", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        refresh_metrics(aws, interrupted, as_of, [REGION], ACCOUNT, days=1)
    monkeypatch.setattr(extract.lake_io, "write_partition", real_write)
    assert [p.dataset for p in writes] == ["metric_points", "metric_coverage", "metric_points"]

    rerun = refresh_metrics(aws, interrupted, as_of, [REGION], ACCOUNT, days=1)
    assert [(result.day, result.region) for result in rerun] == [(date(2026, 11, 20), REGION)]
    expected, actual = lake_contents(uninterrupted), lake_contents(interrupted)
    assert expected.keys() == actual.keys()
    for key, table in expected.items():
        assert actual[key].equals(table), key


def test_a_failing_call_fails_the_partition_loudly_and_writes_nothing(aws_env, tmp_path):
    partition = lake_io.Partition("metric_points", REGION, date(2026, 11, 19))
    with SandboxServer("demo", seed=0, now=AS_OF, fault_rate=1.0, fault_kinds=["throttle"]) as faulty:
        aws = AwsResource(regions=[REGION], endpoint_url=faulty.endpoint_url, max_attempts=2)
        with pytest.raises(ExtractError) as raised:
            extract_metrics_partition(aws, tmp_path / "lake", REGION, date(2026, 11, 19), AS_OF, ACCOUNT)
        message = str(raised.value)
        assert REGION in message and "2026-11-19" in message
        # The first call of a partition (STS, for the account and AWS's clock) is the one that fails here.
        assert "GetCallerIdentity" in message and "ThrottlingException" in message
        assert not partition.path(tmp_path / "lake").exists()

        run = dg.materialize(
            [metric_points],
            partition_key=f"2026-11-19|{REGION}",
            resources={
                "aws": aws,
                "warehouse": WarehouseResource(warehouse_dir=str(tmp_path), as_of="2026-11-20T12:00Z"),
            },
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
    assert not run.success
    failure = next(event for event in run.all_events if event.is_step_failure)
    description = failure.step_failure_data.user_failure_data.description
    assert description.startswith(f"metric_points for {REGION} on 2026-11-19: ")
    assert "ThrottlingException" in description
    assert not partition.path(tmp_path / "lake").exists()


def test_snapshot_assets_write_profiles_tags_models_and_quotas(aws_env, sandbox, tmp_path):
    result = dg.materialize(
        [foundation_models, inference_profiles_and_tags, service_quotas],
        resources=resources(sandbox.endpoint_url, tmp_path),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    lake = tmp_path / "lake"
    today = AS_OF.date()

    def read(dataset):
        table = lake_io.read_partition(lake, lake_io.Partition(dataset, REGION, today))
        assert table is not None and table.num_rows > 0, dataset
        return table.to_pylist()

    profiles = read("inference_profiles")
    assert {row["type"] for row in profiles} == {"SYSTEM", "APPLICATION"}
    assert all(row["snapshot_at"] == AS_OF and row["model_arns"] for row in profiles)
    application = {row["profile_arn"] for row in profiles if row["type"] == "APPLICATION"}

    tags = read("profile_tags")
    assert {row["profile_arn"] for row in tags} <= application
    assert {"team", "project", "cost-center"} <= {row["key"] for row in tags}

    quotas = {row["quota_code"]: row for row in read("service_quotas")}
    raised = quotas["L-F4DDD3EB"]  # Sonnet 4.5 cross-region TPM: 800,000 applied over a 200,000 default
    assert (raised["value"], raised["default_value"], raised["applied_value"]) == (800_000, 200_000, 800_000)
    at_default = quotas["L-27C57EE8"]
    assert (at_default["value"], at_default["applied_value"]) == (1_000_000, None)

    models = read("foundation_models")
    assert "anthropic.claude-sonnet-4-5-20250929-v1:0" in {row["model_id"] for row in models}
    metadata = result.asset_materializations_for_node("inference_profiles_and_tags")
    assert {event.asset_key.to_user_string() for event in metadata} == {"inference_profiles", "profile_tags"}

    # Each snapshot records its rows as Dagster's row count (the Overview's "Row count") and its listing time in
    # the one UTC spelling the other assets use.
    for node in ("foundation_models", "inference_profiles_and_tags", "service_quotas"):
        for event in result.asset_materializations_for_node(node):
            dataset = event.asset_key.to_user_string()
            recorded = event.metadata
            assert recorded["dagster/row_count"].value == len(read(dataset)) > 0, dataset
            assert recorded["rows_by_region"].value == {REGION: len(read(dataset))}, dataset
            assert recorded["listed_at"].value == "2026-11-20T12:00:00Z", dataset

"""Extract assets against the sandbox: what lands in the lake, what it costs, and that re-runs are safe."""

from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipelines import extraction
from pipelines import lake as lake_io
from pipelines.assets.extract import (
    ExtractError,
    foundation_models,
    inference_profiles_and_tags,
    metric_points,
    service_quotas,
)
from pipelines.aws.bedrock import list_inference_profiles
from pipelines.aws.cloudwatch import list_metric_series, list_model_ids, queries_for
from pipelines.extraction import LATE_DATA, days_to_read, extract_metrics
from pipelines.resources import AwsResource, WarehouseResource
from pipelines.sandbox.server import SandboxServer

pytestmark = pytest.mark.integration

AS_OF = datetime(2026, 11, 20, 12, 0)
ACCOUNT = "123456789012"  # the demo scenario's account
REGION = "us-east-1"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def resources(endpoint_url: str, warehouse: Path, as_of: datetime = AS_OF) -> dict:
    return {
        "aws": AwsResource(regions=[REGION], endpoint_url=endpoint_url),
        "warehouse": WarehouseResource(warehouse_dir=str(warehouse), as_of=as_of.isoformat() + "Z"),
    }


def materialize_days(endpoint_url: str, warehouse: Path, first: str, last: str, **kwargs):
    return dg.materialize(
        [metric_points],
        tags={RANGE_START: first, RANGE_END: last},
        resources=resources(endpoint_url, warehouse),
        instance=dg.DagsterInstance.ephemeral(),
        **kwargs,
    )


def without_fetched_at(table: pa.Table) -> pa.Table:
    return table.drop_columns(["fetched_at"])


def lake_contents(lake: Path) -> dict:
    """Every partition of the metric datasets, fetched_at left out (it records when, not what)."""
    return {
        (partition.dataset, partition.region, partition.day): without_fetched_at(
            lake_io.read_partition(lake, partition)
        )
        for dataset in ("metric_points", "metric_coverage")
        for partition in lake_io.partitions(lake, dataset)
    }


def read_all(aws, lake: Path, as_of: datetime, now: datetime | None = None, **kwargs):
    days, _ = days_to_read(lake, as_of, [REGION])
    return extract_metrics(aws, lake, REGION, days[0], days[-1], as_of, ACCOUNT, now or as_of, **kwargs)


@pytest.fixture
def own_sandbox(aws_env):
    """A private demo sandbox whose clock and stats this test may move and read."""
    with SandboxServer("demo", seed=0, now=AS_OF) as server:
        yield server


def test_a_range_of_days_is_one_run_that_asks_for_each_listed_metric_once(aws_env, own_sandbox, tmp_path, boto3_client):
    own_sandbox.reset_stats()
    result = materialize_days(own_sandbox.endpoint_url, tmp_path, "2026-11-18", "2026-11-19")
    assert result.success
    events = result.asset_materializations_for_node("metric_points")
    assert sorted(event.partition for event in events) == ["2026-11-18", "2026-11-19"]
    metadata = events[0].metadata

    # Two days inside CloudWatch's 15 days of minutes: one tier, every listed (series, metric, statistic) once.
    listed = queries_for(list_metric_series(boto3_client("cloudwatch")))
    assert metadata["metrics_requested"].value == len(listed) == own_sandbox.stats()["metrics_requested"]
    assert metadata["periods"].value == "60 s"
    assert metadata["estimated_cost_usd"].value == pytest.approx(len(listed) * 0.01 / 1000)
    assert "| us-east-1 |" in metadata["reads"].value

    lake = tmp_path / "lake"
    for day in (date(2026, 11, 18), date(2026, 11, 19)):
        table = lake_io.read_partition(lake, lake_io.Partition("metric_points", REGION, day))
        assert table.num_rows > 0
        assert set(table["period_s"].to_pylist()) == {60}
        assert pc.min(table["ts"]).as_py() >= datetime.combine(day, datetime.min.time())
        assert pc.max(table["ts"]).as_py() < datetime.combine(day + timedelta(days=1), datetime.min.time())
        coverage = lake_io.read_partition(lake, lake_io.Partition("metric_coverage", REGION, day)).to_pylist()
        assert [(row["range_start"], row["range_end"]) for row in coverage] == [
            (datetime.combine(day, datetime.min.time()), datetime.combine(day + timedelta(days=1), datetime.min.time()))
        ]
    runs = lake_io.read_partition(lake, lake_io.Partition("extract_run_log", REGION, AS_OF.date())).to_pylist()
    assert [(row["run_id"], row["metrics_requested"]) for row in runs] == [(result.run_id, len(listed))]


def test_a_held_range_is_not_paid_for_again_and_a_forced_reread_changes_nothing(aws_env, own_sandbox, tmp_path):
    lake = tmp_path / "lake"
    assert materialize_days(own_sandbox.endpoint_url, tmp_path, "2026-11-19", "2026-11-19").success
    first = lake_contents(lake)
    own_sandbox.reset_stats()
    again = materialize_days(own_sandbox.endpoint_url, tmp_path, "2026-11-19", "2026-11-19")
    assert again.asset_materializations_for_node("metric_points")[0].metadata["metrics_requested"].value == 0
    assert own_sandbox.stats()["metrics_requested"] == 0
    aws = AwsResource(regions=[REGION], endpoint_url=own_sandbox.endpoint_url)
    extract_metrics(aws, lake, REGION, date(2026, 11, 19), date(2026, 11, 19), AS_OF, ACCOUNT, AS_OF, reread=True)
    assert lake_contents(lake) == first


def test_ten_repeated_rereads_leave_the_same_rows(aws_env, sandbox, tmp_path):
    # A short morning keeps ten runs quick; the rule is the same for a whole day.
    as_of = datetime(2026, 11, 20, 1, 30)
    aws = AwsResource(regions=[REGION], endpoint_url=sandbox.endpoint_url)
    partition = lake_io.Partition("metric_points", REGION, date(2026, 11, 20))
    contents = []
    for _ in range(10):
        extract_metrics(aws, tmp_path, REGION, partition.day, partition.day, as_of, ACCOUNT, AS_OF, reread=True)
        contents.append(without_fetched_at(lake_io.read_partition(tmp_path, partition)))
    assert contents[0].num_rows > 0
    assert all(table.equals(contents[0]) for table in contents[1:])
    keys = contents[-1].select(["model_id", "period_s", "ts"])
    assert keys.group_by(keys.column_names).aggregate([]).num_rows == keys.num_rows


def test_a_quiet_application_profile_is_still_read_where_listmetrics_no_longer_shows_it(
    aws_env, sandbox, tmp_path, boto3_client
):
    # legacy-chatbot stopped 20 days before the anchor: ListMetrics hides it, its profile still exists.
    profiles = list_inference_profiles(boto3_client("bedrock"), "APPLICATION")
    legacy = next(profile.profile_id for profile in profiles if profile.name == "legacy-chatbot")
    assert legacy not in list_model_ids(boto3_client("cloudwatch"))

    aws = AwsResource(regions=[REGION], endpoint_url=sandbox.endpoint_url)
    read = read_all(aws, tmp_path, AS_OF)
    assert read.periods == (60, 300)
    assert legacy in read.series
    table = lake_io.read_partition(tmp_path, lake_io.Partition("metric_points", REGION, date(2026, 10, 25)))
    invocations = table.filter(pc.and_(pc.equal(table["model_id"], legacy), pc.is_valid(table["invocations"])))
    assert pc.sum(invocations["invocations"]).as_py() > 0
    assert set(invocations["period_s"].to_pylist()) == {300}


def test_an_hour_later_only_the_new_minutes_of_recently_active_series_are_read(own_sandbox, tmp_path):
    aws = AwsResource(regions=[REGION], endpoint_url=own_sandbox.endpoint_url)
    today = date(2026, 11, 20)
    partition = lake_io.Partition("metric_points", REGION, today)
    read_all(aws, tmp_path, AS_OF)
    before = lake_io.read_partition(tmp_path, partition)

    own_sandbox.advance(timedelta(hours=1))
    later = AS_OF + timedelta(hours=1)
    recent = queries_for(list_metric_series(aws.client("cloudwatch", REGION), recently_active=True))
    own_sandbox.reset_stats()
    assert days_to_read(tmp_path, later, [REGION])[0] == [today]
    read = read_all(aws, tmp_path, later)
    after = lake_io.read_partition(tmp_path, partition)

    assert read.listing == "RecentlyActive=PT3H"
    assert [(r.start, r.end, r.period_s) for r in read.ranges] == [(AS_OF - LATE_DATA, later, 60)]
    stats = own_sandbox.stats()
    assert stats["metrics_requested"] == read.stats.metrics_requested == len(recent)
    assert stats["calls"]["monitoring:GetMetricData"] == read.stats.calls == 1

    old_minutes = after.filter(pc.less(after["ts"], AS_OF))
    new_minutes = after.filter(pc.greater_equal(after["ts"], AS_OF))
    assert without_fetched_at(old_minutes).equals(without_fetched_at(before))
    assert new_minutes.num_rows > 0
    assert pc.max(new_minutes["ts"]).as_py() < later


def test_a_narrowed_read_asks_only_for_its_series_and_a_full_run_completes_the_days(aws_env, own_sandbox, tmp_path):
    aws = AwsResource(regions=[REGION], endpoint_url=own_sandbox.endpoint_url)
    chosen = ["us.anthropic.claude-sonnet-4-5-20250929-v1:0"]
    narrowed = read_all(aws, tmp_path, AS_OF, series=chosen)
    assert narrowed.series == tuple(chosen)
    day = lake_io.read_partition(tmp_path, lake_io.Partition("metric_points", REGION, date(2026, 11, 19)))
    assert set(day["model_id"].to_pylist()) == set(chosen)

    # The days are not held for the whole region yet: a full run reads them and keeps the narrowed rows.
    assert days_to_read(tmp_path, AS_OF, [REGION])[0][0] == date(2026, 10, 21)
    full = read_all(aws, tmp_path, AS_OF)
    assert set(chosen) < set(full.series)
    reference = tmp_path / "reference"
    read_all(aws, reference, AS_OF)
    assert {k: v for k, v in lake_contents(tmp_path).items() if k[0] == "metric_points"} == {
        k: v for k, v in lake_contents(reference).items() if k[0] == "metric_points"
    }


def test_a_run_killed_halfway_then_rerun_equals_an_uninterrupted_run(aws_env, sandbox, tmp_path, monkeypatch):
    aws = AwsResource(regions=[REGION], endpoint_url=sandbox.endpoint_url)
    as_of = datetime(2026, 11, 20, 3, 0)
    uninterrupted = tmp_path / "uninterrupted"
    extract_metrics(aws, uninterrupted, REGION, date(2026, 11, 18), date(2026, 11, 20), as_of, ACCOUNT, AS_OF)

    interrupted = tmp_path / "interrupted"
    real_write = lake_io.write_partition
    writes = []

    def write_then_die(lake, partition, table):
        # The first day's points and coverage, then the second day's points: the run dies before its coverage.
        if len(writes) == 3:
            raise KeyboardInterrupt("killed")
        writes.append(partition)
        return real_write(lake, partition, table)

    monkeypatch.setattr(extraction.lake_io, "write_partition", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        extract_metrics(aws, interrupted, REGION, date(2026, 11, 18), date(2026, 11, 20), as_of, ACCOUNT, AS_OF)
    monkeypatch.setattr(extraction.lake_io, "write_partition", real_write)
    assert [p.dataset for p in writes] == ["metric_points", "metric_coverage", "metric_points"]

    wanted, _ = days_to_read(interrupted, as_of, [REGION], days=2)
    assert wanted == [date(2026, 11, 19), date(2026, 11, 20)]
    extract_metrics(aws, interrupted, REGION, wanted[0], wanted[-1], as_of, ACCOUNT, AS_OF)
    assert lake_contents(interrupted) == lake_contents(uninterrupted)


def test_a_failing_call_fails_the_run_loudly_and_writes_nothing(aws_env, tmp_path):
    partition = lake_io.Partition("metric_points", REGION, date(2026, 11, 19))
    with SandboxServer("demo", seed=0, now=AS_OF, fault_rate=1.0, fault_kinds=["throttle"]) as faulty:
        aws = AwsResource(regions=[REGION], endpoint_url=faulty.endpoint_url, max_attempts=2)
        with pytest.raises(ExtractError) as raised:
            extract_metrics(
                aws, tmp_path / "lake", REGION, date(2026, 11, 19), date(2026, 11, 19), AS_OF, ACCOUNT, AS_OF
            )
        message = str(raised.value)
        assert REGION in message and "2026-11-19" in message
        assert "ListMetrics" in message and "ThrottlingException" in message
        assert not partition.path(tmp_path / "lake").exists()

        run = dg.materialize(
            [metric_points],
            tags={RANGE_START: "2026-11-19", RANGE_END: "2026-11-19"},
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
    # The first call of a run (STS, for the account and AWS's clock) is the one that fails here.
    assert description.startswith("metric_points: reading the account id: ")
    assert "ThrottlingException" in description
    assert not partition.path(tmp_path / "lake").exists()


def test_days_cloudwatch_cannot_answer_for_are_refused_with_a_sentence(aws_env, sandbox, tmp_path):
    # The sandbox's clock is pinned at AS_OF: the days after it are in the partition space (this machine's
    # clock) but CloudWatch has nothing for them yet.
    first, last = (AS_OF + timedelta(days=2)).date().isoformat(), (AS_OF + timedelta(days=3)).date().isoformat()
    run = materialize_days(sandbox.endpoint_url, tmp_path, first, last, raise_on_error=False)
    assert not run.success
    failure = next(event for event in run.all_events if event.is_step_failure)
    description = failure.step_failure_data.user_failure_data.description
    assert description.startswith(f"metric_points {first}…{last} cannot be read: CloudWatch answers for ")
    assert description.endswith("to 2026-11-20 (UTC) only; pick days in that range.")
    assert not (tmp_path / "lake" / "metric_points").exists()


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

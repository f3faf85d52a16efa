"""The code location loads and holds every asset, check, job and schedule the UI must list."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from pipelines.definitions import defs

MARTS = (
    "endpoints",
    "usage_minute",
    "endpoint_minute",
    "window_stats",
    "tpd_daily",
    "tag_attribution",
    "throttle_attribution",
)
RAW = ("metric_points", "inference_profiles", "profile_tags", "foundation_models", "service_quotas")


def _asset_graph():
    return defs.resolve_asset_graph()


def test_every_raw_dataset_mart_and_report_is_an_asset():
    keys = {key.to_user_string() for key in _asset_graph().get_all_asset_keys()}
    assert set(RAW) <= keys
    assert set(MARTS) <= keys
    assert "reports" in keys


def test_assets_are_grouped_and_carry_kinds():
    graph = _asset_graph()
    groups = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        groups.setdefault(node.group_name, set()).add(key.to_user_string())
        assert node.kinds, f"{key.to_user_string()} has no kinds"
    assert set(RAW) <= groups["extract"]
    assert set(MARTS) <= groups["models"]
    assert groups["report"] == {"reports"}


def test_marts_depend_on_their_staging_models_and_the_raw_data():
    graph = _asset_graph()
    upstream = graph.get(dg.AssetKey("usage_minute")).parent_keys
    assert any(key.to_user_string().startswith("stg_") for key in upstream)
    report_parents = {key.to_user_string() for key in graph.get(dg.AssetKey("reports")).parent_keys}
    assert {"window_stats", "tag_attribution", "throttle_attribution"} <= report_parents


def test_metric_points_is_partitioned_by_day_and_backfills_in_one_run():
    node = _asset_graph().get(dg.AssetKey("metric_points"))
    partitions = node.partitions_def
    assert isinstance(partitions, dg.DailyPartitionsDefinition)
    assert node.backfill_policy == dg.BackfillPolicy.single_run()
    # Only the days CloudWatch can still answer for (455 days of 1-hour data) up to today are offered.
    keys = partitions.get_partition_keys()
    today = datetime.now(UTC).date()
    assert keys[-1] == today.isoformat()
    assert date.fromisoformat(keys[0]) >= today - timedelta(days=455)
    assert len(keys) <= 456


def test_marts_and_reports_rebuild_by_automation_not_by_clock():
    graph = _asset_graph()
    for name in (*MARTS, "reports"):
        assert graph.get(dg.AssetKey(name)).automation_condition is not None, name
    assert graph.get(dg.AssetKey("metric_points")).automation_condition is None
    sensors = {sensor.name: sensor for sensor in defs.get_repository_def().sensor_defs}
    assert "marts_and_reports_automation" in sensors


def test_quality_checks_are_defined():
    checks = {key.name for key in _asset_graph().asset_check_keys}
    assert {"no_duplicate_points", "expected_partitions_present", "aggregate_equals_sum_of_series"} <= checks


def test_one_hourly_schedule_runs_the_extract_job():
    repository = defs.get_repository_def()
    schedules = {schedule.name: schedule for schedule in repository.schedule_defs}
    assert set(schedules) == {"hourly_extract"}
    assert schedules["hourly_extract"].cron_schedule == "2 * * * *"
    assert schedules["hourly_extract"].job_name == "extract_job"
    job = repository.get_job("extract_job")
    assert {key.to_user_string() for key in job.asset_layer.executable_asset_keys} == set(RAW)

"""The code location loads and holds every asset, check, job and schedule the UI must list."""

from __future__ import annotations

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


def test_metric_points_is_partitioned_by_region_and_day():
    node = _asset_graph().get(dg.AssetKey("metric_points"))
    partitions = node.partitions_def
    assert isinstance(partitions, dg.MultiPartitionsDefinition)
    dimensions = {dimension.name for dimension in partitions.partitions_defs}
    assert dimensions == {"date", "region"}


def test_quality_checks_are_defined():
    checks = {key.name for key in _asset_graph().asset_check_keys}
    assert {"no_duplicate_points", "expected_partitions_present", "aggregate_equals_sum_of_series"} <= checks


def test_jobs_and_hourly_schedules():
    repository = defs.get_repository_def()
    schedules = {schedule.name: schedule for schedule in repository.schedule_defs}
    assert {"hourly_metrics", "hourly_refresh"} <= set(schedules)
    assert schedules["hourly_metrics"].cron_schedule == "2 * * * *"
    assert {"metrics_job", "refresh_job"} <= {job.name for job in repository.get_all_jobs()}

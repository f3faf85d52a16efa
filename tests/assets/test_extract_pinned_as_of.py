"""A run pinned to a past as_of reads what CloudWatch keeps today and never drops the lake's finer history."""

from datetime import UTC, date, datetime, timedelta

import pyarrow.compute as pc
import pytest

from pipelines import lake as lake_io
from pipelines.extraction import extract_metrics, plan_ranges
from pipelines.resources import AwsResource
from pipelines.sandbox.server import SandboxServer

pytestmark = pytest.mark.integration

T = datetime(2026, 11, 20, 12, 0)
DAY = date(2026, 11, 17)
REGION = "us-east-1"


def test_retention_tiers_follow_the_service_clock_not_as_of():
    # as_of 20 days in the past: by CloudWatch's clock the day is 23 days old, so only 5-minute data is left.
    ranges = plan_ranges(DAY, as_of=T, now=T + timedelta(days=20))
    assert {fetch.period_s for fetch in ranges} == {300}
    assert plan_ranges(DAY, as_of=T) == plan_ranges(DAY, as_of=T, now=T)


def _periods(table) -> dict[int, int]:
    counts = pc.value_counts(table["period_s"]).to_pylist()
    return {item["values"]: item["counts"] for item in counts}


def test_rerunning_a_pinned_past_as_of_keeps_the_one_minute_rows(tmp_path, monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    lake = tmp_path / "lake"
    with SandboxServer("demo", seed=0, now=T.replace(tzinfo=UTC)) as sandbox:
        aws = AwsResource(regions=[REGION], endpoint_url=sandbox.endpoint_url)
        first = extract_metrics(aws, lake, REGION, DAY, DAY, T, "123456789012", T)
        assert first.periods == (60,)
        before = lake_io.read_partition(lake, lake_io.Partition("metric_points", REGION, DAY))
        assert _periods(before)[60] > 10_000

        # Twenty days later a user re-runs with the same pinned as_of, for a reproducible report.
        sandbox.advance(timedelta(days=20))
        # Forced: the day is held, so a plain run would read nothing at all.
        again = extract_metrics(aws, lake, REGION, DAY, DAY, T, "123456789012", T + timedelta(days=20), reread=True)
        assert again.periods == (300,)
        after = lake_io.read_partition(lake, lake_io.Partition("metric_points", REGION, DAY))
    assert _periods(after)[60] == _periods(before)[60]
    # The minute rows are the same rows; the 5-minute read only adds the coarser copy.
    kept = after.filter(pc.equal(after["period_s"], 60)).drop_columns(["fetched_at"])
    order = [("model_id", "ascending"), ("ts", "ascending")]
    assert kept.sort_by(order).equals(before.drop_columns(["fetched_at"]).sort_by(order))

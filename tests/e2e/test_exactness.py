"""The marts are exact: recomputed with numpy from raw GetMetricData answers, they agree.

The warehouse is built the way a user builds it: incremental runs against the sandbox at three clock times
(T-16d, T-8d, T), so it holds 1-minute data for the whole 30-day window although CloudWatch (and the sandbox)
keep 1-minute data for 15 days only. A second warehouse is built by one run at T, so the older half of its 30-day
window holds 5-minute data only: its 1-minute statistics must match numpy on the raw 1-minute answers, its figures
at 5-minute resolution numpy on the raw 5-minute answers, and its totals both together. The expected values never
read the warehouse: they come from plain boto3 GetMetricData answers fetched at the same clock times, and the
endpoint mapping and tags from the Bedrock listings, aggregated with numpy.
"""

from __future__ import annotations

import os
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import boto3
import dagster as dg
import duckdb
import numpy as np
import pytest

from pipelines.assets.extract import (
    account_id_for,
    extract_foundation_models,
    extract_inference_profiles,
    extract_service_quotas,
)
from pipelines.assets.models import build_models_asset
from pipelines.extraction import extract_incrementally
from pipelines.resources import AS_OF_TAG, AwsResource, WarehouseResource
from pipelines.sandbox.server import SandboxServer

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("e2e-exactness")]

REGION = "us-east-1"
T = datetime(2026, 11, 20, 12, 0)
CLOCKS = (T - timedelta(days=16), T - timedelta(days=8), T)
WINDOWS = {"1h": 60, "1d": 1440, "7d": 7 * 1440, "14d": 14 * 1440, "30d": 30 * 1440}
METRICS = ("InputTokenCount", "OutputTokenCount", "Invocations", "InvocationThrottles")
FIRST_MINUTE = T - timedelta(days=31)
MINUTES = int((T - FIRST_MINUTE).total_seconds() // 60)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(warehouse connection, sandbox endpoint raw data) after three incremental runs and one model build."""
    yield from _build(tmp_path_factory.mktemp("exactness"), CLOCKS)


@pytest.fixture(scope="module")
def coarse_built(tmp_path_factory):
    """The same after one run at T: 1-minute data for CloudWatch's last 15 days, 5-minute data before."""
    yield from _build(tmp_path_factory.mktemp("exactness-coarse"), (T,), coarse=True)


def _build(root, clocks, *, coarse: bool = False):
    env = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    with pytest.MonkeyPatch.context() as patch, SandboxServer("demo", seed=0, now=_utc(CLOCKS[0])) as sandbox:
        for name, value in env.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        patch.setenv("AWS_ENDPOINT_URL", sandbox.endpoint_url)
        aws = AwsResource(regions=[REGION], endpoint_url=sandbox.endpoint_url)
        warehouse = WarehouseResource(warehouse_dir=str(root / "warehouse"))
        raw = RawAnswers()
        for clock in clocks:
            sandbox.set_now(_utc(clock))
            account_id = account_id_for(aws, REGION)
            lake = warehouse.lake()
            extract_foundation_models(aws, lake, [REGION], clock)
            extract_inference_profiles(aws, lake, [REGION], clock, account_id)
            extract_service_quotas(aws, lake, [REGION], clock)
            extract_incrementally(aws, lake, clock, [REGION], account_id)
            raw.fetch(sandbox.endpoint_url, clock)
        if coarse:
            raw.fetch_coarse(sandbox.endpoint_url, T)
        raw.read_listings(sandbox.endpoint_url)
        # An instance of its own, entered: Dagster finds the current instance through a context variable.
        with dg.instance_for_test() as instance:
            result = dg.materialize(
                [build_models_asset()],
                resources={"warehouse": warehouse},
                tags={AS_OF_TAG: T.isoformat()},
                instance=instance,
            )
            assert result.success
    connection = duckdb.connect(str(warehouse.database()), read_only=True)
    yield connection, raw
    connection.close()


class RawAnswers:
    """1-minute datapoints of every series, straight from GetMetricData, as dense numpy arrays."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], np.ndarray] = {}
        self.present: dict[str, np.ndarray] = {}
        self.model_ids: set[str] = set()
        # 5-minute buckets from FIRST_MINUTE up to the first 1-minute datapoint CloudWatch still holds.
        self.bucket_values: dict[tuple[str, str], np.ndarray] = {}
        self.bucket_present: dict[str, np.ndarray] = {}
        self.fine_start = FIRST_MINUTE

    def _client(self, endpoint_url: str, service: str):
        return boto3.client(service, region_name=REGION, endpoint_url=endpoint_url)

    def fetch(self, endpoint_url: str, clock: datetime) -> None:
        cloudwatch = self._client(endpoint_url, "cloudwatch")
        bedrock = self._client(endpoint_url, "bedrock")
        for page in cloudwatch.get_paginator("list_metrics").paginate(Namespace="AWS/Bedrock"):
            for metric in page["Metrics"]:
                self.model_ids.update(d["Value"] for d in metric["Dimensions"] if d["Name"] == "ModelId")
        for kind in ("SYSTEM_DEFINED", "APPLICATION"):
            for page in bedrock.get_paginator("list_inference_profiles").paginate(typeEquals=kind):
                self.model_ids.update(p["inferenceProfileId"] for p in page["inferenceProfileSummaries"])
        # CloudWatch keeps 1-minute data for 15 days; stay an hour inside that edge.
        start = max(FIRST_MINUTE, clock - timedelta(days=15) + timedelta(hours=1))
        ids = sorted(self.model_ids)
        queries = [
            {
                "Id": f"q{index}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/Bedrock",
                        "MetricName": metric,
                        "Dimensions": [{"Name": "ModelId", "Value": model_id}],
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            }
            for index, (model_id, metric) in enumerate((m, n) for m in ids for n in METRICS)
        ]
        by_id = {query["Id"]: query["MetricStat"] for query in queries}
        paginator = cloudwatch.get_paginator("get_metric_data")
        for offset in range(0, len(queries), 100):
            for page in paginator.paginate(
                MetricDataQueries=queries[offset : offset + 100], StartTime=_utc(start), EndTime=_utc(clock)
            ):
                for result in page["MetricDataResults"]:
                    stat = by_id[result["Id"]]
                    model_id = stat["Metric"]["Dimensions"][0]["Value"]
                    metric = stat["Metric"]["MetricName"]
                    array = self.values.setdefault((model_id, metric), np.zeros(MINUTES))
                    present = self.present.setdefault(model_id, np.zeros(MINUTES, dtype=bool))
                    for stamp, value in zip(result["Timestamps"], result["Values"], strict=True):
                        index = int((stamp.replace(tzinfo=None) - FIRST_MINUTE).total_seconds() // 60)
                        array[index] = value
                        present[index] = True

    def fetch_coarse(self, endpoint_url: str, clock: datetime) -> None:
        """5-minute Sums before the 1-minute data fetch() read at ``clock`` (the same edge the extract uses)."""
        cloudwatch = self._client(endpoint_url, "cloudwatch")
        self.fine_start = clock - timedelta(days=15) + timedelta(hours=1)
        ids = sorted(self.model_ids)
        queries = [
            {
                "Id": f"q{index}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/Bedrock",
                        "MetricName": metric,
                        "Dimensions": [{"Name": "ModelId", "Value": model_id}],
                    },
                    "Period": 300,
                    "Stat": "Sum",
                },
            }
            for index, (model_id, metric) in enumerate((m, n) for m in ids for n in METRICS)
        ]
        by_id = {query["Id"]: query["MetricStat"] for query in queries}
        buckets = MINUTES // 5
        paginator = cloudwatch.get_paginator("get_metric_data")
        for offset in range(0, len(queries), 100):
            for page in paginator.paginate(
                MetricDataQueries=queries[offset : offset + 100],
                StartTime=_utc(FIRST_MINUTE),
                EndTime=_utc(self.fine_start),
            ):
                for result in page["MetricDataResults"]:
                    stat = by_id[result["Id"]]
                    model_id = stat["Metric"]["Dimensions"][0]["Value"]
                    metric = stat["Metric"]["MetricName"]
                    array = self.bucket_values.setdefault((model_id, metric), np.zeros(buckets))
                    present = self.bucket_present.setdefault(model_id, np.zeros(buckets, dtype=bool))
                    for stamp, value in zip(result["Timestamps"], result["Values"], strict=True):
                        index = int((stamp.replace(tzinfo=None) - FIRST_MINUTE).total_seconds() // 300)
                        array[index] = value
                        present[index] = True

    def bucket_measure(self, series: str, name: str) -> np.ndarray:
        def get(metric: str) -> np.ndarray:
            return self.bucket_values.get((series, metric), np.zeros(MINUTES // 5))

        if name == "tpm":
            return get("InputTokenCount") + get("OutputTokenCount")
        if name == "rpm":
            return get("Invocations")
        return get("InvocationThrottles")

    def read_listings(self, endpoint_url: str) -> None:
        """Series -> endpoint by model ARN sets, and application profile tags, from the Bedrock listings."""
        bedrock = self._client(endpoint_url, "bedrock")
        systems, applications = {}, {}
        for kind, target in (("SYSTEM_DEFINED", systems), ("APPLICATION", applications)):
            for page in bedrock.get_paginator("list_inference_profiles").paginate(typeEquals=kind):
                for profile in page["inferenceProfileSummaries"]:
                    target[profile["inferenceProfileId"]] = profile
        by_arns = {frozenset(m["modelArn"] for m in p["models"]): pid for pid, p in systems.items()}
        self.endpoint = {pid: pid for pid in systems}
        self.tags = {}
        for pid, profile in applications.items():
            arns = frozenset(m["modelArn"] for m in profile["models"])
            if arns in by_arns:
                self.endpoint[pid] = by_arns[arns]
            else:
                (arn,) = arns
                self.endpoint[pid] = arn.split("foundation-model/", 1)[1]
            answer = bedrock.list_tags_for_resource(resourceARN=profile["inferenceProfileArn"])
            self.tags[pid] = {tag["key"]: tag["value"] for tag in answer["tags"]}
        for model_id in (*self.present, *self.bucket_present):
            self.endpoint.setdefault(model_id, model_id)

    def series_of(self, endpoint: str) -> list[str]:
        return sorted(
            s
            for s in {*self.present, *self.bucket_present}
            if self.endpoint[s] == endpoint
            and (
                self.present.get(s, np.zeros(1, dtype=bool)).any()
                or self.bucket_present.get(s, np.zeros(1, dtype=bool)).any()
            )
        )

    def active(self, series: str) -> np.ndarray:
        return self.present.get(series, np.zeros(MINUTES, dtype=bool))

    def measure(self, series: str, name: str) -> np.ndarray:
        def get(metric: str) -> np.ndarray:
            return self.values.get((series, metric), np.zeros(MINUTES))

        if name == "tpm":
            return get("InputTokenCount") + get("OutputTokenCount")
        if name == "rpm":
            return get("Invocations")
        return get("InvocationThrottles")


def _window_slice(minutes: int) -> slice:
    return slice(MINUTES - minutes, MINUTES)


def _stats(values: np.ndarray) -> dict[str, float]:
    return {
        "p50": float(np.quantile(values, 0.5)),
        "p90": float(np.quantile(values, 0.9)),
        "p99": float(np.quantile(values, 0.99)),
        "max": float(values.max()),
        "total": float(values.sum()),
        "active_points": len(values),
    }


def _endpoints(raw: RawAnswers) -> list[str]:
    return sorted({raw.endpoint[s] for s in {*raw.present, *raw.bucket_present} if raw.series_of(raw.endpoint[s])})


def _mart_stats(connection, endpoint: str, series_id: str, window: str, metric: str) -> dict[str, float]:
    row = connection.execute(
        """
        select p50, p90, p99, max, total, active_points
        from window_stats
        where region = ? and endpoint = ? and series_id = ? and "window" = ? and metric = ?
        """,
        [REGION, endpoint, series_id, window, metric],
    ).fetchone()
    assert row is not None, (endpoint, series_id, window, metric)
    return dict(zip(("p50", "p90", "p99", "max", "total", "active_points"), row, strict=True))


def test_the_warehouse_holds_one_minute_data_for_the_whole_30_day_window(built):
    connection, _ = built
    periods = connection.execute(
        "select distinct resolution_s from usage_minute where ts >= ? and ts < ?",
        [T - timedelta(days=30), T],
    ).fetchall()
    assert periods == [(60,)]


@pytest.mark.parametrize("metric", ["tpm", "rpm"])
def test_window_stats_match_numpy_for_every_endpoint_series_and_window(built, metric):
    connection, raw = built
    checked = 0
    for endpoint in _endpoints(raw):
        series = raw.series_of(endpoint)
        for window, minutes in WINDOWS.items():
            part = _window_slice(minutes)
            active_any = np.zeros(minutes, dtype=bool)
            aggregate = np.zeros(minutes)
            for series_id in series:
                active = raw.present[series_id][part]
                values = raw.measure(series_id, metric)[part]
                active_any |= active
                aggregate += values
                if active.any():
                    expected = _stats(values[active])
                    assert _mart_stats(connection, endpoint, series_id, window, metric) == pytest.approx(expected)
                    checked += 1
            if active_any.any():
                # The aggregate's percentiles are over per-minute sums, never over pooled per-series values.
                expected = _stats(aggregate[active_any])
                assert _mart_stats(connection, endpoint, "*", window, metric) == pytest.approx(expected)
                checked += 1
    assert checked > 50


def test_rolling_tpd_matches_numpy(built):
    connection, raw = built
    for endpoint in _endpoints(raw):
        daily = np.zeros(MINUTES)
        for series_id in raw.series_of(endpoint):
            daily += raw.measure(series_id, "tpm")
        rows = dict(
            connection.execute(
                "select day_index, tokens from tpd_daily where region = ? and endpoint = ? and series_id = '*'",
                [REGION, endpoint],
            ).fetchall()
        )
        for k in range(30):
            day = daily[MINUTES - (k + 1) * 1440 : MINUTES - k * 1440]
            assert rows.get(k, 0.0) == pytest.approx(float(day.sum())), (endpoint, k)


def test_tag_shares_match_numpy(built):
    connection, raw = built
    checked = 0
    for endpoint in _endpoints(raw):
        series = raw.series_of(endpoint)
        keys = sorted({key for s in series for key in raw.tags.get(s, {})})
        for window, minutes in WINDOWS.items():
            part = _window_slice(minutes)
            tokens = {s: float(raw.measure(s, "tpm")[part].sum()) for s in series}
            total = sum(tokens.values())
            if total == 0:
                continue
            for key in keys:
                expected: dict[str, float] = defaultdict(float)
                for s in series:
                    group = "(direct)" if s not in raw.tags else raw.tags[s].get(key, "(untagged)")
                    expected[group] += tokens[s]
                rows = connection.execute(
                    """
                    select tag_value, tokens, share from tag_attribution
                    where region = ? and endpoint = ? and "window" = ? and tag_key = ?
                    """,
                    [REGION, endpoint, window, key],
                ).fetchall()
                got = {value: (tok, share) for value, tok, share in rows if tok}
                want = {value: tok for value, tok in expected.items() if tok}
                assert set(got) == set(want), (endpoint, window, key)
                for value, tok in want.items():
                    assert got[value][0] == pytest.approx(tok)
                    assert got[value][1] == pytest.approx(tok / total)
                assert sum(share for _, share in got.values()) == pytest.approx(1.0)
                checked += 1
    assert checked > 10


def test_throttle_attribution_matches_numpy(built):
    connection, raw = built
    throttled_endpoints = 0
    for endpoint in _endpoints(raw):
        series = raw.series_of(endpoint)
        for window, minutes in WINDOWS.items():
            part = _window_slice(minutes)
            throttles = sum(raw.measure(s, "throttles")[part] for s in series)
            throttled = throttles > 0
            rows = {
                row[0]: row[1:]
                for row in connection.execute(
                    """
                    select series_id, throttles, throttled_minutes, tokens_in_throttled_minutes, share
                    from throttle_attribution where region = ? and endpoint = ? and "window" = ?
                    """,
                    [REGION, endpoint, window],
                ).fetchall()
            }
            if not throttled.any():
                assert not any(row[0] for row in rows.values()), (endpoint, window)
                continue
            throttled_endpoints += 1
            in_throttled = {s: float(raw.measure(s, "tpm")[part][throttled].sum()) for s in series}
            all_tokens = sum(in_throttled.values())
            for s in series:
                active = raw.present[s][part] & throttled
                if not active.any():
                    continue
                got = rows[s]
                assert got[0] == pytest.approx(float(raw.measure(s, "throttles")[part].sum()))
                assert got[1] == int(active.sum())
                assert got[2] == pytest.approx(in_throttled[s])
                assert got[3] == pytest.approx(in_throttled[s] / all_tokens)
    # The demo throttles one endpoint on weekday afternoons: it shows in every window from 7d up.
    assert throttled_endpoints >= 3


# --- a warehouse whose 30-day window reaches into 5-minute data ------------------------------------------------


def _coarse_mart_stats(connection, endpoint: str, series_id: str, window: str, metric: str) -> dict[str, float]:
    names = (
        "p50",
        "p90",
        "p99",
        "max",
        "active_points",
        "total",
        "total_1min",
        "total_5min",
        "buckets_5min",
        "p50_5min",
        "p90_5min",
        "p99_5min",
        "max_5min",
        "max_bound_5min",
    )
    row = connection.execute(
        f"""
        select {", ".join(names)}
        from window_stats
        where region = ? and endpoint = ? and series_id = ? and "window" = ? and metric = ?
        """,
        [REGION, endpoint, series_id, window, metric],
    ).fetchone()
    assert row is not None, (endpoint, series_id, window, metric)
    return dict(zip(names, row, strict=True))


def _assert_matches(got: dict, expected: dict, context) -> None:
    """Equal up to float rounding; a figure expected to be absent (no data at that resolution) must be null."""
    for key, value in expected.items():
        if value is None:
            assert got[key] is None, (context, key, got[key])
        else:
            assert got[key] == pytest.approx(value), (context, key, got[key], value)


def _expected_split(minute_values, minute_active, bucket_values, bucket_active) -> dict[str, float]:
    """What window_stats should say: 1-minute statistics, 5-minute bucket figures, and totals over both."""
    expected: dict[str, float] = {}
    if minute_active.any():
        expected |= {key: value for key, value in _stats(minute_values[minute_active]).items() if key != "total"}
    else:
        expected |= {"p50": None, "p90": None, "p99": None, "max": None, "active_points": 0}
    fine_total = float(minute_values.sum())
    coarse_total = float(bucket_values.sum())
    expected |= {"total": fine_total + coarse_total, "total_1min": fine_total, "total_5min": coarse_total}
    expected["buckets_5min"] = int(bucket_active.sum())
    if bucket_active.any():
        rates = bucket_values[bucket_active] / 5
        expected |= {
            "p50_5min": float(np.quantile(rates, 0.5)),
            "p90_5min": float(np.quantile(rates, 0.9)),
            "p99_5min": float(np.quantile(rates, 0.99)),
            "max_5min": float(rates.max()),
            "max_bound_5min": float(bucket_values[bucket_active].max()),
        }
    else:
        expected |= {key: None for key in ("p50_5min", "p90_5min", "p99_5min", "max_5min", "max_bound_5min")}
    return expected


def test_the_coarse_warehouse_holds_5_minute_data_where_cloudwatch_no_longer_has_1_minute_data(coarse_built):
    connection, raw = coarse_built
    first_fine = connection.execute(
        "select min(ts) from usage_minute where resolution_s = 60 and ts >= ?", [T - timedelta(days=30)]
    ).fetchone()[0]
    assert first_fine >= raw.fine_start
    periods = connection.execute(
        "select distinct resolution_s from usage_bucket where ts >= ? and ts < ?", [T - timedelta(days=30), T]
    ).fetchall()
    assert periods == [(300,)]
    assert any(present.any() for present in raw.bucket_present.values())


@pytest.mark.parametrize("metric", ["tpm", "rpm"])
def test_each_resolution_matches_numpy_on_its_own_raw_answers(coarse_built, metric):
    connection, raw = coarse_built
    fine_index = int((raw.fine_start - FIRST_MINUTE).total_seconds() // 60)
    checked_coarse = 0
    for endpoint in _endpoints(raw):
        series = raw.series_of(endpoint)
        for window, minutes in WINDOWS.items():
            first = MINUTES - minutes
            fine = slice(max(first, fine_index), MINUTES)
            # Buckets that start in the window and before the 1-minute data.
            coarse = slice(first // 5, max(first, fine_index) // 5)
            any_minute = np.zeros(fine.stop - fine.start, dtype=bool)
            any_bucket = np.zeros(max(coarse.stop - coarse.start, 0), dtype=bool)
            minute_sum = np.zeros(len(any_minute))
            bucket_sum = np.zeros(len(any_bucket))
            for series_id in series:
                minute_active = raw.active(series_id)[fine]
                minute_values = raw.measure(series_id, metric)[fine]
                bucket_active = raw.bucket_present.get(series_id, np.zeros(MINUTES // 5, dtype=bool))[coarse]
                bucket_values = raw.bucket_measure(series_id, metric)[coarse]
                any_minute |= minute_active
                any_bucket |= bucket_active
                minute_sum += minute_values
                bucket_sum += bucket_values
                if minute_active.any() or bucket_active.any():
                    expected = _expected_split(minute_values, minute_active, bucket_values, bucket_active)
                    got = _coarse_mart_stats(connection, endpoint, series_id, window, metric)
                    _assert_matches(got, expected, (endpoint, series_id, window))
            if any_minute.any() or any_bucket.any():
                expected = _expected_split(minute_sum, any_minute, bucket_sum, any_bucket)
                got = _coarse_mart_stats(connection, endpoint, "*", window, metric)
                _assert_matches(got, expected, (endpoint, "*", window))
                checked_coarse += int(any_bucket.any())
    # Only the 30d window reaches past CloudWatch's 15 days of 1-minute data.
    assert checked_coarse >= 3


def test_tpd_days_add_both_resolutions(coarse_built):
    connection, raw = coarse_built
    fine_index = int((raw.fine_start - FIRST_MINUTE).total_seconds() // 60)
    for endpoint in _endpoints(raw):
        minute_tokens = np.zeros(MINUTES)
        bucket_tokens = np.zeros(MINUTES // 5)
        for series_id in raw.series_of(endpoint):
            minute_tokens += raw.measure(series_id, "tpm")
            bucket_tokens += raw.bucket_measure(series_id, "tpm")
        minute_tokens[:fine_index] = 0  # the warehouse has no 1-minute data there, only the buckets
        rows = dict(
            connection.execute(
                "select day_index, tokens from tpd_daily where region = ? and endpoint = ? and series_id = '*'",
                [REGION, endpoint],
            ).fetchall()
        )
        for k in range(30):
            start, end = MINUTES - (k + 1) * 1440, MINUTES - k * 1440
            expected = float(minute_tokens[start:end].sum() + bucket_tokens[start // 5 : end // 5].sum())
            assert float(rows.get(k, 0)) == pytest.approx(expected), (endpoint, k)

"""Benchmark: build the SQL models over 100 application profiles x 30 days of 1-minute CloudWatch data.

Generates a lake (vectorised, straight to Parquet through pipelines.lake.write_partition): three endpoints (a
geographic and a global Claude Sonnet 4 profile and a base model), each with its own direct traffic, plus the
application profiles spread over them, tagged by team and project; nine datapoints per series-minute (invocations,
input/output/cache tokens, throttles, latency average and sample count, time to first token), about 2 % of
minutes throttled. Then builds every model of the SQL-models issue (staging, endpoints, model_burndown, usage_bucket,
usage_minute, endpoint_minute, window_coverage, tpd_daily, window_stats, tag_attribution with its tag_assignments,
throttle_minutes with the quota_map it reads, throttle_attribution) in a DuckDB file, several times, and prints the
median wall time, the per-model times of the median run and the row counts; the
marts added since (throttle_tag_attribution) are built and timed after, outside that figure.

    .venv/bin/python bench/models_scale.py                 # 100 profiles x 30 days, 3 runs
    .venv/bin/python bench/models_scale.py --profiles 20 --days 7 --runs 5 --keep /tmp/bench-lake

Figures only; nothing is asserted (timings depend on the machine and its load).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.lake import POINT_MEASURES, Partition, to_table, write_partition
from pipelines.models import all_models, build_any, build_order, load_seeds

ACCOUNT = "123456789012"
REGION = "us-east-1"
SONNET_4 = "anthropic.claude-sonnet-4-20250514-v1:0"
HAIKU_35 = "anthropic.claude-3-5-haiku-20241022-v1:0"
GEO_REGIONS = ("us-east-1", "us-east-2", "us-west-2")
GLOBAL_REGIONS = (*GEO_REGIONS, "eu-west-1", "ap-northeast-1", "ap-southeast-2")
MODELS = (
    "stg_metric_points",
    "stg_metric_coverage",
    "stg_inference_profiles",
    "stg_profile_tags",
    "stg_foundation_models",
    "stg_service_quotas_history",
    "quota_map",
    "endpoints",
    "model_burndown",
    "usage_bucket",
    "usage_minute",
    "endpoint_minute",
    "window_coverage",
    "tpd_daily",
    "window_stats",
    "tag_assignments",
    "tag_attribution",
    "throttle_minutes",
    "throttle_attribution",
)
# Marts beyond the first set of marts (the per-tag throttle attribution and later ones), timed separately.
EXTRA_MODELS = ("throttle_tag_attribution",)
METRICS = (
    ("Invocations", "Sum"),
    ("InputTokenCount", "Sum"),
    ("OutputTokenCount", "Sum"),
    ("CacheReadInputTokenCount", "Sum"),
    ("CacheWriteInputTokenCount", "Sum"),
    ("InvocationThrottles", "Sum"),
    ("InvocationLatency", "Average"),
    ("InvocationLatency", "SampleCount"),
    ("TimeToFirstToken", "Average"),
)


def fm_arn(model_id: str, region: str) -> str:
    return f"arn:aws:bedrock:{region}::foundation-model/{model_id}"


def generate_lake(lake: Path, *, profiles: int, days: int, as_of: datetime, seed: int = 7) -> tuple[int, int]:
    """Write the benchmark lake; return the number of metric_points rows and of datapoints they hold."""
    rng = np.random.default_rng(seed)
    endpoints = [
        (f"us.{SONNET_4}", [fm_arn(SONNET_4, region) for region in GEO_REGIONS]),
        (f"global.{SONNET_4}", [fm_arn(SONNET_4, region) for region in GLOBAL_REGIONS]),
        (HAIKU_35, [fm_arn(HAIKU_35, REGION)]),
    ]
    snapshot = as_of - timedelta(minutes=30)
    profile_rows, tag_rows = [], []
    for endpoint, arns in endpoints[:2]:
        profile_rows.append(
            _profile(
                endpoint, f"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/{endpoint}", "SYSTEM", arns, snapshot
            )
        )
    series = [endpoint for endpoint, _ in endpoints]
    for index in range(profiles):
        profile_id = f"bench{index:07d}"
        arn = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:application-inference-profile/{profile_id}"
        _, arns = endpoints[index % len(endpoints)]
        profile_rows.append(_profile(profile_id, arn, "APPLICATION", list(reversed(arns)), snapshot))
        if index % 10:  # one profile in ten is untagged
            tag_rows.append(_tag(arn, profile_id, "team", f"team-{index % 8}", snapshot))
            tag_rows.append(_tag(arn, profile_id, "project", f"project-{index % 20}", snapshot))
        series.append(profile_id)
    day = snapshot.date()
    write_partition(lake, Partition("inference_profiles", REGION, day), to_table("inference_profiles", profile_rows))
    write_partition(lake, Partition("profile_tags", REGION, day), to_table("profile_tags", tag_rows))

    count = len(series)
    names = pa.array(series)
    per_day = count * 1440
    total = datapoints = 0
    first_day = (as_of - timedelta(days=days)).replace(hour=0, minute=0)
    for offset in range(days + 1):
        start = first_day + timedelta(days=offset)
        if start >= as_of:
            break
        minutes = np.arange(1440, dtype="int64")
        ts = np.datetime64(start, "us") + (np.tile(minutes, count) * 60_000_000).astype("timedelta64[us]")
        series_index = np.repeat(np.arange(count, dtype="int32"), 1440)
        # Idle minutes have no datapoint at all (CloudWatch publishes nothing for them).
        active = rng.random(per_day) < 0.97
        ts, series_index = ts[active], series_index[active]
        n = len(ts)
        invocations = rng.poisson(20, n).astype("float64") + 1
        values = {
            "Invocations": invocations,
            "InputTokenCount": invocations * rng.gamma(4.0, 300.0, n).round(),
            "OutputTokenCount": invocations * rng.gamma(2.0, 150.0, n).round(),
            "CacheReadInputTokenCount": invocations * rng.gamma(1.0, 500.0, n).round(),
            "CacheWriteInputTokenCount": invocations * rng.gamma(1.0, 50.0, n).round(),
            "InvocationThrottles": np.where(rng.random(n) < 0.02, rng.integers(1, 10, n), 0).astype("float64"),
            "InvocationLatency/Average": rng.gamma(5.0, 400.0, n),
            "InvocationLatency/SampleCount": invocations,
            "TimeToFirstToken/Average": rng.gamma(5.0, 80.0, n),
        }
        # One row per series-minute, a column per statistic, sorted by (model_id, period_s, ts): what the
        # extraction writes (pipelines/extraction.py, merge_points). Statistics the account has no datapoint for
        # (errors, EstimatedTPMQuotaUsage, TimeToFirstToken's SampleCount) stay null.
        table = pa.table(
            {
                "account_id": pa.array(np.full(n, ACCOUNT)),
                "model_id": pa.DictionaryArray.from_arrays(series_index, names).cast(pa.string()),
                "period_s": pa.array(np.full(n, 60, dtype="int32")),
                "ts": pa.array(ts),
                **{
                    column: pa.array(values[key]) if key in values else pa.nulls(n, pa.float64())
                    for (metric, stat), column in POINT_MEASURES.items()
                    for key in [metric if stat == "Sum" else f"{metric}/{stat}"]
                },
                "fetched_at": pa.array(np.full(n, np.datetime64(as_of, "us"))),
            }
        ).sort_by([(name, "ascending") for name in ("model_id", "period_s", "ts")])
        datapoints += n * len(METRICS)
        write_partition(lake, Partition("metric_points", REGION, start.date()), table)
        end = min(start + timedelta(days=1), as_of + timedelta(minutes=5))
        coverage = [
            {
                "account_id": ACCOUNT,
                "period_s": 60,
                "range_start": start,
                "range_end": end,
                "model_ids": count,
                "fetched_at": as_of,
            }
        ]
        write_partition(lake, Partition("metric_coverage", REGION, start.date()), to_table("metric_coverage", coverage))
        total += table.num_rows
    return total, datapoints


def _profile(profile_id: str, arn: str, kind: str, arns: list[str], snapshot: datetime) -> dict:
    return {
        "account_id": ACCOUNT,
        "profile_id": profile_id,
        "profile_arn": arn,
        "name": profile_id,
        "description": None,
        "type": kind,
        "status": "ACTIVE",
        "model_arns": arns,
        "created_at": snapshot - timedelta(days=90),
        "updated_at": snapshot - timedelta(days=90),
        "snapshot_at": snapshot,
    }


def _tag(arn: str, profile_id: str, key: str, value: str, snapshot: datetime) -> dict:
    return {"profile_arn": arn, "profile_id": profile_id, "key": key, "value": value, "snapshot_at": snapshot}


def build_once(database: Path, lake: Path, as_of: datetime) -> tuple[float, float, dict[str, float], dict[str, int]]:
    """Build the models once in ``database``; return the wall and CPU time of the issue's models, per-model times
    (the extra marts included) and row counts."""
    models = {model.name: model for model in all_models()}
    seconds: dict[str, float] = {}
    counts: dict[str, int] = {}
    started, cpu_started = time.perf_counter(), time.process_time()
    with duckdb.connect(str(database)) as connection:
        load_seeds(connection)
        for name in build_order(models[name] for name in MODELS):
            begun = time.perf_counter()
            counts[name] = build_any(connection, models[name], lake=lake, as_of=as_of)
            seconds[name] = time.perf_counter() - begun
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        for name in EXTRA_MODELS:
            begun = time.perf_counter()
            counts[name] = build_any(connection, models[name], lake=lake, as_of=as_of)
            seconds[name] = time.perf_counter() - begun
    return wall, cpu, seconds, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", type=int, default=100, help="application profiles (default 100)")
    parser.add_argument("--days", type=int, default=30, help="days of 1-minute data (default 30)")
    parser.add_argument("--runs", type=int, default=3, help="builds to take the median of (default 3)")
    parser.add_argument("--keep", type=Path, help="generate into (or reuse) this directory instead of a temp dir")
    parser.add_argument("--memory", action="store_true", help="build in an in-memory DuckDB instead of a file")
    arguments = parser.parse_args()

    as_of = datetime(2025, 11, 1, 12, 0)
    with tempfile.TemporaryDirectory(prefix="buw-bench-") as scratch:
        root = arguments.keep or Path(scratch)
        lake = root / "lake"
        if (lake / "metric_points").exists():
            print(f"reusing the lake in {lake}")
        else:
            began = time.perf_counter()
            rows, datapoints = generate_lake(lake, profiles=arguments.profiles, days=arguments.days, as_of=as_of)
            print(
                f"generated {rows:,} metric_points rows holding {datapoints:,} datapoints "
                f"({arguments.profiles} application profiles + 3 endpoints, "
                f"{arguments.days} days) in {time.perf_counter() - began:.1f} s"
            )
        runs = []
        for run in range(arguments.runs):
            database = Path(":memory:") if arguments.memory else root / f"usage-{run}.duckdb"
            runs.append(build_once(database, lake, as_of))
            if not arguments.memory:
                database.unlink(missing_ok=True)
            print(f"run {run + 1}: {runs[-1][0]:.2f} s wall, {runs[-1][1]:.2f} s CPU, load {os.getloadavg()[0]:.1f}")
        walls = [wall for wall, _, _, _ in runs]
        median = statistics.median(walls)
        _, cpu, seconds, counts = min(runs, key=lambda run: abs(run[0] - median))
        print(
            f"\nbuild time of the issue's marts: median {median:.2f} s of {len(walls)} runs "
            f"(min {min(walls):.2f}, max {max(walls):.2f});"
        )
        print(f"CPU time of that run {cpu:.2f} s on {os.cpu_count()} cores (other processes inflate the wall time)")
        print(f"\n{'model':<24} {'seconds':>8} {'rows':>12}")
        for name in seconds:
            extra = "  (extra mart, not in the build time above)" if name in EXTRA_MODELS else ""
            print(f"{name:<24} {seconds[name]:>8.2f} {counts[name]:>12,}{extra}")


if __name__ == "__main__":
    main()

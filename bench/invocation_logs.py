"""Benchmark: extract a large day of Bedrock invocation logs from the sandbox's S3 bucket and model it.

Serves the demo scenario with its traffic multiplied by ``--scale`` (5 by default: about a million records on
2026-11-19 in us-east-1), extracts that day's metrics, profiles and quotas once (untimed), then several times:
reads every S3 object of the day into ``caller_minutes`` (``extract_invocation_logs``, a fresh dataset each
run) and builds every SQL model (``build_all``). Prints the median wall time of each step and records per
second.

    .venv/bin/python bench/invocation_logs.py                 # scale 5, 3 runs
    .venv/bin/python bench/invocation_logs.py --scale 1 --runs 5

Figures only; nothing is asserted (timings depend on the machine and its load).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.assets.extract import foundation_models, inference_profiles_and_tags, metric_points, service_quotas
from pipelines.extraction import ClientCache
from pipelines.invocation_extraction import extract_invocation_logs
from pipelines.models import build_all
from pipelines.resources import AwsResource, WarehouseResource
from pipelines.sandbox.server import SandboxServer

REGION = "us-east-1"
ACCOUNT = "123456789012"
DAY = date(2026, 11, 19)
NOW = datetime(2026, 11, 20, 12, 0)
DEMO = Path(__file__).resolve().parents[1] / "pipelines" / "sandbox" / "scenarios" / "demo.yaml"


def scaled_scenario(directory: Path, scale: float) -> Path:
    text = DEMO.read_text(encoding="utf-8")
    text = re.sub(r"(requests_per_minute:\s*)([0-9.]+)", lambda m: f"{m.group(1)}{float(m.group(2)) * scale:g}", text)
    path = directory / "demo-scaled.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    # Dummy credentials: the sandbox checks none, and nothing here may reach a real account.
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": REGION})
    os.environ.pop("AWS_PROFILE", None)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        scenario = scaled_scenario(root, args.scale)
        warehouse = root / "warehouse"
        lake = warehouse / "lake"
        with SandboxServer(str(scenario), seed=0, now=NOW.replace(tzinfo=UTC)) as server:
            aws = AwsResource(regions=[REGION], endpoint_url=server.endpoint_url)
            result = dg.materialize(
                [metric_points, foundation_models, inference_profiles_and_tags, service_quotas],
                tags={
                    "dagster/asset_partition_range_start": DAY.isoformat(),
                    "dagster/asset_partition_range_end": DAY.isoformat(),
                },
                resources={
                    "aws": aws,
                    "warehouse": WarehouseResource(warehouse_dir=str(warehouse), as_of=NOW.isoformat() + "Z"),
                },
                instance=dg.DagsterInstance.ephemeral(),
                run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
            )
            assert result.success
            extract_times, model_times, records = [], [], 0
            for _ in range(args.runs):
                for dataset in ("caller_minutes", "principal_tags", "invocation_log_reads"):
                    shutil.rmtree(lake / dataset, ignore_errors=True)
                started = time.perf_counter()
                read = extract_invocation_logs(ClientCache(aws), lake, REGION, DAY, DAY, ACCOUNT, NOW)
                extract_times.append(time.perf_counter() - started)
                records = read.cost.records_read
                database = root / f"usage-{len(model_times)}.duckdb"
                with duckdb.connect(str(database)) as connection:
                    started = time.perf_counter()
                    counts = build_all(connection, lake=lake, as_of=NOW)
                    model_times.append(time.perf_counter() - started)
        extract_s, model_s = statistics.median(extract_times), statistics.median(model_times)
        print(
            f"scale {args.scale:g}: {records:,} records in {read.cost.objects_read} objects "
            f"({read.cost.bytes_read / 1e6:.1f} MB gzipped) -> {read.rows:,} caller_minutes rows"
        )
        print(
            f"extraction (list + read + parse + write), median of {args.runs}: {extract_s:.1f} s, "
            f"{records / extract_s:,.0f} records/s"
        )
        print(
            f"every SQL model, median of {args.runs}: {model_s:.1f} s "
            f"(caller_minute {counts.get('caller_minute', 0):,} rows, "
            f"caller_attribution {counts.get('caller_attribution', 0):,} rows)"
        )
        print(f"extraction + modelling: {records / (extract_s + model_s):,.0f} records/s")


if __name__ == "__main__":
    main()

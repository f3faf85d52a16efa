"""What metric extraction costs on the demo sandbox: metrics requested (the bill) next to its lower bound.

CloudWatch bills GetMetricData per metric requested in every call. The lower bound of a run is what ListMetrics
says exists: every listed (series, metric) pair, expanded to the statistics the warehouse keeps of that metric
(Sum, or Average and SampleCount for the latencies), once per retention tier the run's range reaches. For an
incremental run the listing is ListMetrics(RecentlyActive=PT3H). Three runs are measured on a fresh lake each
repetition (as_of pinned):

- the first run of every region (a 30-day backfill);
- an incremental run an hour later;
- a first run narrowed with ``-m`` to the Sonnet 4.5 ``us.`` endpoint (system profile and its application
  profiles), on another fresh lake.

The sandbox's own counters must agree with what the pipeline counted. Wall time is the median of the runs.

    .venv/bin/python bench/extract_cost.py [--scenario demo] [--repeat 3]
"""

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.assets.extract import account_id_for, identity_for
from pipelines.aws.bedrock import list_foundation_models, list_inference_profiles
from pipelines.aws.cloudwatch import (
    GET_METRIC_DATA_PRICE,
    MAX_DATAPOINTS_PER_CALL,
    list_metric_series,
    queries_for,
)
from pipelines.endpoint_lookup import series_for_ids
from pipelines.extraction import days_to_read, extract_metrics, plan_tiers
from pipelines.resources import AwsResource
from pipelines.sandbox.server import SandboxServer

AS_OF = datetime(2026, 11, 20, 12, 0)
NARROWED_TO = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


@dataclass
class RunCost:
    calls: int = 0
    metrics_requested: int = 0
    bound: int = 0
    datapoints: int = 0
    sandbox_calls: int = 0
    sandbox_metrics: int = 0
    seconds: float = 0.0


def run(server, aws, lake: Path, as_of: datetime, regions, account_id, *, recent=False, series=None) -> RunCost:
    """One run over every region; its cost and its lower bound (listed pairs x tiers reached)."""
    cost = RunCost()
    bounds = 0
    for region in regions:
        client = aws.client("cloudwatch", region)
        listed = list_metric_series(client, recently_active=recent)
        if series is not None:
            listed = {model_id: names for model_id, names in listed.items() if model_id in series}
        pairs = len(queries_for(listed))
        now = identity_for(aws, region)[1]
        days, _ = days_to_read(lake, as_of, [region])
        server.reset_stats()
        started = time.perf_counter()
        read = extract_metrics(aws, lake, region, days[0], days[-1], as_of, account_id, now, series=series)
        cost.seconds += time.perf_counter() - started
        stats = server.stats()
        cost.sandbox_calls += stats["calls"].get("monitoring:GetMetricData", 0)
        cost.sandbox_metrics += stats["metrics_requested"]
        bounds += pairs * len(plan_tiers(read.start, read.end, now))
        cost.calls += read.stats.calls
        cost.metrics_requested += read.stats.metrics_requested
        cost.datapoints += read.stats.datapoints
    cost.bound = bounds
    return cost


def measure(scenario: str, repeat: int) -> dict[str, list[RunCost]]:
    runs: dict[str, list[RunCost]] = {"first run (30 days)": [], "incremental (+1 h)": [], "-m first run": []}
    for _ in range(repeat):
        with SandboxServer(scenario=scenario, seed=0, now=AS_OF).start() as server:
            regions = list(server.scenario.regions)
            aws = AwsResource(regions=regions, endpoint_url=server.endpoint_url)
            account_id = account_id_for(aws, regions[0])
            with tempfile.TemporaryDirectory(prefix="buw-extract-cost-") as directory:
                lake = Path(directory) / "lake"
                runs["first run (30 days)"].append(run(server, aws, lake, AS_OF, regions, account_id))
                server.advance(timedelta(hours=1))
                later = AS_OF + timedelta(hours=1)
                runs["incremental (+1 h)"].append(run(server, aws, lake, later, regions, account_id, recent=True))
                server.advance(timedelta(hours=-1))
            bedrock = aws.client("bedrock", "us-east-1")
            chosen = series_for_ids(
                list_inference_profiles(bedrock), list_foundation_models(bedrock), "us-east-1", [NARROWED_TO]
            )
            series = sorted({name for endpoint in chosen for name in endpoint.series})
            with tempfile.TemporaryDirectory(prefix="buw-extract-cost-") as directory:
                lake = Path(directory) / "lake"
                runs["-m first run"].append(run(server, aws, lake, AS_OF, ["us-east-1"], account_id, series=series))
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="demo")
    parser.add_argument("--repeat", type=int, default=3, help="runs to take the median wall time of (3)")
    args = parser.parse_args(argv)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

    runs = measure(args.scenario, max(1, args.repeat))
    print(f"GetMetricData cost, scenario {args.scenario!r}, as_of {AS_OF:%Y-%m-%dT%H:%MZ}, {args.repeat} run(s)")
    header = (
        f"{'run':<22}{'calls':>7}{'metrics':>9}{'bound':>7}{'ratio':>7}{'datapoints':>12}"
        f"{'pages bound':>13}{'est. USD':>10}{'median s':>10}"
    )
    print(header)
    print("-" * len(header))
    for name, costs in runs.items():
        cost = costs[0]
        ratio = cost.metrics_requested / cost.bound if cost.bound else 1.0
        print(
            f"{name:<22}{cost.calls:>7}{cost.metrics_requested:>9,}{cost.bound:>7,}{ratio:>7.2f}"
            f"{cost.datapoints:>12,}{math.ceil(cost.datapoints / MAX_DATAPOINTS_PER_CALL):>13}"
            f"{GET_METRIC_DATA_PRICE.cost(cost.metrics_requested):>10.4f}"
            f"{statistics.median(c.seconds for c in costs):>10.2f}"
        )
        if (cost.sandbox_calls, cost.sandbox_metrics) != (cost.calls, cost.metrics_requested):
            print(
                f"  note: the sandbox counted {cost.sandbox_calls} calls and {cost.sandbox_metrics} metrics",
                file=sys.stderr,
            )
    print()
    print("bound       = listed (series, metric) pairs x statistics kept x retention tiers the range reaches")
    print("              (ListMetrics; RecentlyActive=PT3H for the incremental run)")
    print("pages bound = ceil(datapoints returned / 100,800): calls if idle series were known in advance")
    price = GET_METRIC_DATA_PRICE
    print(f"price       = ${price.usd_per_1000_metrics} per 1,000 metrics (as of {price.as_of})")
    print(f"targets     : first run <= 1.05 x bound, incremental = bound, -m first run <= 150 metrics ({NARROWED_TO})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What metric extraction costs on the demo sandbox: GetMetricData calls and metrics requested per run.

CloudWatch bills GetMetricData per metric requested, and one call carries at most 500 queries and 100,800
datapoints. For each (partition, period) the fewest calls possible are max(ceil(datapoints / 100,800),
ceil(metrics / 500)), where datapoints are the slots asked for (queries x periods: the server may return that
many, so a call must leave room for them). The script prints what the pipeline spent next to that minimum, the
looser bound from the datapoints actually returned, and the wall time (median of several runs).

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

from pipelines.assets.extract import ExtractResult, account_id_for, refresh_metrics
from pipelines.aws.cloudwatch import MAX_DATAPOINTS_PER_CALL, MAX_QUERIES_PER_CALL, METRICS
from pipelines.aws.records import periods_in
from pipelines.resources import AwsResource
from pipelines.sandbox.server import SandboxServer

AS_OF = datetime(2026, 11, 20, 12, 0)


@dataclass
class RunCost:
    partitions: int = 0
    calls: int = 0
    metrics_requested: int = 0
    datapoint_slots: int = 0
    datapoints_returned: int = 0
    minimum_calls: int = 0
    minimum_metrics: int = 0
    returned_bound: int = 0
    sandbox_calls: int = 0
    sandbox_metrics: int = 0
    seconds: float = 0.0


def cost_of(results: list[ExtractResult]) -> RunCost:
    cost = RunCost(partitions=len(results))
    for result in results:
        cost.calls += result.stats.calls
        cost.metrics_requested += result.stats.metrics_requested
        cost.datapoint_slots += result.stats.datapoint_slots
        cost.datapoints_returned += result.stats.datapoints
        queries = len(result.model_ids) * len(METRICS)
        for fetch_range in result.ranges:
            slots = queries * periods_in(fetch_range.start, fetch_range.end, fetch_range.period_s)
            cost.minimum_calls += max(
                math.ceil(slots / MAX_DATAPOINTS_PER_CALL), math.ceil(queries / MAX_QUERIES_PER_CALL)
            )
            cost.minimum_metrics += queries
    # Were every datapoint returned packed perfectly, whatever the series' shape (not reachable: a call cannot
    # know in advance which series are idle, and NextToken pages re-bill every metric of the call).
    cost.returned_bound = math.ceil(cost.datapoints_returned / MAX_DATAPOINTS_PER_CALL)
    return cost


def run(server: SandboxServer, aws: AwsResource, lake: Path, as_of: datetime, regions, account_id) -> RunCost:
    server.reset_stats()
    started = time.perf_counter()
    results = refresh_metrics(aws, lake, as_of, regions, account_id)
    seconds = time.perf_counter() - started
    cost = cost_of(results)
    cost.seconds = seconds
    stats = server.stats()
    cost.sandbox_calls = stats["calls"].get("monitoring:GetMetricData", 0)
    cost.sandbox_metrics = stats["metrics_requested"]
    return cost


def measure(scenario: str, repeat: int) -> dict[str, list[RunCost]]:
    runs: dict[str, list[RunCost]] = {"first run (backfill)": [], "hourly run (+1 h)": []}
    for _ in range(repeat):
        with SandboxServer(scenario=scenario, seed=0, now=AS_OF).start() as server:
            regions = list(server.scenario.regions)
            aws = AwsResource(regions=regions, endpoint_url=server.endpoint_url)
            account_id = account_id_for(aws, regions[0])
            with tempfile.TemporaryDirectory(prefix="buw-extract-cost-") as directory:
                lake = Path(directory) / "lake"
                runs["first run (backfill)"].append(run(server, aws, lake, AS_OF, regions, account_id))
                server.advance(timedelta(hours=1))
                runs["hourly run (+1 h)"].append(
                    run(server, aws, lake, AS_OF + timedelta(hours=1), regions, account_id)
                )
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
        f"{'run':<22}{'parts':>6}{'calls':>8}{'minimum':>9}{'ratio':>7}{'metrics':>10}{'min metrics':>13}"
        f"{'slots':>12}{'returned':>11}{'ret. bound':>11}{'median s':>10}"
    )
    print(header)
    print("-" * len(header))
    worst = 0.0
    for name, costs in runs.items():
        cost = costs[0]
        ratio = cost.calls / cost.minimum_calls if cost.minimum_calls else 1.0
        worst = max(worst, ratio)
        print(
            f"{name:<22}{cost.partitions:>6}{cost.calls:>8}{cost.minimum_calls:>9}{ratio:>7.2f}"
            f"{cost.metrics_requested:>10,}{cost.minimum_metrics:>13,}{cost.datapoint_slots:>12,}"
            f"{cost.datapoints_returned:>11,}{cost.returned_bound:>11}"
            f"{statistics.median(c.seconds for c in costs):>10.2f}"
        )
        if (cost.sandbox_calls, cost.sandbox_metrics) != (cost.calls, cost.metrics_requested):
            print(
                f"  note: the sandbox counted {cost.sandbox_calls} calls and {cost.sandbox_metrics} metrics",
                file=sys.stderr,
            )
    print()
    print("minimum     = sum over (partition, period) of max(ceil(slots / 100,800), ceil(metrics / 500))")
    print("min metrics = every (ModelId, metric, stat) requested once per (partition, period)")
    print("ret. bound  = ceil(datapoints returned / 100,800), if idle series were known in advance")
    print(f"worst calls / minimum: {worst:.2f} (target <= 1.10)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

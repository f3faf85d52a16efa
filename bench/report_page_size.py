"""Benchmark: the size of the demo account's endpoint pages, without and with caller data.

Serves the demo scenario with a pinned clock, extracts 30 days of metrics, profiles and quotas, builds the marts
and renders every page (no invocation logs: what `buw demo` writes); then reads 30 days of model invocation logs
(the opt-in ``invocation_logs`` asset), builds and renders again, so every page gains its Callers tables and
stacked caller charts. Prints each page's bytes both ways and the largest page; the pages aim to stay under
``PAGE_BYTES_TARGET``.

    .venv/bin/python bench/report_page_size.py

Figures only; nothing is asserted.
"""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.assets.extract import (
    foundation_models,
    inference_profiles_and_tags,
    invocation_logs,
    metric_points,
    service_quotas,
)
from pipelines.models import build_all
from pipelines.report import PAGE_BYTES_TARGET, render_reports
from pipelines.resources import AwsResource, WarehouseResource
from pipelines.sandbox.server import SandboxServer

NOW = datetime(2026, 12, 2, 3, 25)
DAYS = 30


def materialize(server: SandboxServer, warehouse: Path, assets: list) -> None:
    first, last = (NOW - timedelta(days=DAYS)).date().isoformat(), NOW.date().isoformat()
    result = dg.materialize(
        assets,
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        resources={
            "aws": AwsResource(regions=list(server.scenario.regions), endpoint_url=server.endpoint_url),
            "warehouse": WarehouseResource(warehouse_dir=str(warehouse), as_of=NOW.isoformat() + "Z"),
        },
        instance=dg.DagsterInstance.ephemeral(),
    )
    if not result.success:
        raise SystemExit("a materialization failed")


def render(warehouse: Path, out: Path) -> dict[str, int]:
    with duckdb.connect(str(warehouse / "usage.duckdb")) as connection:
        build_all(connection, lake=warehouse / "lake", as_of=NOW)
        files = render_reports(connection, out, NOW)
    return {f"{file.region}/{file.endpoint}": file.html_bytes for file in files if file.kind == "endpoint"}


def main() -> None:
    # Dummy credentials: the sandbox checks none, and nothing here may reach a real account.
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"})
    os.environ.pop("AWS_PROFILE", None)
    with tempfile.TemporaryDirectory() as scratch, SandboxServer("demo", now=NOW.replace(tzinfo=UTC)) as server:
        warehouse = Path(scratch) / "warehouse"
        materialize(server, warehouse, [metric_points, foundation_models, inference_profiles_and_tags, service_quotas])
        without = render(warehouse, Path(scratch) / "without")
        materialize(server, warehouse, [invocation_logs])
        with_callers = render(warehouse, Path(scratch) / "with")
    print(f"{'endpoint page':<70} {'no logs':>10} {'with logs':>10} {'added':>8}")
    for page in sorted(without):
        added = with_callers[page] - without[page]
        print(f"{page:<70} {without[page]:>10,} {with_callers[page]:>10,} {added:>8,}")
    for name, sizes in (("no logs", without), ("with logs", with_callers)):
        largest = max(sizes, key=sizes.__getitem__)
        print(f"largest page, {name}: {sizes[largest]:,} bytes ({largest}); all pages {sum(sizes.values()):,} bytes")
    print(f"target per page: under {PAGE_BYTES_TARGET:,} bytes")


if __name__ == "__main__":
    main()

"""Caller attribution end to end on the sandbox: metrics and invocation logs extracted by the real assets, the
marts built by the real models, checked against the sandbox's own per-caller totals.

The logs are read for 2026-11-17 to the clock (2026-11-20 12:00) only, the metrics for two weeks, so the 1h and
1d windows are covered by the logs (up to the last delivered S3 object, 11:55) and the longer ones only partly:
their '(not in logs)' rows hold the rest.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import pytest

from pipelines.assets.extract import (
    foundation_models,
    inference_profiles_and_tags,
    invocation_logs,
    metric_points,
    service_quotas,
)
from pipelines.models import build_all
from pipelines.resources import AwsResource, WarehouseResource
from pipelines.sandbox.invocation_logs import invocation_logs as sandbox_logs
from pipelines.sandbox.server import SandboxServer

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("e2e-callers")]

REGION = "us-east-1"
T = datetime(2026, 11, 20, 12, 0)
LOGS_FROM = datetime(2026, 11, 17)
LOGS_UNTIL = datetime(2026, 11, 20, 11, 55)  # the last S3 object delivered by T holds 11:50-11:55
WINDOWS = {"1h": 60, "1d": 1440, "7d": 7 * 1440, "14d": 14 * 1440, "30d": 30 * 1440}


def _materialize(server, warehouse, assets, first: str, last: str) -> None:
    result = dg.materialize(
        assets,
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        resources={
            "aws": AwsResource(regions=[REGION], endpoint_url=server.endpoint_url),
            "warehouse": WarehouseResource(warehouse_dir=str(warehouse), as_of=T.isoformat() + "Z"),
        },
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    warehouse = tmp_path_factory.mktemp("callers")
    mp = pytest.MonkeyPatch()
    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": REGION}.items():
        mp.setenv(name, value)
    mp.delenv("AWS_PROFILE", raising=False)
    try:
        with SandboxServer("demo", seed=0, now=T.replace(tzinfo=UTC)) as server:
            _materialize(
                server,
                warehouse,
                [metric_points, foundation_models, inference_profiles_and_tags, service_quotas],
                "2026-11-06",
                "2026-11-20",
            )
            _materialize(server, warehouse, [invocation_logs], "2026-11-17", "2026-11-20")
            connection = duckdb.connect(str(warehouse / "usage.duckdb"))
            build_all(connection, lake=warehouse / "lake", as_of=T)
            yield connection, server, warehouse / "lake"
            connection.close()
    finally:
        mp.undo()


def test_shares_of_every_dimension_add_up_to_one_with_the_remainder_row(built):
    connection, _, _ = built
    groups = connection.execute(
        """
        select endpoint, "window", dimension, sum(share), count(*) filter (where is_remainder)
        from caller_attribution group by all
        """
    ).fetchall()
    endpoints = {row[0] for row in connection.execute("select endpoint from window_stats where total > 0").fetchall()}
    assert {row[0] for row in groups} == endpoints
    dimensions = {row[2] for row in groups}
    assert {"principal", "session", "tag:team", "tag:cost-center"} <= dimensions
    assert any(name.startswith("metadata:") for name in dimensions)
    for endpoint, window, dimension, total, remainders in groups:
        assert remainders == 1, (endpoint, window, dimension)
        assert total == pytest.approx(1.0, abs=1e-9), (endpoint, window, dimension)
    # The windows the logs cover whole leave only the five minutes not yet delivered to the remainder; the
    # 14-day window holds days before the logs were read.
    remainder = dict(
        connection.execute(
            """
            select "window", sum(tokens) from caller_attribution
            where is_remainder and dimension = 'principal' group by all
            """
        ).fetchall()
    )
    last_minutes = connection.execute(
        "select sum(tpm) from usage_minute where resolution_s = 60 and ts >= ? and ts < ?", [LOGS_UNTIL, T]
    ).fetchone()[0]
    assert remainder["1h"] == remainder["1d"] == last_minutes
    assert remainder["14d"] > remainder["1d"]


def test_caller_totals_equal_the_sandboxs_own_per_caller_totals(built):
    connection, server, _ = built
    endpoint_of = dict(connection.execute("select series_id, endpoint from endpoints").fetchall())
    logs = sandbox_logs(server.traffic)
    for window, minutes in WINDOWS.items():
        start = max(T - timedelta(minutes=minutes), LOGS_FROM)
        expected: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        for row in logs.caller_totals(REGION, start.replace(tzinfo=UTC), LOGS_UNTIL.replace(tzinfo=UTC)):
            held = expected[(endpoint_of[row["model_id"]], row["principal"])]
            held[0] += row["input_tokens"] + row["output_tokens"]
            held[1] += row["requests"]
            held[2] += row["errors"]
        errors = dict(
            connection.execute(
                """
                select endpoint || ' ' || principal, sum(errors) from caller_minute
                where ts >= ? and ts < ? group by all
                """,
                [T - timedelta(minutes=minutes), T],
            ).fetchall()
        )
        got = {
            (row[0], row[1]): [int(row[2]), int(row[3]), int(row[4]) + int(errors[f"{row[0]} {row[1]}"])]
            for row in connection.execute(
                """
                select endpoint, dimension_value, tokens, requests, throttles from caller_attribution
                where "window" = ? and dimension = 'principal' and not is_remainder
                """,
                [window],
            ).fetchall()
        }
        assert got == dict(expected), window


def test_throttled_minutes_are_attributed_to_the_callers_that_caused_them(built):
    connection, _, _ = built
    rows = connection.execute(
        """
        select dimension_value, throttled_minutes, share_in_throttled_minutes from caller_attribution
        where endpoint = 'us.anthropic.claude-sonnet-4-5-20250929-v1:0' and "window" = '1d'
            and dimension = 'tag:team' and not is_remainder
        order by share_in_throttled_minutes desc
        """
    ).fetchall()
    # The weekday 14:00 burst of code-review-bot (role code-review-runner, team platform) throttles Sonnet.
    assert rows[0][0] == "platform" and rows[0][1] > 0 and rows[0][2] > 0.5


def test_no_record_body_reaches_the_lake_or_the_warehouse(built):
    connection, _, lake = built
    files = list(lake.rglob("*.parquet"))
    assert any("caller_minutes" in str(path) for path in files)
    for path in files:
        assert b"[omitted]" not in path.read_bytes()
    text_columns = connection.execute(
        "select column_name from duckdb_columns() where table_name = 'caller_minute' and data_type = 'VARCHAR'"
    ).fetchall()
    for (column,) in text_columns:
        hits = connection.execute(f"select count(*) from caller_minute where \"{column}\" like '%omitted%'").fetchone()
        assert hits[0] == 0, column

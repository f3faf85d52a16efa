"""quota_map, quota_headroom and the headroom checks on the demo account: listings and two days of metrics read
from the sandbox with boto3 into a temporary lake, then staged and modelled as the model step does."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import duckdb
import pytest

from pipelines.assets.extract import (
    account_id_for,
    extract_foundation_models,
    extract_inference_profiles,
    extract_service_quotas,
)
from pipelines.extraction import extract_incrementally
from pipelines.models import build_all, discover_models
from pipelines.quotas.checks import check_rpm_headroom, check_tpd_headroom, check_tpm_headroom
from pipelines.quotas.warehouse import build_quota_map
from pipelines.resources import AwsResource

AS_OF = datetime(2026, 11, 20, 12, 0)  # the sandbox fixture's pinned clock
REGIONS = ("us-east-1", "us-west-2")
THROTTLED = ("us-east-1", "us.anthropic.claude-sonnet-4-5-20250929-v1:0")
LLAMA = ("us-east-1", "us.meta.llama3-3-70b-instruct-v1:0")


@pytest.fixture(scope="module")
def warehouse(sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    root = tmp_path_factory.mktemp("demo-warehouse")
    lake = root / "lake"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "BUW_DATA_DIR": str(root / "data"),  # no user overrides
        }.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        aws = AwsResource(endpoint_url=sandbox.endpoint_url)
        account_id = account_id_for(aws, REGIONS[0])
        extract_foundation_models(aws, lake, REGIONS, AS_OF)
        extract_inference_profiles(aws, lake, REGIONS, AS_OF, account_id)
        extract_service_quotas(aws, lake, REGIONS, AS_OF)
        extract_incrementally(aws, lake, AS_OF, REGIONS, account_id, days=1)

        connection = duckdb.connect(str(root / "usage.duckdb"))
        names = [model.name for model in discover_models()]
        # The model step's order: staging, then quota_map, then the marts (quota_headroom reads quota_map).
        build_all(connection, lake=lake, as_of=AS_OF, select=[name for name in names if name.startswith("stg_")])
        build_quota_map(connection, as_of=AS_OF)
        build_all(connection, lake=lake, as_of=AS_OF, select=[name for name in names if not name.startswith("stg_")])
        yield connection
        connection.close()


def endpoints_with_traffic(connection: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    return set(connection.execute("select distinct region, endpoint from endpoint_minute").fetchall())


def test_every_endpoint_with_traffic_has_tpm_and_rpm_quotas_but_the_llama_rpm(
    warehouse: duckdb.DuckDBPyConnection,
) -> None:
    active = endpoints_with_traffic(warehouse)
    assert THROTTLED in active and LLAMA in active and len(active) >= 8
    types: dict[tuple[str, str], set[str]] = {}
    for region, endpoint, quota_type in warehouse.execute(
        "select region, endpoint, quota_type from quota_map"
    ).fetchall():
        types.setdefault((region, endpoint), set()).add(quota_type)
    for key in sorted(active):
        expected = {"tpm"} if key == LLAMA else {"tpm", "rpm"}
        assert expected <= types.get(key, set()), f"{key} lacks {expected - types.get(key, set())}"
    assert "rpm" not in types[LLAMA], "this account has no requests-per-minute quota for Llama 3.3 70B"


def test_the_demo_quota_values_are_the_accounts(warehouse: duckdb.DuckDBPyConnection) -> None:
    rows = {
        (region, endpoint, quota_type): (code, value, effective, applied)
        for region, endpoint, quota_type, code, value, effective, applied in warehouse.execute(
            """
            select region, endpoint, quota_type, quota_code, quota_value, effective_value, applied_value
            from quota_map
            """
        ).fetchall()
    }
    # The increase granted in us-east-1 only.
    assert rows[(*THROTTLED, "tpm")] == ("L-F4DDD3EB", 800_000.0, 800_000.0, 800_000.0)
    assert rows[("us-west-2", THROTTLED[1], "tpm")] == ("L-F4DDD3EB", 200_000.0, 200_000.0, None)
    # Tokens per day: one quota, doubled for the cross-region endpoint only.
    assert rows[(*THROTTLED, "tpd")][2] == 2 * 1_152_000_000.0
    assert rows[("us-east-1", "amazon.nova-lite-v1:0", "tpd")][1:3] == (5_760_000_000.0, 5_760_000_000.0)
    assert rows[("us-east-1", "us.amazon.nova-lite-v1:0", "tpd")][2] == 11_520_000_000.0


def test_headroom_for_every_endpoint_with_traffic_and_a_quota(warehouse: duckdb.DuckDBPyConnection) -> None:
    active = endpoints_with_traffic(warehouse)
    quoted = set(warehouse.execute("select distinct region, endpoint from quota_map").fetchall())
    with_headroom = set(
        warehouse.execute(
            """select distinct region, endpoint from quota_headroom where "window" = '1d' and active_points > 0"""
        ).fetchall()
    )
    assert active & quoted == with_headroom
    row = warehouse.execute(
        """
        select utilisation_max, minutes_at_quota, throttled_minutes
        from quota_headroom
        where region = ? and endpoint = ? and quota_type = 'tpm' and "window" = '1d'
        """,
        list(THROTTLED),
    ).fetchone()
    utilisation_max, at_quota, throttled = row
    # Every minute code-review-bot's burst was throttled reads just under the quota, and counts as at it.
    assert 0.95 < utilisation_max < 1.0
    assert at_quota == throttled == 25


def test_tpm_check_warns_on_the_throttled_endpoint_and_no_other(warehouse: duckdb.DuckDBPyConnection) -> None:
    outcome = check_tpm_headroom(warehouse, lake=None, as_of=AS_OF)
    assert not outcome.passed
    assert outcome.violations == 1
    assert outcome.metadata["failing_endpoints"] == " ".join(THROTTLED)
    numbers = outcome.metadata["endpoints"][" ".join(THROTTLED)]
    assert numbers["quota_value"] == 800_000.0 and numbers["minutes_at_quota"] == 25
    assert numbers["utilisation_max_pct"] > 95
    assert "L-F4DDD3EB" in outcome.metadata["summary"]
    others = [key for key in outcome.metadata["endpoints"] if key != " ".join(THROTTLED)]
    assert others and all(outcome.metadata["endpoints"][key]["minutes_at_quota"] == 0 for key in others)


def test_rpm_and_tpd_checks_pass_on_the_demo_and_name_the_endpoint_without_a_quota(
    warehouse: duckdb.DuckDBPyConnection,
) -> None:
    rpm = check_rpm_headroom(warehouse, lake=None, as_of=AS_OF)
    tpd = check_tpd_headroom(warehouse, lake=None, as_of=AS_OF)
    assert rpm.passed and tpd.passed
    assert " ".join(LLAMA) in rpm.metadata["endpoints_without_quota"].splitlines()
    assert rpm.metadata["endpoints_checked"] >= 8


def test_headroom_columns_are_documented_as_comments(warehouse: duckdb.DuckDBPyConnection) -> None:
    from pipelines.models import DATA_DICTIONARY

    if not DATA_DICTIONARY.exists():
        pytest.skip("docs/data-dictionary.md is not there yet")
    undocumented = warehouse.execute(
        """
        select table_name, column_name
        from duckdb_columns()
        where table_name in ('quota_map', 'quota_headroom') and (comment is null or comment = '')
        """
    ).fetchall()
    assert undocumented == []

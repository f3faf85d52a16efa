"""quota_map (build_quota_map) and sql/marts/quota_headroom.sql on fixture rows in a temporary DuckDB."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pytest

from pipelines.models import build_model, discover_models
from pipelines.quotas.warehouse import build_quota_map

AS_OF = datetime(2026, 11, 20, 12, 0)
REGION = "us-east-1"
SONNET = "anthropic.claude-sonnet-4-5-20250929-v1:0"
NOVA = "amazon.nova-lite-v1:0"
US_SONNET = f"us.{SONNET}"
US_NOVA = f"us.{NOVA}"

QUOTA_NAMES = {
    "L-F4DDD3EB": "Cross-region model inference tokens per minute for Anthropic Claude Sonnet 4.5 V1",
    "L-4A6BFAB1": "Cross-region model inference requests per minute for Anthropic Claude Sonnet 4.5 V1",
    "L-381AD9EE": (
        "Model invocation max tokens per day for Anthropic Claude Sonnet 4.5 V1 (doubled for cross-region calls)"
    ),
    "L-70423BF8": "On-demand model inference tokens per minute for Amazon Nova Lite",
    "L-7C42E72A": "Cross-region model inference tokens per minute for Amazon Nova Lite",
    "L-45E0AD92": "Model invocation max tokens per day for Amazon Nova Lite (doubled for cross-region calls)",
}


def minutes_before(count: int) -> datetime:
    return AS_OF - timedelta(minutes=count)


@pytest.fixture
def connection(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(str(tmp_path / "usage.duckdb"))
    connection.execute(
        """
        create table stg_service_quotas_history (
            region varchar, quota_code varchar, quota_name varchar, quota_value double, default_value double,
            applied_value double, snapshot_at timestamp
        )
        """
    )
    connection.execute(
        "create table stg_foundation_models (region varchar, model_id varchar, model_name varchar, "
        "provider_name varchar)"
    )
    connection.execute(
        "create table stg_inference_profiles (region varchar, profile_id varchar, profile_type varchar, "
        "model_arns varchar[])"
    )
    connection.executemany(
        "insert into stg_foundation_models values (?, ?, ?, ?)",
        [(REGION, SONNET, "Claude Sonnet 4.5", "Anthropic"), (REGION, NOVA, "Nova Lite", "Amazon")],
    )
    connection.executemany(
        "insert into stg_inference_profiles values (?, ?, ?, ?)",
        [
            (REGION, US_SONNET, "SYSTEM_DEFINED", [f"arn:aws:bedrock:{REGION}::foundation-model/{SONNET}"]),
            (REGION, US_NOVA, "SYSTEM_DEFINED", [f"arn:aws:bedrock:{REGION}::foundation-model/{NOVA}"]),
            # Application profiles are not endpoints of their own.
            (REGION, "a1b2c3d4e5f6", "APPLICATION", [f"arn:aws:bedrock:{REGION}::foundation-model/{SONNET}"]),
        ],
    )
    # Three daily snapshots: the increase granted on 11-19 is in force at as_of; the one seen on 11-21 is not.
    snapshots = {
        datetime(2026, 11, 18, 12): {"L-F4DDD3EB": None},
        datetime(2026, 11, 19, 12): {"L-F4DDD3EB": 800_000.0},
        datetime(2026, 11, 21, 12): {"L-F4DDD3EB": 1_600_000.0},
    }
    defaults = {
        "L-F4DDD3EB": 200_000.0,
        "L-4A6BFAB1": 200.0,
        "L-381AD9EE": 1_000_000_000.0,
        "L-70423BF8": 2_000_000.0,
        "L-7C42E72A": 4_000_000.0,
        "L-45E0AD92": 1_000_000_000.0,
    }
    rows = []
    for snapshot_at, applied in snapshots.items():
        for code, default in defaults.items():
            value = applied.get(code)
            rows.append((REGION, code, QUOTA_NAMES[code], value or default, default, value, snapshot_at))
    connection.executemany("insert into stg_service_quotas_history values (?, ?, ?, ?, ?, ?, ?)", rows)
    return connection


def quota_map_rows(connection: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], tuple]:
    rows = connection.execute(
        """
        select endpoint, quota_type, endpoint_kind, quota_code, rule, quota_value, default_value, applied_value,
            effective_value, snapshot_at
        from quota_map
        """
    ).fetchall()
    return {(row[0], row[1]): row[2:] for row in rows}


def test_quota_map_uses_the_latest_snapshot_at_or_before_as_of(connection: duckdb.DuckDBPyConnection) -> None:
    build_quota_map(connection, as_of=AS_OF, overrides=[])
    rows = quota_map_rows(connection)
    kind, code, rule, value, default, applied, effective, snapshot_at = rows[(US_SONNET, "tpm")]
    assert (kind, code, rule) == ("geo", "L-F4DDD3EB", "name:cross-region:tpm")
    assert (value, default, applied, effective) == (800_000.0, 200_000.0, 800_000.0, 800_000.0)
    assert snapshot_at == datetime(2026, 11, 19, 12)

    build_quota_map(connection, as_of=datetime(2026, 11, 19, 0, 0), overrides=[])
    value, applied = quota_map_rows(connection)[(US_SONNET, "tpm")][3:6:2]
    assert (value, applied) == (200_000.0, None), "before the increase: the AWS default"

    build_quota_map(connection, as_of=datetime(2026, 11, 1, 0, 0), overrides=[])
    snapshot_at = quota_map_rows(connection)[(US_SONNET, "tpm")][-1]
    assert snapshot_at == datetime(2026, 11, 18, 12), "no snapshot that old: the earliest one, and it says so"


def test_tpd_quota_is_doubled_for_geographic_endpoints_only(connection: duckdb.DuckDBPyConnection) -> None:
    count = build_quota_map(connection, as_of=AS_OF, overrides=[])
    rows = quota_map_rows(connection)
    assert count == len(rows)
    base = rows[(NOVA, "tpd")]
    geo = rows[(US_NOVA, "tpd")]
    assert (base[0], base[2], base[-2]) == ("base", "name:on-demand:tpd", 1_000_000_000.0)
    assert (geo[0], geo[2], geo[-2]) == ("geo", "name:cross-region:tpd:doubled", 2_000_000_000.0)
    assert rows[(US_SONNET, "tpd")][-2] == 2_000_000_000.0
    # TPM is never doubled.
    assert rows[(US_NOVA, "tpm")][-2] == rows[(US_NOVA, "tpm")][3] == 4_000_000.0


def test_overrides_reach_the_quota_map(connection: duckdb.DuckDBPyConnection) -> None:
    from pipelines.quotas.overrides import OverrideRule

    build_quota_map(connection, as_of=AS_OF, overrides=[OverrideRule(SONNET, "us", "tpm", None)])
    rows = quota_map_rows(connection)
    assert (US_SONNET, "tpm") not in rows
    assert (US_SONNET, "rpm") in rows


# --- the mart ------------------------------------------------------------------------------------------------


def build_headroom(connection: duckdb.DuckDBPyConnection, lake: Path) -> None:
    (model,) = [model for model in discover_models() if model.name == "quota_headroom"]
    build_model(connection, model, lake=lake, as_of=AS_OF)


def headroom(connection: duckdb.DuckDBPyConnection, endpoint: str, quota_type: str, window: str) -> dict:
    relation = connection.execute(
        'select * from quota_headroom where endpoint = ? and quota_type = ? and "window" = ?',
        [endpoint, quota_type, window],
    )
    columns = [column[0] for column in relation.description]
    (row,) = relation.fetchall()
    return dict(zip(columns, row, strict=True))


@pytest.fixture
def usage(connection: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    build_quota_map(connection, as_of=AS_OF, overrides=[])
    connection.execute(
        """
        create table endpoint_minute (
            region varchar, endpoint varchar, ts timestamp, quota_tpm double, quota_tpm_computed double,
            estimated_tpm_quota_usage double, rpm double, throttles double, resolution_s integer default 60
        )
        """
    )
    # Every minute of the 30 days was read at 1-minute resolution; no coarse buckets, no burndown gaps.
    connection.execute(
        """
        create table window_coverage as
        select * from (values
            ('us-east-1', '1h', 60), ('us-east-1', '1d', 1440), ('us-east-1', '7d', 10080),
            ('us-east-1', '14d', 20160), ('us-east-1', '30d', 43200)
        ) as coverage (region, "window", covered_minutes_1min);
        alter table window_coverage add column covered_minutes_5min integer default 0;
        alter table window_coverage add column covered_minutes_1h integer default 0;
        alter table window_coverage add column uncovered_minutes integer default 0;
        create table usage_bucket (
            region varchar, endpoint varchar, ts timestamp, resolution_s integer, quota_tokens double,
            invocations bigint
        );
        create table model_burndown (region varchar, base_model_id varchar, missing_burndown boolean);
        """
    )
    # us.sonnet, TPM quota 800,000: (minutes before as_of, quota TPM, computed, RPM, throttles).
    minutes = [
        (1, 100_000, 90_000, 40, 0),
        (2, 400_000, 380_000, 90, 0),
        (3, 640_000, 600_000, 160, 0),  # exactly 80 %
        (4, 700_000, 690_000, 170, 0),
        (5, 800_000, 760_000, 200, 0),  # exactly 100 % of TPM and of RPM
        (6, 790_000, 780_000, 120, 7),  # throttled at 98.75 %: reached the quota
        (7, 300_000, 300_000, 60, 2),  # throttled at 37.5 %: not the TPM quota's doing
        (120, 500_000, 500_000, 100, 0),  # in the 1d window, not in the 1h window
    ]
    rows = [
        (REGION, US_SONNET, minutes_before(ago), float(tpm), float(computed), float(tpm), float(rpm), float(thr))
        for ago, tpm, computed, rpm, thr in minutes
    ]
    rows.append((REGION, US_SONNET, AS_OF, 900_000.0, 900_000.0, 900_000.0, 999.0, 0.0))  # ts = as_of: excluded
    # us.nova-lite: CloudWatch published no estimate, so quota TPM is the computed figure.
    rows.append((REGION, US_NOVA, minutes_before(10), 1_000.0, 1_000.0, None, 5.0, 0.0))
    connection.executemany(
        "insert into endpoint_minute (region, endpoint, ts, quota_tpm, quota_tpm_computed, estimated_tpm_quota_usage, "
        "rpm, throttles) values (?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    connection.execute(
        "create table tpd_daily (region varchar, endpoint varchar, series_id varchar, day_index integer, "
        "quota_tokens double, sliding_quota_tokens double)"
    )
    days = [
        # Nova Lite's daily quota is 1e9: 2e9 on the geographic endpoint, 1e9 in-region.
        (US_NOVA, "*", 0, 1_700_000_000.0),  # 85 % of the doubled quota, 170 % of the listed one
        (US_NOVA, "*", 1, 2_100_000_000.0),
        (US_NOVA, "*", 3, 100_000_000.0),
        (US_NOVA, "a1b2c3d4e5f6", 1, 2_100_000_000.0),  # a series row: never counted as the endpoint's
        (US_NOVA, "*", 9, 2_500_000_000.0),  # outside 7d
        (NOVA, "*", 0, 900_000_000.0),  # 90 % in-region
    ]
    # The sliding day equals the anchored one here: no usage straddles a day boundary.
    connection.executemany("insert into tpd_daily values (?, ?, ?, ?, ?, ?)", [(REGION, *day, day[-1]) for day in days])
    return connection


def test_tpm_headroom_counts_minutes_exactly(usage: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    build_headroom(usage, tmp_path / "lake")
    row = headroom(usage, US_SONNET, "tpm", "1h")
    in_hour = [100_000, 400_000, 640_000, 700_000, 800_000, 790_000, 300_000]
    assert row["quota_value"] == 800_000.0
    assert row["quota_code"] == "L-F4DDD3EB"
    assert row["usage_metric"] == "quota_tpm"
    assert row["p90"] == pytest.approx(float(np.quantile(in_hour, 0.9)))
    assert row["max"] == 800_000.0
    assert row["utilisation_p90"] == pytest.approx(float(np.quantile(in_hour, 0.9)) / 800_000)
    assert row["utilisation_max"] == 1.0
    assert (row["minutes_over_80"], row["minutes_over_100"], row["minutes_at_quota"]) == (4, 1, 2)
    assert (row["throttled_minutes"], row["active_points"], row["window_points"]) == (2, 7, 60)
    assert row["max_computed"] == 780_000.0 and row["max_estimated"] == 800_000.0
    assert row["usage_source"] == "estimated, differs from computed"

    day = headroom(usage, US_SONNET, "tpm", "1d")
    assert (day["active_points"], day["window_points"]) == (8, 1440)
    assert day["p90"] == pytest.approx(float(np.quantile([*in_hour, 500_000], 0.9)))


def test_rpm_and_an_idle_endpoint(usage: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    build_headroom(usage, tmp_path / "lake")
    rpm = headroom(usage, US_SONNET, "rpm", "1h")
    assert (rpm["quota_value"], rpm["usage_metric"], rpm["max"]) == (200.0, "rpm", 200.0)
    assert (rpm["minutes_over_80"], rpm["minutes_over_100"]) == (3, 1)  # 160, 170 and 200 of 200
    assert rpm["p90_estimated"] is None and rpm["usage_source"] is None

    nova = headroom(usage, US_NOVA, "tpm", "1h")
    assert nova["usage_source"] == "computed"
    # Nova Lite in-region has a TPM quota and no traffic: a row that says so, not a missing one.
    idle = headroom(usage, NOVA, "tpm", "1h")
    assert (idle["active_points"], idle["p90"], idle["max"], idle["minutes_over_80"]) == (0, None, None, 0)
    assert idle["quota_value"] == 2_000_000.0


def test_tpd_headroom_counts_days_against_the_doubled_quota(usage: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    build_headroom(usage, tmp_path / "lake")
    week = headroom(usage, US_NOVA, "tpd", "7d")
    assert week["usage_metric"] == "tpd"
    assert week["quota_value"] == 2_000_000_000.0 and week["listed_value"] == 1_000_000_000.0
    assert (week["active_points"], week["window_points"]) == (3, 7)
    assert week["max"] == 2_100_000_000.0
    assert week["p90"] == pytest.approx(float(np.quantile([1.7e9, 2.1e9, 1.0e8], 0.9)))
    assert (week["minutes_over_80"], week["minutes_over_100"], week["minutes_at_quota"]) == (2, 1, 1)

    last_day = headroom(usage, US_NOVA, "tpd", "1d")
    assert (last_day["max"], last_day["window_points"], last_day["minutes_over_100"]) == (1.7e9, 1, 0)
    assert last_day["utilisation_max"] == pytest.approx(0.85)
    # The 1h window reads the last 24 hours too.
    assert headroom(usage, US_NOVA, "tpd", "1h")["max"] == 1.7e9

    in_region = headroom(usage, NOVA, "tpd", "1d")
    assert in_region["quota_value"] == 1_000_000_000.0
    assert in_region["utilisation_max"] == pytest.approx(0.9)
    assert in_region["minutes_over_80"] == 1


def test_every_quota_gets_every_window(usage: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    build_headroom(usage, tmp_path / "lake")
    quotas = usage.execute("select count(*) from quota_map where quota_type in ('tpm', 'rpm', 'tpd')").fetchone()[0]
    windows = usage.execute('select count(distinct "window") from quota_headroom').fetchone()[0]
    assert windows == 5
    assert usage.execute("select count(*) from quota_headroom").fetchone()[0] == quotas * windows

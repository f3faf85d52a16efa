"""The ``quota_map`` table: every model endpoint of every region with the quota codes and values in force.

The name rules live in Python (``pipelines.quotas.mapper``), so this table is not a SQL file: the model step
calls :func:`build_quota_map` after the staging models and before the marts, and ``quota_headroom.sql`` reads
the result like any other table.

What it reads, per region:

- the Bedrock quotas of the latest Service Quotas snapshot taken at or before ``as_of`` (the lake keeps one
  snapshot per region and day), so a report for a past ``as_of`` measures usage against the quota that was in
  force then. A region whose first snapshot is younger than ``as_of`` uses that first snapshot: quotas change
  rarely, it is the best evidence there is, and ``snapshot_at`` shows it;
- the foundation models and system inference profiles as last seen (a model id keeps its quota codes for life;
  only the values change over time).

Inputs come from the staging tables (``stg_service_quotas_history``, ``stg_foundation_models``,
``stg_inference_profiles``, ``stg_metric_points``) when they exist, else straight from the lake's Parquet.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from pipelines.lake import dataset_glob, has_data
from pipelines.models import apply_comments, table_docs, table_exists
from pipelines.quotas.mapper import map_quotas
from pipelines.quotas.overrides import OverrideRule, load_overrides

TABLE = "quota_map"

# Geographic profile prefixes as Bedrock writes them; only consulted when no profile listing was staged.
_GEO_PREFIXES = ("us-gov", "us", "eu", "apac", "jp", "au", "ca")

SCHEMA = pa.schema(
    [
        ("region", pa.string()),
        ("model_id", pa.string()),
        ("endpoint", pa.string()),
        ("endpoint_kind", pa.string()),
        ("quota_type", pa.string()),
        ("quota_code", pa.string()),
        ("quota_name", pa.string()),
        ("rule", pa.string()),
        ("quota_value", pa.float64()),
        ("default_value", pa.float64()),
        ("applied_value", pa.float64()),
        ("effective_value", pa.float64()),
        ("snapshot_at", pa.timestamp("us")),
    ]
)


@dataclass(frozen=True)
class QuotaSnapshotRow:
    """One quota of the snapshot in force for a region."""

    region: str
    quota_code: str
    quota_name: str
    quota_value: float | None
    default_value: float | None
    applied_value: float | None
    snapshot_at: datetime


def build_quota_map(
    connection: duckdb.DuckDBPyConnection,
    *,
    as_of: datetime,
    overrides: Sequence[OverrideRule] | None = None,
    lake: Path | None = None,
) -> int:
    """Create or replace the ``quota_map`` table and return its row count.

    ``overrides`` default to ``quota-overrides.yaml`` in the buw data directory (an unusable file raises
    ``OverrideError``); pass ``[]`` for none. ``lake`` is only read when the staging tables are missing.
    The endpoint column holds the real endpoint id: ``base`` rows the model id, geographic rows
    ``<prefix>.<model id>``, global rows ``global.<model id>``. ``effective_value`` is the value usage is
    compared with: the quota value, doubled for the tokens-per-day quota of a geographic cross-region endpoint
    (rule ``…:doubled``).
    """
    as_of = _naive(as_of)
    if overrides is None:
        overrides = load_overrides()
    quotas = quota_snapshot(connection, as_of=as_of, lake=lake)
    models = _models(connection, lake)
    profiles = _profiles(connection, lake)
    seen_prefixes = _series_prefixes(connection, lake) if not profiles else {}

    rows: list[dict[str, Any]] = []
    for region in sorted(set(quotas) | set(models)):
        by_code = {quota.quota_code: quota for quota in quotas.get(region, ())}
        listing = [{"quota_code": code, "quota_name": quota.quota_name} for code, quota in by_code.items()]
        region_profiles = profiles.get(region)
        mappings = map_quotas(listing, models.get(region, []), region_profiles, overrides)
        for mapping in mappings:
            quota = by_code[mapping.quota_code]
            for endpoint, kind in _endpoints(
                mapping.model_id, mapping.endpoint, seen_prefixes.get(region, {}).get(mapping.model_id, ())
            ):
                value = quota.quota_value
                if value is None:
                    value = quota.applied_value if quota.applied_value is not None else quota.default_value
                doubled = mapping.quota_type == "tpd" and kind == "geo" and mapping.rule.endswith(":doubled")
                rows.append(
                    {
                        "region": region,
                        "model_id": mapping.model_id,
                        "endpoint": endpoint,
                        "endpoint_kind": kind,
                        "quota_type": mapping.quota_type,
                        "quota_code": mapping.quota_code,
                        "quota_name": mapping.quota_name,
                        "rule": mapping.rule,
                        "quota_value": value,
                        "default_value": quota.default_value,
                        "applied_value": quota.applied_value,
                        "effective_value": None if value is None else value * (2 if doubled else 1),
                        "snapshot_at": quota.snapshot_at,
                    }
                )
    rows.sort(key=lambda row: (row["region"], row["endpoint"], row["quota_type"], row["quota_code"]))
    _write(connection, pa.Table.from_pylist(rows, schema=SCHEMA))
    return len(rows)


def quota_snapshot(
    connection: duckdb.DuckDBPyConnection, *, as_of: datetime, lake: Path | None = None
) -> dict[str, list[QuotaSnapshotRow]]:
    """region -> the quotas of its latest snapshot at or before ``as_of`` (else its earliest snapshot)."""
    params: dict[str, Any] = {"as_of": as_of}
    if table_exists(connection, "stg_service_quotas_history"):
        source = """
            select region, quota_code, quota_name, quota_value, default_value, applied_value, snapshot_at
            from stg_service_quotas_history
        """
    elif lake is not None and has_data(lake, "service_quotas"):
        source = """
            select
                region, quota_code, quota_name, value as quota_value, default_value, applied_value, snapshot_at
            from read_parquet($glob, hive_partitioning = true, hive_types = {'region': varchar, 'date': date})
        """
        params["glob"] = dataset_glob(lake, "service_quotas")
    else:
        return {}
    # ``source`` is one of the two fixed texts above; every value goes in as a bound parameter.
    rows = connection.execute(
        f"""
        with quotas as ({source}),
        chosen as (
            select
                region,
                coalesce(max(snapshot_at) filter (where snapshot_at <= $as_of), min(snapshot_at)) as snapshot_at
            from quotas
            group by region
        )
        select
            quotas.region,
            quotas.quota_code,
            any_value(quotas.quota_name),
            max(quotas.quota_value),
            max(quotas.default_value),
            max(quotas.applied_value),
            quotas.snapshot_at
        from quotas
        inner join chosen on quotas.region = chosen.region and quotas.snapshot_at = chosen.snapshot_at
        group by quotas.region, quotas.quota_code, quotas.snapshot_at
        order by quotas.region, quotas.quota_code
        """,
        params,
    ).fetchall()
    snapshot: dict[str, list[QuotaSnapshotRow]] = defaultdict(list)
    for region, code, name, value, default, applied, snapshot_at in rows:
        snapshot[region].append(QuotaSnapshotRow(region, code, name or "", value, default, applied, snapshot_at))
    return dict(snapshot)


def _models(connection: duckdb.DuckDBPyConnection, lake: Path | None) -> dict[str, list[dict[str, Any]]]:
    if table_exists(connection, "stg_foundation_models"):
        query = "select region, model_id, model_name, provider_name from stg_foundation_models"
        params: dict[str, Any] = {}
    elif lake is not None and has_data(lake, "foundation_models"):
        query = """
            select region, model_id, model_name, provider as provider_name
            from read_parquet($glob, hive_partitioning = true, hive_types = {'region': varchar, 'date': date})
            qualify row_number() over (partition by region, model_id order by snapshot_at desc) = 1
        """
        params = {"glob": dataset_glob(lake, "foundation_models")}
    else:
        return {}
    models: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for region, model_id, model_name, provider in connection.execute(query, params).fetchall():
        models[region].append({"model_id": model_id, "model_name": model_name, "provider": provider})
    return dict(models)


def _profiles(connection: duckdb.DuckDBPyConnection, lake: Path | None) -> dict[str, list[dict[str, Any]]]:
    if table_exists(connection, "stg_inference_profiles"):
        query = "select region, profile_id, profile_type, model_arns from stg_inference_profiles"
        params: dict[str, Any] = {}
    elif lake is not None and has_data(lake, "inference_profiles"):
        query = """
            select region, profile_id, type as profile_type, model_arns
            from read_parquet($glob, hive_partitioning = true, hive_types = {'region': varchar, 'date': date})
            qualify row_number() over (partition by region, profile_id order by snapshot_at desc) = 1
        """
        params = {"glob": dataset_glob(lake, "inference_profiles")}
    else:
        return {}
    profiles: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for region, profile_id, profile_type, model_arns in connection.execute(query, params).fetchall():
        kind = (profile_type or "").upper()
        if kind not in {"SYSTEM", "SYSTEM_DEFINED"}:
            continue
        profiles[region].append(
            {"profile_id": profile_id, "type": "SYSTEM_DEFINED", "model_arns": list(model_arns or [])}
        )
    return dict(profiles)


def _series_prefixes(connection: duckdb.DuckDBPyConnection, lake: Path | None) -> dict[str, dict[str, tuple[str, ...]]]:
    """region -> model id -> geographic prefixes seen as CloudWatch ModelIds (used when profiles are unknown)."""
    if table_exists(connection, "stg_metric_points"):
        query = "select distinct region, series_id from stg_metric_points"
        params: dict[str, Any] = {}
    elif lake is not None and has_data(lake, "metric_points"):
        query = """
            select distinct region, model_id as series_id
            from read_parquet($glob, hive_partitioning = true, hive_types = {'region': varchar, 'date': date})
        """
        params = {"glob": dataset_glob(lake, "metric_points")}
    else:
        return {}
    found: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for region, series_id in connection.execute(query, params).fetchall():
        prefix, _, model_id = str(series_id).partition(".")
        if prefix in _GEO_PREFIXES and "." in model_id:
            found[region][model_id].add(prefix)
    return {
        region: {model_id: tuple(sorted(prefixes)) for model_id, prefixes in by_model.items()}
        for region, by_model in found.items()
    }


def _endpoints(model_id: str, endpoint: str, seen_prefixes: Sequence[str]) -> list[tuple[str, str]]:
    """(endpoint id, endpoint kind) rows for one mapper endpoint."""
    if endpoint == "base":
        return [(model_id, "base")]
    if endpoint == "global":
        return [(f"global.{model_id}", "global")]
    if endpoint == "custom":
        # Custom model deployments have ARNs of their own, unknown here; the mapper only emits them on request.
        return []
    if endpoint == "geo":
        return [(f"{prefix}.{model_id}", "geo") for prefix in seen_prefixes]
    return [(f"{endpoint}.{model_id}", "geo")]


def _write(connection: duckdb.DuckDBPyConnection, table: pa.Table) -> None:
    """Replace the table in one transaction and copy the data dictionary's descriptions onto it."""
    view = "__quota_map_rows"
    connection.register(view, table)
    try:
        connection.execute("begin transaction")
        try:
            connection.execute(
                f"""
                create or replace table {TABLE} as
                select
                    cast(region as varchar) as region,
                    cast(model_id as varchar) as model_id,
                    cast(endpoint as varchar) as endpoint,
                    cast(endpoint_kind as varchar) as endpoint_kind,
                    cast(quota_type as varchar) as quota_type,
                    cast(quota_code as varchar) as quota_code,
                    cast(quota_name as varchar) as quota_name,
                    cast(rule as varchar) as rule,
                    cast(quota_value as double) as quota_value,
                    cast(default_value as double) as default_value,
                    cast(applied_value as double) as applied_value,
                    cast(effective_value as double) as effective_value,
                    cast(snapshot_at as timestamp) as snapshot_at
                from {view}
                """
            )
            apply_comments(connection, TABLE, table_docs().get(TABLE))
            connection.execute("commit")
        except duckdb.Error:
            connection.execute("rollback")
            raise
    finally:
        connection.unregister(view)


def _naive(moment: datetime) -> datetime:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment

"""Quota headroom checks on the ``quota_headroom`` mart: warn before Bedrock starts throttling.

Each function has the call shape of the checks in ``pipelines.checks_sql`` (connection, ``lake``, ``as_of``) and
returns its :class:`~pipelines.checks_sql.CheckOutcome`; the model step attaches them to the ``quota_headroom``
asset with severity WARN. A check fails when an endpoint, over the last day:

- used more than 80 % of its quota at p90 (most busy minutes are close to the limit), or
- reached the quota in any minute (``minutes_at_quota``: measured usage at 100 %, or throttled while above
  80 %; see docs/quotas.md for why a throttled minute reads below 100 %).

The metadata carries the numbers of every endpoint that has traffic and a quota of the type, worst first, plus
the endpoints with traffic but no quota of the type (their headroom cannot be known).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from pipelines.checks_sql import CheckOutcome

CHECK_WINDOW = "1d"
P90_THRESHOLD = 0.8
# The quota types with a headroom check, in the order the checks and the report list them.
HEADROOM_QUOTA_TYPES = ("tpm", "rpm", "tpd")

_LABELS = {"tpm": "TPM", "rpm": "RPM", "tpd": "TPD"}


def check_tpm_headroom(
    connection: duckdb.DuckDBPyConnection, *, lake: Path | None = None, as_of: datetime | None = None
) -> CheckOutcome:
    """No endpoint's quota TPM over the last day is above 80 % of its TPM quota at p90, or at the quota in any
    minute."""
    return headroom_check(connection, "tpm")


def check_rpm_headroom(
    connection: duckdb.DuckDBPyConnection, *, lake: Path | None = None, as_of: datetime | None = None
) -> CheckOutcome:
    """No endpoint's requests per minute over the last day are above 80 % of its RPM quota at p90, or at the
    quota in any minute."""
    return headroom_check(connection, "rpm")


def check_tpd_headroom(
    connection: duckdb.DuckDBPyConnection, *, lake: Path | None = None, as_of: datetime | None = None
) -> CheckOutcome:
    """No endpoint's last rolling 24 hours used 80 % or more of its tokens-per-day quota (doubled for
    geographic cross-region endpoints)."""
    return headroom_check(connection, "tpd")


@dataclass(frozen=True)
class EndpointHeadroom:
    """One endpoint's headroom for one quota type over the check window, as ``quota_headroom`` holds it.

    ``flagged`` is the checks' verdict for the endpoint: p90 utilisation above the threshold, or at the quota in
    some minute (some day, for tpd). Utilisations are fractions (0.8 = 80 %); ``throttled_minutes`` is None for
    tpd.
    """

    region: str
    endpoint: str
    quota_type: str
    window: str
    quota_code: str
    quota_value: float
    p90: float | None
    max: float | None
    utilisation_p90: float | None
    utilisation_max: float | None
    minutes_over_80: int
    minutes_over_100: int
    minutes_at_quota: int
    throttled_minutes: int | None
    active_points: int
    flagged: bool


def endpoint_headroom(
    connection: duckdb.DuckDBPyConnection,
    quota_type: str,
    *,
    window: str = CHECK_WINDOW,
    p90_threshold: float = P90_THRESHOLD,
) -> list[EndpointHeadroom]:
    """Every endpoint with traffic in ``window`` and a quota of ``quota_type``, worst first, each with the
    check's verdict (``flagged``). The one place the warning rule lives: the checks and the report both use it.
    """
    rows = connection.execute(
        """
        select
            region,
            endpoint,
            quota_code,
            quota_value,
            p90,
            "max",
            utilisation_p90,
            utilisation_max,
            minutes_over_80,
            minutes_over_100,
            minutes_at_quota,
            throttled_minutes,
            active_points
        from quota_headroom
        where quota_type = $quota_type and "window" = $window and active_points > 0
        order by utilisation_p90 desc nulls last, utilisation_max desc nulls last, region, endpoint
        """,
        {"quota_type": quota_type, "window": window},
    ).fetchall()
    return [
        EndpointHeadroom(
            region=region,
            endpoint=endpoint,
            quota_type=quota_type,
            window=window,
            quota_code=code,
            quota_value=value,
            p90=p90,
            max=peak,
            utilisation_p90=utilisation_p90,
            utilisation_max=utilisation_max,
            minutes_over_80=over_80,
            minutes_over_100=over_100,
            minutes_at_quota=at_quota,
            throttled_minutes=throttled,
            active_points=active,
            flagged=(utilisation_p90 is not None and utilisation_p90 > p90_threshold) or at_quota > 0,
        )
        for (
            region,
            endpoint,
            code,
            value,
            p90,
            peak,
            utilisation_p90,
            utilisation_max,
            over_80,
            over_100,
            at_quota,
            throttled,
            active,
        ) in rows
    ]


def flagged_endpoints(
    connection: duckdb.DuckDBPyConnection, quota_types: Sequence[str] = HEADROOM_QUOTA_TYPES
) -> list[EndpointHeadroom]:
    """What the headroom checks warn about: every (endpoint, quota type) they flag, in ``quota_types`` order and
    worst first within a type."""
    return [
        numbers
        for quota_type in quota_types
        for numbers in endpoint_headroom(connection, quota_type)
        if numbers.flagged
    ]


def headroom_check(
    connection: duckdb.DuckDBPyConnection,
    quota_type: str,
    *,
    window: str = CHECK_WINDOW,
    p90_threshold: float = P90_THRESHOLD,
) -> CheckOutcome:
    """The headroom verdict for one quota type over one window of ``quota_headroom``.

    For tpd the 1d window holds one rolling day, so its p90 is that day's total: the check fails at 80 %.
    """
    checked = endpoint_headroom(connection, quota_type, window=window, p90_threshold=p90_threshold)
    endpoints: dict[str, dict[str, Any]] = {}
    failing: list[str] = []
    for numbers in checked:
        key = f"{numbers.region} {numbers.endpoint}"
        endpoints[key] = {
            "quota_code": numbers.quota_code,
            "quota_value": numbers.quota_value,
            "p90": _round(numbers.p90),
            "max": _round(numbers.max),
            "utilisation_p90_pct": _pct(numbers.utilisation_p90),
            "utilisation_max_pct": _pct(numbers.utilisation_max),
            "minutes_over_80": numbers.minutes_over_80,
            "minutes_over_100": numbers.minutes_over_100,
            "minutes_at_quota": numbers.minutes_at_quota,
            "throttled_minutes": numbers.throttled_minutes,
            "active_points": numbers.active_points,
        }
        if numbers.flagged:
            failing.append(key)
    label = _LABELS.get(quota_type, quota_type)
    unit = "days" if quota_type == "tpd" else "minutes"
    lines = [
        f"| endpoint | {label} quota | p90 | % at p90 | max | % at max | {unit} ≥ 80 % | {unit} at quota |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in failing:
        numbers = endpoints[key]
        lines.append(
            f"| {key} | {numbers['quota_value']:,.0f} ({numbers['quota_code']}) | {numbers['p90']:,.0f} | "
            f"{numbers['utilisation_p90_pct']} | {numbers['max']:,.0f} | {numbers['utilisation_max_pct']} | "
            f"{numbers['minutes_over_80']} | {numbers['minutes_at_quota']} |"
        )
    metadata: dict[str, Any] = {
        "window": window,
        "quota_type": quota_type,
        "p90_threshold_pct": p90_threshold * 100,
        "endpoints_checked": len(endpoints),
        "endpoints_over": len(failing),
        "failing_endpoints": "\n".join(failing),
        "endpoints": endpoints,
        "endpoints_without_quota": _without_quota(connection, quota_type, window),
    }
    if failing:
        metadata["summary"] = "\n".join(lines)
    return CheckOutcome(passed=not failing, violations=len(failing), metadata=metadata)


def _without_quota(connection: duckdb.DuckDBPyConnection, quota_type: str, window: str) -> str:
    """Endpoints with traffic in the window but no quota of the type in quota_map, one per line."""
    tables = {name for (name,) in connection.execute("select table_name from duckdb_tables()").fetchall()}
    if not {"window_stats", "quota_map"} <= tables:
        return ""
    rows = connection.execute(
        """
        select distinct stats.region, stats.endpoint
        from window_stats as stats
        where
            stats.series_id = '*'
            and stats."window" = $window
            and stats.metric = 'invocations'
            and stats.active_points > 0
            and not exists (
                select 1
                from quota_map
                where
                    quota_map.region = stats.region
                    and quota_map.endpoint = stats.endpoint
                    and quota_map.quota_type = $quota_type
            )
        order by stats.region, stats.endpoint
        """,
        {"quota_type": quota_type, "window": window},
    ).fetchall()
    return "\n".join(f"{region} {endpoint}" for region, endpoint in rows)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


def _pct(value: float | None) -> float | None:
    return None if value is None else round(float(value) * 100, 2)

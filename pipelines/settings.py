"""Where the warehouse lives and which ``as_of`` a run uses: the one rule for every setting, with no heavy imports.

``buw sql`` and other quick commands read these without importing Dagster or boto3; the Dagster resources
(``pipelines.resources``) call the same functions with their own fields as overrides. A value is taken from the
explicit argument (a resource field) first, the environment second and the default last, and resolved when it is
asked for, never at import time:

- ``BUW_WAREHOUSE`` (default ``./warehouse``): the lake (``lake/``) and the DuckDB file (``usage.duckdb``);
- ``BUW_REPORTS`` (default ``./reports/out``): generated reports;
- ``BUW_DATA_DIR`` (default: the platform's user data directory for "buw"): quota overrides and cached metadata;
- ``BUW_AS_OF`` (default: the current minute): the end of every window;
- ``BUW_REGIONS`` (default: the AWS session's region): the regions the Dagster assets extract.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

DATABASE_FILE = "usage.duckdb"

# The oldest DuckDB release that must open the warehouse file (pyproject.toml's lower bound for duckdb). The file
# is written in that release's storage format, so a notebook or BI tool with an older DuckDB than the one that
# built the marts still reads them; tests/interop/test_old_duckdb.py opens it with that very release.
OLDEST_READER = "1.3.0"
STORAGE_VERSION = f"v{OLDEST_READER}"


def warehouse_root(override: str | None = None) -> Path:
    """The warehouse directory: ``override``, else ``BUW_WAREHOUSE``, else ``./warehouse``; absolute."""
    return Path(override or os.environ.get("BUW_WAREHOUSE") or "warehouse").resolve()


def lake_dir(override: str | None = None) -> Path:
    """The raw Parquet lake inside the warehouse directory."""
    return warehouse_root(override) / "lake"


def database_path(override: str | None = None) -> Path:
    """The DuckDB file readers open: ``<warehouse>/usage.duckdb``."""
    return warehouse_root(override) / DATABASE_FILE


def reports_dir(override: str | None = None) -> Path:
    """Where reports go: ``override``, else ``BUW_REPORTS``, else ``./reports/out``; absolute."""
    return Path(override or os.environ.get("BUW_REPORTS") or "reports/out").resolve()


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """The buw data directory: ``BUW_DATA_DIR`` (from ``env``, default the process environment) when set, else the
    platform's user data directory for "buw"."""
    environment = os.environ if env is None else env
    configured = environment.get("BUW_DATA_DIR", "").strip()
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("buw"))


def listed_regions(override: Sequence[str] | None = None) -> list[str]:
    """The regions set explicitly: ``override``, else ``BUW_REGIONS`` (comma-separated); empty when neither is."""
    if override:
        return list(override)
    return [name.strip() for name in os.environ.get("BUW_REGIONS", "").split(",") if name.strip()]


def parse_as_of(text: str) -> datetime:
    """An ISO-8601 instant as a naive UTC datetime truncated to the minute (the warehouse's time convention)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as error:
        raise ValueError(f"as_of {text!r} is not an ISO-8601 time such as 2026-11-20T12:00:00Z") from error
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.replace(second=0, microsecond=0)


def current_minute() -> datetime:
    """The start of the current UTC minute, naive."""
    return datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0)


def pinned_as_of(override: str | None = None) -> str | None:
    """The pinned ``as_of`` text (``override``, else ``BUW_AS_OF``), or None when windows end at the current minute."""
    return override or os.environ.get("BUW_AS_OF") or None


def as_of_minute(override: str | None = None) -> datetime:
    """The pinned ``as_of`` as a naive UTC minute, else the start of the current UTC minute."""
    pinned = pinned_as_of(override)
    return parse_as_of(pinned) if pinned else current_minute()


def utc_text(moment: datetime) -> str:
    """A UTC instant as metadata shows it everywhere: ``2026-11-20T12:00:00Z`` (whole seconds, a ``Z``)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.replace(microsecond=0).isoformat() + "Z"

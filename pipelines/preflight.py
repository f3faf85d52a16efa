"""Checks a command runs before it touches AWS or the warehouse, so bad input fails at once and changes nothing.

Each check raises :class:`~pipelines.errors.UserError` with one sentence that says what is wrong and what to
do; none of them writes anything.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Collection, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from pipelines.errors import UserError

# CloudWatch keeps Bedrock's metrics at 1-hour resolution for 455 days; nothing older can be extracted.
CLOUDWATCH_RETENTION = timedelta(days=455)
# The local clock may run a little ahead of or behind AWS's; an as_of this far past it is still accepted.
CLOCK_TOLERANCE = timedelta(minutes=5)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def check_as_of(as_of: datetime | None, *, oldest: timedelta | None, option: str = "--as-of") -> None:
    """Refuse an ``as_of`` later than now + CLOCK_TOLERANCE, or (with ``oldest``) earlier than now - oldest.

    AWS's clock is not known before the first call, so the local clock stands in for it, with the tolerance.
    """
    if as_of is None:
        return
    now = _now()
    if as_of > now + CLOCK_TOLERANCE:
        raise UserError(
            f"{option} {as_of:%Y-%m-%dT%H:%MZ} is in the future (this machine's clock says {now:%Y-%m-%dT%H:%MZ}); "
            f"pass a time up to now, or leave {option} out for the current minute."
        )
    if oldest is not None and as_of < now - oldest:
        raise UserError(
            f"{option} {as_of:%Y-%m-%dT%H:%MZ} is more than {oldest.days} days ago, older than any metric "
            f"CloudWatch keeps; pass a time after {now - oldest:%Y-%m-%dT%H:%MZ}."
        )


def check_region(region: str) -> None:
    """``region`` must be one where Amazon Bedrock is offered."""
    from pipelines.aws.account import BEDROCK_REGIONS

    if region not in BEDROCK_REGIONS:
        raise UserError(
            f"{region!r} is not a region where Amazon Bedrock is offered; use one of "
            f"{', '.join(sorted(BEDROCK_REGIONS)[:8])}, … (see `buw refresh regions`)."
        )


def check_days(days: int) -> None:
    """``--days`` must ask for at least one day and no more than CloudWatch keeps."""
    limit = CLOUDWATCH_RETENTION.days
    if days < 1:
        raise UserError(f"--days {days} asks for no history; pass 1 to {limit} days to backfill.")
    if days > limit:
        raise UserError(f"--days {days} reaches past the {limit} days CloudWatch keeps; pass 1 to {limit}.")


def check_endpoint_url(environ: Mapping[str, str] | None = None) -> None:
    """``AWS_ENDPOINT_URL``, when set, must be an http(s) URL with a host (botocore fails deep inside otherwise)."""
    environ = os.environ if environ is None else environ
    url = environ.get("AWS_ENDPOINT_URL", "")
    if not url:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(
            f"AWS_ENDPOINT_URL {url!r} is not an http(s) URL; set it to e.g. http://127.0.0.1:4566 for the "
            "sandbox, or unset it to reach AWS."
        )


def check_warehouse_dir(root: Path, *, write: bool) -> None:
    """The warehouse directory must be a directory (or not exist yet) and, for ``write``, writable."""
    if root.exists() and not root.is_dir():
        raise UserError(f"the warehouse {root} is a file, not a directory; point BUW_WAREHOUSE at a directory.")
    if not write:
        return
    missing = root
    while not missing.exists():
        missing = missing.parent
    if not missing.is_dir():
        raise UserError(f"the warehouse {root} cannot be created: {missing} is a file; set BUW_WAREHOUSE elsewhere.")
    # A probe file rather than os.access: access() says yes to root, and to directories marked immutable.
    for directory in (missing, root / "lake"):
        if directory.is_dir() and not _can_create_in(directory):
            raise UserError(
                f"the warehouse directory {directory} is read-only; make it writable or point BUW_WAREHOUSE "
                "at a writable directory."
            )
    database = root / "usage.duckdb"
    if database.is_file():
        try:
            with open(database, "r+b"):
                pass
        except OSError as error:
            raise UserError(
                f"the warehouse database {database} is read-only ({error.strerror}); make it writable."
            ) from None


def _can_create_in(directory: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=directory, prefix=".buw-write-test-"):
            return True
    except OSError:
        return False


def check_database(path: Path) -> None:
    """``usage.duckdb``, when present, must open as a DuckDB database."""
    if not path.exists():
        return
    import duckdb

    try:
        duckdb.connect(str(path), read_only=True).close()
    except duckdb.IOException as error:
        detail = str(error).splitlines()[0]
        if "lock" in detail.lower():
            raise UserError(f"{path} is in use by another buw or DuckDB process; wait for it to finish.") from None
        raise UserError(
            f"{path} is not a readable DuckDB database ({detail}); move it aside and run `buw analyze` again, "
            "which rebuilds the marts from the lake."
        ) from None
    except duckdb.Error as error:
        raise UserError(f"cannot open {path} ({str(error).splitlines()[0]}).") from None


def check_lake(lake: Path, rereading: Collection[tuple[str, date]] = ()) -> None:
    """Every Parquet file of the lake must be readable: the models would otherwise fail, or skip it silently.

    ``rereading`` holds the (region, day) pairs whose metric files this run reads again from CloudWatch; an
    unreadable ``metric_points`` or ``metric_coverage`` file of one of them is replaced by the run, so it passes.
    """
    if not lake.is_dir():
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    for path in sorted(lake.glob("*/region=*/date=*/*.parquet")):
        dataset, region, day = path.parts[-4], path.parts[-3], path.parts[-2]
        if dataset in REREADABLE and _partition_key(region, day) in rereading:
            continue
        try:
            pq.read_metadata(path)
        except (OSError, pa.ArrowInvalid) as error:
            reason = "a link to a missing file" if path.is_symlink() and not path.exists() else str(error)
            raise UserError(
                f"the lake file {path} is unreadable ({reason}); delete it and run `buw analyze` again to "
                "re-extract that day."
            ) from None


# The datasets a run writes again whole for every day it reads.
REREADABLE = ("metric_points", "metric_coverage")


def _partition_key(region_part: str, date_part: str) -> tuple[str, date] | None:
    try:
        return region_part.removeprefix("region="), date.fromisoformat(date_part.removeprefix("date="))
    except ValueError:
        return None


def check_overrides() -> None:
    """``quota-overrides.yaml`` in the data directory, when present, must be valid."""
    from pipelines.quotas.overrides import OverrideError, load_overrides

    try:
        load_overrides()
    except OverrideError as error:
        raise UserError(str(error)) from None

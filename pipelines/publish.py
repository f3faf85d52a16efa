"""Writing the warehouse file without ever locking out its readers.

DuckDB lets one process write a database file and, while it does, no other process may open it, not even read-only;
and a read-only session (a notebook, the duckdb shell, ``buw sql``) in turn stops a writer from opening it. So the
model step never opens ``usage.duckdb`` for writing. It builds the models into a new file beside it,
``.usage.<run id>.duckdb.tmp``, checkpoints and closes that file, and renames it over ``usage.duckdb``
(``os.replace``, atomic on one file system):

- a reader that has the old file open keeps reading the old version (the same inode) until it reconnects; a reader
  that opens the file afterwards gets the new version; nobody ever sees half a build;
- a build that selects every model starts from an empty file; a partial build (some models only) starts from a
  copy of the current file, so the published file still holds every table;
- a build that fails publishes nothing: the previous file stays as it was;
- one build at a time: ``.usage.duckdb.lock`` is held (``flock``) for the whole build and names the run; a second
  build refuses with one sentence. The lock dies with its process, so a killed build never blocks the next one,
  and the next one deletes the temporary file the killed one left.

Every file is written in the storage format of the oldest DuckDB the project supports (``settings.STORAGE_VERSION``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from pipelines.models import ModelError
from pipelines.settings import STORAGE_VERSION


class WarehouseBusy(ModelError):
    """Another model build holds the warehouse; the message names its run."""


def lock_path(database: Path) -> Path:
    """The lock file of a warehouse file: ``.usage.duckdb.lock`` beside it."""
    return database.with_name(f".{database.name}.lock")


def temp_path(database: Path, run_id: str) -> Path:
    """The file a build writes before publishing: ``.usage.<run id>.duckdb.tmp`` beside the warehouse file."""
    stem = database.name.removesuffix(".duckdb")
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", run_id)
    return database.with_name(f".{stem}.{safe}.duckdb.tmp")


def stale_temp_files(database: Path) -> list[Path]:
    """Temporary build files (and their write-ahead logs) beside the warehouse file."""
    stem = database.name.removesuffix(".duckdb")
    return sorted(database.parent.glob(f".{stem}.*.duckdb.tmp*"))


@contextlib.contextmanager
def build_lock(database: Path, run_id: str) -> Iterator[None]:
    """Hold the warehouse's build lock for ``run_id``, or raise :class:`WarehouseBusy` naming the holder."""
    database.parent.mkdir(parents=True, exist_ok=True)
    path = lock_path(database)
    # "a+" neither truncates the holder's note nor fails when the file is missing.
    with open(path, "a+", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise WarehouseBusy(
                f"another model build ({holder}) is writing {database} right now; wait for it to finish "
                "or cancel it, then run again."
            ) from None
        try:
            lock.seek(0)
            lock.truncate()
            started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            lock.write(f"run {run_id}, pid {os.getpid()}, started {started}")
            lock.flush()
            yield
        finally:
            lock.seek(0)
            lock.truncate()
            fcntl.flock(lock, fcntl.LOCK_UN)


def storage_version(connection: duckdb.DuckDBPyConnection) -> str | None:
    """The storage format of the connection's database file, as DuckDB tags it (e.g. ``v1.3.0+``)."""
    rows = connection.execute(
        "select tags['storage_version'] from duckdb_databases() where database_name = current_database()"
    ).fetchall()
    return rows[0][0] if rows else None


def _open_build_file(database: Path, path: Path, *, copy_current: bool) -> duckdb.DuckDBPyConnection:
    """A writable connection to a new build file: empty, or holding every table of the current warehouse file."""
    config = {"storage_compatibility_version": STORAGE_VERSION}
    current_wal = database.with_name(database.name + ".wal")
    if copy_current and database.exists() and not current_wal.exists():
        # A byte copy is the fast way, and it keeps the file's storage format...
        shutil.copyfile(database, path)
        connection = duckdb.connect(str(path), config=config)
        if storage_version(connection) == f"{STORAGE_VERSION}+":
            return connection
        # ...so a file written in a newer format (by a DuckDB that wrote it in place, before this module) is
        # rewritten in the supported one instead.
        connection.close()
        path.unlink()
    connection = duckdb.connect(str(path), config=config)
    if copy_current and database.exists():
        # DuckDB reads the current file (replaying a write-ahead log a killed writer left) and copies every table,
        # view and comment into the new one.
        connection.execute("attach ? as current_warehouse (read_only)", [str(database)])
        connection.execute(f'copy from database current_warehouse to "{_database_name(connection)}"')
        connection.execute("detach current_warehouse")
    return connection


def _database_name(connection: duckdb.DuckDBPyConnection) -> str:
    ((name,),) = connection.execute("select current_database()").fetchall()
    return str(name).replace('"', '""')


@contextlib.contextmanager
def building(database: Path, run_id: str, *, copy_current: bool) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to a new warehouse file, published over ``database`` when the block ends without an error.

    ``copy_current`` starts from the current file's tables (a partial build); otherwise the file starts empty.
    Holds the build lock throughout and first deletes temporary files that killed builds left behind.
    """
    with build_lock(database, run_id):
        for leftover in stale_temp_files(database):
            leftover.unlink(missing_ok=True)
        path = temp_path(database, run_id)
        connection = _open_build_file(database, path, copy_current=copy_current)
        try:
            connection.execute("set timezone = 'UTC'")
            yield connection
            # The checkpoint folds the write-ahead log into the file, so the published file is complete on its own.
            connection.execute("checkpoint")
            connection.close()
            # A log beside the warehouse belongs to the file being replaced (a killed writer of the old scheme);
            # DuckDB would replay it onto the new file.
            database.with_name(database.name + ".wal").unlink(missing_ok=True)
            os.replace(path, database)
        finally:
            connection.close()
            for leftover in (path, path.with_name(path.name + ".wal")):
                leftover.unlink(missing_ok=True)

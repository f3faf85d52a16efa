"""One `buw` run per warehouse at a time.

Two runs on one warehouse would extract the same days twice and race for the model build; the second one would
wait on Dagster's ``cloudwatch`` pool or stop at the build lock half-way through. So a run first takes an OS lock
(``flock``) on ``.buw-run.lock`` in the warehouse directory, which holds the pid of the process that has it. The
operating system releases the lock when that process ends, however it ends, so a killed run never blocks the next.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from pipelines.errors import UserError

LOCK_NAME = ".buw-run.lock"


@contextlib.contextmanager
def run_lock(root: Path) -> Iterator[None]:
    """Hold the run lock of the warehouse at ``root`` for this process, or refuse at once naming the holder."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_NAME
    try:
        # "a+" neither truncates the holder's pid nor fails when the file is missing.
        lock = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - closed below, after the lock is released
    except OSError:
        # A read-only warehouse (`buw report` only renders from it): lock what is there, else nobody can write it.
        if not path.exists():
            yield
            return
        lock = open(path, encoding="utf-8")  # noqa: SIM115
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            pid = lock.read().strip() or "unknown"
            raise UserError(f"another buw run (pid {pid}) is using {root}; wait for it to finish.") from None
        try:
            _note(lock, str(os.getpid()))
            yield
        finally:
            _note(lock, "")
            fcntl.flock(lock, fcntl.LOCK_UN)


def _note(lock, text: str) -> None:
    if not lock.writable():
        return
    lock.seek(0)
    lock.truncate()
    lock.write(text)
    lock.flush()

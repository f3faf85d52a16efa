"""A `buw analyze` that waits for another run's CloudWatch slot says so, and Ctrl-C or SIGTERM stops it."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import time
import uuid

import dagster as dg
import pytest

from pipelines.pipeline import PROCESS_TAG
from tests.cli_env import isolated_env, start_buw

pytestmark = pytest.mark.integration


@pytest.fixture
def held(tmp_path, sandbox, monkeypatch):
    """An environment whose Dagster instance has the cloudwatch slot taken by a run of this (live) process."""
    env = {
        **isolated_env(tmp_path),
        "AWS_ENDPOINT_URL": sandbox.endpoint_url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    }
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    from pipelines.commands import _dagster_home

    _dagster_home()  # the instance settings the CLI writes (pool limit 1)
    with dg.DagsterInstance.get() as instance:
        run = instance.add_run(
            dg.DagsterRun(
                job_name="__ASSET_JOB",
                run_id=str(uuid.uuid4()),
                status=dg.DagsterRunStatus.STARTED,
                tags={PROCESS_TAG: f"{socket.gethostname()}:{os.getpid()}"},
            )
        )
        instance.event_log_storage.set_concurrency_slots("cloudwatch", 1)
        claim = instance.event_log_storage.claim_concurrency_slot("cloudwatch", run.run_id, "metric_points")
        assert claim.is_claimed
    return env, run.run_id


def _wait_for_line(process: subprocess.Popen, text: str, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stderr], [], [], 1)
        if ready:
            line = process.stderr.readline()
            seen += line
            if text in line:
                return line
        assert process.poll() is None, f"buw ended before waiting: {seen}"
    raise AssertionError(f"no line with {text!r} in {timeout} s: {seen}")


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 130)])
def test_a_run_waiting_for_the_cloudwatch_slot_names_the_holder_and_stops_on_a_signal(held, signum, code):
    env, holder = held
    process = start_buw("analyze", "-r", "us-east-1", "-y", "--days", "1", env=env)
    try:
        line = _wait_for_line(process, "waiting for run")
        assert f"waiting for run {holder[:8]} to finish reading CloudWatch" in line
        time.sleep(1.5)  # still waiting, not failed
        assert process.poll() is None
        process.send_signal(signum)
        assert process.wait(timeout=20) == code
    finally:
        if process.poll() is None:
            process.kill()
    with dg.DagsterInstance.get() as instance:
        # No run of the stopped buw is left behind, and the holder keeps its slot.
        assert [run.run_id for run in instance.get_runs()] == [holder]
        assert instance.event_log_storage.get_concurrency_info("cloudwatch").active_run_ids == {holder}

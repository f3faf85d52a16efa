"""`buw dev` as a user runs it: the Dagster UI comes up on the sandbox, and SIGTERM or Ctrl-C stops all of it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.cli_env import ROOT, isolated_env

pytestmark = [pytest.mark.integration, pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command name (which may hold spaces): state ppid pgrp ...
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process groups from /proc")
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_signal_stops_the_ui_its_processes_and_the_sandbox(tmp_path, stop_signal):
    port = _free_port()
    env = isolated_env(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "dev", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first = process.stdout.readline()
        sandbox = re.search(r"sandbox at http://127\.0\.0\.1:(\d+)", first)
        assert sandbox, first
        sandbox_port = int(sandbox.group(1))
        deadline = time.monotonic() + 240
        while not _answers(f"http://127.0.0.1:{port}/server_info"):
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the Dagster UI did not answer within 240 s"
            time.sleep(1)
        (dagster,) = _children(process.pid)
        # dagster dev leads its own process group, so a signal to buw dev reaches it only through buw dev.
        assert os.getpgid(dagster) == dagster != os.getpgid(process.pid)
        assert len(_group_members(dagster)) >= 2  # dagster dev and its webserver, daemon, code server
        assert _port_open(sandbox_port)
        process.send_signal(stop_signal)
        assert process.wait(timeout=60) == 0
        deadline = time.monotonic() + 10
        while _group_members(dagster) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _group_members(dagster) == []
        assert not _port_open(sandbox_port)
        assert not _answers(f"http://127.0.0.1:{port}/server_info")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()

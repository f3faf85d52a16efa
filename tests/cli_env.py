"""Running `buw` as a user would, in a subprocess with an environment of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def isolated_env(root: Path) -> dict[str, str]:
    """No AWS settings of the machine; a private warehouse, reports dir, data dir and Dagster home under root."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(
        {
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            # Without this botocore would look for credentials at the EC2 instance metadata address.
            "AWS_EC2_METADATA_DISABLED": "true",
            "BUW_WAREHOUSE": str(root / "warehouse"),
            "BUW_REPORTS": str(root / "reports"),
            "BUW_DATA_DIR": str(root / "data"),
            "DAGSTER_HOME": str(root / "dagster"),
        }
    )
    return env


def run_buw(*args: str, env: dict[str, str], timeout: float = 400) -> subprocess.CompletedProcess:
    """`buw ARGS` from the project root, stdin closed, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def start_buw(*args: str, env: dict[str, str]) -> subprocess.Popen:
    """`buw ARGS` started from the project root, stdin closed, stdout and stderr piped as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

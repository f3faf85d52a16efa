"""Bad input ends in one clear sentence and a non-zero exit, with no traceback and nothing lost."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest
from botocore.stub import Stubber

from pipelines import cli
from pipelines.resources import AwsResource
from tests import cli_env
from tests.cli_env import run_buw


def _one_sentence(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("buw: ")
    return lines[0]


@pytest.fixture
def isolated_env(tmp_path) -> dict[str, str]:
    return cli_env.isolated_env(tmp_path)


@pytest.fixture
def sandbox_env(isolated_env, sandbox) -> dict[str, str]:
    return {
        **isolated_env,
        "AWS_ENDPOINT_URL": sandbox.endpoint_url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    }


def test_unknown_region(isolated_env):
    line = _one_sentence(run_buw("analyze", "-r", "mars-north-1", "-y", env=isolated_env))
    assert "'mars-north-1' is not a region where Amazon Bedrock is offered" in line


def test_malformed_granularity_json(isolated_env):
    line = _one_sentence(run_buw("analyze", "-r", "us-east-1", "-g", '{"7days": ', "-y", env=isolated_env))
    assert "--granularity" in line and "valid JSON" in line


def test_granularity_with_an_unknown_window(isolated_env):
    line = _one_sentence(run_buw("analyze", "-r", "us-east-1", "-g", '{"2days": "1min"}', "-y", env=isolated_env))
    assert "unknown window '2days'" in line


def test_no_credentials(isolated_env):
    line = _one_sentence(run_buw("analyze", "-r", "us-east-1", "-y", env=isolated_env))
    assert "No AWS credentials were found" in line


@pytest.mark.integration
def test_unknown_model(sandbox_env):
    line = _one_sentence(run_buw("analyze", "-r", "us-east-1", "-m", "acme.nonexistent-v9:0", "-y", env=sandbox_env))
    assert "'acme.nonexistent-v9:0' is not a foundation model or inference profile in us-east-1" in line


@pytest.mark.integration
def test_unwritable_output_directory(sandbox_env, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    line = _one_sentence(run_buw("analyze", "-r", "us-east-1", "-y", "-o", str(blocker / "reports"), env=sandbox_env))
    assert "cannot write reports to" in line and "-o/--output-dir" in line


@pytest.mark.integration
def test_sandbox_port_taken(isolated_env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _one_sentence(run_buw("sandbox", "--port", str(port), env=isolated_env, timeout=60))
    assert f"port {port} on 127.0.0.1 is already in use" in line


def test_sql_without_a_warehouse(isolated_env):
    line = _one_sentence(run_buw("sql", "select 1", env=isolated_env))
    assert "there is no warehouse" in line


def test_access_denied_names_the_call_and_the_policy(monkeypatch, tmp_path, capsys):
    """AccessDenied from AWS becomes one sentence naming the denied call and docs/iam-policy.md."""
    original = AwsResource.client

    def denying_client(self, service, region):
        client = original(self, service, region)
        stubber = Stubber(client)
        stubber.add_client_error(
            "get_caller_identity",
            service_error_code="AccessDenied",
            service_message="User is not authorized to perform: sts:GetCallerIdentity",
            http_status_code=403,
        )
        stubber.activate()
        return client

    monkeypatch.setattr(AwsResource, "client", denying_client)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "BUW_WAREHOUSE": str(tmp_path / "warehouse"),
        "BUW_REPORTS": str(tmp_path / "reports"),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    assert cli.main(["analyze", "-r", "us-east-1", "-y"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "AWS denied sts:GetCallerIdentity while" in err and "docs/iam-policy.md" in err

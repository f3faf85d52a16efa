"""An account with Bedrock set up but never called: `buw analyze` says so, exits 0 and writes no empty pages."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest

from pipelines.sandbox.server import SandboxServer
from tests.cli_env import isolated_env, run_buw

PINNED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def empty_sandbox():
    with SandboxServer("empty", now=PINNED) as server:
        yield server


def test_the_empty_scenario_has_an_account_shape_and_no_metric(empty_sandbox, monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}.items():
        monkeypatch.setenv(name, value)
    session = boto3.session.Session(region_name="us-east-1")
    bedrock = session.client("bedrock", endpoint_url=empty_sandbox.endpoint_url)
    profiles = bedrock.list_inference_profiles(typeEquals="APPLICATION")["inferenceProfileSummaries"]
    assert len(profiles) == 3
    cloudwatch = session.client("cloudwatch", endpoint_url=empty_sandbox.endpoint_url)
    assert cloudwatch.list_metrics(Namespace="AWS/Bedrock")["Metrics"] == []


@pytest.mark.integration
@pytest.mark.slow
def test_analyze_on_an_account_without_usage_says_so(empty_sandbox, tmp_path):
    env = {
        **isolated_env(tmp_path),
        "AWS_ENDPOINT_URL": empty_sandbox.endpoint_url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    result = run_buw("analyze", "-r", "us-east-1", "-y", "--as-of", "2026-11-20T12:00Z", "--days", "2", env=env)
    assert result.returncode == 0, result.stderr
    assert "no Bedrock usage in us-east-1 between 2026-11-18 00:00 and 2026-11-20 12:00 UTC" in result.stdout
    # No table of nothing, and no report page per endpoint with empty charts: only the index, which says so.
    assert "p90 TPM" not in result.stdout
    reports = tmp_path / "reports"
    assert sorted(path.name for path in reports.rglob("*.html")) == ["index.html"]
    assert "No endpoints" in (reports / "index.html").read_text()
    # Re-rendering says the same, rather than asking for a `buw analyze` that has just run.
    again = run_buw("report", env=env)
    assert again.returncode == 0, again.stderr
    assert "no Bedrock usage in us-east-1 between 2026-11-18 00:00 and 2026-11-20 12:00 UTC" in again.stdout

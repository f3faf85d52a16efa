"""The Dagster webserver serves the code location: its GraphQL API lists every asset, check and schedule."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipelines.models import data_dictionary

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

QUERY = """
{
  assetNodes { assetKey { path } groupName assetChecksOrError { ... on AssetChecks { checks { name } } } }
  repositoriesOrError { ... on RepositoryConnection { nodes { name schedules { name cronSchedule } } } }
}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str, query: str) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture
def webserver(tmp_path):
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "BUW_WAREHOUSE": str(tmp_path / "warehouse")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster_webserver",
            "-w",
            str(ROOT / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=2):
                break
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    f"dagster-webserver did not start: {process.stderr.read().decode()[-2000:]}"
                ) from None
            time.sleep(0.5)
    yield url
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def test_webserver_lists_assets_checks_and_schedules(webserver):
    answer = _post(f"{webserver}/graphql", QUERY)
    assert "errors" not in answer, answer.get("errors")
    nodes = answer["data"]["assetNodes"]
    assets = {"/".join(node["assetKey"]["path"]): node for node in nodes}
    for name in ("metric_points", "inference_profiles", "service_quotas", "window_stats", "tag_attribution"):
        assert name in assets
    assert assets["metric_points"]["groupName"] == "extract"
    assert assets["window_stats"]["groupName"] == "models"
    assert assets["reports"]["groupName"] == "report"
    checks = {check["name"] for node in nodes for check in (node["assetChecksOrError"] or {}).get("checks", [])}
    assert "no_duplicate_points" in checks
    schedules = {
        schedule["name"]
        for repository in answer["data"]["repositoriesOrError"]["nodes"]
        for schedule in repository["schedules"]
    }
    assert schedules == {"hourly_extract"}


UI_METADATA = """
{
  assetNodes {
    assetKey { path }
    owners { ... on TeamAssetOwner { team } }
    internalFreshnessPolicy { ... on TimeWindowFreshnessPolicy { failWindowSeconds warnWindowSeconds } }
    metadataEntries {
      label
      ... on TableSchemaMetadataEntry { schema { columns { name type description } } }
      ... on CodeReferencesMetadataEntry { codeReferences { ... on LocalFileCodeReference { filePath } } }
    }
  }
}
"""


def test_the_ui_shows_columns_owners_freshness_and_code_before_any_run(webserver):
    answer = _post(f"{webserver}/graphql", UI_METADATA)
    assert "errors" not in answer, answer.get("errors")
    assets = {"/".join(node["assetKey"]["path"]): node for node in answer["data"]["assetNodes"]}
    for name, node in assets.items():
        assert node["owners"] == [{"team": "platform"}], name
        assert node["internalFreshnessPolicy"]["failWindowSeconds"] > 0, name
        entries = {entry["label"]: entry for entry in node["metadataEntries"]}
        assert entries["dagster/code_references"]["codeReferences"], name
        if name != "reports":
            columns = entries["dagster/column_schema"]["schema"]["columns"]
            assert columns and all(column["description"] for column in columns), name
    window_stats = {entry["label"]: entry for entry in assets["window_stats"]["metadataEntries"]}
    documented = [
        {"name": column.name, "type": column.type, "description": column.description}
        for column in data_dictionary()["window_stats"].columns
    ]
    assert window_stats["dagster/column_schema"]["schema"]["columns"] == documented
    assert window_stats["dagster/code_references"]["codeReferences"][0]["filePath"].endswith(
        "sql/marts/window_stats.sql"
    )
    assert assets["metric_points"]["internalFreshnessPolicy"]["failWindowSeconds"] == 7200

"""Shared fixtures: one sandbox account per test session and an AWS environment that points boto3 at it.

- ``sandbox``: a started :class:`~pipelines.sandbox.server.SandboxServer` for the bundled ``demo`` scenario, seed 0,
  clock pinned at :data:`PINNED`. It is shared: do not move its clock or rely on its stats (start your own server
  for that).
- ``aws_env``: AWS_ENDPOINT_URL, dummy credentials and AWS_REGION=us-east-1 for the test; AWS_PROFILE and the
  user's AWS config files are hidden so nothing reaches a real account.
- ``boto3_client``: ``boto3_client("cloudwatch", region="us-east-1", **client_kwargs)`` makes a plain boto3
  client for the sandbox (it implies ``aws_env``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

PINNED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Any]:
    """The demo sandbox (seed 0, clock pinned at PINNED) serving on a free local port for the whole session."""
    from pipelines.sandbox.server import SandboxServer

    with SandboxServer("demo", seed=0, now=PINNED) as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, sandbox: Any) -> dict[str, str]:
    """Environment variables that send every boto3 call of the test to the sandbox with dummy credentials."""
    env = {
        "AWS_ENDPOINT_URL": sandbox.endpoint_url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        # The user's own config could carry a profile, an endpoint or credentials of a real account.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return env


@pytest.fixture(scope="session")
def _botocore_loader() -> Any:
    # Parsing botocore's service models is most of a client's creation time; one loader serves every session.
    from botocore.loaders import create_loader

    return create_loader()


@pytest.fixture
def boto3_client(aws_env: dict[str, str], _botocore_loader: Any) -> Callable[..., Any]:
    """A factory ``boto3_client(service, region="us-east-1", **kwargs)`` of plain boto3 clients for the sandbox."""
    import boto3
    import botocore.session

    def make(service: str, region: str = "us-east-1", **kwargs: Any) -> Any:
        session = botocore.session.Session()
        session.register_component("data_loader", _botocore_loader)
        return boto3.session.Session(botocore_session=session).client(service, region_name=region, **kwargs)

    return make


@pytest.fixture(autouse=True)
def _private_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    # A developer's own quota-overrides.yaml (or cached metadata) must not change what the tests see.
    monkeypatch.setenv("BUW_DATA_DIR", str(tmp_path_factory.mktemp("buw-data")))


# `make test` runs two pytest-xdist workers with --dist loadgroup: the tests of one xdist_group (which share an
# expensive module fixture) form one unit of work, and each worker takes the next unit as it runs dry. A long unit
# taken last keeps one worker busy for minutes after the other has finished, so the longest groups (a few minutes
# each on a 2-core machine) go first, longest first, and the short tests fill in behind them. `make test` passes
# --no-loadscope-reorder, which keeps this order (xdist's own reorder counts tests, not seconds).
LONGEST_FIRST = (
    "faults",
    "one-path",
    "least-privilege",
    "e2e-exactness",
    "bad-input",
    "interop",
    "e2e-demo",
    "e2e-callers",
    "old-duckdb",
)


def _group(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("xdist_group")
    if marker is None:
        return None
    return marker.args[0] if marker.args else marker.kwargs.get("name")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # pytest-xdist groups a worker's tests by the "@group" it appends to their node ids (its own hook ran before
    # this one); where it cannot, each test of a group goes to any worker and builds the group's fixtures again.
    if getattr(config.option, "loadgroup", False):
        ungrouped = [item.nodeid for item in items if _group(item) and "@" not in item.nodeid]
        if ungrouped:
            raise pytest.UsageError(f"pytest-xdist did not group {ungrouped[0]} by its xdist_group: see pyproject.toml")
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    # A stable sort: within a group, and among the ungrouped tests, collection order stays.
    items.sort(key=lambda item: rank.get(_group(item), len(LONGEST_FIRST)))

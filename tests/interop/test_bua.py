"""Interop: a published third-party boto3 tool works unmodified against the sandbox.

bedrock-usage-analyzer (``bua``, from PyPI) is installed into a virtual environment of its own, cached under
``<repo>/.cache/interop-venv`` and reused while the pinned versions match, and run as a subprocess with dummy
credentials and ``AWS_ENDPOINT_URL`` pointing at a sandbox:

    bua analyze -r us-east-1 -m us.anthropic.claude-sonnet-4-5-20250929-v1:0 -g 1min -y -o OUT

Its JSON report is then checked against the demo scenario: usage for the endpoint and each of its application
profiles, their tags, the quota values, and minute values equal to what the sandbox served. A second run adds
``--breakdown principal``: bua reads the model invocation logs through Logs Insights (its own query text,
unmodified) and the principals' IAM tags, and its per-principal usage must equal the sandbox's own per-caller
totals. bua ends its
windows at the wall clock, so this test starts its own sandbox on the wall clock (the shared ``sandbox``
fixture is pinned in the past); the sandbox anchors its traffic on the current day and reaches 45 days back.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.interop, pytest.mark.integration, pytest.mark.xdist_group("interop")]

# The release this test was written against; bump it deliberately, after reading what the new one calls.
BUA_VERSION = "0.7.0b0"
REGION = "us-east-1"
ENDPOINT = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
# One of bua's report windows; it always holds five weekdays, so every profile of the endpoint has traffic.
USAGE_WINDOW = "7days"
AGGREGATE = "__AGGREGATED__"

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".cache" / "interop-venv"
INSTALL_TIMEOUT_S = 900
RUN_TIMEOUT_S = 300


# ---- the third-party tool's own virtual environment
# ------------------------------------------------------------------------------------------------------------


def _requirements() -> list[str]:
    """What the interop venv holds: bua pinned, and the boto3/botocore of the project's own venv.

    bua accepts any boto3 >= 1.39.7; pinning the project's own release means the wire protocols bua speaks are
    the ones the sandbox's other tests exercise, and a new botocore reaches both environments together.
    """
    return [
        f"bedrock-usage-analyzer=={BUA_VERSION}",
        f"boto3=={metadata.version('boto3')}",
        f"botocore=={metadata.version('botocore')}",
    ]


def _ensure_venv(requirements: list[str]) -> Path:
    """Create (or reuse) the interop venv and return its ``bua`` executable."""
    cache = VENV.parent
    cache.mkdir(parents=True, exist_ok=True)
    # Keeps git (and ruff, which honours .gitignore files) away from the cached venv, as .pytest_cache does.
    ignore = cache / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# created by tests/interop: cached virtual environments\n*\n")
    marker = VENV / "buw-interop.json"
    wanted = {"python": sys.version.split()[0], "requirements": requirements}
    bua = VENV / "bin" / "bua"
    # Two pytest workers may reach this at once; the lock makes the second one reuse the first one's venv.
    with open(cache / "interop-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with contextlib.suppress(OSError, ValueError):
            if bua.exists() and json.loads(marker.read_text()) == wanted:
                return bua
        # Stale or half-built (the marker is written last): start again.
        shutil.rmtree(VENV, ignore_errors=True)
        _run_or_fail([sys.executable, "-m", "venv", str(VENV)], "python -m venv")
        _run_or_fail(
            [
                str(VENV / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                *requirements,
            ],
            f"pip install {' '.join(requirements)}",
        )
        marker.write_text(json.dumps(wanted, indent=2))
    return bua


def _run_or_fail(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} did not finish within {INSTALL_TIMEOUT_S} s")
    if done.returncode != 0:
        pytest.fail(f"{what} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


@pytest.fixture(scope="session")
def bua_executable() -> Path:
    """``bua`` from PyPI, installed unmodified in its own virtual environment."""
    return _ensure_venv(_requirements())


# ---- one bua run against a wall-clock sandbox
# ------------------------------------------------------------------------------------------------------------


def _run_bua(bua_executable: Path, extra: list[str]) -> Iterator[BuaRun]:
    """Run ``bua analyze`` on the analysed endpoint against a fresh demo sandbox on the wall clock."""
    from pipelines.sandbox.server import SandboxServer

    with tempfile.TemporaryDirectory(prefix="bua-interop-") as tmp, SandboxServer("demo", seed=0) as server:
        home = Path(tmp)
        out = home / "out"
        command = [str(bua_executable), "analyze", "-r", REGION, "-m", ENDPOINT, *extra, "-y", "-o", str(out)]
        try:
            done = subprocess.run(
                command,
                env=_bua_env(home, server.endpoint_url),
                cwd=home,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=RUN_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"bua analyze did not finish within {RUN_TIMEOUT_S} s:\n{exc.output or ''}")
        with urllib.request.urlopen(f"{server.endpoint_url}/_sandbox/stats", timeout=10) as response:
            stats = json.load(response)
        yield BuaRun(
            returncode=done.returncode,
            output=done.stdout,
            reports=tuple(sorted(out.glob("*"))) if out.is_dir() else (),
            stats=stats,
            scenario=server.scenario,
            traffic=server.traffic,
        )


@dataclass(frozen=True)
class BuaRun:
    """What one ``bua analyze`` run left behind."""

    returncode: int
    output: str
    reports: tuple[Path, ...]
    stats: dict[str, Any]
    scenario: Any
    traffic: Any


def _bua_env(home: Path, endpoint_url: str) -> dict[str, str]:
    """A from-scratch environment: dummy credentials, the sandbox endpoint, none of the user's AWS setup."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
        # bua labels its series in local time and passes the offset to GetMetricData; UTC keeps runs alike.
        "TZ": "UTC",
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": str(home / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        # bua's user metadata (refreshed model lists) would override its bundled tables; an empty dir has none
        "BEDROCK_ANALYZER_DATA_DIR": str(home / "bua-data"),
    }


@pytest.fixture(scope="module")
def bua_run(bua_executable: Path) -> Iterator[BuaRun]:
    """Run ``bua analyze`` once against a fresh demo sandbox on the wall clock; its reports are deleted after."""
    yield from _run_bua(bua_executable, ["-g", "1min"])


@pytest.fixture(scope="module")
def bua_breakdown_run(bua_executable: Path) -> Iterator[BuaRun]:
    """``bua analyze ... --breakdown principal``: usage per IAM principal from the invocation logs."""
    # bua asks for the granularity unless it is given; 1-hour charts keep the report small.
    yield from _run_bua(bua_executable, ["-g", "1hour", "--breakdown", "principal"])


def _report_file(run: BuaRun, suffix: str) -> Path:
    # bua names each report after the endpoint (non-alphanumerics as "_") plus a local timestamp.
    stem = "us_anthropic_claude-sonnet-4-5-20250929-v1_0-"
    found = [path for path in run.reports if path.name.startswith(stem) and path.suffix == suffix]
    assert len(found) == 1, f"expected one {suffix} report in {[p.name for p in run.reports]}\n{_tail(run)}"
    return found[0]


def _tail(run: BuaRun) -> str:
    return "bua output (tail):\n" + run.output[-4000:]


@pytest.fixture(scope="module")
def bua_json(bua_run: BuaRun) -> dict[str, Any]:
    """bua's JSON report (a few hundred MB: every 1-minute value of every window)."""
    assert bua_run.returncode == 0, _tail(bua_run)
    with open(_report_file(bua_run, ".json"), encoding="utf-8") as handle:
        return json.load(handle)


def _endpoint_profiles(scenario: Any) -> list[Any]:
    """The demo's application profiles copied from the analysed endpoint."""
    profiles = [p for p in scenario.application_profiles(REGION) if p.endpoint_id == ENDPOINT]
    assert profiles, f"the demo scenario has no application profile of {ENDPOINT} in {REGION}"
    return profiles


def _series_with_traffic(scenario: Any) -> set[str]:
    """CloudWatch ModelIds of the endpoint the scenario sends traffic through (direct and per profile)."""
    return {spec.model_id for spec in scenario.traffic.get(REGION, ()) if spec.endpoint_id == ENDPOINT}


# ---- tests
# ------------------------------------------------------------------------------------------------------------


def test_bua_exits_cleanly_and_writes_its_html_and_json_reports(bua_run: BuaRun) -> None:
    assert bua_run.returncode == 0, _tail(bua_run)
    json_report = _report_file(bua_run, ".json")
    html_report = _report_file(bua_run, ".html")
    assert json_report.stat().st_size > 0
    html = html_report.read_text(encoding="utf-8")
    assert ENDPOINT in html
    for profile in _endpoint_profiles(bua_run.scenario):
        assert profile.name in html, f"the HTML report does not mention application profile {profile.name}"


def test_report_shows_usage_for_the_endpoint_and_each_of_its_application_profiles(
    bua_run: BuaRun, bua_json: dict[str, Any]
) -> None:
    scenario = bua_run.scenario
    profiles = _endpoint_profiles(scenario)
    assert bua_json["endpoint"] == ENDPOINT
    # bua found every application profile of the endpoint, and no other, from the profiles' model ARN sets.
    assert bua_json["profile_names"] == {ENDPOINT: ENDPOINT, **{p.profile_id: p.name for p in profiles}}

    window = bua_json["stats"][USAGE_WINDOW]
    active = _series_with_traffic(scenario)
    assert {p.profile_id for p in profiles} <= active, "every profile of the demo endpoint carries traffic"
    for series_id in sorted(active):
        stats = window[series_id]
        name = bua_json["profile_names"][series_id]
        assert stats["InputTokenCount"]["sum"] > 0, f"no input tokens for {name}"
        assert stats["OutputTokenCount"]["sum"] > 0, f"no output tokens for {name}"
        assert stats["TPM"]["avg"] > 0, f"no TPM for {name}"
        assert stats["RPM"]["avg"] > 0, f"no RPM for {name}"
    # The demo's code-review-bot bursts past the endpoint's quota every weekday; bua must see those throttles.
    assert window[AGGREGATE]["InvocationThrottles"]["sum"] > 0

    # bua read each profile's tags (ListTagsForResource) for its contribution table.
    tags = {row["profile_id"]: row["profile_tags"] for row in bua_json["contributions"][USAGE_WINDOW]}
    for profile in profiles:
        assert tags[profile.profile_id] == profile.tags, f"tags of {profile.name}"


def test_report_carries_the_scenario_quota_values_for_the_endpoint(bua_run: BuaRun, bua_json: dict[str, Any]) -> None:
    scenario = bua_run.scenario
    endpoint = scenario.endpoint(REGION, ENDPOINT)
    assert endpoint is not None
    quotas = bua_json["quotas"]
    for kind, code in (("tpm", endpoint.tpm_quota_code), ("rpm", endpoint.rpm_quota_code)):
        expected = scenario.quota_value(REGION, code)
        assert expected is not None, f"the demo has no {kind} quota for {ENDPOINT}"
        # bua carries its own table of quota codes: it must name the quota the sandbox enforces, with its value.
        assert quotas[kind] is not None, f"bua shows no {kind} quota:\n{_tail(bua_run)}"
        assert quotas[kind]["code"] == code
        assert quotas[kind]["value"] == expected
        chart = "TPM" if kind == "tpm" else "RPM"
        assert bua_json["time_series"]["1hour"][ENDPOINT][chart]["quota"]["value"] == expected


def test_reported_minutes_equal_what_the_sandbox_served(bua_run: BuaRun, bua_json: dict[str, Any]) -> None:
    # Every 1-minute TPM value bua fetched (its 30-day window: all the 1-minute data CloudWatch keeps) must be
    # the sandbox's input + output tokens of that minute, with no minute lost or invented.
    traffic = bua_run.traffic
    for series_id in sorted(_series_with_traffic(bua_run.scenario)):
        series = bua_json["time_series"]["30days"][series_id]["TPM_1min"]
        reported = {
            int(datetime.fromisoformat(ts).timestamp()) // 60: value
            for ts, value in zip(series["timestamps"], series["values"], strict=True)
        }
        assert reported, f"no 1-minute data for {series_id}"
        start, stop = min(reported), max(reported) + 1
        tokens_in = traffic.minutes(REGION, series_id, "InputTokenCount", start, stop)
        tokens_out = traffic.minutes(REGION, series_id, "OutputTokenCount", start, stop)
        served = {
            start + int(i): float(tokens_in.sum[i] + tokens_out.sum[i])
            for i in range(stop - start)
            if tokens_in.count[i] > 0 and tokens_out.count[i] > 0
        }
        assert reported.keys() == served.keys(), f"minutes differ for {series_id}"
        assert reported == pytest.approx(served), f"token counts differ for {series_id}"


def test_sandbox_served_bua_through_cloudwatch_bedrock_and_service_quotas(bua_run: BuaRun) -> None:
    calls = bua_run.stats["calls"]
    series = 1 + len(_endpoint_profiles(bua_run.scenario))
    # bua asks GetMetricData twice per series (token metrics, then throttles/errors/latency).
    assert calls.get("monitoring:GetMetricData", 0) >= 2 * series, calls
    assert bua_run.stats["datapoints_returned"] > 0
    assert calls.get("bedrock:ListInferenceProfiles", 0) >= 2, calls
    assert calls.get("servicequotas:GetServiceQuota", 0) >= 2, calls
    assert calls.get("sts:GetCallerIdentity", 0) >= 1, calls
    assert bua_run.stats["faults"] == {}


# ---- the breakdown by caller, from the invocation logs
# ------------------------------------------------------------------------------------------------------------

# bua's row for usage CloudWatch counted but the logs do not hold (logging switched on late).
UNATTRIBUTED = "(not in the invocation logs)"
FULLY_LOGGED_WINDOW = "7days"  # the demo switched logging on ten days before the anchor day
PARTLY_LOGGED_WINDOW = "14days"


def _bua_principal(principal: str, arn: str) -> str:
    """The name bua gives a caller: role/<name>, user/<name>, or the ARN of anyone else."""
    return principal if principal.startswith(("role/", "user/")) else arn


def test_breakdown_by_principal_equals_the_sandboxs_own_caller_totals(bua_breakdown_run: BuaRun) -> None:
    from pipelines.sandbox.invocation_logs import invocation_logs

    run = bua_breakdown_run
    assert run.returncode == 0, _tail(run)
    with open(_report_file(run, ".json"), encoding="utf-8") as handle:
        breakdown = json.load(handle)["breakdown"]
    assert breakdown["kind"] == "principal"
    assert breakdown["log_group"] == "/aws/bedrock/modelinvocations"
    period = breakdown["periods"][FULLY_LOGGED_WINDOW]
    assert period["partial"] is False
    rows = {row["name"]: row for row in period["rows"]}
    assert rows, f"no per-principal rows:\n{_tail(run)}"
    assert UNATTRIBUTED not in rows

    start = datetime.fromisoformat(period["covered_from"])
    end = datetime.fromisoformat(period["covered_to"])
    series = _series_with_traffic(run.scenario)
    expected: dict[str, list[float]] = {}
    for row in invocation_logs(run.traffic).caller_totals(REGION, start, end):
        if row["model_id"] in series and row["requests"]:
            cell = expected.setdefault(_bua_principal(row["principal"], row["arn"]), [0.0, 0.0])
            cell[0] += row["input_tokens"] + row["output_tokens"]
            cell[1] += row["requests"]
    assert set(rows) == set(expected)
    for name, (tokens, requests) in expected.items():
        assert rows[name]["tokens"] == pytest.approx(tokens), name
        assert rows[name]["requests"] == pytest.approx(requests), name
    # bua read each principal's tags from IAM.
    for name, row in rows.items():
        principal = run.scenario.principals.get(name)
        if principal is not None:
            assert row["tags"] == principal.tags, name
    assert {"role/code-review-runner", "role/support-assistant-app"} <= set(rows)


def test_breakdown_shows_what_the_logs_do_not_cover(bua_breakdown_run: BuaRun) -> None:
    run = bua_breakdown_run
    assert run.returncode == 0, _tail(run)
    with open(_report_file(run, ".json"), encoding="utf-8") as handle:
        breakdown = json.load(handle)["breakdown"]
    period = breakdown["periods"][PARTLY_LOGGED_WINDOW]
    assert period["partial"] is True
    assert period["partial_reason"] == "logs"
    calls = run.stats["calls"]
    assert calls.get("logs:StartQuery", 0) >= 1 and calls.get("iam:ListRoleTags", 0) >= 1, calls
    assert run.stats["logs_records_scanned"] > 0

"""docs/iam-policy.md's policy is exactly enough: every command works under it, each action in it is needed.

The sandbox enforces the policy block of the doc itself; commands run through the real CLI in a private
environment, the way a user runs them. A command that AWS refuses must end with exit status 1 and one line
that names the refused action (or says the credentials were refused), never a traceback.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from pipelines.sandbox.server import SandboxServer
from tests.cli_env import ROOT, isolated_env, run_buw

pytestmark = pytest.mark.integration

PINNED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
AS_OF = "2026-11-20T12:00Z"
SONNET_US = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"

ANALYZE = ("analyze", "-r", "us-east-1", "-y", "--as-of", AS_OF, "--days", "2")
# Every command that calls AWS. `analyze` first: it calls nearly every action and fails within seconds when
# one is missing; `--days 2` keeps a whole first run to a few seconds.
AWS_COMMANDS: tuple[tuple[str, ...], ...] = (
    ANALYZE,
    ("refresh", "regions"),
    ("refresh", "fm-list", "us-east-1"),
    ("refresh", "fm-quotas", "us-east-1"),
    (*ANALYZE, "-m", SONNET_US),
    # Reads the invocation logs too (S3 delivery in the demo account) and the callers' IAM tags.
    (*ANALYZE, "--breakdown", "principal"),
)
COMMAND_IDS = (
    "analyze",
    "refresh-regions",
    "refresh-fm-list",
    "refresh-fm-quotas",
    "analyze-m",
    "analyze-breakdown",
)
REFUSALS = {
    "expired": "Your AWS credentials have expired (",
    "invalid": "AWS does not accept your credentials (",
}


def documented_policy() -> dict:
    """The one ```json block of docs/iam-policy.md, parsed."""
    blocks = re.findall(r"```json\n(.*?)```", (ROOT / "docs" / "iam-policy.md").read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/iam-policy.md must hold exactly one JSON policy block"
    return json.loads(blocks[0])


def documented_actions() -> list[str]:
    return [action for statement in documented_policy()["Statement"] for action in statement["Action"]]


def documented_uses() -> dict[str, str]:
    """What the table of docs/iam-policy.md says uses each action, by action."""
    uses = {}
    for line in (ROOT / "docs" / "iam-policy.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 2:
            for action in re.findall(r"`(\w+:\w+)`", cells[0]):
                uses[action] = cells[1]
    return uses


def trial_order(action: str) -> list[tuple[str, ...]]:
    """AWS_COMMANDS, the command docs/iam-policy.md names first for ``action`` moved to the front.

    Each command that passes before the one that needs the action is a whole run (a full analyze, for the
    breakdown's actions); trying the documented user first keeps a case to one run. The others follow, so an
    action the table gets wrong is still found or reported.
    """
    named = re.search(r"`buw ([^`]+)`", documented_uses().get(action, ""))
    # "refresh regions" is the command of id refresh-regions, "analyze --breakdown" that of analyze-breakdown.
    command_id = re.sub(r" (--)?", "-", named.group(1)) if named else COMMAND_IDS[0]
    first = COMMAND_IDS.index(command_id) if command_id in COMMAND_IDS else 0
    return [AWS_COMMANDS[first], *(command for index, command in enumerate(AWS_COMMANDS) if index != first)]


def without(policy: dict, action: str) -> dict:
    trimmed = copy.deepcopy(policy)
    for statement in trimmed["Statement"]:
        statement["Action"] = [name for name in statement["Action"] if name != action]
    return trimmed


@contextmanager
def sandbox_env(root: Path, **options) -> Iterator[dict[str, str]]:
    """A demo sandbox with ``options`` (policy, reject_credentials) and a private environment pointed at it."""
    with SandboxServer("demo", now=PINNED, **options) as server:
        yield {
            **isolated_env(root),
            "AWS_ENDPOINT_URL": server.endpoint_url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": "us-east-1",
        }


def refusal_line(result) -> str:
    """The one line a refused command prints; fails unless it exited 1 with exactly that line."""
    assert result.returncode == 1, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("buw: ")
    return lines[0]


# Its two tests share the least-privilege xdist group, so that one worker makes these seven runs once.
@pytest.fixture(scope="module")
def allowed_run(tmp_path_factory) -> tuple[Path, list]:
    """Every AWS command, then `buw report`, under exactly the documented policy, in one environment."""
    root = tmp_path_factory.mktemp("least-privilege")
    with sandbox_env(root, policy=documented_policy()) as env:
        results = [run_buw(*command, env=env) for command in AWS_COMMANDS]
        results.append(run_buw("report", env=env))
    return root, results


def test_the_documented_policy_is_a_valid_identity_policy():
    policy = documented_policy()
    assert policy["Version"] == "2012-10-17"
    actions = documented_actions()
    assert len(actions) == len(set(actions))
    # AWS allows GetCallerIdentity to everyone, so listing it would be noise the removal test cannot justify.
    assert "sts:GetCallerIdentity" not in actions


@pytest.mark.slow
@pytest.mark.xdist_group("least-privilege")
def test_every_command_works_under_the_documented_policy(allowed_run):
    root, results = allowed_run
    for command, result in zip((*AWS_COMMANDS, ("report",)), results, strict=True):
        assert result.returncode == 0, (command, result.stderr[-3000:])
        assert "denied" not in result.stderr, (command, result.stderr)
    assert (root / "reports" / "index.html").exists()
    assert (root / "data" / "fm-quotas-us-east-1.yml").exists()


@pytest.mark.slow
@pytest.mark.parametrize("action", documented_actions())
def test_each_documented_action_is_needed_and_named_when_missing(action, tmp_path):
    """Without ``action`` some command fails at once, with one sentence naming exactly that action."""
    with sandbox_env(tmp_path, policy=without(documented_policy(), action)) as env:
        for command in trial_order(action):
            result = run_buw(*command, env=env)
            if result.returncode != 0:
                break
        else:
            pytest.fail(f"every command succeeded without {action}; drop it from docs/iam-policy.md")
    line = refusal_line(result)
    assert re.search(rf"AWS denied {re.escape(action)}\b", line), (command, line)
    assert "docs/iam-policy.md" in line


def allowing(*actions: str) -> dict:
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}]}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "policy", "named"),
    [
        (AWS_COMMANDS[1], allowing("sts:GetCallerIdentity"), r"account:ListRegions \(and the fallback ec2:"),
        (AWS_COMMANDS[2], allowing("account:ListRegions"), r"bedrock:List(FoundationModels|InferenceProfiles)"),
        (AWS_COMMANDS[3], allowing("bedrock:List*"), r"servicequotas:List(AWSDefaultServiceQuotas|ServiceQuotas)"),
        (AWS_COMMANDS[4], allowing("cloudwatch:*", "servicequotas:*"), r"bedrock:List\w+"),
    ],
    ids=COMMAND_IDS[1:5],
)
def test_each_command_names_the_action_it_was_denied(command, policy, named, tmp_path):
    with sandbox_env(tmp_path, policy=policy) as env:
        line = refusal_line(run_buw(*command, env=env))
    assert re.search(rf"AWS denied {named}", line), line


@pytest.mark.slow
def test_describe_regions_stands_in_for_list_regions(tmp_path):
    policy = without(documented_policy(), "account:ListRegions")
    policy["Statement"][0]["Action"].append("ec2:DescribeRegions")
    with sandbox_env(tmp_path, policy=policy) as env:
        result = run_buw("refresh", "regions", env=env)
    assert result.returncode == 0, result.stderr
    assert "Bedrock regions enabled" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("command", AWS_COMMANDS, ids=COMMAND_IDS)
def test_an_expired_token_ends_each_command_in_one_sentence(command, tmp_path):
    with sandbox_env(tmp_path, reject_credentials="expired") as env:
        line = refusal_line(run_buw(*command, env=env))
    assert REFUSALS["expired"] in line and "aws sso login" in line


@pytest.mark.slow
@pytest.mark.parametrize("command", [AWS_COMMANDS[0], AWS_COMMANDS[1]], ids=COMMAND_IDS[:2])
def test_an_unknown_key_ends_the_command_in_one_sentence(command, tmp_path):
    with sandbox_env(tmp_path, reject_credentials="invalid") as env:
        line = refusal_line(run_buw(*command, env=env))
    assert REFUSALS["invalid"] in line
    # STS (query) and Account (REST-JSON) word the same refusal differently; both are recognised.
    assert "InvalidClientTokenId" in line or "UnrecognizedClientException" in line


@pytest.mark.slow
@pytest.mark.xdist_group("least-privilege")
def test_report_needs_no_aws_so_refused_credentials_do_not_matter(allowed_run, tmp_path):
    root, _ = allowed_run
    shutil.copytree(root / "warehouse", tmp_path / "warehouse")
    with sandbox_env(tmp_path, reject_credentials="expired") as env:
        result = run_buw("report", env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "reports" / "index.html").exists()


@pytest.mark.slow
def test_buw_sandbox_serves_the_policy_file_it_is_given(tmp_path):
    """`buw sandbox --policy FILE`: what the file allows works, anything else is denied as AWS denies it."""
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(documented_policy()))
    command = [sys.executable, "-m", "pipelines.cli", "sandbox", "--port", "0", "--now", AS_OF, "--policy", str(policy)]
    server = subprocess.Popen(command, cwd=ROOT, env=isolated_env(tmp_path), stdout=subprocess.PIPE, text=True)
    try:
        endpoint = None
        for line in server.stdout:
            if line.startswith("export AWS_ENDPOINT_URL="):
                endpoint = line.split()[1].split("=", 1)[1]
                break
        assert endpoint, "buw sandbox did not print its endpoint"
        session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
        cloudwatch = session.client("cloudwatch", endpoint_url=endpoint)
        assert cloudwatch.list_metrics(Namespace="AWS/Bedrock")["Metrics"]
        with pytest.raises(ClientError) as excinfo:
            cloudwatch.describe_alarms()
        assert excinfo.value.response["Error"]["Code"] == "AccessDenied"
        assert "is not authorized to perform: cloudwatch:DescribeAlarms" in excinfo.value.response["Error"]["Message"]
    finally:
        server.terminate()
        server.wait(timeout=30)

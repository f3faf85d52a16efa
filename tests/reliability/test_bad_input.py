"""Bad input ends in one clear sentence and a non-zero exit, with no traceback, and leaves the warehouse as it was.

Each case runs the real CLI in a private environment holding a copy of one small warehouse (two days of the
sandbox's demo account), and compares a hash of every warehouse file before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.cli_env import isolated_env, run_buw

# One worker runs every case: each copies the one small warehouse the module fixture builds.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("bad-input")]

AS_OF = "2026-11-20T12:00Z"
ANALYZE = ("analyze", "-r", "us-east-1", "-y", "--as-of", AS_OF, "--days", "2")
LAKE_FILE = "warehouse/lake/metric_points/region=us-east-1/date=2026-11-19/data.parquet"
# A day `analyze --days 1` does not read again: a bad file of it cannot be replaced by that run.
OLD_LAKE_FILE = "warehouse/lake/metric_points/region=us-east-1/date=2026-11-18/data.parquet"


@pytest.fixture(scope="module")
def built(tmp_path_factory, sandbox) -> Path:
    """A private root whose warehouse holds two days of the sandbox account (one `buw analyze`)."""
    root = tmp_path_factory.mktemp("bad-input-base")
    result = run_buw(*ANALYZE, env=_env(root, sandbox.endpoint_url))
    assert result.returncode == 0, result.stderr
    return root


def _env(root: Path, endpoint_url: str) -> dict[str, str]:
    return {
        **isolated_env(root),
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    }


def fingerprint(path: Path) -> dict[str, str]:
    """sha256 of every file under ``path`` (or of ``path`` itself), by relative name; links by their target."""
    if not path.exists() and not path.is_symlink():
        return {}
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    found = {}
    for item in sorted(path.rglob("*")):
        name = str(item.relative_to(path))
        if item.is_symlink():
            found[name] = f"-> {os.readlink(item)}"
        elif item.is_file():
            found[name] = hashlib.sha256(item.read_bytes()).hexdigest()
        else:
            found[name] = "dir"
    return found


def make_read_only(path: Path) -> Callable[[], None]:
    """Make ``path`` and everything in it unwritable (root ignores modes, so also immutable); returns the undo."""
    for item in [path, *path.rglob("*")]:
        item.chmod(item.stat().st_mode & 0o555)
    immutable = os.geteuid() == 0 and shutil.which("chattr") is not None
    if os.geteuid() == 0 and not (immutable and subprocess.run(["chattr", "-R", "+i", str(path)]).returncode == 0):
        pytest.skip("running as root on a file system without immutable files: nothing is read-only here")

    def undo() -> None:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-R", "-i", str(path)], check=True)
        for item in [path, *path.rglob("*")]:
            item.chmod(item.stat().st_mode | 0o200)

    return undo


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    says: str
    env: dict[str, str] = field(default_factory=dict)
    # Prepares the copy (gets the root, returns an undo or None) before the command runs.
    setup: Callable[[Path], Callable[[], None] | None] | None = None
    exit_code: int = 1


def _write(relative: str, text: str) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    return setup


def _corrupt(relative: str) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        (root / relative).write_bytes(b"this is not what the file should hold\n" * 50)

    return setup


def _dangling_lake_file(root: Path) -> None:
    target = root / OLD_LAKE_FILE
    target.unlink()
    target.symlink_to(root / "gone.parquet")


def _read_only_warehouse(root: Path) -> Callable[[], None]:
    return make_read_only(root / "warehouse")


def _file_at(relative: str) -> Callable[[Path], None]:
    return _write(relative, "not a directory\n")


OVERRIDES = "data/quota-overrides.yaml"
CASES: dict[str, Case] = {
    "as-of-older-than-cloudwatch-keeps": Case(
        ("analyze", "-r", "us-east-1", "-y", "--as-of", "2020-01-01T00:00Z"),
        "--as-of 2020-01-01T00:00Z is more than 455 days ago",
    ),
    "as-of-in-the-future": Case(
        ("analyze", "-r", "us-east-1", "-y", "--as-of", "2099-01-01T00:00Z"),
        "--as-of 2099-01-01T00:00Z is in the future",
    ),
    "report-as-of-in-the-future": Case(("report", "--as-of", "2099-01-01T00:00Z"), "is in the future"),
    "as-of-not-a-time": Case(("analyze", "-r", "us-east-1", "-y", "--as-of", "yesterday"), "is not an ISO-8601 time"),
    "days-zero": Case((*ANALYZE[:-1], "0"), "--days 0 asks for no history; pass 1 to 455"),
    "days-negative": Case((*ANALYZE[:-1], "-3"), "--days -3 asks for no history"),
    "days-huge": Case((*ANALYZE[:-1], "100000"), "--days 100000 reaches past the 455 days CloudWatch keeps"),
    "unknown-region": Case(
        ("analyze", "-r", "mars-north-1", "-y"), "'mars-north-1' is not a region where Amazon Bedrock"
    ),
    "report-unknown-region": Case(("report", "-r", "mars-north-1"), "'mars-north-1' is not a region where Amazon"),
    "granularity-not-json": Case((*ANALYZE, "-g", '{"7days": '), "is neither one of 1min, 5min, 1hour nor valid JSON"),
    "granularity-not-an-object": Case((*ANALYZE, "-g", "[1, 2]"), "--granularity JSON must be an object"),
    "granularity-unknown-value": Case((*ANALYZE, "-g", '{"7days": "2min"}'), "--granularity gives '2min' for 7days"),
    "unknown-model": Case(
        (*ANALYZE, "-m", "acme.nonexistent-v9:0"), "'acme.nonexistent-v9:0' is not a foundation model or inference"
    ),
    "report-unknown-model": Case(
        ("report", "-r", "us-east-1", "-m", "acme.nonexistent-v9:0"), "'acme.nonexistent-v9:0' is not a model"
    ),
    "report-model-without-region": Case(("report", "-m", "amazon.nova-lite-v1:0"), "-m needs -r/--region"),
    "endpoint-url-not-a-url": Case(
        ANALYZE, "AWS_ENDPOINT_URL 'not-a-url' is not an http(s) URL", {"AWS_ENDPOINT_URL": "not-a-url"}
    ),
    "refresh-endpoint-url-not-a-url": Case(
        ("refresh", "fm-list", "us-east-1"), "AWS_ENDPOINT_URL 'ftp:/x' is not", {"AWS_ENDPOINT_URL": "ftp:/x"}
    ),
    "unknown-aws-profile": Case(ANALYZE, "The config profile (nosuch) could not be found", {"AWS_PROFILE": "nosuch"}),
    "warehouse-is-a-file": Case(
        ANALYZE, "is a file, not a directory; point BUW_WAREHOUSE", {"BUW_WAREHOUSE": "{root}/afile"}, _file_at("afile")
    ),
    "sql-warehouse-is-a-file": Case(
        ("sql", "select 1"), "is a file, not a directory", {"BUW_WAREHOUSE": "{root}/afile"}, _file_at("afile")
    ),
    "read-only-warehouse": Case(ANALYZE, "is read-only; make it writable", setup=_read_only_warehouse),
    "report-as-of-read-only-warehouse": Case(("report", "--as-of", AS_OF), "is read-only", setup=_read_only_warehouse),
    "report-corrupt-database": Case(
        ("report",), "usage.duckdb is not a readable DuckDB database", setup=_corrupt("warehouse/usage.duckdb")
    ),
    "analyze-corrupt-database": Case(
        ANALYZE, "is not a readable DuckDB database", setup=_corrupt("warehouse/usage.duckdb")
    ),
    "sql-corrupt-database": Case(
        ("sql", "select 1"), "is not a readable DuckDB database", setup=_corrupt("warehouse/usage.duckdb")
    ),
    "sql-empty": Case(("sql", ""), "the query is empty"),
    "sql-blank": Case(("sql", "  \n "), "the query is empty"),
    "sql-syntax-error": Case(("sql", "selec 1"), 'the query failed: Parser Error: syntax error at or near "selec"'),
    "sql-write": Case(("sql", "drop table endpoints"), "read-only mode"),
    "sql-unknown-format": Case(("sql", "select 1", "--format", "xml"), "invalid choice: 'xml'", exit_code=2),
    "unknown-command": Case(("frobnicate",), "invalid choice: 'frobnicate'", exit_code=2),
    "sandbox-tps-zero": Case(("sandbox", "--port", "0", "--tps", "0"), "--tps 0 is not a positive rate"),
    "sandbox-tps-negative": Case(("sandbox", "--port", "0", "--tps", "-2.5"), "--tps -2.5 is not a positive rate"),
    "sandbox-port-out-of-range": Case(("sandbox", "--port", "70000"), "--port 70000 is not a TCP port"),
    "sandbox-fault-rate": Case(("sandbox", "--port", "0", "--fault-rate", "2"), "--fault-rate 2.0 is outside 0..1"),
    "sandbox-fault-kind": Case(("sandbox", "--port", "0", "--fault-kinds", "flood"), "--fault-kinds has flood"),
    "sandbox-missing-scenario": Case(
        ("sandbox", "--port", "0", "--scenario", "nosuch"), "no bundled scenario of that name"
    ),
    "sandbox-missing-policy": Case(
        ("sandbox", "--port", "0", "--policy", "/nonexistent/policy.json"), "cannot read the policy file"
    ),
    "sandbox-policy-with-condition": Case(
        ("sandbox", "--port", "0", "--policy", "{root}/policy.json"),
        "has Condition, which the sandbox does not evaluate",
        setup=_write(
            "policy.json",
            json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Condition": {}}]}),
        ),
    ),
    "demo-missing-scenario-file": Case(("demo", "--scenario", "/nonexistent/scenario.yaml"), "cannot load scenario"),
    "malformed-quota-overrides": Case(
        ANALYZE, "quota-overrides.yaml is not valid YAML at line 2", setup=_write(OVERRIDES, "- model_id: [\n")
    ),
    "quota-overrides-unknown-type": Case(
        ("report", "--as-of", AS_OF),
        "quota-overrides.yaml entry 1: field 'quota_type' must be one of tpm",
        setup=_write(
            OVERRIDES,
            "- model_id: amazon.nova-lite-v1:0\n  endpoint: base\n  quota_type: tpx\n  quota_code: L-12345678\n",
        ),
    ),
    "refresh-malformed-quota-overrides": Case(
        ("refresh", "fm-quotas", "us-east-1"), "is not valid YAML", setup=_write(OVERRIDES, "- [\n")
    ),
    "corrupt-lake-file": Case(("report", "--as-of", AS_OF), "data.parquet is unreadable", setup=_corrupt(LAKE_FILE)),
    "lake-file-link-to-nothing": Case(
        (*ANALYZE[:-1], "1"), "is unreadable (a link to a missing file)", setup=_dangling_lake_file
    ),
    "dagster-home-is-a-file": Case(("report",), "DAGSTER_HOME", {"DAGSTER_HOME": "{root}/afile"}, _file_at("afile")),
    "reports-dir-under-a-file": Case(
        ("report", "-o", "{root}/afile/reports"), "cannot write reports to", setup=_file_at("afile")
    ),
    "damaged-regions-cache": Case(
        ("refresh", "fm-list"), "regions.yml is not valid YAML", setup=_write("data/regions.yml", "{{{\n")
    ),
    "quotas-match-missing-file": Case(
        ("quotas", "match", "--quotas", "/nonexistent/q.json", "--models", "/nonexistent/m.json"), "does not exist"
    ),
}


def _at(text: str, root: Path) -> str:
    return text.replace("{root}", str(root))


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_sentence_and_changes_nothing(name, built, sandbox, tmp_path):
    case = CASES[name]
    for part in ("warehouse", "data", "dagster"):
        if (built / part).exists():
            shutil.copytree(built / part, tmp_path / part, symlinks=True)
    undo = case.setup(tmp_path) if case.setup else None
    env = {**_env(tmp_path, sandbox.endpoint_url), **{key: _at(value, tmp_path) for key, value in case.env.items()}}
    warehouse = Path(env["BUW_WAREHOUSE"])
    before = fingerprint(warehouse)
    try:
        result = run_buw(*(_at(arg, tmp_path) for arg in case.args), env=env, timeout=120)
        after = fingerprint(warehouse)
    finally:
        if undo:
            undo()
    assert result.returncode == case.exit_code, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("buw: "), lines[0]
    assert case.says in lines[0]
    assert after == before, "the warehouse changed"

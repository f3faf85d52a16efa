"""`buw analyze --breakdown`: the invocation logs are read in the same run and the top callers printed."""

from __future__ import annotations

import duckdb
import pytest

from tests.cli_env import isolated_env, run_buw

pytestmark = pytest.mark.integration

AS_OF = "2026-11-20T12:00Z"


@pytest.fixture
def env(tmp_path, sandbox) -> dict[str, str]:
    return {
        **isolated_env(tmp_path),
        "AWS_ENDPOINT_URL": sandbox.endpoint_url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "COLUMNS": "250",
    }


def test_a_malformed_breakdown_is_one_sentence(env):
    result = run_buw("analyze", "-r", "us-east-1", "-y", "--breakdown", "team", env=env)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--breakdown 'team' is not one of" in lines[0], result.stderr


def test_breakdowns_print_the_top_callers_per_endpoint(env, tmp_path):
    result = run_buw(
        "analyze", "-r", "us-east-1", "-y", "--as-of", AS_OF, "--days", "1",
        "--breakdown", "principal", "--breakdown", "tag:team",
        env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "Top callers by principal" in out and "Top callers by tag:team" in out
    assert "role/code-review-runner" in out and "(not in logs)" in out
    with duckdb.connect(str(tmp_path / "warehouse" / "usage.duckdb"), read_only=True) as connection:
        top = connection.execute(
            """
            select dimension_value from caller_attribution
            where endpoint = 'us.anthropic.claude-sonnet-4-5-20250929-v1:0' and "window" = '1d'
                and dimension = 'tag:team' and not is_remainder
            order by tokens desc limit 1
            """
        ).fetchone()
    assert top is not None and top[0] in out


def test_a_narrow_terminal_folds_ids_and_never_cuts_a_number():
    from rich.console import Console

    from pipelines.pipeline import print_breakdown

    rows = [
        ("us-east-1", "global.anthropic.claude-sonnet-4-5-20250929-v1:0", "role/agent-platform-svc", 409_092_057, 0.951,
         98_690, 143_789, 0.25),
        ("us-east-1", "global.anthropic.claude-sonnet-4-5-20250929-v1:0", "(not in logs)", 0, 0.0, 0, None, None),
    ]  # fmt: skip
    console = Console(width=90, record=True, highlight=False)
    print_breakdown(console, rows, "principal")
    text = console.export_text()
    assert "…" not in text
    for number in ("409,092,057", "95.1 %", "98,690", "143,789", "25.0 %"):
        assert number in text, text
    assert max(len(line) for line in text.splitlines()) <= 90

"""`buw refresh` against the demo sandbox: regions, fm-list, fm-quotas, quota-index and the optional LLM step.

The LLM step talks to a botocore Stubber standing in for bedrock-runtime Converse; every other call goes to the
sandbox through plain boto3.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.stub import ANY, Stubber

from pipelines.cli import main
from pipelines.errors import UserError
from pipelines.quotas.refresh import parse_llm_answer, refresh

SONNET_45 = "anthropic.claude-sonnet-4-5-20250929-v1:0"
# A hypothetical re-release under the same display name: it makes every Sonnet 4.5 quota ambiguous.
TWIN = "anthropic.claude-sonnet-4-5-20260101-v1:0"
LLM = "us.anthropic.claude-haiku-4-5-20251001-v1:0"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "buw-data"
    monkeypatch.setenv("BUW_DATA_DIR", str(directory))
    return directory


@pytest.fixture
def clients(boto3_client: Callable[..., Any]) -> Iterator[tuple[Callable[[str, str], Any], list[str]]]:
    """A client factory for refresh() that records which services were asked for."""
    asked: list[str] = []
    made: dict[tuple[str, str], Any] = {}

    def factory(service: str, region: str) -> Any:
        asked.append(service)
        if (service, region) not in made:
            made[(service, region)] = boto3_client(service, region=region)
        return made[(service, region)]

    yield factory, asked


def run(what: str, region: str | None = None, **kwargs: Any) -> str:
    out = io.StringIO()
    assert refresh(what, region, out=out, **kwargs) == 0
    return out.getvalue()


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))


def test_regions_lists_enabled_bedrock_regions_and_caches_them(data_dir: Path, clients) -> None:
    factory, _ = clients
    printed = run("regions", clients=factory)
    lines = printed.splitlines()
    assert "us-east-1" in lines and "us-west-2" in lines
    # ap-east-2 offers Bedrock but is an opt-in region this account never enabled.
    assert "ap-east-2" not in lines
    cached = yaml.safe_load((data_dir / "regions.yml").read_text())
    assert cached["source"] == "account:ListRegions"
    assert lines[-1].startswith(f"{len(lines) - 1} Bedrock regions enabled")
    assert cached["regions"] == lines[:-1]


def test_fm_list_caches_models_with_their_endpoints(data_dir: Path, clients) -> None:
    factory, _ = clients
    printed = run("fm-list", "us-east-1", clients=factory)
    assert "us-east-1: 9 foundation models" in printed
    listing = yaml.safe_load((data_dir / "fm-list-us-east-1.yml").read_text())
    endpoints = {model["model_id"]: model["endpoints"] for model in listing["models"]}
    assert endpoints[SONNET_45] == [f"global.{SONNET_45}", f"us.{SONNET_45}"]
    # Nova Lite is also callable in-region, on its own id.
    assert endpoints["amazon.nova-lite-v1:0"] == ["amazon.nova-lite-v1:0", "us.amazon.nova-lite-v1:0"]
    assert {profile["type"] for profile in listing["profiles"]} == {"SYSTEM_DEFINED"}


def test_fm_quotas_maps_codes_prints_unresolved_and_calls_no_model(data_dir: Path, clients) -> None:
    factory, asked = clients
    printed = run("fm-quotas", "us-east-1", clients=factory)
    assert "bedrock-runtime" not in asked
    assert (data_dir / "fm-list-us-east-1.yml").exists()  # written on the way, no fm-list run needed
    cached = yaml.safe_load((data_dir / "fm-quotas-us-east-1.yml").read_text())
    mapped = {(row["model_id"], row["endpoint"], row["quota_type"]): row for row in cached["mappings"]}
    assert mapped[(SONNET_45, "us", "tpm")]["quota_code"] == "L-F4DDD3EB"
    assert mapped[(SONNET_45, "us", "tpd")]["rule"] == "name:cross-region:tpd:doubled"
    assert ("meta.llama3-3-70b-instruct-v1:0", "us", "rpm") not in mapped
    quotas = {quota["quota_code"]: quota for quota in cached["quotas"]}
    assert (quotas["L-F4DDD3EB"]["value"], quotas["L-F4DDD3EB"]["default_value"]) == (800000.0, 200000.0)
    assert "L-8EA73537 context-variant" in printed
    assert {item["quota_code"] for item in cached["unresolved"]} >= {"L-8EA73537", "L-995EBD81"}


def test_quota_index_writes_the_review_csv_with_overrides_applied(data_dir: Path, clients) -> None:
    factory, _ = clients
    run("fm-quotas", "us-east-1", clients=factory)
    run("fm-quotas", "us-west-2", clients=factory)
    printed = run("quota-index", clients=factory)
    path = data_dir / "quota-index.csv"
    assert str(path) in printed
    assert path.read_text().splitlines()[0] == "model_id,endpoint,quota_type,quota_code,quota_name"
    rows = read_csv(path)
    keys = [(row["model_id"], row["endpoint"], row["quota_type"], row["quota_code"]) for row in rows]
    assert len(keys) == len(set(keys)), "a quota listed in two regions appears once"
    assert (SONNET_45, "us", "tpm", "L-F4DDD3EB") in keys
    # Nova Pro's on-demand quotas exist in us-east-1 only; the index is the union of the regions.
    assert ("amazon.nova-pro-v1:0", "base", "tpm", "L-CE33604C") in keys

    (data_dir / "quota-overrides.yaml").write_text(
        f"- model_id: {SONNET_45}\n  endpoint: us\n  quota_type: tpm\n  none: true\n"
    )
    run("quota-index", clients=factory)
    keys = {(row["model_id"], row["endpoint"], row["quota_type"]) for row in read_csv(path)}
    assert (SONNET_45, "us", "tpm") not in keys
    assert (SONNET_45, "us", "rpm") in keys


def test_quota_index_without_cached_quotas_says_what_to_run(data_dir: Path, clients) -> None:
    factory, _ = clients
    with pytest.raises(UserError, match=r"run `buw refresh fm-quotas` first"):
        refresh("quota-index", clients=factory)


def test_cli_rejects_a_region_without_bedrock_in_one_sentence(data_dir: Path, aws_env, capsys) -> None:
    assert main(["refresh", "fm-list", "xx-nowhere-1"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("buw: 'xx-nowhere-1' is not a region where Amazon Bedrock is offered")
    assert "Traceback" not in error


def test_cli_refresh_quota_index_through_the_sandbox(data_dir: Path, aws_env, capsys) -> None:
    assert main(["refresh", "fm-quotas", "us-west-2"]) == 0
    assert main(["refresh", "quota-index"]) == 0
    assert str(data_dir / "quota-index.csv") in capsys.readouterr().out
    assert any(row["quota_code"] == "L-F4DDD3EB" for row in read_csv(data_dir / "quota-index.csv"))


def test_llm_only_with_fm_quotas(data_dir: Path, clients) -> None:
    factory, _ = clients
    with pytest.raises(UserError, match="--llm only applies to `buw refresh fm-quotas`"):
        refresh("fm-list", "us-east-1", llm_model_id=LLM, clients=factory)


# --- the LLM step ----------------------------------------------------------------------------------------------


def add_twin(data_dir: Path) -> None:
    """Put a same-named Sonnet 4.5 re-release (with a us. profile) into the cached model list."""
    path = data_dir / "fm-list-us-east-1.yml"
    listing = yaml.safe_load(path.read_text())
    listing["models"].append(
        {"model_id": TWIN, "model_name": "Claude Sonnet 4.5", "provider": "Anthropic", "endpoints": [f"us.{TWIN}"]}
    )
    listing["profiles"].append(
        {
            "profile_id": f"us.{TWIN}",
            "type": "SYSTEM_DEFINED",
            "model_arns": [f"arn:aws:bedrock:us-east-1::foundation-model/{TWIN}"],
        }
    )
    path.write_text(yaml.safe_dump(listing, sort_keys=False))


def converse_response(answer: dict[str, Any]) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": json.dumps(answer)}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 900, "outputTokens": 80, "totalTokens": 980},
        "metrics": {"latencyMs": 700},
    }


def stubbed_runtime(boto3_client: Callable[..., Any]) -> tuple[Any, Stubber, list[dict[str, Any]]]:
    client = boto3_client("bedrock-runtime", region="us-east-1")
    prompts: list[dict[str, Any]] = []
    client.meta.events.register(
        "provide-client-params.bedrock-runtime.Converse", lambda params, **_: prompts.append(params)
    )
    return client, Stubber(client), prompts


def test_llm_chooses_among_ambiguous_quotas_with_vetoes_and_a_cache(
    data_dir: Path, clients, boto3_client: Callable[..., Any]
) -> None:
    factory, _ = clients
    run("fm-list", "us-east-1", clients=factory)
    add_twin(data_dir)
    run("fm-quotas", "us-east-1", clients=factory)
    without_llm = yaml.safe_load((data_dir / "fm-quotas-us-east-1.yml").read_text())
    ambiguous = {item["quota_code"] for item in without_llm["unresolved"] if item["reason"] == "ambiguous"}
    assert {"L-F4DDD3EB", "L-4A6BFAB1", "L-381AD9EE"} <= ambiguous
    assert not any(row["model_id"] == SONNET_45 for row in without_llm["mappings"])

    runtime, stub, prompts = stubbed_runtime(boto3_client)
    expected = {"modelId": LLM, "system": ANY, "messages": ANY, "inferenceConfig": ANY}
    # Asked about Sonnet 4.5 (models are asked in id order): one good answer, one that contradicts the quota's
    # own name (a cross-region quota as an in-region one), one naming a different model.
    stub.add_response(
        "converse",
        converse_response(
            {
                "matches": [
                    {"quota_code": "L-F4DDD3EB", "model_id": SONNET_45, "endpoint": "geo", "quota_type": "tpm"},
                    {"quota_code": "L-4A6BFAB1", "model_id": SONNET_45, "endpoint": "base", "quota_type": "rpm"},
                    {"quota_code": "L-381AD9EE", "model_id": TWIN, "endpoint": "geo", "quota_type": "tpd"},
                ]
            }
        ),
        expected,
    )
    # Asked about the twin: none of them.
    stub.add_response("converse", converse_response({"matches": []}), expected)

    def with_runtime(service: str, region: str) -> Any:
        return runtime if service == "bedrock-runtime" else factory(service, region)

    with stub:
        printed = run("fm-quotas", "us-east-1", llm_model_id=LLM, clients=with_runtime)
        stub.assert_no_pending_responses()
    assert [prompt["modelId"] for prompt in prompts] == [LLM, LLM]
    first_prompt = prompts[0]["messages"][0]["content"][0]["text"]
    assert f"Model id: {SONNET_45}" in first_prompt and "L-F4DDD3EB" in first_prompt
    assert "L-8EA73537" not in first_prompt, "the rules decided the 1M-context quotas; they are not offered"

    cached = yaml.safe_load((data_dir / "fm-quotas-us-east-1.yml").read_text())
    mapped = {(row["model_id"], row["endpoint"], row["quota_type"]): row for row in cached["mappings"]}
    assert mapped[(SONNET_45, "us", "tpm")]["quota_code"] == "L-F4DDD3EB"
    assert mapped[(SONNET_45, "us", "tpm")]["rule"] == "llm:geo:tpm"
    assert (SONNET_45, "base", "rpm") not in mapped and (SONNET_45, "us", "rpm") not in mapped
    assert (SONNET_45, "us", "tpd") not in mapped and (TWIN, "us", "tpd") not in mapped
    verdicts = {entry["quota_code"]: (entry["verdict"], entry["reason"]) for entry in cached["llm"]}
    assert verdicts == {
        "L-F4DDD3EB": ("accepted", "accepted"),
        "L-4A6BFAB1": ("vetoed", "wrong-scope"),
        "L-381AD9EE": ("vetoed", "sibling"),
    }
    assert "L-4A6BFAB1 -> " in printed and "vetoed (wrong-scope)" in printed
    unresolved = {item["quota_code"] for item in cached["unresolved"]}
    assert "L-F4DDD3EB" not in unresolved and "L-4A6BFAB1" in unresolved

    # Second run: every (region, quota, model) is answered in the cache, so Converse is not called at all (a
    # Stubber without responses would raise on any call).
    runtime_again, stub_again, prompts_again = stubbed_runtime(boto3_client)

    def with_second_runtime(service: str, region: str) -> Any:
        return runtime_again if service == "bedrock-runtime" else factory(service, region)

    with stub_again:
        run("fm-quotas", "us-east-1", llm_model_id=LLM, clients=with_second_runtime)
    assert prompts_again == []
    again = yaml.safe_load((data_dir / "fm-quotas-us-east-1.yml").read_text())
    assert again["mappings"] == cached["mappings"]

    # The index applies the cached, accepted answer without asking anything.
    run("quota-index", clients=factory)
    keys = {
        (row["model_id"], row["endpoint"], row["quota_type"], row["quota_code"])
        for row in read_csv(data_dir / "quota-index.csv")
    }
    assert (SONNET_45, "us", "tpm", "L-F4DDD3EB") in keys


def test_llm_access_denied_is_one_sentence(data_dir: Path, clients, boto3_client: Callable[..., Any]) -> None:
    factory, _ = clients
    run("fm-list", "us-east-1", clients=factory)
    add_twin(data_dir)
    runtime, stub, _ = stubbed_runtime(boto3_client)
    stub.add_client_error(
        "converse", service_error_code="AccessDeniedException", service_message="not authorized", http_status_code=403
    )

    def with_runtime(service: str, region: str) -> Any:
        return runtime if service == "bedrock-runtime" else factory(service, region)

    with stub, pytest.raises(UserError, match=r"AWS denied bedrock:InvokeModel .*\(Converse\).*docs/iam-policy\.md"):
        refresh("fm-quotas", "us-east-1", llm_model_id=LLM, clients=with_runtime, out=io.StringIO())


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Sure! Here you go: {}", "not JSON"),
        ('{"answers": []}', '"matches" list'),
        ('{"matches": [{"endpoint": "geo"}]}', "no quota_code"),
    ],
)
def test_answers_that_are_not_the_json_asked_for_are_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_llm_answer(text)


def test_a_fenced_json_answer_is_read() -> None:
    text = '```json\n{"matches": [{"quota_code": "L-F4DDD3EB", "endpoint": "geo", "quota_type": "tpm"}]}\n```'
    assert parse_llm_answer(text) == [{"quota_code": "L-F4DDD3EB", "endpoint": "geo", "quota_type": "tpm"}]


def test_regions_fall_back_to_ec2_when_the_account_api_is_denied(
    data_dir: Path, clients, boto3_client: Callable[..., Any]
) -> None:
    factory, _ = clients
    account = boto3_client("account", region="us-east-1")
    stub = Stubber(account)
    stub.add_client_error("list_regions", service_error_code="AccessDeniedException", http_status_code=403)

    def denied_account(service: str, region: str) -> Any:
        return account if service == "account" else factory(service, region)

    with stub:
        lines = run("regions", clients=denied_account).splitlines()
    assert "us-east-1" in lines and "ap-east-2" not in lines
    assert yaml.safe_load((data_dir / "regions.yml").read_text())["source"] == "ec2:DescribeRegions"

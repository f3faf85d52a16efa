"""Scenario files: the bundled demo is realistic and complete; bad files fail with the field named."""

from __future__ import annotations

import copy
import re
from importlib import resources
from pathlib import Path

import pytest
import yaml

from pipelines.sandbox.scenario import ScenarioError, foundation_model_arn, load_scenario

SONNET_45 = "anthropic.claude-sonnet-4-5-20250929-v1:0"
HAIKU_45 = "anthropic.claude-haiku-4-5-20251001-v1:0"
NOVA_LITE = "amazon.nova-lite-v1:0"
LLAMA_33 = "meta.llama3-3-70b-instruct-v1:0"
US_REGIONS = ("us-east-1", "us-east-2", "us-west-2")


@pytest.fixture(scope="module")
def demo():
    return load_scenario("demo")


@pytest.fixture
def tiny_document() -> dict:
    text = resources.files("pipelines.sandbox").joinpath("scenarios", "tiny.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def write(tmp_path: Path, document: dict, name: str = "broken.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_demo_is_one_account_in_two_regions_with_45_days(demo):
    assert demo.name == "demo"
    assert re.fullmatch(r"\d{12}", demo.account_id)
    assert demo.regions == ("us-east-1", "us-west-2")
    assert demo.history_days == 45


def test_demo_lists_the_real_models_and_their_siblings(demo):
    models = {m.model_id: m for m in demo.foundation_models["us-east-1"]}
    assert models[SONNET_45].model_name == "Claude Sonnet 4.5"
    assert models[SONNET_45].provider_name == "Anthropic"
    assert models[SONNET_45].inference_types == ("INFERENCE_PROFILE",)
    assert models[HAIKU_45].model_name == "Claude Haiku 4.5"
    assert models[NOVA_LITE].inference_types == ("ON_DEMAND", "INFERENCE_PROFILE")
    assert models[LLAMA_33].provider_name == "Meta"
    # The quota mapper needs siblings to tell apart: Sonnet 4 beside Sonnet 4.5, Nova 2 Lite beside Nova Lite.
    assert {"anthropic.claude-sonnet-4-20250514-v1:0", "amazon.nova-2-lite-v1:0"} <= set(models)
    assert models[SONNET_45].model_arn("us-west-2") == f"arn:aws:bedrock:us-west-2::foundation-model/{SONNET_45}"
    assert demo.burndown[SONNET_45] == 5
    assert demo.burndown[NOVA_LITE] == 1


def test_on_demand_only_where_aws_offers_it(demo):
    nova_pro = {
        r: next(m for m in demo.foundation_models[r] if m.model_id == "amazon.nova-pro-v1:0") for r in demo.regions
    }
    assert "ON_DEMAND" in nova_pro["us-east-1"].inference_types
    assert "ON_DEMAND" not in nova_pro["us-west-2"].inference_types
    assert demo.endpoint("us-west-2", "amazon.nova-pro-v1:0") is None


def test_system_profiles_carry_aws_ids_arns_and_model_arn_sets(demo):
    geo = demo.profile("us-east-1", f"us.{SONNET_45}")
    assert geo.type == "SYSTEM" and geo.api_type == "SYSTEM_DEFINED"
    assert geo.arn == f"arn:aws:bedrock:us-east-1:{demo.account_id}:inference-profile/us.{SONNET_45}"
    assert geo.model_arns == tuple(foundation_model_arn(r, SONNET_45) for r in US_REGIONS)
    assert geo.tags == {}
    glob = demo.profile("us-west-2", f"global.{SONNET_45}")
    assert glob.model_arns == (
        f"arn:aws:bedrock:::foundation-model/{SONNET_45}",
        f"arn:aws:bedrock:us-west-2::foundation-model/{SONNET_45}",
    )


def test_demo_has_at_least_twelve_application_profiles_with_their_sources_arn_sets(demo):
    apps = [p for r in demo.regions for p in demo.application_profiles(r)]
    assert len(apps) >= 12
    for app in apps:
        assert re.fullmatch(r"[a-z0-9]{12}", app.profile_id)
        prefix = f"arn:aws:bedrock:{app.region}:{demo.account_id}:application-inference-profile/"
        assert app.arn == prefix + app.profile_id
        source = demo.profile(app.region, app.endpoint_id)
        if source is not None:
            assert app.model_arns == source.model_arns
        else:
            assert app.model_arns == (foundation_model_arn(app.region, app.endpoint_id),)
    kinds = {demo.endpoint(a.region, a.endpoint_id).kind for a in apps}
    assert kinds == {"base", "geo", "global"}
    assert len({a.profile_id for a in apps}) == len(apps)


def test_demo_tags_include_untagged_profiles_and_a_hostile_value(demo):
    apps = [p for r in demo.regions for p in demo.application_profiles(r)]
    assert any(not a.tags for a in apps)
    full = [a for a in apps if set(a.tags) == {"team", "project", "env", "cost-center"}]
    assert len(full) >= 8
    hostile = [v for a in apps for v in a.tags.values() if "<script>" in v]
    assert hostile and '"' in hostile[0] and "'" in hostile[0] and "Ü" in hostile[0]


def test_demo_quotas_use_aws_names_and_codes(demo):
    quotas = {q.quota_code: q for q in demo.quotas["us-east-1"]}
    expected = {
        "L-F4DDD3EB": "Cross-region model inference tokens per minute for Anthropic Claude Sonnet 4.5 V1",
        "L-4A6BFAB1": "Cross-region model inference requests per minute for Anthropic Claude Sonnet 4.5 V1",
        "L-381AD9EE": "Model invocation max tokens per day for Anthropic Claude Sonnet 4.5 V1 "
        "(doubled for cross-region calls)",
        "L-BC182137": "Global cross-region model inference tokens per day for Anthropic Claude Sonnet 4.5 V1",
        "L-58BE175A": "Cross-region model inference tokens per minute for Anthropic Claude Haiku 4.5",
        "L-70423BF8": "On-demand model inference tokens per minute for Amazon Nova Lite",
        "L-0E7AA8B7": "Cross-region model inference tokens per minute for Meta Llama 3.3 70B Instruct",
        "L-E107194C": "Model invocation max tokens per day for Anthropic Claude Sonnet 4.5 V1 "
        "1M Context Length (doubled for cross-region calls)",
    }
    for code, name in expected.items():
        assert quotas[code].quota_name == name
    sonnet_tpm = quotas["L-F4DDD3EB"]
    assert sonnet_tpm.applied_value == 800000 and sonnet_tpm.default_value == 200000 and sonnet_tpm.value == 800000
    assert sonnet_tpm.arn == f"arn:aws:servicequotas:us-east-1:{demo.account_id}:bedrock/L-F4DDD3EB"
    assert demo.quota("us-west-2", "L-F4DDD3EB").applied_value is None
    assert sum(q.applied_value is not None for q in quotas.values()) >= 3
    assert any("Batch inference job size" in q.quota_name for q in quotas.values())
    assert any("concurrent requests" in q.quota_name for q in quotas.values())


def test_endpoints_know_which_quotas_bedrock_enforces(demo):
    sonnet = demo.endpoint("us-east-1", f"us.{SONNET_45}")
    assert (sonnet.kind, sonnet.base_model_id) == ("geo", SONNET_45)
    assert (sonnet.tpm_quota_code, sonnet.rpm_quota_code, sonnet.tpd_quota_code) == (
        "L-F4DDD3EB",
        "L-4A6BFAB1",
        "L-381AD9EE",
    )
    glob = demo.endpoint("us-east-1", f"global.{SONNET_45}")
    assert (glob.kind, glob.tpm_quota_code, glob.tpd_quota_code) == ("global", "L-27C57EE8", "L-BC182137")
    base = demo.endpoint("us-east-1", NOVA_LITE)
    assert (base.kind, base.tpm_quota_code, base.tpd_quota_code) == ("base", "L-70423BF8", "L-45E0AD92")
    llama = demo.endpoint("us-east-1", f"us.{LLAMA_33}")
    assert llama.tpm_quota_code == "L-0E7AA8B7" and llama.rpm_quota_code is None
    assert demo.endpoint("us-east-1", SONNET_45) is None  # Sonnet 4.5 has no on-demand base endpoint


def test_bundled_tiny_and_a_path_load_the_same_scenario(tmp_path, tiny_document):
    by_name = load_scenario("tiny")
    by_path = load_scenario(write(tmp_path, tiny_document, "copy.yaml"))
    assert by_name.profiles == by_path.profiles
    assert by_name.quotas == by_path.quotas
    assert by_path.source == "copy.yaml"


def _set(document: dict, dotted: str, value) -> None:
    target = document
    keys = [int(k) if k.isdigit() else k for k in dotted.split(".")]
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value


def _delete(document: dict, dotted: str) -> None:
    target = document
    keys = [int(k) if k.isdigit() else k for k in dotted.split(".")]
    for key in keys[:-1]:
        target = target[key]
    del target[keys[-1]]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("application_profiles.0.tags.team", 42, "application_profiles[0].tags.team: expected a string"),
        ("account_id", "12345", "account_id: '12345' does not match"),
        ("history_days", 0, "history_days: must be >= 1"),
        ("regions", [], "regions: must not be empty"),
        (
            "application_profiles.1.region",
            "eu-west-1",
            "application_profiles[1].region: 'eu-west-1' is not one of",
        ),
        (
            "application_profiles.1.copy_from",
            "anthropic.claude-haiku-4-5-20251001-v1:0",
            "application_profiles[1].copy_from: 'anthropic.claude-haiku-4-5-20251001-v1:0' is neither",
        ),
        ("application_profiles.0.id", "Not-An-Id", "application_profiles[0].id: 'Not-An-Id' does not match"),
        (
            "application_profiles.1.name",
            "chat-prod",
            "application_profiles[1].name: 'chat-prod' is used twice",
        ),
        (
            "application_profiles.0.traffic.tokens.input",
            "lots",
            "application_profiles[0].traffic.tokens.input: expected a number",
        ),
        (
            "application_profiles.1.traffic.bursts.0.days",
            ["someday"],
            "application_profiles[1].traffic.bursts[0].days[0]: 'someday' is not one of",
        ),
        (
            "application_profiles.1.traffic.bursts.0.start",
            "25:00",
            "application_profiles[1].traffic.bursts[0].start: '25:00' does not match",
        ),
        (
            "application_profiles.0.traffic.shape",
            "spiky",
            "application_profiles[0].traffic.shape: 'spiky' is not",
        ),
        (
            "application_profiles.0.traffic.streaming_share",
            1.5,
            "application_profiles[0].traffic.streaming_share: must be <= 1",
        ),
        (
            "application_profiles.0.traffic.colour",
            "red",
            "application_profiles[0].traffic.colour: unknown field",
        ),
        ("quotas.0.code", "L-123", "quotas[0].code: 'L-123' does not match"),
        ("quotas.1.enforces.type", "tps", "quotas[1].enforces.type: 'tps' is not one of"),
        (
            "quotas.1.enforces.model",
            "acme.nothing-v1",
            "quotas[1].enforces.model: 'acme.nothing-v1' is not one of",
        ),
        ("quotas.1.enforces.type", "tpm", "quotas[1].enforces: quotas[0] already enforces tpm"),
        (
            "quotas.0.applied",
            {"eu-west-1": 5},
            "quotas[0].applied.eu-west-1: not one of this quota's regions",
        ),
        (
            "foundation_models.1.system_profiles",
            [
                {
                    "kind": "geo",
                    "prefix": "us",
                    "name": "x",
                    "description": "y",
                    "created_at": "2025-01-01T00:00:00Z",
                }
            ],
            "foundation_models[1].system_profiles[0].routes_to: required for a geo profile",
        ),
        (
            "foundation_models.0.system_profiles.0.created_at",
            "yesterday",
            "foundation_models[0].system_profiles[0].created_at: 'yesterday' is not an ISO 8601 timestamp",
        ),
        (
            "direct_traffic.0.endpoint",
            "global.amazon.nova-lite-v1:0",
            "direct_traffic[0].endpoint: 'global.amazon.nova-lite-v1:0' is neither",
        ),
    ],
)
def test_invalid_fields_are_named_in_the_error(tmp_path, tiny_document, field, value, message):
    document = copy.deepcopy(tiny_document)
    _set(document, field, value)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(write(tmp_path, document))
    assert str(caught.value).startswith("scenario broken.yaml: ")
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("name", "name: required field is missing"),
        ("application_profiles.0.copy_from", "application_profiles[0].copy_from: required field is missing"),
        ("application_profiles.0.traffic.tokens", "application_profiles[0].traffic.tokens: required field"),
        ("quotas.0.default", "quotas[0].default: required field is missing"),
    ],
)
def test_missing_fields_are_named_in_the_error(tmp_path, tiny_document, field, message):
    document = copy.deepcopy(tiny_document)
    _delete(document, field)
    with pytest.raises(ScenarioError, match=re.escape(message)):
        load_scenario(write(tmp_path, document))


def test_unreadable_sources_fail_with_one_clear_sentence(tmp_path):
    with pytest.raises(ScenarioError, match="no bundled scenario of that name"):
        load_scenario("no-such-scenario")
    with pytest.raises(ScenarioError, match="file not found"):
        load_scenario(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"scenario bad\.yaml: not valid YAML \(line \d+"):
        load_scenario(bad)
    bad.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"\(top level\): expected a mapping"):
        load_scenario(bad)


def test_scenario_errors_are_value_errors(tmp_path):
    with pytest.raises(ValueError):
        load_scenario(tmp_path / "missing.yaml")


# ---- invocation logging and callers ----------------------------------------------------------------------------


def _with_callers(document: dict) -> dict:
    document = copy.deepcopy(document)
    document["invocation_logging"] = {
        "log_group": "/aws/bedrock/modelinvocations",
        "role_name": "BedrockLogging",
        "s3_bucket": "logs-{region}",
        "logging_started": "2026-01-01T00:00:00Z",
    }
    document["principals"] = [
        {"role": "chat-backend", "sessions": ["pod-a", "pod-b"], "tags": {"team": "web"}},
        {"user": "alice"},
        {"federated-user": "contractor"},
    ]
    document["application_profiles"][0]["traffic"]["callers"] = [
        {"principal": "role/chat-backend", "weight": 3, "request_metadata": {"tenant": ["a", "b"]}},
        {"principal": "federated-user/contractor"},
    ]
    return document


def test_demo_logs_invocations_and_names_its_callers(demo):
    logging = demo.invocation_logging
    assert logging is not None
    assert logging.log_group == "/aws/bedrock/modelinvocations"
    assert logging.bucket("us-west-2") == "bedrock-invocation-logs-123456789012-us-west-2"
    assert logging.started == -10
    kinds = {p.kind for p in demo.principals.values()}
    assert kinds == {"role", "user", "federated-user"}
    for region in demo.regions:
        for spec in demo.traffic[region]:
            assert spec.callers, f"{spec.model_id} in {region} has no callers"
            assert all(c.principal in demo.principals for c in spec.callers)
    role = demo.principals["role/code-review-runner"]
    assert role.caller_arns(demo.account_id)[0] == (
        "arn:aws:sts::123456789012:assumed-role/code-review-runner/gha-run-88121"
    )


def test_callers_and_logging_load_from_a_file(tmp_path, tiny_document):
    scenario = load_scenario(write(tmp_path, _with_callers(tiny_document)))
    callers = scenario.traffic["us-east-1"][0].callers
    assert [c.principal for c in callers] == ["role/chat-backend", "federated-user/contractor"]
    assert callers[0].request_metadata == (("tenant", ("a", "b")),)
    assert scenario.invocation_logging is not None
    assert scenario.invocation_logging.started.year == 2026


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["application_profiles"][0]["traffic"]["callers"].append({"principal": "role/nobody"}),
            "application_profiles[0].traffic.callers[2].principal: 'role/nobody' is not one of the principals",
        ),
        (lambda d: d["principals"][0].pop("sessions"), "principals[0].sessions: expected a list"),
        (lambda d: d["principals"][1].update(sessions=["x1"]), "principals[1].sessions: only roles have sessions"),
        (lambda d: d["principals"].append({"user": "alice"}), "principals[3].user: 'user/alice' is defined twice"),
        (
            lambda d: d["invocation_logging"].update(logging_started="soon"),
            "invocation_logging.logging_started: 'soon' is not an ISO 8601 timestamp",
        ),
        (
            lambda d: d["application_profiles"][0]["traffic"]["callers"][0].update(api="grpc"),
            "application_profiles[0].traffic.callers[0].api: 'grpc' is not one of converse, invoke",
        ),
    ],
)
def test_bad_callers_and_logging_are_named_in_the_error(tmp_path, tiny_document, change, message):
    document = _with_callers(tiny_document)
    change(document)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(write(tmp_path, document))
    assert message in str(caught.value)

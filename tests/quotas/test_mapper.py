"""The model -> quota mapper on realistic us-east-1 / ap-northeast-1 listings, its overrides and its CLI.

The fixtures hold AWS's own quota codes and names, model ids and profile ids; only the account is invented.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import platformdirs
import pytest

from pipelines.quotas.cli import QuotaInputError, match_command, read_listing
from pipelines.quotas.mapper import (
    CSV_HEADER,
    QuotaMapping,
    map_quotas,
    mapping_csv,
    parse_model_id,
)
from pipelines.quotas.overrides import (
    OverrideError,
    OverrideRule,
    data_dir,
    load_overrides,
    parse_overrides,
)

FIXTURES = Path(__file__).parent / "fixtures"
SONNET_4 = "anthropic.claude-sonnet-4-20250514-v1:0"
SONNET_45 = "anthropic.claude-sonnet-4-5-20250929-v1:0"
SONNET_35_V1 = "anthropic.claude-3-5-sonnet-20240620-v1:0"
SONNET_35_V2 = "anthropic.claude-3-5-sonnet-20241022-v2:0"
HAIKU_3 = "anthropic.claude-3-haiku-20240307-v1:0"
HAIKU_45 = "anthropic.claude-haiku-4-5-20251001-v1:0"
NOVA_LITE = "amazon.nova-lite-v1:0"
NOVA_2_LITE = "amazon.nova-2-lite-v1:0"
LLAMA_31_70B = "meta.llama3-1-70b-instruct-v1:0"
LLAMA_31_8B = "meta.llama3-1-8b-instruct-v1:0"
LLAMA_33_70B = "meta.llama3-3-70b-instruct-v1:0"


def listing(name: str, key: str) -> list[dict]:
    return json.loads((FIXTURES / name).read_text())[key]


@pytest.fixture(scope="module")
def quotas() -> list[dict]:
    return listing("us-east-1-quotas.json", "Quotas")


@pytest.fixture(scope="module")
def models() -> list[dict]:
    return listing("us-east-1-models.json", "modelSummaries")


@pytest.fixture(scope="module")
def profiles() -> list[dict]:
    return listing("us-east-1-profiles.json", "inferenceProfileSummaries")


@pytest.fixture(scope="module")
def tokyo_profiles() -> list[dict]:
    return listing("ap-northeast-1-profiles.json", "inferenceProfileSummaries")


@pytest.fixture(scope="module")
def mapped(quotas: list[dict], models: list[dict], profiles: list[dict]) -> list[QuotaMapping]:
    return map_quotas(quotas, models, profiles)


def codes(rows: list[QuotaMapping]) -> dict[tuple[str, str, str], str]:
    return {(row.model_id, row.endpoint, row.quota_type): row.quota_code for row in rows}


def rules(rows: list[QuotaMapping]) -> dict[tuple[str, str, str], str]:
    return {(row.model_id, row.endpoint, row.quota_type): row.rule for row in rows}


def quota(code: str, name: str) -> dict:
    return {"QuotaCode": code, "QuotaName": name, "Value": 1000.0}


def model(model_id: str, name: str | None = None, provider: str | None = None) -> dict:
    item: dict = {"modelId": model_id, "modelArn": f"arn:aws:bedrock:us-east-1::foundation-model/{model_id}"}
    if name is not None:
        item["modelName"] = name
    if provider is not None:
        item["providerName"] = provider
    return item


# --- the rules ----------------------------------------------------------------------------------------------


def test_on_demand_quotas_map_to_the_base_endpoint(mapped: list[QuotaMapping]) -> None:
    found = codes(mapped)
    assert found[(LLAMA_31_70B, "base", "tpm")] == "L-48E55E59"
    assert found[(LLAMA_31_70B, "base", "rpm")] == "L-ECA5B974"
    assert rules(mapped)[(LLAMA_31_70B, "base", "tpm")] == "name:on-demand:tpm"


def test_cross_region_quotas_map_to_each_geographic_profile(mapped: list[QuotaMapping]) -> None:
    found = codes(mapped)
    assert found[(SONNET_45, "us", "tpm")] == "L-F4DDD3EB"
    assert found[(SONNET_45, "us", "rpm")] == "L-4A6BFAB1"
    assert rules(mapped)[(SONNET_45, "us", "tpm")] == "name:cross-region:tpm"


def test_global_quotas_map_to_the_global_profile(mapped: list[QuotaMapping]) -> None:
    found = codes(mapped)
    assert found[(SONNET_45, "global", "tpm")] == "L-27C57EE8"
    assert found[(SONNET_45, "global", "rpm")] == "L-DB84CE56"
    assert found[(SONNET_45, "global", "tpd")] == "L-BC182137"
    assert rules(mapped)[(SONNET_45, "global", "tpd")] == "name:global:tpd"


def test_daily_quota_applies_to_base_and_doubled_to_cross_region(mapped: list[QuotaMapping]) -> None:
    found, rule = codes(mapped), rules(mapped)
    assert found[(NOVA_LITE, "base", "tpd")] == found[(NOVA_LITE, "us", "tpd")] == "L-45E0AD92"
    assert rule[(NOVA_LITE, "base", "tpd")] == "name:on-demand:tpd"
    assert rule[(NOVA_LITE, "us", "tpd")] == "name:cross-region:tpd:doubled"
    # The global profile has its own daily quota, never the doubled regional one.
    assert found[(HAIKU_45, "global", "tpd")] == "L-B5C049AE"
    assert found[(HAIKU_45, "us", "tpd")] == "L-6120CF2D"


def test_daily_quota_without_doubled_note_is_not_marked_doubled(models: list[dict]) -> None:
    rows = map_quotas(
        [quota("L-381AD9EE", "Model invocation max tokens per day for Anthropic Claude Sonnet 4.5 V1")],
        models,
    )
    assert rules(rows)[(SONNET_45, "geo", "tpd")] == "name:cross-region:tpd"


def test_concurrent_requests_quota_maps_and_async_concurrency_is_left_out(mapped: list[QuotaMapping]) -> None:
    assert codes(mapped)[("luma.ray-v2:0", "base", "concurrent")] == "L-3447D96F"
    all_codes = {row.quota_code for row in mapped} | {item.quota_code for item in mapped.unresolved}
    assert "L-44704E61" not in all_codes
    assert "L-BC3096B9" not in all_codes


def test_input_and_output_tpm_quotas_map_separately() -> None:
    # Codes are illustrative; the names are the bedrock-mantle quota names AWS documents.
    rows = map_quotas(
        [
            quota("L-0A000001", "Bedrock Mantle input tokens per minute for Anthropic Claude Opus 4.7"),
            quota("L-0A000002", "Bedrock Mantle output tokens per minute for Anthropic Claude Opus 4.7"),
            quota("L-5DB28B7B", "Cross-region model inference tokens per minute for Anthropic Claude Opus 4.7"),
        ],
        [model("anthropic.claude-opus-4-7", "Claude Opus 4.7", "Anthropic")],
    )
    found, rule = codes(rows), rules(rows)
    assert found[("anthropic.claude-opus-4-7", "base", "input_tpm")] == "L-0A000001"
    assert found[("anthropic.claude-opus-4-7", "base", "output_tpm")] == "L-0A000002"
    assert found[("anthropic.claude-opus-4-7", "geo", "tpm")] == "L-5DB28B7B"
    assert rule[("anthropic.claude-opus-4-7", "base", "output_tpm")] == "name:mantle:output_tpm"


def test_unrelated_quotas_produce_no_rows_and_are_not_unresolved(mapped: list[QuotaMapping]) -> None:
    unrelated = {
        "L-E31283B0",
        "L-8A6B31EE",
        "L-4A6D2F15",
        "L-F0D0E0B9",
        "L-9072D6F0",
        "L-707418DE",
        "L-0406044C",
    }
    assert not unrelated & {row.quota_code for row in mapped}
    assert not unrelated & {item.quota_code for item in mapped.unresolved}


def test_every_quota_code_belongs_to_one_model_only(mapped: list[QuotaMapping]) -> None:
    owners: dict[str, set[str]] = {}
    for row in mapped:
        owners.setdefault(row.quota_code, set()).add(row.model_id)
    assert {code: ids for code, ids in owners.items() if len(ids) > 1} == {}


# --- sibling traps ------------------------------------------------------------------------------------------


def test_sonnet_4_and_sonnet_4_5_keep_their_own_quotas(mapped: list[QuotaMapping]) -> None:
    found = codes(mapped)
    assert found[(SONNET_4, "us", "tpm")] == "L-59759B4A"
    assert found[(SONNET_4, "us", "rpm")] == "L-559DCC33"
    assert found[(SONNET_4, "us", "tpd")] == "L-22F701C5"
    assert found[(SONNET_45, "us", "tpm")] == "L-F4DDD3EB"
    assert found[(SONNET_45, "us", "tpd")] == "L-381AD9EE"
    # The listing has no global quota for Sonnet 4: it must not borrow Sonnet 4.5's.
    assert (SONNET_4, "global", "tpm") not in found


def test_claude_3_5_sonnet_v1_and_v2_keep_their_own_quotas(mapped: list[QuotaMapping]) -> None:
    found = codes(mapped)
    assert found[(SONNET_35_V1, "base", "tpm")] == "L-A50569E5"
    assert found[(SONNET_35_V1, "us", "tpm")] == "L-479B647F"
    assert found[(SONNET_35_V1, "us", "tpd")] == "L-E7D41161"
    assert found[(SONNET_35_V2, "us", "tpm")] == "L-FF8B4E28"
    assert found[(SONNET_35_V2, "us", "rpm")] == "L-1D3E59A3"
    assert found[(SONNET_35_V2, "us", "tpd")] == "L-79F3B993"
    # "Anthropic Claude 3.5 Sonnet" (no V suffix) is the V1 model's on-demand quota, not V2's.
    assert (SONNET_35_V2, "base", "tpm") not in found


def test_v1_quota_names_never_reach_a_v2_only_listing() -> None:
    rows = map_quotas(
        [
            quota("L-A50569E5", "On-demand model inference tokens per minute for Anthropic Claude 3.5 Sonnet"),
            quota(
                "L-E7D41161",
                "Model invocation max tokens per day for Anthropic Claude 3.5 Sonnet V1 "
                "(doubled for cross-region calls)",
            ),
        ],
        [model(SONNET_35_V2, "Claude 3.5 Sonnet v2", "Anthropic")],
    )
    assert list(rows) == []
    assert {item.reason for item in rows.unresolved} == {"no-model"}


def test_1m_context_quotas_never_map_to_the_plain_model(mapped: list[QuotaMapping]) -> None:
    long_context = {"L-8EA73537", "L-A052927A", "L-E107194C", "L-4B26E44A", "L-C0D53EFB", "L-229A5DEC"}
    assert not long_context & {row.quota_code for row in mapped}
    left = {item.quota_code: item for item in mapped.unresolved if item.quota_code in long_context}
    assert set(left) == long_context
    assert {item.reason for item in left.values()} == {"context-variant"}
    assert {item.candidates for item in left.values()} == {(SONNET_45,)}


def test_1m_context_quotas_map_to_a_model_id_carrying_the_variant(quotas: list[dict], models: list[dict]) -> None:
    long_id = f"{SONNET_45}:1m"  # hypothetical id of the long-context variant
    rows = map_quotas(quotas, [*models, model(long_id, "Claude Sonnet 4.5", "Anthropic")])
    found, rule = codes(rows), rules(rows)
    assert found[(long_id, "geo", "tpm")] == "L-8EA73537"
    assert found[(long_id, "global", "tpd")] == "L-229A5DEC"
    assert rule[(long_id, "geo", "tpd")] == "name:cross-region:tpd:context:doubled"
    assert found[(SONNET_45, "geo", "tpm")] == "L-F4DDD3EB"
    assert (long_id, "geo", "rpm") in found and found[(SONNET_45, "geo", "rpm")] == "L-4A6BFAB1"


def test_plain_quotas_never_map_to_provisioned_context_variants(mapped: list[QuotaMapping]) -> None:
    assert codes(mapped)[(HAIKU_3, "base", "tpm")] == "L-8CE99163"
    assert not [row for row in mapped if row.model_id.endswith((":48k", ":200k", ":24k", ":300k", ":256k"))]


def test_nova_lite_and_nova_2_lite_keep_their_own_quotas(mapped: list[QuotaMapping]) -> None:
    found = codes(mapped)
    assert found[(NOVA_LITE, "base", "tpm")] == "L-70423BF8"
    assert found[(NOVA_LITE, "us", "tpm")] == "L-7C42E72A"
    assert found[(NOVA_2_LITE, "us", "tpm")] == "L-C6F5908D"
    assert found[(NOVA_2_LITE, "global", "tpm")] == "L-71C69B70"
    assert found[(NOVA_2_LITE, "us", "tpd")] == "L-210172B5"
    assert (NOVA_LITE, "global", "tpm") not in found
    assert (NOVA_2_LITE, "base", "tpm") not in found


def test_claude_3_haiku_and_haiku_4_5_keep_their_own_quotas(mapped: list[QuotaMapping]) -> None:
    found = codes(mapped)
    assert found[(HAIKU_3, "base", "tpm")] == "L-8CE99163"
    assert found[(HAIKU_3, "us", "tpm")] == "L-DCADBC78"
    assert found[(HAIKU_45, "us", "tpm")] == "L-58BE175A"
    assert found[(HAIKU_45, "global", "tpm")] == "L-9A11C666"
    assert (HAIKU_45, "base", "tpm") not in found
    assert (HAIKU_3, "global", "tpm") not in found


def test_llama_versions_and_sizes_keep_their_own_quotas(mapped: list[QuotaMapping]) -> None:
    found = codes(mapped)
    assert found[(LLAMA_31_70B, "base", "tpm")] == "L-48E55E59"
    assert found[(LLAMA_31_8B, "base", "tpm")] == "L-9E79C230"
    assert found[(LLAMA_33_70B, "base", "tpm")] == "L-372A660C"
    assert found[(LLAMA_31_70B, "us", "tpm")] == "L-92E68994"
    assert found[(LLAMA_31_8B, "us", "tpm")] == "L-9782749C"
    assert found[(LLAMA_33_70B, "us", "tpm")] == "L-0E7AA8B7"
    assert found[("meta.llama3-70b-instruct-v1:0", "base", "tpm")] == "L-609E24B0"
    # The name leaves the size out where the family has one size.
    assert found[("meta.llama4-scout-17b-instruct-v1:0", "us", "tpm")] == "L-532E6630"


def test_case_and_wording_variants_map_like_the_usual_names(models: list[dict]) -> None:
    rows = map_quotas(
        [
            quota("L-F4DDD3EB", "Cross-Region InvokeModel tokens per minute for Anthropic Claude Sonnet 4.5 V1"),
            quota(
                "L-4A6BFAB1",
                "cross region model inference requests per minute for Anthropic Claude Sonnet 4.5 V1",
            ),
            quota("L-8CE99163", "On-demand InvokeModel tokens per minute for Anthropic Claude 3 Haiku"),
            quota(
                "L-27C57EE8",
                "Global Cross-Region InvokeModel tokens per minute for Anthropic Claude Sonnet 4.5 V1",
            ),
            quota(
                "L-381AD9EE",
                "Model invocation max tokens per day for Anthropic Claude Sonnet 4.5 V1 "
                "(Doubled for Cross-Region calls)",
            ),
        ],
        models,
    )
    assert codes(rows) == {
        (SONNET_45, "geo", "tpm"): "L-F4DDD3EB",
        (SONNET_45, "geo", "rpm"): "L-4A6BFAB1",
        (HAIKU_3, "base", "tpm"): "L-8CE99163",
        (SONNET_45, "global", "tpm"): "L-27C57EE8",
        (SONNET_45, "base", "tpd"): "L-381AD9EE",
        (SONNET_45, "geo", "tpd"): "L-381AD9EE",
    }
    assert rules(rows)[(SONNET_45, "geo", "tpd")] == "name:cross-region:tpd:doubled"


def test_model_name_absent_is_derived_from_the_id(quotas: list[dict], models: list[dict]) -> None:
    bare = [{"modelId": item["modelId"]} for item in models]
    found = codes(map_quotas(quotas, bare))
    assert found[(SONNET_4, "geo", "tpm")] == "L-59759B4A"
    assert found[(SONNET_45, "geo", "tpm")] == "L-F4DDD3EB"
    assert found[(SONNET_35_V1, "base", "tpm")] == "L-A50569E5"
    assert found[(SONNET_35_V2, "geo", "tpm")] == "L-FF8B4E28"
    assert (SONNET_35_V2, "base", "tpm") not in found
    assert found[(NOVA_LITE, "geo", "tpm")] == "L-7C42E72A"
    assert found[(NOVA_2_LITE, "geo", "tpm")] == "L-C6F5908D"
    assert found[(LLAMA_31_8B, "base", "tpm")] == "L-9E79C230"
    assert found[(HAIKU_45, "global", "tpm")] == "L-9A11C666"
    assert found[("amazon.titan-embed-text-v2:0", "base", "tpm")] == "L-DE641971"


def test_several_matching_models_are_unresolved_not_guessed() -> None:
    twin = "anthropic.claude-sonnet-4-5-20260101-v1:0"  # hypothetical re-release under the same name
    rows = map_quotas(
        [
            quota(
                "L-F4DDD3EB",
                "Cross-region model inference tokens per minute for Anthropic Claude Sonnet 4.5 V1",
            )
        ],
        [model(SONNET_45, "Claude Sonnet 4.5", "Anthropic"), model(twin, "Claude Sonnet 4.5", "Anthropic")],
    )
    assert list(rows) == []
    (item,) = rows.unresolved
    assert (item.quota_code, item.reason, item.candidates) == ("L-F4DDD3EB", "ambiguous", (SONNET_45, twin))


def test_two_quotas_claiming_one_endpoint_are_both_unresolved(models: list[dict]) -> None:
    rows = map_quotas(
        [
            quota(
                "L-F4DDD3EB",
                "Cross-region model inference tokens per minute for Anthropic Claude Sonnet 4.5 V1",
            ),
            quota("L-0A000003", "Cross-Region InvokeModel tokens per minute for Anthropic Claude Sonnet 4.5"),
            quota(
                "L-4A6BFAB1",
                "Cross-region model inference requests per minute for Anthropic Claude Sonnet 4.5 V1",
            ),
        ],
        models,
    )
    assert codes(rows) == {(SONNET_45, "geo", "rpm"): "L-4A6BFAB1"}
    assert {(item.quota_code, item.reason) for item in rows.unresolved} == {
        ("L-F4DDD3EB", "conflict"),
        ("L-0A000003", "conflict"),
    }


def test_name_without_scope_is_unresolved_with_its_candidate(models: list[dict]) -> None:
    rows = map_quotas([quota("L-0A000004", "InvokeModel requests per minute for Anthropic Claude 3 Haiku")], models)
    assert list(rows) == []
    (item,) = rows.unresolved
    assert (item.reason, item.candidates, item.quota_type) == ("no-scope", (HAIKU_3,), "rpm")


def test_quotas_of_models_not_listed_are_reported_as_no_model(mapped: list[QuotaMapping]) -> None:
    reasons = {item.quota_code: item.reason for item in mapped.unresolved}
    assert reasons["L-B0D9183E"] == "no-model"  # Claude V2, retired
    # "Mistral AI Mistral Large" names no version, and both listed Mistral Large models have one: not guessed.
    assert reasons["L-01447289"] == "no-model"
    assert codes(mapped)[("mistral.mistral-large-2407-v1:0", "base", "tpm")] == "L-1C28E1AB"


# --- endpoints from profiles ------------------------------------------------------------------------------


def test_profiles_with_several_geographic_prefixes_give_one_row_per_prefix(
    quotas: list[dict], models: list[dict], tokyo_profiles: list[dict]
) -> None:
    rows = map_quotas(quotas, models, tokyo_profiles)
    sonnet = {(row.endpoint, row.quota_type): row.quota_code for row in rows if row.model_id == SONNET_45}
    assert sonnet[("apac", "tpm")] == sonnet[("jp", "tpm")] == "L-F4DDD3EB"
    assert sonnet[("apac", "tpd")] == sonnet[("jp", "tpd")] == sonnet[("base", "tpd")] == "L-381AD9EE"
    assert sonnet[("global", "tpm")] == "L-27C57EE8"
    assert {endpoint for endpoint, _ in sonnet} == {"apac", "jp", "global", "base"}
    nova_2 = {row.endpoint for row in rows if row.model_id == NOVA_2_LITE}
    # Tokyo lists only a jp. profile for Nova 2 Lite: its global quota has no endpoint here.
    assert nova_2 == {"jp", "base"}
    assert {row.endpoint for row in rows if row.model_id == NOVA_LITE} == {"apac", "base"}


def test_without_profiles_geo_stands_for_every_geographic_prefix(quotas: list[dict], models: list[dict]) -> None:
    rows = map_quotas(quotas, models)
    assert {row.endpoint for row in rows} == {"base", "geo", "global"}
    assert codes(rows)[(SONNET_45, "geo", "tpm")] == "L-F4DDD3EB"


def test_application_profiles_are_not_endpoints(mapped: list[QuotaMapping]) -> None:
    assert {row.endpoint for row in mapped} == {"base", "us", "global"}


def test_profile_ids_not_in_the_model_listing_resolve_through_their_model_arns(quotas: list[dict]) -> None:
    profile = {
        "inferenceProfileId": "eu.anthropic.claude-haiku-4-5-20251001-v1:0",
        "type": "SYSTEM_DEFINED",
        "models": [
            {"modelArn": f"arn:aws:bedrock:{region}::foundation-model/{HAIKU_45}"}
            for region in ("eu-central-1", "eu-west-1")
        ],
    }
    rows = map_quotas(quotas, [model(HAIKU_45, "Claude Haiku 4.5", "Anthropic")], [profile])
    assert codes(rows)[(HAIKU_45, "eu", "tpm")] == "L-58BE175A"


# --- custom deployments -------------------------------------------------------------------------------------


def test_custom_deployment_quotas_only_when_asked(
    quotas: list[dict], models: list[dict], mapped: list[QuotaMapping]
) -> None:
    assert "custom" not in {row.endpoint for row in mapped}
    rows = map_quotas(quotas, models, include_custom=True)
    found = codes(rows)
    assert found[("amazon.nova-lite-v1:0:300k", "custom", "tpm")] == "L-153ADCCB"
    assert found[("amazon.nova-2-lite-v1:0:256k", "custom", "tpm")] == "L-0704A05C"
    assert found[(LLAMA_33_70B, "custom", "tpd")] == "L-E2A3818E"
    assert rules(rows)[("amazon.nova-lite-v1:0:300k", "custom", "rpm")] == "name:custom:rpm"


# --- overrides ----------------------------------------------------------------------------------------------


def test_override_pins_a_code_and_wins_over_the_rules(quotas, models, profiles) -> None:
    rows = map_quotas(quotas, models, profiles, [OverrideRule(NOVA_LITE, "us", "tpm", "L-DC7FF66C")])
    row = next(row for row in rows if (row.model_id, row.endpoint, row.quota_type) == (NOVA_LITE, "us", "tpm"))
    assert (row.quota_code, row.rule) == ("L-DC7FF66C", "override")
    assert row.quota_name == "Cross-region model inference tokens per minute for Amazon Nova Micro"


def test_override_with_none_suppresses_a_row(quotas, models, profiles) -> None:
    rows = map_quotas(quotas, models, profiles, [OverrideRule(NOVA_LITE, "base", "tpd", None)])
    found = codes(rows)
    assert (NOVA_LITE, "base", "tpd") not in found
    assert found[(NOVA_LITE, "us", "tpd")] == "L-45E0AD92"


def test_override_for_geo_covers_every_prefix(quotas, models, tokyo_profiles) -> None:
    rows = map_quotas(quotas, models, tokyo_profiles, [OverrideRule(SONNET_45, "geo", "rpm", None)])
    assert not [
        row for row in rows if row.model_id == SONNET_45 and row.quota_type == "rpm" and row.endpoint != "global"
    ]


def test_override_settles_an_unresolved_quota(quotas, models) -> None:
    rule = OverrideRule("mistral.mistral-large-2402-v1:0", "base", "tpm", "L-01447289")
    rows = map_quotas(quotas, models, None, [rule])
    assert codes(rows)[("mistral.mistral-large-2402-v1:0", "base", "tpm")] == "L-01447289"
    assert "L-01447289" not in {item.quota_code for item in rows.unresolved}


def test_override_with_a_code_the_region_does_not_list_leaves_the_endpoint_unmapped(quotas, models) -> None:
    rows = map_quotas(quotas, models, None, [OverrideRule(NOVA_LITE, "base", "tpm", "L-0000FFFF")])
    assert (NOVA_LITE, "base", "tpm") not in codes(rows)


def test_overrides_file_is_read_from_the_data_dir(tmp_path: Path) -> None:
    (tmp_path / "quota-overrides.yaml").write_text(
        "- model_id: amazon.nova-lite-v1:0\n"
        "  endpoint: us\n"
        "  quota_type: tpm\n"
        "  quota_code: L-7C42E72A\n"
        "- model_id: amazon.nova-lite-v1:0\n"
        "  endpoint: base\n"
        "  quota_type: tpd\n"
        "  none: true\n"
    )
    env = {"BUW_DATA_DIR": str(tmp_path)}
    assert data_dir(env) == tmp_path
    assert load_overrides(env=env) == [
        OverrideRule(NOVA_LITE, "us", "tpm", "L-7C42E72A"),
        OverrideRule(NOVA_LITE, "base", "tpd", None),
    ]


def test_data_dir_defaults_to_the_platform_user_data_dir(tmp_path: Path) -> None:
    assert data_dir({}) == Path(platformdirs.user_data_dir("buw"))
    assert load_overrides(env={"BUW_DATA_DIR": str(tmp_path / "empty")}) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "- model_id: m\n  endpoint: base\n  quota_type: tmp\n  quota_code: L-7C42E72A\n",
            "field 'quota_type'",
        ),
        ("- model_id: m\n  endpoint: base\n  quota_type: tpm\n", "field 'quota_code' is missing"),
        ("- endpoint: base\n  quota_type: tpm\n  quota_code: L-7C42E72A\n", "field 'model_id' is missing"),
        ("- model_id: m\n  endpoint: Base Endpoint\n  quota_type: tpm\n  none: true\n", "field 'endpoint'"),
        ("- model_id: m\n  endpoint: base\n  quota_type: tpm\n  quota_code: 12345\n", "field 'quota_code'"),
        ("- model_id: m\n  endpoint: base\n  quota_type: tpm\n  none: yes please\n", "field 'none'"),
        (
            "- model_id: m\n  endpoint: base\n  quota_type: tpm\n  quota_code: L-7C42E72A\n  none: true\n",
            "either field 'quota_code' or 'none: true'",
        ),
        (
            "- model_id: m\n  endpoint: base\n  quota_typ: tpm\n  quota_code: L-7C42E72A\n",
            "unknown field 'quota_typ'",
        ),
        ("model_id: m\n", "must be a YAML list"),
        ("- model_id: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_overrides_file_names_the_entry_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "quota-overrides.yaml"
    path.write_text(text)
    with pytest.raises(OverrideError) as raised:
        load_overrides(path)
    assert message in str(raised.value)
    assert str(path) in str(raised.value)


def test_parsed_overrides_keep_file_order() -> None:
    rules_in = parse_overrides(
        [
            {"model_id": NOVA_LITE, "endpoint": "geo", "quota_type": "rpm", "none": True},
            {"model_id": NOVA_LITE, "endpoint": "geo", "quota_type": "rpm", "quota_code": "L-89F8391A"},
        ]
    )
    rows = map_quotas(listing("us-east-1-quotas.json", "Quotas"), [model(NOVA_LITE, "Nova Lite")], None, rules_in)
    # The later entry wins.
    assert codes(rows)[(NOVA_LITE, "geo", "rpm")] == "L-89F8391A"


# --- output ------------------------------------------------------------------------------------------------


def test_output_is_sorted_and_does_not_depend_on_input_order(quotas, models, profiles, mapped) -> None:
    keys = [(row.model_id, row.endpoint, row.quota_type, row.quota_code) for row in mapped]
    assert keys == sorted(keys)
    shuffled = [list(items) for items in (quotas, models, profiles)]
    for items in shuffled:
        random.Random(7).shuffle(items)
    again = map_quotas(*shuffled)
    assert list(again) == list(mapped)
    assert again.unresolved == mapped.unresolved


def test_csv_has_exactly_the_documented_header(mapped: list[QuotaMapping]) -> None:
    text = mapping_csv(mapped)
    lines = text.splitlines()
    assert lines[0] == "model_id,endpoint,quota_type,quota_code,quota_name"
    assert tuple(lines[0].split(",")) == CSV_HEADER
    assert len(lines) == len(mapped) + 1
    assert (
        "anthropic.claude-sonnet-4-5-20250929-v1:0,us,tpm,L-F4DDD3EB,"
        "Cross-region model inference tokens per minute for Anthropic Claude Sonnet 4.5 V1"
    ) in lines


def test_model_id_parts() -> None:
    parts = parse_model_id("anthropic.claude-3-5-sonnet-20241022-v2:0")
    assert (parts.provider, parts.family, parts.version, parts.date, parts.api_version, parts.revision) == (
        "anthropic",
        ("claude", "sonnet"),
        ("3.5",),
        "20241022",
        2,
        "0",
    )
    llama = parse_model_id("meta.llama3-3-70b-instruct-v1:0")
    assert (llama.family, llama.version, llama.sizes, llama.variant) == (
        ("llama", "instruct"),
        ("3.3",),
        ("70b",),
        None,
    )
    assert parse_model_id("anthropic.claude-3-haiku-20240307-v1:0:200k").context_thousands == 200
    assert parse_model_id("amazon.titan-text-lite-v1:28k").variant == "28k"
    assert parse_model_id("amazon.nova-2-lite-v1:0").version == ("2",)


# --- the CLI -----------------------------------------------------------------------------------------------


def run(tmp_path: Path, *paths: Path | None) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = {"BUW_DATA_DIR": str(tmp_path / "data")}
    assert match_command(*paths, out=out, env=env, err=err) == 0
    return out.getvalue(), err.getvalue()


def test_match_command_prints_csv_for_saved_listings(tmp_path: Path) -> None:
    out, err = run(
        tmp_path,
        FIXTURES / "us-east-1-quotas.json",
        FIXTURES / "us-east-1-models.json",
        FIXTURES / "us-east-1-profiles.json",
    )
    lines = out.splitlines()
    assert lines[0] == "model_id,endpoint,quota_type,quota_code,quota_name"
    assert any(line.startswith(f"{SONNET_45},us,tpm,L-F4DDD3EB,") for line in lines)
    assert "L-8EA73537 context-variant" in err


def test_match_command_accepts_bare_lists_and_geo_without_profiles(tmp_path: Path) -> None:
    quotas_file = tmp_path / "q.json"
    models_file = tmp_path / "m.json"
    quotas_file.write_text(json.dumps(listing("us-east-1-quotas.json", "Quotas")))
    models_file.write_text(json.dumps(listing("us-east-1-models.json", "modelSummaries")))
    out, _ = run(tmp_path, quotas_file, models_file)
    assert f"{SONNET_45},geo,tpm,L-F4DDD3EB," in out
    assert f"{SONNET_45},us," not in out


def test_match_command_applies_the_overrides_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "quota-overrides.yaml").write_text(
        f"- model_id: '{NOVA_LITE}'\n  endpoint: base\n  quota_type: tpm\n  none: true\n"
    )
    out, _ = run(tmp_path, FIXTURES / "us-east-1-quotas.json", FIXTURES / "us-east-1-models.json")
    assert f"{NOVA_LITE},base,tpm," not in out
    assert f"{NOVA_LITE},base,rpm,L-E386A278," in out


def test_match_command_turns_a_bad_overrides_file_into_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "quota-overrides.yaml").write_text("- model_id: x\n  endpoint: base\n  quota_type: tokens\n")
    with pytest.raises(QuotaInputError, match="field 'quota_type' must be one of"):
        run(tmp_path, FIXTURES / "us-east-1-quotas.json", FIXTURES / "us-east-1-models.json")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"Quotas": [', "is not valid JSON"),
        ('{"modelSummaries": []}', "has no 'Quotas' list"),
        ('{"Quotas": {"QuotaCode": "L-1"}}', "must hold a 'Quotas' list"),
        ('{"Quotas": ["L-F4DDD3EB"]}', "Item 1 of the quotas file"),
        ('[{"QuotaCode": "L-F4DDD3EB"}]', "has no 'QuotaName'"),
    ],
)
def test_bad_quotas_file_is_one_clear_sentence(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "q.json"
    path.write_text(content)
    with pytest.raises(QuotaInputError) as raised:
        read_listing(path, "quotas")
    text = str(raised.value)
    assert message in text
    assert str(path) in text
    assert "aws service-quotas list-service-quotas --service-code bedrock" in text
    assert text.count("\n") == 0


def test_missing_input_file_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(
        QuotaInputError, match="does not exist; save the output of `aws bedrock list-foundation-models`"
    ):
        run(tmp_path, FIXTURES / "us-east-1-quotas.json", tmp_path / "missing.json")


def test_profiles_file_items_need_an_id(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"inferenceProfileSummaries": [{"inferenceProfileName": "x"}]}')
    with pytest.raises(QuotaInputError, match="has no 'inferenceProfileId'"):
        read_listing(path, "profiles")

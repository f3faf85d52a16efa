"""Quota-name parsing on real Bedrock quota names, in the varying wordings AWS uses."""

from __future__ import annotations

import pytest

from pipelines.quotas.names import context_thousands, parse_quota_name

# (name, scope, quota_type, model_display, context_variant, version_suffix, doubled)
REAL_NAMES = [
    (
        "On-demand model inference tokens per minute for Anthropic Claude 3 Haiku",
        "on-demand",
        "tpm",
        "Anthropic Claude 3 Haiku",
        None,
        None,
        False,
    ),
    (
        "On-demand model inference requests per minute for Meta Llama 3.1 70B Instruct",
        "on-demand",
        "rpm",
        "Meta Llama 3.1 70B Instruct",
        None,
        None,
        False,
    ),
    (
        "Cross-region model inference requests per minute for Anthropic Claude Sonnet 4.5 V1",
        "cross-region",
        "rpm",
        "Anthropic Claude Sonnet 4.5",
        None,
        "V1",
        False,
    ),
    (
        "Cross-Region model inference tokens per minute for Anthropic Claude 3.5 Sonnet V2",
        "cross-region",
        "tpm",
        "Anthropic Claude 3.5 Sonnet",
        None,
        "V2",
        False,
    ),
    (
        "Global cross-region model inference tokens per minute for Anthropic Claude Sonnet 4.5 V1",
        "global-cross-region",
        "tpm",
        "Anthropic Claude Sonnet 4.5",
        None,
        "V1",
        False,
    ),
    (
        "Global cross-region model inference tokens per day for Anthropic Claude Haiku 4.5",
        "global-cross-region",
        "tpd",
        "Anthropic Claude Haiku 4.5",
        None,
        None,
        False,
    ),
    (
        "Model invocation max tokens per day for Amazon Nova Lite (doubled for cross-region calls)",
        "model-invocation",
        "tpd",
        "Amazon Nova Lite",
        None,
        None,
        True,
    ),
    (
        "Model invocation max tokens per day for Anthropic Claude Sonnet 4.5 V1 1M Context Length "
        "(doubled for cross-region calls)",
        "model-invocation",
        "tpd",
        "Anthropic Claude Sonnet 4.5",
        "1M Context Length",
        "V1",
        True,
    ),
    (
        "Cross-region model inference tokens per minute for Anthropic Claude Sonnet 4.5 V1 1M Context Length",
        "cross-region",
        "tpm",
        "Anthropic Claude Sonnet 4.5",
        "1M Context Length",
        "V1",
        False,
    ),
    (
        "Global cross-region model inference tokens per day for Anthropic Claude Sonnet 4.5 V1 1M Context Length",
        "global-cross-region",
        "tpd",
        "Anthropic Claude Sonnet 4.5",
        "1M Context Length",
        "V1",
        False,
    ),
    (
        "(Model customization) Sum of on demand custom model deployment tokens per minute for Amazon Nova Lite",
        "custom-deployment",
        "tpm",
        "Amazon Nova Lite",
        None,
        None,
        False,
    ),
    (
        "(Model customization) Sum of on demand custom model deployment tokens per day for Meta Llama 3.3 70B Instruct",
        "custom-deployment",
        "tpd",
        "Meta Llama 3.3 70B Instruct",
        None,
        None,
        False,
    ),
    (
        "On-demand model inference concurrent requests for Luma Ray V2",
        "on-demand",
        "concurrent",
        "Luma Ray",
        None,
        "V2",
        False,
    ),
    (
        "On-demand InvokeModel concurrent requests for Twelve Labs Pegasus",
        "on-demand",
        "concurrent",
        "Twelve Labs Pegasus",
        None,
        None,
        False,
    ),
    (
        "Bedrock Mantle input tokens per minute for Anthropic Claude Opus 4.7",
        "mantle",
        "input_tpm",
        "Anthropic Claude Opus 4.7",
        None,
        None,
        False,
    ),
    (
        "Bedrock Mantle output tokens per minute for Anthropic Claude Opus 4.7",
        "mantle",
        "output_tpm",
        "Anthropic Claude Opus 4.7",
        None,
        None,
        False,
    ),
    (
        "On-demand model inference tokens per minute for DeepSeek V3 V1",
        "on-demand",
        "tpm",
        "DeepSeek V3",
        None,
        "V1",
        False,
    ),
    (
        "On-demand model inference tokens per minute for DeepSeek V3.2",
        "on-demand",
        "tpm",
        "DeepSeek V3.2",
        None,
        None,
        False,
    ),
    (
        "Cross-region model inference tokens per minute for Mistral Pixtral Large 25.02 V1",
        "cross-region",
        "tpm",
        "Mistral Pixtral Large 25.02",
        None,
        "V1",
        False,
    ),
]


@pytest.mark.parametrize(
    ("name", "scope", "quota_type", "model", "context", "suffix", "doubled"),
    REAL_NAMES,
    ids=[row[0][:70] for row in REAL_NAMES],
)
def test_real_quota_names_parse_into_scope_type_model_and_notes(
    name: str,
    scope: str,
    quota_type: str,
    model: str,
    context: str | None,
    suffix: str | None,
    doubled: bool,
) -> None:
    parsed = parse_quota_name(name)
    assert parsed.name == name
    assert (parsed.scope, parsed.quota_type, parsed.model_display) == (scope, quota_type, model)
    assert (parsed.context_variant, parsed.version_suffix, parsed.doubled_for_cross_region) == (
        context,
        suffix,
        doubled,
    )


@pytest.mark.parametrize(
    ("name", "scope", "quota_type"),
    [
        (
            "Cross-Region InvokeModel tokens per minute for Anthropic Claude Sonnet 4.5 V1",
            "cross-region",
            "tpm",
        ),
        (
            "cross region model inference tokens per minute for Anthropic Claude Sonnet 4.5 V1",
            "cross-region",
            "tpm",
        ),
        (
            "CROSS-REGION MODEL INFERENCE REQUESTS PER MINUTE FOR Anthropic Claude Sonnet 4.5 V1",
            "cross-region",
            "rpm",
        ),
        (
            "Cross-region  model   inference tokens per minute for Anthropic Claude Sonnet 4.5 V1",
            "cross-region",
            "tpm",
        ),
        ("On-demand InvokeModel tokens per minute for Anthropic Claude Sonnet 4.5 V1", "on-demand", "tpm"),
        (
            "On demand model inference requests per minute for Anthropic Claude Sonnet 4.5 V1",
            "on-demand",
            "rpm",
        ),
        (
            "Global Cross-Region InvokeModel tokens per minute for Anthropic Claude Sonnet 4.5 V1",
            "global-cross-region",
            "tpm",
        ),
        (
            "Global cross region model inference tokens per day for Anthropic Claude Sonnet 4.5 V1",
            "global-cross-region",
            "tpd",
        ),
    ],
)
def test_case_and_wording_variants_parse_the_same(name: str, scope: str, quota_type: str) -> None:
    parsed = parse_quota_name(name)
    assert (parsed.scope, parsed.quota_type) == (scope, quota_type)
    assert (parsed.model_display, parsed.version_suffix) == ("Anthropic Claude Sonnet 4.5", "V1")


@pytest.mark.parametrize(
    "suffix",
    [
        "(doubled for cross-region calls)",
        "(Doubled for Cross-Region calls)",
        "(doubled for cross region calls)",
        "( doubled for cross-region call )",
    ],
)
def test_doubled_note_is_recognised_in_any_wording(suffix: str) -> None:
    parsed = parse_quota_name(f"Model invocation max tokens per day for Anthropic Claude Haiku 4.5 {suffix}")
    assert parsed.doubled_for_cross_region
    assert (parsed.scope, parsed.quota_type, parsed.model_display) == (
        "model-invocation",
        "tpd",
        "Anthropic Claude Haiku 4.5",
    )


def test_daily_quota_without_the_doubled_note_says_so() -> None:
    parsed = parse_quota_name("Model invocation max tokens per day for Anthropic Claude Sonnet 4.5")
    assert parsed.scope == "model-invocation"
    assert not parsed.doubled_for_cross_region


@pytest.mark.parametrize(
    "name",
    [
        "Batch inference job size (in GB) for Claude Sonnet 4",
        "Records per batch inference job for Claude Sonnet 4",
        "Minimum number of records per batch inference job for Claude Sonnet 4",
        "Sum of in-progress and submitted batch inference jobs using a base model for Claude 3.5 Sonnet",
        "Model units per provisioned model for Anthropic Claude Instant V1 100K",
        "(Model customization) Scheduled customization jobs",
        "(Model customization) Sum of training and validation records for a Meta Llama 2 70B v1 Fine-tuning job",
        "(Knowledge Bases) Retrieve requests per second",
        "(Guardrails) On-demand ApplyGuardrail requests per second",
        "Throttle rate limit for InvokeDataAutomationAsync",
        "CreateAgent requests per second",
        "Cross-Model Max Tokens Per Day",
        "Tokens per minute for long-term memory extraction",
        # Async invocation has its own concurrency quota; it does not limit the synchronous endpoint.
        "On-demand InvokeModel async concurrent requests for TwelveLabs Marengo Embed 3.0",
    ],
)
def test_quotas_that_are_not_per_model_inference_limits_have_no_type(name: str) -> None:
    parsed = parse_quota_name(name)
    assert parsed.quota_type is None
    assert parsed.model_display is None


def test_name_without_scope_keeps_its_type_but_no_scope() -> None:
    parsed = parse_quota_name("InvokeModel requests per minute for Anthropic Claude 3 Haiku")
    assert (parsed.scope, parsed.quota_type, parsed.model_display) == (
        None,
        "rpm",
        "Anthropic Claude 3 Haiku",
    )


@pytest.mark.parametrize(
    ("variant", "thousands"),
    [("1M Context Length", 1000), ("200K Context Length", 200), ("1m", 1000), ("1000k", 1000), ("28k", 28)],
)
def test_context_variants_compare_in_thousands_of_tokens(variant: str, thousands: int) -> None:
    assert context_thousands(variant) == thousands


def test_context_variant_of_a_parsed_name_is_in_thousands() -> None:
    parsed = parse_quota_name(
        "Global cross-region model inference requests per minute for Anthropic Claude Sonnet 4.5 V1 1M Context Length"
    )
    assert parsed.context_thousands == 1000
    assert (
        parse_quota_name("Cross-region model inference tokens per minute for Amazon Nova Lite").context_thousands
        is None
    )

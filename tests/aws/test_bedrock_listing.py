"""Foundation models, inference profiles and tags, normalised from botocore's Stubber responses."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber

from pipelines.aws import AwsApiError
from pipelines.aws.bedrock import list_foundation_models, list_inference_profiles, list_profile_tags

HAIKU_ARN = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"
HAIKU_ARN_WEST = "arn:aws:bedrock:us-west-2::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"
SYSTEM_ARN = "arn:aws:bedrock:us-east-1:111122223333:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"
APP_ARN = "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/a1b2c3d4e5f6"


@pytest.fixture
def bedrock():
    client = boto3.client("bedrock", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def profile(profile_id, arn, kind, models, **extra):
    return {
        "inferenceProfileName": extra.pop("name", profile_id),
        "inferenceProfileArn": arn,
        "inferenceProfileId": profile_id,
        "models": [{"modelArn": model} for model in models],
        "status": "ACTIVE",
        "type": kind,
        **extra,
    }


def test_foundation_models_are_normalised_and_sorted(bedrock):
    client, stubber = bedrock
    stubber.add_response(
        "list_foundation_models",
        {
            "modelSummaries": [
                {
                    "modelArn": "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0",
                    "modelId": "amazon.nova-lite-v1:0",
                    "modelName": "Nova Lite",
                    "providerName": "Amazon",
                    "inputModalities": ["TEXT", "IMAGE"],
                    "outputModalities": ["TEXT"],
                    "inferenceTypesSupported": ["INFERENCE_PROFILE"],
                    "responseStreamingSupported": True,
                    "modelLifecycle": {"status": "ACTIVE"},
                },
                {
                    "modelArn": HAIKU_ARN,
                    "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
                    "modelName": "Claude 3 Haiku",
                    "providerName": "Anthropic",
                    "inferenceTypesSupported": ["ON_DEMAND", "INFERENCE_PROFILE"],
                },
            ]
        },
    )
    models = list_foundation_models(client)
    assert [model.model_id for model in models] == [
        "amazon.nova-lite-v1:0",
        "anthropic.claude-3-haiku-20240307-v1:0",
    ]
    assert models[0].input_modalities == ("TEXT", "IMAGE")
    assert models[0].lifecycle_status == "ACTIVE"
    assert models[1].inference_types == ("ON_DEMAND", "INFERENCE_PROFILE")
    assert models[1].response_streaming is None


def test_inference_profiles_follow_pages_for_both_types(bedrock):
    client, stubber = bedrock
    created = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    stubber.add_response(
        "list_inference_profiles",
        {
            "inferenceProfileSummaries": [
                profile(
                    "us.anthropic.claude-3-haiku-20240307-v1:0",
                    SYSTEM_ARN,
                    "SYSTEM_DEFINED",
                    [HAIKU_ARN_WEST, HAIKU_ARN],
                )
            ],
            "nextToken": "t2",
        },
        {"typeEquals": "SYSTEM_DEFINED"},
    )
    stubber.add_response(
        "list_inference_profiles",
        {"inferenceProfileSummaries": []},
        {"typeEquals": "SYSTEM_DEFINED", "nextToken": "t2"},
    )
    stubber.add_response(
        "list_inference_profiles",
        {
            "inferenceProfileSummaries": [
                profile("a1b2c3d4e5f6", APP_ARN, "APPLICATION", [HAIKU_ARN], name="team-search", createdAt=created)
            ]
        },
        {"typeEquals": "APPLICATION"},
    )
    profiles = list_inference_profiles(client)
    assert [(p.type, p.profile_id) for p in profiles] == [
        ("APPLICATION", "a1b2c3d4e5f6"),
        ("SYSTEM_DEFINED", "us.anthropic.claude-3-haiku-20240307-v1:0"),
    ]
    application, system = profiles
    assert application.name == "team-search"
    assert application.created_at == datetime(2026, 3, 1, 9, 30)  # naive UTC
    assert system.model_arns == (HAIKU_ARN, HAIKU_ARN_WEST)


def test_system_is_accepted_for_system_defined(bedrock):
    client, stubber = bedrock
    stubber.add_response("list_inference_profiles", {"inferenceProfileSummaries": []}, {"typeEquals": "SYSTEM_DEFINED"})
    assert list_inference_profiles(client, "SYSTEM") == []


def test_unknown_profile_type_is_refused(bedrock):
    client, _ = bedrock
    with pytest.raises(ValueError, match="not one of"):
        list_inference_profiles(client, "CUSTOM")


def test_tags_per_profile(bedrock):
    client, stubber = bedrock
    stubber.add_response(
        "list_tags_for_resource",
        {"tags": [{"key": "team", "value": "search"}, {"key": "cost-center", "value": "cc-42"}]},
        {"resourceARN": APP_ARN},
    )
    tags = list_profile_tags(client, [APP_ARN])
    assert [(tag.profile_id, tag.key, tag.value) for tag in tags] == [
        ("a1b2c3d4e5f6", "cost-center", "cc-42"),
        ("a1b2c3d4e5f6", "team", "search"),
    ]


def test_access_denied_names_the_api_and_region(bedrock):
    client, stubber = bedrock
    stubber.add_client_error("list_inference_profiles", service_error_code="AccessDeniedException")
    with pytest.raises(AwsApiError, match="ListInferenceProfiles in us-east-1 failed: AccessDeniedException"):
        list_inference_profiles(client, "APPLICATION")

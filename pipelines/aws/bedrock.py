"""Amazon Bedrock control plane: foundation models, inference profiles and their tags."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from pipelines.aws import aws_call
from pipelines.aws.records import FoundationModelRecord, InferenceProfileRecord, ProfileTagRecord

PROFILE_TYPES = ("SYSTEM_DEFINED", "APPLICATION")


def naive_utc(moment: datetime | None) -> datetime | None:
    """botocore's aware timestamps as the warehouse's naive UTC; naive input is taken to be UTC already."""
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def list_foundation_models(client) -> list[FoundationModelRecord]:
    """Every foundation model the region offers, by model id (ListFoundationModels, which has no pages)."""
    with aws_call("ListFoundationModels", client):
        response = client.list_foundation_models()
    records = [
        FoundationModelRecord(
            model_id=summary["modelId"],
            model_arn=summary["modelArn"],
            model_name=summary.get("modelName", ""),
            provider=summary.get("providerName", ""),
            input_modalities=tuple(summary.get("inputModalities", ())),
            output_modalities=tuple(summary.get("outputModalities", ())),
            inference_types=tuple(summary.get("inferenceTypesSupported", ())),
            response_streaming=summary.get("responseStreamingSupported"),
            lifecycle_status=summary.get("modelLifecycle", {}).get("status"),
        )
        for summary in response.get("modelSummaries", [])
    ]
    return sorted(records, key=lambda record: record.model_id)


def list_inference_profiles(client, type: str | None = None) -> list[InferenceProfileRecord]:
    """Inference profiles of the region (ListInferenceProfiles, every page), by profile id.

    ``type`` is ``"SYSTEM_DEFINED"`` or ``"APPLICATION"`` (``"SYSTEM"`` is accepted for the former); None
    lists both, which takes one paginated listing per type because the API filters on one type at a time.
    """
    if type is None:
        types = PROFILE_TYPES
    else:
        wanted = "SYSTEM_DEFINED" if type.upper() == "SYSTEM" else type.upper()
        if wanted not in PROFILE_TYPES:
            raise ValueError(f"inference profile type {type!r} is not one of {', '.join(PROFILE_TYPES)}")
        types = (wanted,)
    records: dict[str, InferenceProfileRecord] = {}
    paginator = client.get_paginator("list_inference_profiles")
    with aws_call("ListInferenceProfiles", client):
        for wanted in types:
            for page in paginator.paginate(typeEquals=wanted):
                for summary in page.get("inferenceProfileSummaries", []):
                    record = InferenceProfileRecord(
                        profile_id=summary["inferenceProfileId"],
                        profile_arn=summary["inferenceProfileArn"],
                        name=summary.get("inferenceProfileName", ""),
                        description=summary.get("description"),
                        type=summary.get("type", wanted),
                        status=summary.get("status", ""),
                        model_arns=tuple(sorted(model["modelArn"] for model in summary.get("models", []))),
                        created_at=naive_utc(summary.get("createdAt")),
                        updated_at=naive_utc(summary.get("updatedAt")),
                    )
                    records[record.profile_arn] = record
    return sorted(records.values(), key=lambda record: (record.type, record.profile_id))


def list_profile_tags(client, profiles: Iterable[InferenceProfileRecord | str]) -> list[ProfileTagRecord]:
    """The tags of each profile (ListTagsForResource, one call per ARN; the API has no pagination).

    Takes profile records or bare ARNs; for a bare ARN the profile id is the ARN's last path segment.
    """
    tags: list[ProfileTagRecord] = []
    for profile in profiles:
        if isinstance(profile, InferenceProfileRecord):
            arn, profile_id = profile.profile_arn, profile.profile_id
        else:
            arn, profile_id = profile, profile.rsplit("/", 1)[-1]
        with aws_call("ListTagsForResource", client):
            response = client.list_tags_for_resource(resourceARN=arn)
        tags.extend(
            ProfileTagRecord(profile_arn=arn, profile_id=profile_id, key=tag["key"], value=tag["value"])
            for tag in response.get("tags", [])
        )
    return sorted(tags, key=lambda tag: (tag.profile_arn, tag.key))

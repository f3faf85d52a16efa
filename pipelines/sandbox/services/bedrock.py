"""Bedrock control-plane reads: inference profiles and their tags, foundation models, logging settings."""

from __future__ import annotations

from typing import Any

from pipelines.sandbox.invocation_logs import invocation_logs
from pipelines.sandbox.protocols import ApiError
from pipelines.sandbox.services import CallContext, Handler, paginate

# ListInferenceProfiles returns up to maxResults (1..1000) per page; without it AWS returns the lot up to
# 1000.
PROFILE_PAGE_MAX = 1000


def _profiles(ctx: CallContext) -> tuple:
    return ctx.scenario.profiles.get(ctx.region, ())


def _profile_summary(profile: Any) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "inferenceProfileName": profile.name,
        "description": profile.description or None,
        "createdAt": profile.created_at,
        "updatedAt": profile.updated_at,
        "inferenceProfileArn": profile.arn,
        "models": [{"modelArn": arn} for arn in profile.model_arns],
        "inferenceProfileId": profile.profile_id,
        "status": profile.status,
        "type": profile.api_type,
    }
    return {k: v for k, v in summary.items() if v is not None}


def list_inference_profiles(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """ListInferenceProfiles: SYSTEM_DEFINED profiles unless typeEquals=APPLICATION; paged by
    maxResults/nextToken."""
    kind = params.get("typeEquals") or "SYSTEM_DEFINED"
    if kind not in ("SYSTEM_DEFINED", "APPLICATION"):
        raise ApiError(
            "ValidationException",
            f"1 validation error detected: Value '{kind}' at 'typeEquals' failed to satisfy constraint: "
            "Member must satisfy enum value set: [SYSTEM_DEFINED, APPLICATION]",
        )
    rows = [_profile_summary(p) for p in _profiles(ctx) if p.api_type == kind]
    page, token = paginate(
        rows,
        params,
        token_key="nextToken",
        limit_key="maxResults",
        default_limit=PROFILE_PAGE_MAX,
        max_limit=PROFILE_PAGE_MAX,
        bad_token_code="ValidationException",
        bad_limit_code="ValidationException",
        request_key=[ctx.region, kind],
    )
    result: dict[str, Any] = {"inferenceProfileSummaries": page}
    if token:
        result["nextToken"] = token
    return result


def _find_profile(ctx: CallContext, identifier: str) -> Any:
    for profile in _profiles(ctx):
        if identifier in (profile.profile_id, profile.arn):
            return profile
    return None


def get_inference_profile(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """GetInferenceProfile by id or ARN; ResourceNotFoundException (404) when the region has none."""
    identifier = params["inferenceProfileIdentifier"]
    profile = _find_profile(ctx, identifier)
    if profile is None:
        raise ApiError("ResourceNotFoundException", f"Inference profile {identifier} not found.", 404)
    return _profile_summary(profile)


def list_tags_for_resource(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """ListTagsForResource of an inference profile ARN: ``[{key, value}]`` in the scenario's order."""
    arn = params["resourceARN"]
    profile = next((p for p in _profiles(ctx) if p.arn == arn), None)
    if profile is None:
        raise ApiError("ResourceNotFoundException", f"The resource {arn} was not found.", 404)
    return {"tags": [{"key": key, "value": value} for key, value in profile.tags.items()]}


def list_foundation_models(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """ListFoundationModels with its byProvider, byCustomizationType, byOutputModality, byInferenceType."""
    provider = (params.get("byProvider") or "").lower()
    customization = params.get("byCustomizationType")
    modality = params.get("byOutputModality")
    inference_type = params.get("byInferenceType")
    rows = []
    for model in ctx.scenario.foundation_models.get(ctx.region, ()):
        if provider and model.provider_name.lower() != provider:
            continue
        if customization and customization not in tuple(model.customizations_supported):
            continue
        if modality and modality not in tuple(model.output_modalities):
            continue
        if inference_type and inference_type not in tuple(model.inference_types):
            continue
        rows.append(
            {
                "modelArn": _model_arn(model, ctx.region),
                "modelId": model.model_id,
                "modelName": model.model_name,
                "providerName": model.provider_name,
                "inputModalities": list(model.input_modalities),
                "outputModalities": list(model.output_modalities),
                "responseStreamingSupported": bool(model.response_streaming),
                "customizationsSupported": list(model.customizations_supported),
                "inferenceTypesSupported": list(model.inference_types),
                "modelLifecycle": {"status": model.lifecycle_status},
            }
        )
    return {"modelSummaries": rows}


def _model_arn(model: Any, region: str) -> str:
    arn = model.model_arn
    return arn(region) if callable(arn) else arn


def list_custom_model_deployments(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """ListCustomModelDeployments: the simulated account has none."""
    return {"modelDeploymentSummaries": []}


def list_imported_models(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """ListImportedModels: the simulated account has none."""
    return {"modelSummaries": []}


def get_model_invocation_logging_configuration(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """GetModelInvocationLoggingConfiguration: the scenario's log group and bucket where logging is on (from
    when it was switched on); elsewhere AWS returns no loggingConfig."""
    logs = invocation_logs(ctx.traffic)
    config = logs.config
    if config is None or not logs.enabled(ctx.region) or logs.started_ms > int(ctx.now.timestamp() * 1000):
        return {}
    logging_config: dict[str, Any] = {
        "cloudWatchConfig": {"logGroupName": config.log_group, "roleArn": config.role_arn},
        "textDataDeliveryEnabled": True,
        "imageDataDeliveryEnabled": False,
        "embeddingDataDeliveryEnabled": False,
        "videoDataDeliveryEnabled": False,
    }
    if config.s3_bucket:
        logging_config["s3Config"] = {"bucketName": config.bucket(ctx.region)}
        if config.s3_key_prefix:
            logging_config["s3Config"]["keyPrefix"] = config.s3_key_prefix
    return {"loggingConfig": logging_config}


HANDLERS: dict[tuple[str, str], Handler] = {
    ("bedrock", "ListInferenceProfiles"): list_inference_profiles,
    ("bedrock", "GetInferenceProfile"): get_inference_profile,
    ("bedrock", "ListTagsForResource"): list_tags_for_resource,
    ("bedrock", "ListFoundationModels"): list_foundation_models,
    ("bedrock", "ListCustomModelDeployments"): list_custom_model_deployments,
    ("bedrock", "ListImportedModels"): list_imported_models,
    ("bedrock", "GetModelInvocationLoggingConfiguration"): get_model_invocation_logging_configuration,
}

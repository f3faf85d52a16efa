"""Service Quotas reads for Bedrock: applied values where the account has one, AWS defaults otherwise."""

from __future__ import annotations

from typing import Any

from pipelines.sandbox.protocols import ApiError
from pipelines.sandbox.services import CallContext, Handler, paginate

SERVICE_NAMES = {"bedrock": "Amazon Bedrock"}
PAGE_DEFAULT = 100
PAGE_MAX = 100


def _quotas(ctx: CallContext, service_code: str) -> tuple:
    return tuple(q for q in ctx.scenario.quotas.get(ctx.region, ()) if q.service_code == service_code)


def _quota_row(quota: Any, value: float, arn: str) -> dict[str, Any]:
    return {
        "ServiceCode": quota.service_code,
        "ServiceName": SERVICE_NAMES.get(quota.service_code, quota.service_code),
        "QuotaArn": arn,
        "QuotaCode": quota.quota_code,
        "QuotaName": quota.quota_name,
        "Value": float(value),
        "Unit": quota.unit,
        "Adjustable": bool(quota.adjustable),
        "GlobalQuota": bool(quota.global_quota),
        "QuotaAppliedAtLevel": "ACCOUNT",
    }


def _default_arn(quota: Any, region: str) -> str:
    # AWS default quotas belong to no account: the account field of their ARN is empty.
    return f"arn:aws:servicequotas:{region}::{quota.service_code}/{quota.quota_code}"


def _no_such_quota(service_code: str, quota_code: str) -> ApiError:
    return ApiError(
        "NoSuchResourceException",
        f"The request failed because the specified quota {quota_code} of service {service_code} does "
        "not exist or has no applied value.",
    )


def list_service_quotas(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """ListServiceQuotas: every quota of the service with its applied value, or the default where none is
    applied."""
    service_code = params["ServiceCode"]
    quotas = _quotas(ctx, service_code)
    if params.get("QuotaCode"):
        quotas = tuple(q for q in quotas if q.quota_code == params["QuotaCode"])
    rows = [_quota_row(q, q.applied_value if q.applied_value is not None else q.default_value, q.arn) for q in quotas]
    return _page(rows, params, [ctx.region, service_code, params.get("QuotaCode")])


def get_service_quota(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """GetServiceQuota: the applied value; NoSuchResourceException where none is applied, as on AWS."""
    service_code, quota_code = params["ServiceCode"], params["QuotaCode"]
    for quota in _quotas(ctx, service_code):
        if quota.quota_code == quota_code and quota.applied_value is not None:
            return {"Quota": _quota_row(quota, quota.applied_value, quota.arn)}
    raise _no_such_quota(service_code, quota_code)


def get_aws_default_service_quota(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """GetAWSDefaultServiceQuota: AWS's default value of one quota."""
    service_code, quota_code = params["ServiceCode"], params["QuotaCode"]
    for quota in _quotas(ctx, service_code):
        if quota.quota_code == quota_code:
            return {"Quota": _quota_row(quota, quota.default_value, _default_arn(quota, ctx.region))}
    raise _no_such_quota(service_code, quota_code)


def list_aws_default_service_quotas(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """ListAWSDefaultServiceQuotas: AWS's default value of every quota of the service."""
    service_code = params["ServiceCode"]
    rows = [_quota_row(q, q.default_value, _default_arn(q, ctx.region)) for q in _quotas(ctx, service_code)]
    return _page(rows, params, [ctx.region, service_code, "defaults"])


def _page(rows: list, params: dict[str, Any], request_key: Any) -> dict[str, Any]:
    page, token = paginate(
        rows,
        params,
        token_key="NextToken",
        limit_key="MaxResults",
        default_limit=PAGE_DEFAULT,
        max_limit=PAGE_MAX,
        bad_token_code="InvalidPaginationTokenException",
        bad_limit_code="IllegalArgumentException",
        request_key=request_key,
    )
    result: dict[str, Any] = {"Quotas": page}
    if token:
        result["NextToken"] = token
    return result


HANDLERS: dict[tuple[str, str], Handler] = {
    ("servicequotas", "ListServiceQuotas"): list_service_quotas,
    ("servicequotas", "GetServiceQuota"): get_service_quota,
    ("servicequotas", "GetAWSDefaultServiceQuota"): get_aws_default_service_quota,
    ("servicequotas", "ListAWSDefaultServiceQuotas"): list_aws_default_service_quotas,
}

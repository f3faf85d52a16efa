"""Service Quotas: the applied and default values of a service's quotas in one region."""

from __future__ import annotations

from pipelines.aws import aws_call
from pipelines.aws.records import QuotaRecord


def _list_all(client, operation: str, api: str, service_code: str) -> dict[str, dict]:
    paginator = client.get_paginator(operation)
    quotas: dict[str, dict] = {}
    with aws_call(api, client):
        for page in paginator.paginate(ServiceCode=service_code):
            for quota in page.get("Quotas", []):
                quotas[quota["QuotaCode"]] = quota
    return quotas


def list_service_quotas(client, service_code: str = "bedrock") -> list[QuotaRecord]:
    """Every quota of ``service_code`` in the client's region: value, default and applied value, by code.

    Two paginated listings, no per-quota calls: ListAWSDefaultServiceQuotas gives every quota with its
    default; ListServiceQuotas gives the value in force, but only for quotas that have one (AWS leaves out
    quotas that exist only as defaults). ``applied_value`` is the ListServiceQuotas value when it differs from
    the default, else None: this is what GetServiceQuota would report as an account-level value, decided
    without one call per quota.
    """
    defaults = _list_all(client, "list_aws_default_service_quotas", "ListAWSDefaultServiceQuotas", service_code)
    applied = _list_all(client, "list_service_quotas", "ListServiceQuotas", service_code)
    records = []
    for code in sorted(defaults.keys() | applied.keys()):
        default = defaults.get(code)
        current = applied.get(code)
        source = current or default
        default_value = default.get("Value") if default else None
        applied_value = current.get("Value") if current else None
        if applied_value is not None and applied_value == default_value:
            applied_value = None
        value = applied_value if applied_value is not None else default_value
        records.append(
            QuotaRecord(
                quota_code=code,
                quota_name=source.get("QuotaName", ""),
                quota_arn=source.get("QuotaArn"),
                value=value,
                default_value=default_value,
                applied_value=applied_value,
                unit=source.get("Unit"),
                adjustable=source.get("Adjustable"),
                global_quota=source.get("GlobalQuota"),
            )
        )
    return records

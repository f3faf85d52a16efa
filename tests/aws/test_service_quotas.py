"""Quota values: applied where the account has its own, the AWS default otherwise."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from pipelines.aws import AwsApiError
from pipelines.aws.quotas import list_service_quotas

TPM_CODE = "L-59759B4A"
RPM_CODE = "L-254CACF4"
TPD_CODE = "L-D9A1E2B6"


def quota(code, name, value, **extra):
    return {
        "ServiceCode": "bedrock",
        "QuotaCode": code,
        "QuotaName": name,
        "QuotaArn": f"arn:aws:servicequotas:us-east-1::bedrock/{code}",
        "Value": value,
        "Unit": "None",
        "Adjustable": True,
        "GlobalQuota": False,
        **extra,
    }


@pytest.fixture
def quotas_client():
    client = boto3.client(
        "service-quotas", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_applied_default_and_missing_values(quotas_client):
    client, stubber = quotas_client
    tpm = "Cross-region model inference tokens per minute for Anthropic Claude 3 Haiku"
    rpm = "Cross-region model inference requests per minute for Anthropic Claude 3 Haiku"
    tpd = "Model invocation max tokens per day for Anthropic Claude 3 Haiku (doubled for cross-region calls)"
    stubber.add_response(
        "list_aws_default_service_quotas",
        {"Quotas": [quota(TPM_CODE, tpm, 2_000_000.0)], "NextToken": "abc"},
        {"ServiceCode": "bedrock"},
    )
    stubber.add_response(
        "list_aws_default_service_quotas",
        {"Quotas": [quota(RPM_CODE, rpm, 2_000.0), quota(TPD_CODE, tpd, 2_880_000_000.0, Adjustable=False)]},
        {"ServiceCode": "bedrock", "NextToken": "abc"},
    )
    # The account raised TPM; RPM is listed at its default; TPD is not listed at all.
    stubber.add_response(
        "list_service_quotas",
        {"Quotas": [quota(TPM_CODE, tpm, 4_000_000.0), quota(RPM_CODE, rpm, 2_000.0)]},
        {"ServiceCode": "bedrock"},
    )
    records = {record.quota_code: record for record in list_service_quotas(client)}
    assert set(records) == {TPM_CODE, RPM_CODE, TPD_CODE}
    assert (records[TPM_CODE].value, records[TPM_CODE].default_value, records[TPM_CODE].applied_value) == (
        4_000_000.0,
        2_000_000.0,
        4_000_000.0,
    )
    assert (records[RPM_CODE].value, records[RPM_CODE].applied_value) == (2_000.0, None)
    assert (records[TPD_CODE].value, records[TPD_CODE].applied_value) == (2_880_000_000.0, None)
    assert records[TPD_CODE].adjustable is False
    assert records[TPD_CODE].quota_name == tpd


def test_throttled_listing_fails_loudly(quotas_client):
    client, stubber = quotas_client
    stubber.add_client_error("list_aws_default_service_quotas", service_error_code="TooManyRequestsException")
    with pytest.raises(AwsApiError, match="ListAWSDefaultServiceQuotas in us-east-1 failed: TooManyRequests"):
        list_service_quotas(client)

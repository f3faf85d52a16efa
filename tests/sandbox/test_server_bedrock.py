"""Bedrock, Service Quotas, STS, Account and EC2 on the sandbox, driven by plain boto3 clients and paginators."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError


@pytest.fixture
def bedrock(boto3_client):
    return boto3_client("bedrock")


@pytest.fixture
def quotas(boto3_client):
    return boto3_client("service-quotas")


def error_of(excinfo):
    response = excinfo.value.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


# ---- inference profiles ------------------------------------------------------------------------------------


def test_system_profiles_by_default_and_application_profiles_on_request(bedrock, sandbox):
    scenario = sandbox.scenario.profiles["us-east-1"]
    system = bedrock.list_inference_profiles()["inferenceProfileSummaries"]
    application = bedrock.list_inference_profiles(typeEquals="APPLICATION")["inferenceProfileSummaries"]
    assert [p["inferenceProfileId"] for p in system] == [p.profile_id for p in scenario if p.type == "SYSTEM"]
    assert [p["inferenceProfileId"] for p in application] == [p.profile_id for p in scenario if p.type == "APPLICATION"]
    assert {p["type"] for p in system} == {"SYSTEM_DEFINED"}
    assert {p["type"] for p in application} == {"APPLICATION"}
    assert bedrock.list_inference_profiles(typeEquals="SYSTEM_DEFINED")["inferenceProfileSummaries"] == system


def test_profile_summaries_have_the_model_shape(bedrock, sandbox):
    summary = bedrock.list_inference_profiles(typeEquals="APPLICATION")["inferenceProfileSummaries"][0]
    profile = sandbox.scenario.profile("us-east-1", summary["inferenceProfileId"])
    assert summary["inferenceProfileName"] == profile.name
    assert summary["inferenceProfileArn"] == profile.arn
    assert summary["inferenceProfileArn"].startswith("arn:aws:bedrock:us-east-1:")
    assert summary["models"] == [{"modelArn": arn} for arn in profile.model_arns]
    assert summary["status"] == "ACTIVE"
    assert summary["createdAt"] == profile.created_at
    assert summary["updatedAt"] == profile.updated_at


def test_list_inference_profiles_paginator_and_max_results(bedrock):
    everything = bedrock.list_inference_profiles(typeEquals="APPLICATION")["inferenceProfileSummaries"]
    first = bedrock.list_inference_profiles(typeEquals="APPLICATION", maxResults=5)
    assert len(first["inferenceProfileSummaries"]) == 5 and "nextToken" in first
    pages = list(
        bedrock.get_paginator("list_inference_profiles").paginate(
            typeEquals="APPLICATION", PaginationConfig={"PageSize": 5}
        )
    )
    assert len(pages) == -(-len(everything) // 5)
    assert [p for page in pages for p in page["inferenceProfileSummaries"]] == everything
    assert "nextToken" not in pages[-1]


def test_bad_profile_listing_parameters_are_validation_errors(bedrock):
    with pytest.raises(ClientError) as excinfo:
        bedrock.list_inference_profiles(typeEquals="SYSTEM")
    assert error_of(excinfo)[:2] == ("ValidationException", 400)
    with pytest.raises(ClientError) as excinfo:
        bedrock.list_inference_profiles(nextToken="not-a-token")
    assert error_of(excinfo)[:2] == ("ValidationException", 400)


def test_get_inference_profile_by_id_or_arn(bedrock):
    listed = bedrock.list_inference_profiles()["inferenceProfileSummaries"][0]
    by_id = bedrock.get_inference_profile(inferenceProfileIdentifier=listed["inferenceProfileId"])
    by_arn = bedrock.get_inference_profile(inferenceProfileIdentifier=listed["inferenceProfileArn"])
    for answer in (by_id, by_arn):
        answer.pop("ResponseMetadata")
        assert answer == listed
    with pytest.raises(bedrock.exceptions.ResourceNotFoundException):
        bedrock.get_inference_profile(inferenceProfileIdentifier="us.no-such-model-v1:0")


def test_tags_come_back_as_aws_writes_them(bedrock, sandbox):
    for profile in sandbox.scenario.application_profiles("us-east-1"):
        tags = bedrock.list_tags_for_resource(resourceARN=profile.arn)["tags"]
        assert tags == [{"key": k, "value": v} for k, v in profile.tags.items()]
    values = {
        tag["value"]
        for profile in sandbox.scenario.application_profiles("us-east-1")
        for tag in bedrock.list_tags_for_resource(resourceARN=profile.arn)["tags"]
    }
    assert any("<script>" in v and "Ü" in v and '"' in v for v in values)
    with pytest.raises(bedrock.exceptions.ResourceNotFoundException):
        bedrock.list_tags_for_resource(resourceARN="arn:aws:bedrock:us-east-1:123456789012:guardrail/abc")


# ---- foundation models and the rest of the Bedrock reads ---------------------------------------------------


def test_foundation_models_and_their_filters(bedrock, sandbox):
    models = bedrock.list_foundation_models()["modelSummaries"]
    assert [m["modelId"] for m in models] == [m.model_id for m in sandbox.scenario.foundation_models["us-east-1"]]
    sonnet = next(m for m in models if m["modelId"] == "anthropic.claude-sonnet-4-5-20250929-v1:0")
    assert sonnet["modelArn"] == (
        "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0"
    )
    assert sonnet["providerName"] == "Anthropic"
    assert sonnet["modelLifecycle"] == {"status": "ACTIVE"}
    assert sonnet["inferenceTypesSupported"] == ["INFERENCE_PROFILE"]

    anthropic = bedrock.list_foundation_models(byProvider="anthropic")["modelSummaries"]
    assert anthropic and {m["providerName"] for m in anthropic} == {"Anthropic"}
    on_demand = bedrock.list_foundation_models(byInferenceType="ON_DEMAND")["modelSummaries"]
    assert on_demand and all("ON_DEMAND" in m["inferenceTypesSupported"] for m in on_demand)
    assert sonnet not in on_demand
    embeddings = bedrock.list_foundation_models(byOutputModality="EMBEDDING")["modelSummaries"]
    assert embeddings and all(m["outputModalities"] == ["EMBEDDING"] for m in embeddings)


def test_the_account_has_no_custom_or_imported_models(bedrock):
    assert bedrock.list_custom_model_deployments()["modelDeploymentSummaries"] == []
    assert bedrock.list_imported_models()["modelSummaries"] == []


def test_invocation_logging_names_the_log_group_and_the_regions_bucket(bedrock, boto3_client):
    config = bedrock.get_model_invocation_logging_configuration()["loggingConfig"]
    assert config["cloudWatchConfig"] == {
        "logGroupName": "/aws/bedrock/modelinvocations",
        "roleArn": "arn:aws:iam::123456789012:role/BedrockInvocationLoggingRole",
    }
    assert config["s3Config"] == {"bucketName": "bedrock-invocation-logs-123456789012-us-east-1"}
    assert config["textDataDeliveryEnabled"] is True
    west = boto3_client("bedrock", region="us-west-2").get_model_invocation_logging_configuration()
    assert west["loggingConfig"]["s3Config"]["bucketName"] == "bedrock-invocation-logs-123456789012-us-west-2"
    # A region the account does not use logs nothing.
    elsewhere = boto3_client("bedrock", region="eu-west-1").get_model_invocation_logging_configuration()
    assert "loggingConfig" not in elsewhere


# ---- Service Quotas ----------------------------------------------------------------------------------------


def test_list_service_quotas_shows_applied_values_else_defaults(quotas, sandbox):
    listed = {q["QuotaCode"]: q for q in quotas.list_service_quotas(ServiceCode="bedrock")["Quotas"]}
    scenario = sandbox.scenario.quotas["us-east-1"]
    assert len(listed) == len(scenario)
    for quota in scenario:
        row = listed[quota.quota_code]
        expected = quota.applied_value if quota.applied_value is not None else quota.default_value
        assert row["Value"] == expected
        assert row["QuotaName"] == quota.quota_name
        assert row["QuotaArn"] == quota.arn
        assert (row["Adjustable"], row["GlobalQuota"]) == (quota.adjustable, quota.global_quota)
        assert (row["ServiceCode"], row["ServiceName"], row["Unit"]) == (
            "bedrock",
            "Amazon Bedrock",
            quota.unit,
        )
    assert any(q.applied_value is not None and q.applied_value != q.default_value for q in scenario)


def test_list_service_quotas_pages_of_100_by_default_and_paginates(quotas):
    everything = quotas.list_service_quotas(ServiceCode="bedrock")["Quotas"]
    assert len(everything) <= 100
    pages = list(
        quotas.get_paginator("list_service_quotas").paginate(ServiceCode="bedrock", PaginationConfig={"PageSize": 10})
    )
    assert len(pages) == -(-len(everything) // 10)
    assert [q for page in pages for q in page["Quotas"]] == everything
    with pytest.raises(ClientError) as excinfo:
        quotas.list_service_quotas(ServiceCode="bedrock", NextToken="Zm9v")
    assert error_of(excinfo)[0] == "InvalidPaginationTokenException"


def test_get_service_quota_only_where_a_value_is_applied(quotas, sandbox):
    scenario = sandbox.scenario.quotas["us-east-1"]
    applied = next(q for q in scenario if q.applied_value is not None)
    default_only = next(q for q in scenario if q.applied_value is None)
    answer = quotas.get_service_quota(ServiceCode="bedrock", QuotaCode=applied.quota_code)["Quota"]
    assert answer["Value"] == applied.applied_value
    with pytest.raises(quotas.exceptions.NoSuchResourceException) as excinfo:
        quotas.get_service_quota(ServiceCode="bedrock", QuotaCode=default_only.quota_code)
    assert error_of(excinfo)[:2] == ("NoSuchResourceException", 400)


def test_aws_default_quotas(quotas, sandbox):
    scenario = sandbox.scenario.quotas["us-east-1"]
    applied = next(q for q in scenario if q.applied_value is not None and q.applied_value != q.default_value)
    answer = quotas.get_aws_default_service_quota(ServiceCode="bedrock", QuotaCode=applied.quota_code)["Quota"]
    assert answer["Value"] == applied.default_value
    assert answer["QuotaArn"] == f"arn:aws:servicequotas:us-east-1::bedrock/{applied.quota_code}"
    pages = quotas.get_paginator("list_aws_default_service_quotas").paginate(
        ServiceCode="bedrock", PaginationConfig={"PageSize": 20}
    )
    defaults = {q["QuotaCode"]: q["Value"] for page in pages for q in page["Quotas"]}
    assert defaults == {q.quota_code: q.default_value for q in scenario}


def test_quotas_of_a_region_without_a_scenario_are_empty(boto3_client):
    client = boto3_client("service-quotas", region="eu-west-3")
    assert client.list_service_quotas(ServiceCode="bedrock")["Quotas"] == []


# ---- STS, Account, EC2 -------------------------------------------------------------------------------------


def test_caller_identity_is_the_scenario_account(boto3_client, sandbox):
    identity = boto3_client("sts").get_caller_identity()
    account = sandbox.scenario.account_id
    assert identity["Account"] == account
    assert identity["Arn"] == f"arn:aws:iam::{account}:user/sandbox"
    assert identity["UserId"]


def test_account_list_regions_paginates_and_filters(boto3_client, sandbox):
    account = boto3_client("account")
    pages = list(account.get_paginator("list_regions").paginate(PaginationConfig={"PageSize": 7}))
    regions = [r for page in pages for r in page["Regions"]]
    assert len(pages) == -(-len(regions) // 7)
    names = [r["RegionName"] for r in regions]
    assert names == sorted(names) and len(set(names)) == len(names)
    statuses = {r["RegionName"]: r["RegionOptStatus"] for r in regions}
    assert statuses["us-east-1"] == statuses["us-west-2"] == "ENABLED_BY_DEFAULT"
    assert statuses["af-south-1"] == "DISABLED"
    enabled = account.list_regions(RegionOptStatusContains=["ENABLED_BY_DEFAULT", "ENABLED"], MaxResults=50)
    assert {r["RegionName"] for r in enabled["Regions"]} >= set(sandbox.scenario.regions)
    assert all(r["RegionOptStatus"] != "DISABLED" for r in enabled["Regions"])


def test_ec2_describe_regions_lists_the_same_enabled_regions(boto3_client):
    ec2 = boto3_client("ec2")
    account = boto3_client("account")
    enabled = account.list_regions(RegionOptStatusContains=["ENABLED_BY_DEFAULT", "ENABLED"], MaxResults=50)
    regions = ec2.describe_regions()["Regions"]
    assert {r["RegionName"] for r in regions} == {r["RegionName"] for r in enabled["Regions"]}
    assert {
        "RegionName": "us-east-1",
        "Endpoint": "ec2.us-east-1.amazonaws.com",
        "OptInStatus": "opt-in-not-required",
    } in regions
    everything = ec2.describe_regions(AllRegions=True)["Regions"]
    assert len(everything) > len(regions)
    picked = ec2.describe_regions(RegionNames=["us-west-2"])["Regions"]
    assert [r["RegionName"] for r in picked] == ["us-west-2"]
    filtered = ec2.describe_regions(Filters=[{"Name": "region-name", "Values": ["us-east-1", "eu-west-1"]}])
    assert sorted(r["RegionName"] for r in filtered["Regions"]) == ["eu-west-1", "us-east-1"]
    with pytest.raises(ClientError) as excinfo:
        ec2.describe_regions(RegionNames=["mars-north-1"])
    assert error_of(excinfo)[:2] == ("InvalidParameterValue", 400)

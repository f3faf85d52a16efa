"""The account being read: its id (STS) and the regions enabled in it (Account or EC2)."""

from __future__ import annotations

from datetime import UTC, datetime

from pipelines.aws import aws_call, service_time

# Regions with an Amazon Bedrock endpoint (botocore's endpoint data for "bedrock", commercial and GovCloud
# partitions). The metric partitions are static in Dagster, so this list is a fact kept here, not looked up
# per run.
BEDROCK_REGIONS: tuple[str, ...] = (
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "ca-central-1",
    "ca-west-1",
    "mx-central-1",
    "sa-east-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "af-south-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
)


def get_account_id(client) -> str:
    """The 12-digit id of the account the credentials belong to (STS GetCallerIdentity)."""
    return get_identity(client)[0]


def get_identity(client) -> tuple[str, datetime]:
    """The account id and the service's clock (naive UTC; the caller's clock when AWS sent no Date header)."""
    with aws_call("GetCallerIdentity", client):
        response = client.get_caller_identity()
    now = service_time(response) or datetime.now(UTC).replace(tzinfo=None)
    return response["Account"], now.replace(microsecond=0)


def list_regions(client) -> list[str]:
    """The regions enabled in the account, sorted.

    Takes an ``account`` client (Account ListRegions, every page, opt-in regions included once enabled) or an
    ``ec2`` client (EC2 DescribeRegions, which lists enabled regions only by default).
    """
    service = client.meta.service_model.service_name
    if service == "account":
        regions: list[str] = []
        paginator = client.get_paginator("list_regions")
        with aws_call("ListRegions", client):
            for page in paginator.paginate(RegionOptStatusContains=["ENABLED", "ENABLED_BY_DEFAULT"]):
                regions.extend(region["RegionName"] for region in page.get("Regions", []))
        return sorted(set(regions))
    if service == "ec2":
        with aws_call("DescribeRegions", client):
            response = client.describe_regions()
        return sorted({region["RegionName"] for region in response.get("Regions", [])})
    raise ValueError(f"list_regions needs an 'account' or 'ec2' client, not {service!r}")

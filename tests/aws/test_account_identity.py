"""Account id and enabled regions."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from pipelines.aws.account import BEDROCK_REGIONS, get_account_id, list_regions


def client(service):
    return boto3.client(service, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")


def test_account_id_from_sts():
    sts = client("sts")
    with Stubber(sts) as stubber:
        stubber.add_response(
            "get_caller_identity",
            {"UserId": "AIDA", "Account": "111122223333", "Arn": "arn:aws:iam::111122223333:user/analyst"},
        )
        assert get_account_id(sts) == "111122223333"


def test_regions_from_the_account_api_include_opted_in_ones():
    account = client("account")
    with Stubber(account) as stubber:
        stubber.add_response(
            "list_regions",
            {
                "Regions": [{"RegionName": "us-west-2", "RegionOptStatus": "ENABLED_BY_DEFAULT"}],
                "NextToken": "n",
            },
            {"RegionOptStatusContains": ["ENABLED", "ENABLED_BY_DEFAULT"]},
        )
        stubber.add_response(
            "list_regions",
            {"Regions": [{"RegionName": "ap-southeast-5", "RegionOptStatus": "ENABLED"}]},
            {"RegionOptStatusContains": ["ENABLED", "ENABLED_BY_DEFAULT"], "NextToken": "n"},
        )
        assert list_regions(account) == ["ap-southeast-5", "us-west-2"]


def test_regions_from_ec2():
    ec2 = client("ec2")
    with Stubber(ec2) as stubber:
        stubber.add_response(
            "describe_regions", {"Regions": [{"RegionName": "eu-west-1"}, {"RegionName": "us-east-1"}]}
        )
        assert list_regions(ec2) == ["eu-west-1", "us-east-1"]


def test_other_clients_are_refused():
    with pytest.raises(ValueError, match="'account' or 'ec2'"):
        list_regions(client("sts"))


def test_bedrock_region_list_covers_the_main_regions():
    for region in ("us-east-1", "us-east-2", "us-west-2", "eu-central-1", "ap-northeast-1", "us-gov-west-1"):
        assert region in BEDROCK_REGIONS
    assert len(set(BEDROCK_REGIONS)) == len(BEDROCK_REGIONS)

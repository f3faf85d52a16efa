"""How AWS refusals and failed runs become the one sentence the CLI prints (pure functions, no AWS)."""

from __future__ import annotations

import sys

import pytest
from botocore.exceptions import ClientError
from dagster._utils.error import serializable_error_info_from_exc_info

from pipelines.errors import describe_aws_error, describe_aws_text, describe_refused_step


def client_error(code: str, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


@pytest.mark.parametrize(
    ("code", "message", "operation", "action"),
    [
        (
            "AccessDenied",
            "User: arn:aws:sts::1:assumed-role/r/s is not authorized to perform: cloudwatch:GetMetricData because "
            "no identity-based policy allows the cloudwatch:GetMetricData action",
            "GetMetricData",
            "cloudwatch:GetMetricData",
        ),
        # A message that does not name the action: the call's own action is named instead.
        (
            "AccessDeniedException",
            "You don't have access to the model with the specified model ID.",
            "Converse",
            "bedrock:InvokeModel",
        ),
        (
            "UnauthorizedOperation",
            "You are not authorized to perform this operation.",
            "DescribeRegions",
            "ec2:DescribeRegions",
        ),
    ],
)
def test_a_denial_names_the_iam_action(code, message, operation, action):
    sentence = describe_aws_error(client_error(code, message, operation), "extracting us-east-1")
    assert sentence == (
        f"AWS denied {action} while extracting us-east-1; grant {action} to the role you run buw with "
        "(docs/iam-policy.md)."
    )


@pytest.mark.parametrize(
    ("code", "opening"),
    [
        ("ExpiredToken", "Your AWS credentials have expired (ExpiredToken while"),
        ("ExpiredTokenException", "Your AWS credentials have expired (ExpiredTokenException while"),
        ("RequestExpired", "Your AWS credentials have expired"),
        ("InvalidClientTokenId", "AWS does not accept your credentials (InvalidClientTokenId while"),
        ("UnrecognizedClientException", "AWS does not accept your credentials"),
        ("AuthFailure", "AWS does not accept your credentials"),
    ],
)
def test_refused_credentials_say_so(code, opening):
    sentence = describe_aws_error(client_error(code, "The security token ...", "ListMetrics"), "listing")
    assert sentence.startswith(opening) and "aws sso login" in sentence


def test_other_aws_errors_are_not_taken_for_refusals():
    assert describe_aws_error(client_error("ValidationException", "bad", "ListMetrics"), "x") is None
    assert describe_aws_text("the query failed: AccessDeniedish", "x") is None


def test_a_refusal_known_only_by_its_text_is_recognised():
    text = (
        "metric_points: ListMetrics in us-east-1 failed: AccessDenied: User: arn:aws:iam::1:user/u is not "
        "authorized to perform: cloudwatch:ListMetrics because no identity-based policy allows it"
    )
    assert describe_aws_text(text, "extracting us-east-1").startswith(
        "AWS denied cloudwatch:ListMetrics while extracting us-east-1;"
    )


def _failure_info(error: BaseException):
    try:
        try:
            raise error
        except BaseException as cause:
            raise RuntimeError('Error occurred while executing op "sql_models":') from cause
    except RuntimeError:
        return serializable_error_info_from_exc_info(sys.exc_info())


def test_a_failed_step_that_aws_refused_names_the_action():
    info = _failure_info(
        client_error("AccessDenied", "User: u is not authorized to perform: cloudwatch:GetMetricData", "GetMetricData")
    )
    assert describe_refused_step(info, "extracting metric_points").startswith(
        "AWS denied cloudwatch:GetMetricData while extracting metric_points;"
    )


def test_a_failed_step_aws_did_not_refuse_is_left_to_the_run_failure():
    assert describe_refused_step(_failure_info(ZeroDivisionError("division by zero")), "x") is None

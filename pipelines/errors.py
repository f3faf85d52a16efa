"""Errors a user can cause, and how each becomes one clear sentence.

The CLI prints ``UserError`` messages as they are and exits 1; botocore errors are translated here so the same
sentence appears whether AWS or the sandbox answered.
"""

from __future__ import annotations

import re


class UserError(Exception):
    """Something the user can fix; the message is one sentence that says what to do."""


# The error codes AWS answers when the caller's policies do not allow a call, and when it does not accept the
# caller's credentials at all, across the query, JSON, REST and EC2 protocols.
ACCESS_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired"})
INVALID_CREDENTIAL_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "AuthFailure",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
    }
)

# The IAM action of each call buw makes, for denials whose message does not name it.
_ACTION_OF_OPERATION = {
    "GetMetricData": "cloudwatch:GetMetricData",
    "ListMetrics": "cloudwatch:ListMetrics",
    "ListInferenceProfiles": "bedrock:ListInferenceProfiles",
    "ListTagsForResource": "bedrock:ListTagsForResource",
    "ListFoundationModels": "bedrock:ListFoundationModels",
    "ListServiceQuotas": "servicequotas:ListServiceQuotas",
    "ListAWSDefaultServiceQuotas": "servicequotas:ListAWSDefaultServiceQuotas",
    "ListRegions": "account:ListRegions",
    "DescribeRegions": "ec2:DescribeRegions",
    "Converse": "bedrock:InvokeModel",
    "GetCallerIdentity": "sts:GetCallerIdentity",
}
_NAMED_ACTION = re.compile(r"not authorized to perform:? ([A-Za-z0-9-]+:[A-Za-z0-9*]+)")
_CODE_IN_TEXT = re.compile(
    r"\b(" + "|".join(sorted(ACCESS_DENIED_CODES | EXPIRED_CODES | INVALID_CREDENTIAL_CODES)) + r")\b"
)


def denied_action(message: str, operation: str | None = None) -> str:
    """The IAM action a denial is about: as AWS names it in the message, else the action of ``operation``."""
    named = _NAMED_ACTION.search(message or "")
    if named:
        return named.group(1)
    if operation:
        return _ACTION_OF_OPERATION.get(operation, operation)
    return "an action"


def describe_denial(code: str, message: str, operation: str | None, doing: str) -> str | None:
    """The sentence for an AWS refusal with error ``code``, or None when the code is not a refusal."""
    if code in ACCESS_DENIED_CODES:
        action = denied_action(message, operation)
        return f"AWS denied {action} while {doing}; grant {action} to the role you run buw with (docs/iam-policy.md)."
    if code in EXPIRED_CODES:
        return (
            f"Your AWS credentials have expired ({code} while {doing}); refresh them (e.g. `aws sso login`) "
            "and run the command again."
        )
    if code in INVALID_CREDENTIAL_CODES:
        return (
            f"AWS does not accept your credentials ({code} while {doing}); check AWS_PROFILE or --profile and "
            "the access key, or refresh them (e.g. `aws sso login`)."
        )
    return None


def describe_aws_text(text: str, doing: str) -> str | None:
    """The refusal sentence for an AWS failure known only by its text (e.g. a failed Dagster step's message)."""
    found = _CODE_IN_TEXT.search(text or "")
    if found is None:
        return None
    operation = re.search(r"calling the (\w+) operation", text)
    api = re.search(r"\b(\w+) in [a-z]{2}(?:-[a-z]+)+-\d failed:", text)
    name = operation.group(1) if operation else api.group(1) if api else None
    return describe_denial(found.group(1), text, name, doing)


def describe_aws_error(error: BaseException, doing: str) -> str | None:
    """One sentence for an AWS failure a user can act on, or None when it is not one of those."""
    # Imported here, not at the top: every `buw` command imports this module, and `buw sql` must start fast.
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ProfileNotFound,
    )

    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return (
            f"No AWS credentials were found while {doing}; set AWS_PROFILE (or pass --profile), "
            "run `aws configure`, or point AWS_ENDPOINT_URL at the sandbox with dummy keys."
        )
    if isinstance(error, ProfileNotFound):
        return f"{error}; pick a profile listed by `aws configure list-profiles`."
    if isinstance(error, NoRegionError):
        return "No AWS region is set; pass -r/--region or set AWS_REGION."
    if isinstance(error, EndpointConnectionError):
        endpoint = error.kwargs.get("endpoint_url", "the AWS endpoint")
        return f"Could not reach {endpoint} while {doing}; check the region and AWS_ENDPOINT_URL."
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", "")
        return describe_denial(code, message, getattr(error, "operation_name", None), doing)
    return None


def describe_refused_step(info, doing: str) -> str | None:
    """The refusal sentence when AWS refused a failed Dagster step, from its serialized error chain, else None.

    A run keeps only the class names and messages of the exceptions (``SerializableErrorInfo``), so the refusal
    is recognised by its text.
    """
    seen = 0
    while info is not None and seen < 20:
        refusal = describe_aws_text(info.message, doing)
        if refusal:
            return refusal
        info = info.cause or info.context
        seen += 1
    return None


def _known_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is already one sentence for the user (imported late: they live in heavy modules)."""
    from pipelines.assets.extract import ExtractError
    from pipelines.aws import AwsApiError
    from pipelines.lake import LakeError
    from pipelines.models import ModelError
    from pipelines.quotas.cli import QuotaInputError
    from pipelines.quotas.overrides import OverrideError
    from pipelines.report import ReportError
    from pipelines.sandbox.scenario import ScenarioError
    from pipelines.sandbox.server import SandboxPortInUse

    return (
        ExtractError,
        AwsApiError,
        LakeError,
        ModelError,
        QuotaInputError,
        OverrideError,
        ReportError,
        ScenarioError,
        SandboxPortInUse,
    )


def explain(error: BaseException, doing: str = "talking to AWS") -> str | None:
    """The one sentence to show for an error the user can act on, or None for a bug (which keeps its traceback)."""
    if isinstance(error, UserError):
        return str(error)
    cause: BaseException | None = error
    while cause is not None:
        message = describe_aws_error(cause, doing)
        if message:
            return message
        cause = cause.__cause__
    # An AWS refusal that reached us only as text, e.g. through a failed Dagster step.
    message = describe_aws_text(str(error), doing)
    if message:
        return message
    if isinstance(error, _known_error_types()):
        return str(error).strip().splitlines()[0]
    return None

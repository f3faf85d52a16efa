"""Errors a user can cause, and how each becomes one clear sentence.

The CLI prints ``UserError`` messages as they are and exits 1; botocore errors are translated here so the same
sentence appears whether AWS or the sandbox answered.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; the message is one sentence that says what to do."""


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
        operation = getattr(error, "operation_name", "the call")
        if code in {
            "AccessDenied",
            "AccessDeniedException",
            "UnauthorizedOperation",
            "UnrecognizedClientException",
        }:
            return (
                f"AWS denied {operation} while {doing} ({message or code}); grant the actions in docs/iam-policy.md "
                "to your role."
            )
        if code in {"InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException", "SignatureDoesNotMatch"}:
            return f"Your AWS credentials were rejected while {doing} ({code}); refresh them (e.g. `aws sso login`)."
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
    if isinstance(error, _known_error_types()):
        return str(error).strip().splitlines()[0]
    return None

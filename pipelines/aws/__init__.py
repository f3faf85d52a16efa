"""Plain boto3 functions for Bedrock, CloudWatch, Service Quotas and STS that return typed records.

Nothing here knows about Dagster: the assets, the CLI and the tests call the same functions with a boto3
client (pointed at AWS or at the sandbox). Every failure surfaces as ``AwsApiError`` naming the API and the
region; no function turns an error into an empty result.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from botocore.exceptions import BotoCoreError, ClientError


class AwsApiError(RuntimeError):
    """An AWS call failed or answered incompletely; the message names the API, the region and the cause."""

    def __init__(self, api: str, region: str | None, detail: str, code: str | None = None) -> None:
        self.api = api
        self.region = region
        self.detail = detail
        self.code = code
        where = f" in {region}" if region else ""
        super().__init__(f"{api}{where} failed: {detail}")


def describe_client_error(error: BaseException) -> tuple[str, str | None]:
    """A short "Code: message" text for a botocore error, and its error code when AWS sent one."""
    if isinstance(error, ClientError):
        body = error.response.get("Error", {})
        code = body.get("Code") or "Error"
        message = body.get("Message") or ""
        return (f"{code}: {message}" if message else code), code
    return f"{type(error).__name__}: {error}", None


@contextmanager
def aws_call(api: str, client) -> Iterator[None]:
    """Re-raise any botocore failure inside the block as ``AwsApiError`` for ``api`` in the client's region.

    The original exception stays attached as ``__cause__`` so ``--debug`` tracebacks keep botocore's detail.
    """
    try:
        yield
    except (ClientError, BotoCoreError) as error:
        detail, code = describe_client_error(error)
        raise AwsApiError(api, client.meta.region_name, detail, code) from error


def service_time(response: dict) -> datetime | None:
    """The service's clock from a response's HTTP ``Date`` header, as a naive UTC datetime (None without one).

    CloudWatch's retention tiers are measured from the service's now, not from the caller's ``as_of``: a run
    pinned to a past ``as_of`` must still ask for what CloudWatch keeps today. A sandbox with a pinned clock
    sends that clock here too.
    """
    header = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if not header:
        return None
    try:
        moment = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return moment.astimezone(UTC).replace(tzinfo=None)

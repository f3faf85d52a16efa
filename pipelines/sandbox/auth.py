"""Who may call what in the sandbox: an IAM identity policy, and credentials AWS would refuse.

``buw sandbox --policy FILE`` makes the sandbox answer every call whose IAM action the policy does not allow
with the access-denied error that service sends; ``--reject-credentials expired|invalid`` makes every call
fail as AWS does for an expired session token or an unknown key. Both are answered per wire protocol, so a
client sees the very error code, HTTP status and message it would get from AWS.

Only actions are evaluated: ``Resource`` is accepted and treated as matching (the sandbox has no resource
ARNs for most calls), and a statement with ``Condition`` or ``NotResource`` is refused rather than
approximated. STS GetCallerIdentity needs no permission, as in AWS.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.sandbox.protocols import ApiError, Route

REJECT_KINDS: tuple[str, ...] = ("expired", "invalid")

# The SigV4 signing name is the IAM service prefix except for these.
_IAM_PREFIX = {"monitoring": "cloudwatch", "bedrock-runtime": "bedrock"}

# Operations authorised by an action of another name (AWS's service authorization reference).
_ACTION_OF = {
    ("bedrock", "Converse"): "InvokeModel",
    ("bedrock", "ConverseStream"): "InvokeModelWithResponseStream",
    ("s3", "ListObjects"): "ListBucket",
    ("s3", "ListObjectsV2"): "ListBucket",
    ("s3", "HeadBucket"): "ListBucket",
    ("s3", "ListBuckets"): "ListAllMyBuckets",
    ("s3", "ListObjectVersions"): "ListBucketVersions",
    ("s3", "HeadObject"): "GetObject",
    ("s3", "CreateMultipartUpload"): "PutObject",
    ("s3", "UploadPart"): "PutObject",
    ("s3", "CompleteMultipartUpload"): "PutObject",
    ("s3", "CopyObject"): "PutObject",
    ("s3", "DeleteObjects"): "DeleteObject",
}

# Calls every identity may make, whatever its policies say.
_ALWAYS_ALLOWED = frozenset({"sts:GetCallerIdentity"})

# Errors that AWS's request front end raises for every service, rather than ones a service models.
_CORAL = "com.amazon.coral.service"


class PolicyError(ValueError):
    """The policy document cannot be used; the message says what is wrong with it."""


def iam_action(route: Route) -> str | None:
    """``prefix:Action`` that authorises the call (``cloudwatch:GetMetricData``), or None when it names none."""
    if route.operation is None or not route.operation_name:
        return None
    prefix = _IAM_PREFIX.get(route.signing_name, route.signing_name)
    name = _ACTION_OF.get((prefix, route.operation_name), route.operation_name)
    return f"{prefix}:{name}"


@dataclass(frozen=True)
class _Statement:
    allow: bool
    patterns: tuple[re.Pattern[str], ...]
    negated: bool  # NotAction: matches every action except the listed ones

    def matches(self, action: str) -> bool:
        hit = any(pattern.fullmatch(action) for pattern in self.patterns)
        return hit != self.negated


class Policy:
    """An IAM identity policy evaluated as AWS does for actions: an explicit Deny wins, then any Allow."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        self._statements = _parse(document)

    def decide(self, action: str) -> str:
        """``allow``, ``implicit-deny`` or ``explicit-deny`` for ``action``."""
        if action in _ALWAYS_ALLOWED:
            return "allow"
        if any(not statement.allow and statement.matches(action) for statement in self._statements):
            return "explicit-deny"
        if any(statement.allow and statement.matches(action) for statement in self._statements):
            return "allow"
        return "implicit-deny"

    def allows(self, action: str) -> bool:
        """Whether a caller under this policy may perform ``action``."""
        return self.decide(action) == "allow"


def load_policy(source: Policy | Mapping[str, Any] | str | Path) -> Policy:
    """A :class:`Policy` from a parsed document, a JSON string or a path to a JSON file."""
    if isinstance(source, Policy):
        return source
    if isinstance(source, Mapping):
        return Policy(source)
    text = str(source)
    if not text.lstrip().startswith("{"):
        path = Path(text).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise PolicyError(f"cannot read the policy file {path}: {error.strerror or error}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise PolicyError(f"the policy is not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(document, dict):
        raise PolicyError("the policy must be a JSON object with a Statement list")
    return Policy(document)


def _parse(document: Mapping[str, Any]) -> list[_Statement]:
    version = document.get("Version", "2008-10-17")
    if version not in ("2012-10-17", "2008-10-17"):
        raise PolicyError(f"the policy Version {version!r} is not 2012-10-17")
    statements = document.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        raise PolicyError("the policy has no Statement")
    parsed = []
    for number, statement in enumerate(statements, start=1):
        where = f"statement {number}"
        if not isinstance(statement, dict):
            raise PolicyError(f"{where} of the policy is not an object")
        effect = statement.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise PolicyError(f"{where} of the policy has Effect {effect!r}; use Allow or Deny")
        for unsupported in ("Condition", "NotResource", "Principal", "NotPrincipal"):
            if unsupported in statement:
                raise PolicyError(f"{where} has {unsupported}, which the sandbox does not evaluate; drop it")
        if ("Action" in statement) == ("NotAction" in statement):
            raise PolicyError(f"{where} of the policy needs exactly one of Action and NotAction")
        key = "Action" if "Action" in statement else "NotAction"
        actions = statement[key]
        if isinstance(actions, str):
            actions = [actions]
        if not isinstance(actions, list) or not all(isinstance(action, str) for action in actions):
            raise PolicyError(f"{where}: {key} must be a string or a list of strings")
        for action in actions:
            if action != "*" and not re.fullmatch(r"[A-Za-z0-9-]+:[A-Za-z0-9*?]+", action):
                raise PolicyError(f"{where}: {action!r} is not an action such as cloudwatch:GetMetricData")
        parsed.append(_Statement(effect == "Allow", tuple(_pattern(action) for action in actions), key == "NotAction"))
    return parsed


def _pattern(action: str) -> re.Pattern[str]:
    # IAM action names compare case-insensitively; * and ? are the only wildcards.
    body = re.escape(action).replace(r"\*", ".*").replace(r"\?", ".")
    return re.compile(body, re.IGNORECASE)


# ---- the errors, per protocol ---------------------------------------------------------------------------


def _query_compatible(route: Route) -> bool:
    return route.service is not None and "awsQueryCompatible" in route.service.metadata


def access_denied(route: Route, action: str, principal_arn: str, *, explicit: bool = False) -> ApiError:
    """The error AWS answers when the caller's policies do not allow ``action``."""
    reason = (
        "with an explicit deny in an identity-based policy"
        if explicit
        else f"because no identity-based policy allows the {action} action"
    )
    message = f"User: {principal_arn} is not authorized to perform: {action} {reason}"
    if route.protocol == "ec2":
        return ApiError("UnauthorizedOperation", f"You are not authorized to perform this operation. {message}", 403)
    if route.protocol in ("query", "rest-xml"):
        return ApiError("AccessDenied", message, 403)
    if _query_compatible(route):
        return ApiError("AccessDeniedException", message, 403, query_code="AccessDenied", namespace=_CORAL)
    if route.protocol in ("json", "smithy-rpc-v2-cbor"):
        return ApiError("AccessDeniedException", message, 400)
    return ApiError("AccessDeniedException", message, 403)


def rejected_credentials(route: Route, kind: str) -> ApiError:
    """The error AWS answers for an expired session token (``expired``) or an unknown key (``invalid``)."""
    if kind not in REJECT_KINDS:
        raise ValueError(f"credentials can be rejected as {' or '.join(REJECT_KINDS)}; got {kind!r}")
    expired = kind == "expired"
    if route.protocol == "ec2":
        if expired:
            return ApiError("RequestExpired", "Request has expired.", 400)
        return ApiError("AuthFailure", "AWS was not able to validate the provided access credentials", 401)
    if route.protocol == "rest-xml":
        if expired:
            return ApiError("ExpiredToken", "The provided token has expired.", 400)
        return ApiError("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.", 403)
    message = (
        "The security token included in the request is expired"
        if expired
        else "The security token included in the request is invalid."
    )
    query_code = "ExpiredToken" if expired else "InvalidClientTokenId"
    json_code = "ExpiredTokenException" if expired else "UnrecognizedClientException"
    if route.protocol == "query":
        return ApiError(query_code, message, 403)
    if _query_compatible(route):
        return ApiError(json_code, message, 403, query_code=query_code, namespace=_CORAL)
    if route.protocol in ("json", "smithy-rpc-v2-cbor"):
        return ApiError(json_code, message, 400, namespace=_CORAL)
    return ApiError(json_code, message, 403)

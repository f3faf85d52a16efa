"""IAM: the tags of the roles and users that call Bedrock (ListRoleTags, ListUserTags)."""

from __future__ import annotations

from typing import Any

from pipelines.sandbox.protocols import ApiError
from pipelines.sandbox.services import CallContext, Handler, paginate

# IAM's MaxItems: 1..1000, 100 by default.
TAGS_PAGE_DEFAULT = 100
TAGS_PAGE_MAX = 1000


def _tags(ctx: CallContext, kind: str, name: str, params: dict[str, Any]) -> dict[str, Any]:
    principal = ctx.scenario.principals.get(f"{kind}/{name}")
    if principal is None:
        label = "role" if kind == "role" else "user"
        raise ApiError("NoSuchEntity", f"The {label} with name {name} cannot be found.", 404)
    rows = [{"Key": key, "Value": value} for key, value in principal.tags.items()]
    page, token = paginate(
        rows,
        params,
        token_key="Marker",
        limit_key="MaxItems",
        default_limit=TAGS_PAGE_DEFAULT,
        max_limit=TAGS_PAGE_MAX,
        bad_token_code="InvalidInput",
        bad_limit_code="InvalidInput",
        request_key=[kind, name],
    )
    result: dict[str, Any] = {"Tags": page, "IsTruncated": token is not None}
    if token:
        result["Marker"] = token
    return result


def list_role_tags(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """ListRoleTags: a role of the scenario's principals; NoSuchEntity (404) for any other name."""
    return _tags(ctx, "role", params["RoleName"], params)


def list_user_tags(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """ListUserTags: a user of the scenario's principals; NoSuchEntity (404) for any other name."""
    return _tags(ctx, "user", params["UserName"], params)


HANDLERS: dict[tuple[str, str], Handler] = {
    ("iam", "ListRoleTags"): list_role_tags,
    ("iam", "ListUserTags"): list_user_tags,
}

"""STS GetCallerIdentity, Account ListRegions, EC2 DescribeRegions: who the caller is, which regions exist."""

from __future__ import annotations

from typing import Any

from pipelines.sandbox.protocols import ApiError
from pipelines.sandbox.services import CallContext, Handler, paginate

# The commercial-partition regions, as Account ListRegions reports them for an account that opted into none.
DEFAULT_REGIONS: tuple[str, ...] = (
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ca-central-1",
    "eu-central-1",
    "eu-north-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
)
OPT_IN_REGIONS: tuple[str, ...] = (
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-south-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-west-1",
    "eu-central-2",
    "eu-south-1",
    "eu-south-2",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
)
# Names that are real AWS regions in other partitions: a call signed for them gets empty answers, not an
# error.
OTHER_PARTITION_REGIONS: tuple[str, ...] = ("us-gov-east-1", "us-gov-west-1", "cn-north-1", "cn-northwest-1")

KNOWN_REGIONS: frozenset[str] = frozenset(DEFAULT_REGIONS + OPT_IN_REGIONS + OTHER_PARTITION_REGIONS)
# Global services (IAM, STS's global endpoint, Account) are signed for this pseudo region by some clients.
GLOBAL_SIGNING_REGIONS = frozenset({"aws-global"})


def check_region(region: str, scenario_regions: tuple[str, ...]) -> None:
    """Refuse a call signed for a region AWS does not have (real AWS would fail to resolve its endpoint)."""
    if region in KNOWN_REGIONS or region in GLOBAL_SIGNING_REGIONS or region in scenario_regions:
        return
    raise ApiError(
        "InvalidRegion",
        f"'{region}' is not an AWS region; the sandbox serves the AWS regions "
        f"(the scenario has data in {', '.join(scenario_regions)}).",
    )


def region_statuses(ctx: CallContext) -> list[tuple[str, str]]:
    """``(region, RegionOptStatus)`` of every commercial region; the scenario's opt-in regions are enabled."""
    rows = [(name, "ENABLED_BY_DEFAULT") for name in DEFAULT_REGIONS]
    for name in OPT_IN_REGIONS:
        rows.append((name, "ENABLED" if name in ctx.scenario.regions else "DISABLED"))
    return sorted(rows)


def get_caller_identity(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """STS GetCallerIdentity: the sandbox user of the simulated account."""
    return {
        "UserId": "AIDASANDBOXUSER0000001",
        "Account": ctx.account_id,
        "Arn": f"arn:aws:iam::{ctx.account_id}:user/sandbox",
    }


def list_regions(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """Account ListRegions, filtered by RegionOptStatusContains, paginated (MaxResults 1..50, default 20)."""
    wanted = params.get("RegionOptStatusContains")
    rows = [
        {"RegionName": name, "RegionOptStatus": status}
        for name, status in region_statuses(ctx)
        if not wanted or status in wanted
    ]
    page, token = paginate(
        rows,
        params,
        token_key="NextToken",
        limit_key="MaxResults",
        default_limit=20,
        max_limit=50,
        bad_token_code="ValidationException",
        bad_limit_code="ValidationException",
        request_key=sorted(wanted or []),
    )
    result: dict[str, Any] = {"Regions": page}
    if token:
        result["NextToken"] = token
    return result


def describe_regions(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """EC2 DescribeRegions: enabled regions (all of them with AllRegions), RegionNames and Filters applied."""
    statuses = dict(region_statuses(ctx))
    names = params.get("RegionNames") or []
    for name in names:
        if name not in statuses:
            raise ApiError("InvalidParameterValue", f"Invalid region: {name}")
    rows = []
    for name, status in sorted(statuses.items()):
        opt_in = {"ENABLED_BY_DEFAULT": "opt-in-not-required", "ENABLED": "opted-in"}.get(status, "not-opted-in")
        if not params.get("AllRegions") and opt_in == "not-opted-in" and name not in names:
            continue
        if names and name not in names:
            continue
        row = {"RegionName": name, "Endpoint": f"ec2.{name}.amazonaws.com", "OptInStatus": opt_in}
        if _matches_filters(row, params.get("Filters") or []):
            rows.append(row)
    return {"Regions": rows}


def _matches_filters(row: dict[str, str], filters: list[dict[str, Any]]) -> bool:
    fields = {"region-name": "RegionName", "endpoint": "Endpoint", "opt-in-status": "OptInStatus"}
    for item in filters:
        name = item.get("Name")
        if name not in fields:
            raise ApiError("InvalidParameterValue", f"The filter '{name}' is invalid")
        if row[fields[name]] not in (item.get("Values") or []):
            return False
    return True


HANDLERS: dict[tuple[str, str], Handler] = {
    ("sts", "GetCallerIdentity"): get_caller_identity,
    ("account", "ListRegions"): list_regions,
    ("ec2", "DescribeRegions"): describe_regions,
}

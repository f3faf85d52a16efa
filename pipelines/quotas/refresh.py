"""``buw refresh``: region, model and quota metadata from AWS, cached as files in the buw data directory.

    buw refresh regions                  enabled regions that offer Bedrock      -> regions.yml
    buw refresh fm-list [REGION]         foundation models + system profiles     -> fm-list-<region>.yml
    buw refresh fm-quotas [REGION]       Bedrock quotas mapped to model endpoints -> fm-quotas-<region>.yml
    buw refresh quota-index              the mapping of every cached region       -> quota-index.csv

``fm-quotas --llm MODEL_ID`` also asks a Bedrock model (Converse) to choose, for one model at a time, among the
quotas the name rules left undecided. Its answers are checked against what the quota-name parser knows (type,
scope, the model the rules found compatible) and a contradicting answer is vetoed; every answer is cached under
``(region, quota_code, model_id)`` so a second run asks nothing. Without ``--llm`` no model is called.

The caches are plain YAML/CSV so they can be read, diffed and committed by the user; the warehouse itself never
reads them (its ``quota_map`` comes from the lake's snapshots, the name rules and the overrides file only).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

from pipelines.aws import AwsApiError
from pipelines.errors import UserError, describe_aws_error
from pipelines.quotas.mapper import CSV_HEADER, QuotaMapping, QuotaMappings, UnresolvedQuota, map_quotas
from pipelines.quotas.names import QUOTA_TYPES, parse_quota_name
from pipelines.quotas.overrides import OverrideError, data_dir, load_overrides

WHAT = ("regions", "fm-list", "fm-quotas", "quota-index")

REGIONS_FILE = "regions.yml"
INDEX_FILE = "quota-index.csv"
LLM_CACHE_FILE = "llm-quota-answers.yml"

# Reasons of an unresolved quota that a choice among candidate models can settle. "no-model" has nobody to
# choose from and "context-variant" is a decision of the rules (the long-context quota limits traffic that
# CloudWatch cannot tell apart from the standard id's), not an open question.
UNDECIDED_REASONS = frozenset({"ambiguous", "conflict", "no-scope"})

# Which endpoints each parsed scope may limit; an answer outside them contradicts the quota's own name.
_SCOPE_ENDPOINTS: dict[str | None, frozenset[str]] = {
    "on-demand": frozenset({"base"}),
    "mantle": frozenset({"base"}),
    "cross-region": frozenset({"geo"}),
    "global-cross-region": frozenset({"global"}),
    "model-invocation": frozenset({"base", "geo"}),
    "custom-deployment": frozenset({"custom"}),
    None: frozenset({"base", "geo", "global"}),
}

ClientFactory = Callable[[str, str], Any]


@dataclass(frozen=True)
class LlmAnswer:
    """What the model said about one offered quota for one model: does it apply, and as which endpoint/type.

    ``model_id`` is the model it was asked about; ``said_model_id`` the model its answer named (a different
    one means it answered about a sibling).
    """

    region: str
    quota_code: str
    model_id: str
    applies: bool
    endpoint: str | None
    quota_type: str | None
    llm_model_id: str
    asked_at: str
    said_model_id: str | None = None


@dataclass(frozen=True)
class LlmVerdict:
    """An answer after the rules looked at it: ``accepted`` or vetoed with the rule it contradicts."""

    answer: LlmAnswer
    accepted: bool
    reason: str


def refresh(
    what: str,
    region: str | None = None,
    llm_model_id: str | None = None,
    profile: str | None = None,
    *,
    clients: ClientFactory | None = None,
    out: TextIO | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run one ``buw refresh`` command and return its exit code (0).

    ``region`` limits fm-list, fm-quotas and quota-index to one region (default: the cached enabled regions,
    refreshed first when there is no cache). ``llm_model_id`` (fm-quotas only) lets that Bedrock model choose
    among undecided quotas. ``clients`` makes a boto3 client from (service, region); by default one is made
    from ``profile`` with adaptive retries (``AWS_ENDPOINT_URL`` reaches the sandbox). Every failure a user can
    fix raises ``UserError`` with one sentence.
    """
    out = sys.stdout if out is None else out
    if what not in WHAT:
        raise UserError(f"`buw refresh {what}` is unknown; use one of {', '.join(WHAT)}.")
    if llm_model_id is not None and what != "fm-quotas":
        raise UserError("--llm only applies to `buw refresh fm-quotas`; drop it or refresh fm-quotas.")
    if region is not None:
        _check_region(region)
    directory = data_dir(env)
    factory = clients or _default_clients(profile)
    if what == "regions":
        regions = refresh_regions(factory, directory, home_region=region)
        for name in regions:
            out.write(f"{name}\n")
        out.write(f"{len(regions)} Bedrock regions enabled; cached in {directory / REGIONS_FILE}\n")
        return 0
    if what == "quota-index":
        path, rows = write_quota_index(directory, region=region, env=env)
        out.write(f"{rows} quota mappings written to {path}\n")
        return 0
    regions = [region] if region is not None else _cached_or_fresh_regions(factory, directory, out)
    if what == "fm-list":
        for name in regions:
            listing, path = refresh_fm_list(factory, directory, name)
            out.write(
                f"{name}: {len(listing['models'])} foundation models, {len(listing['profiles'])} system "
                f"inference profiles -> {path}\n"
            )
        return 0
    overrides = _overrides(env)
    for name in regions:
        result, path = refresh_fm_quotas(
            factory, directory, name, overrides=overrides, llm_model_id=llm_model_id, out=out
        )
        _print_fm_quotas(out, name, result, path)
    return 0


# --- regions ------------------------------------------------------------------------------------------------


def refresh_regions(factory: ClientFactory, directory: Path, *, home_region: str | None = None) -> list[str]:
    """The account's enabled regions that offer Bedrock, cached in ``regions.yml``.

    Account ListRegions is asked first (it sees opt-in regions); an account without that permission falls
    back to EC2 DescribeRegions, which lists the enabled regions too.
    """
    from pipelines.aws.account import BEDROCK_REGIONS, list_regions

    calling_region = home_region or _session_region() or "us-east-1"
    try:
        enabled, source = list_regions(factory("account", calling_region)), "account:ListRegions"
    except AwsApiError as error:
        if error.code not in {"AccessDeniedException", "AccessDenied", "UnauthorizedOperation"}:
            raise _user_error(error, "listing the enabled regions") from error
        try:
            enabled, source = list_regions(factory("ec2", calling_region)), "ec2:DescribeRegions"
        except AwsApiError as fallback:
            if fallback.code in {"AccessDeniedException", "AccessDenied", "UnauthorizedOperation"}:
                # Either action lists the regions; the user needs to hear about the first one.
                raise UserError(
                    "AWS denied account:ListRegions (and the fallback ec2:DescribeRegions) while listing the "
                    "enabled regions; grant account:ListRegions to the role you run buw with (docs/iam-policy.md)."
                ) from fallback
            raise _user_error(fallback, "listing the enabled regions") from fallback
    regions = sorted(set(enabled) & set(BEDROCK_REGIONS))
    _write_yaml(
        directory / REGIONS_FILE,
        {"refreshed_at": _now_text(), "source": source, "regions": regions},
    )
    return regions


def cached_regions(directory: Path) -> list[str] | None:
    """The regions of ``regions.yml``, or None when it was never written."""
    data = _read_yaml(directory / REGIONS_FILE)
    if data is None:
        return None
    regions = data.get("regions") if isinstance(data, dict) else None
    if not isinstance(regions, list) or not all(isinstance(name, str) for name in regions):
        raise UserError(f"{directory / REGIONS_FILE} is damaged; delete it and run `buw refresh regions`.")
    return list(regions)


def _cached_or_fresh_regions(factory: ClientFactory, directory: Path, out: TextIO) -> list[str]:
    regions = cached_regions(directory)
    if regions is None:
        regions = refresh_regions(factory, directory)
        out.write(f"{len(regions)} Bedrock regions enabled (cached in {directory / REGIONS_FILE})\n")
    return regions


# --- fm-list ------------------------------------------------------------------------------------------------


def refresh_fm_list(factory: ClientFactory, directory: Path, region: str) -> tuple[dict[str, Any], Path]:
    """ListFoundationModels and the system-defined inference profiles of one region -> ``fm-list-<region>.yml``.

    Each model lists the endpoints it can be called on: its own id when it supports on-demand calls, and
    every system profile whose model is it.
    """
    from pipelines.aws.bedrock import list_foundation_models, list_inference_profiles

    client = factory("bedrock", region)
    try:
        models = list_foundation_models(client)
        profiles = list_inference_profiles(client, type="SYSTEM_DEFINED")
    except AwsApiError as error:
        raise _user_error(error, f"listing the foundation models of {region}") from error
    endpoints: dict[str, list[str]] = defaultdict(list)
    for model in models:
        if "ON_DEMAND" in model.inference_types:
            endpoints[model.model_id].append(model.model_id)
    for profile in profiles:
        model_id = profile.profile_id.split(".", 1)[1] if "." in profile.profile_id else ""
        endpoints[model_id].append(profile.profile_id)
    listing = {
        "region": region,
        "refreshed_at": _now_text(),
        "models": [
            {
                "model_id": model.model_id,
                "model_name": model.model_name,
                "provider": model.provider,
                "inference_types": list(model.inference_types),
                "lifecycle_status": model.lifecycle_status,
                "endpoints": sorted(endpoints.get(model.model_id, [])),
            }
            for model in models
        ],
        "profiles": [
            {
                "profile_id": profile.profile_id,
                "type": "SYSTEM_DEFINED",
                "name": profile.name,
                "model_arns": list(profile.model_arns),
            }
            for profile in profiles
        ],
    }
    path = directory / f"fm-list-{region}.yml"
    _write_yaml(path, listing)
    return listing, path


def cached_fm_list(directory: Path, region: str) -> dict[str, Any] | None:
    """The ``fm-list-<region>.yml`` cache, or None when it was never written."""
    path = directory / f"fm-list-{region}.yml"
    data = _read_yaml(path)
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise UserError(f"{path} is damaged; delete it and run `buw refresh fm-list {region}`.")
    data.setdefault("profiles", [])
    return data


# --- fm-quotas ----------------------------------------------------------------------------------------------


def refresh_fm_quotas(
    factory: ClientFactory,
    directory: Path,
    region: str,
    *,
    overrides: Sequence[Any] = (),
    llm_model_id: str | None = None,
    out: TextIO | None = None,
) -> tuple[QuotaMappings, Path]:
    """The Bedrock quotas of one region, mapped to model endpoints -> ``fm-quotas-<region>.yml``.

    Models and profiles come from ``fm-list-<region>.yml`` (written first when missing). With
    ``llm_model_id`` the undecided quotas are put to that model and the accepted answers join the mapping
    with rule ``llm:<endpoint kind>:<type>``.
    """
    from pipelines.aws.quotas import list_service_quotas

    listing = cached_fm_list(directory, region)
    if listing is None:
        listing, _ = refresh_fm_list(factory, directory, region)
    try:
        records = list_service_quotas(factory("service-quotas", region))
    except AwsApiError as error:
        raise _user_error(error, f"listing the Service Quotas of {region}") from error
    quotas = [
        {
            "quota_code": record.quota_code,
            "quota_name": record.quota_name,
            "value": record.value,
            "default_value": record.default_value,
            "applied_value": record.applied_value,
            "unit": record.unit,
            "adjustable": record.adjustable,
        }
        for record in records
    ]
    result = map_quotas(quotas, listing["models"], listing["profiles"], overrides)
    verdicts: list[LlmVerdict] = []
    if llm_model_id is not None:
        answers = ask_llm(factory, directory, region, llm_model_id, result.unresolved, listing["models"], out=out)
        verdicts = judge_answers(answers, result, listing["profiles"], listing["models"])
        names = {q["quota_code"]: q["quota_name"] for q in quotas}
        result = apply_verdicts(result, verdicts, names, listing["profiles"], listing["models"])
        if out is not None:
            for verdict in verdicts:
                if verdict.answer.applies:
                    state = "accepted" if verdict.accepted else f"vetoed ({verdict.reason})"
                    out.write(
                        f"  llm: {verdict.answer.quota_code} -> {verdict.answer.model_id} "
                        f"{verdict.answer.endpoint} {verdict.answer.quota_type}: {state}\n"
                    )
    document = {
        "region": region,
        "refreshed_at": _now_text(),
        "quotas": quotas,
        "mappings": [_mapping_dict(row) for row in result],
        "unresolved": [_unresolved_dict(item) for item in result.unresolved],
    }
    if verdicts:
        document["llm"] = [
            {
                "quota_code": verdict.answer.quota_code,
                "model_id": verdict.answer.model_id,
                "endpoint": verdict.answer.endpoint,
                "quota_type": verdict.answer.quota_type,
                "verdict": "accepted" if verdict.accepted else "vetoed",
                "reason": verdict.reason,
            }
            for verdict in verdicts
            if verdict.answer.applies
        ]
    path = directory / f"fm-quotas-{region}.yml"
    _write_yaml(path, document)
    return result, path


def _print_fm_quotas(out: TextIO, region: str, result: QuotaMappings, path: Path) -> None:
    endpoints = {(row.model_id, row.endpoint) for row in result}
    out.write(f"{region}: {len(result)} quotas mapped to {len(endpoints)} model endpoints -> {path}\n")
    if result.unresolved:
        out.write(f"{region}: {len(result.unresolved)} per-model quotas left unmapped:\n")
        for item in result.unresolved:
            candidates = f" [{', '.join(item.candidates)}]" if item.candidates else ""
            out.write(f"  {item.quota_code} {item.reason}: {item.quota_name}{candidates}\n")


# --- quota-index --------------------------------------------------------------------------------------------


def write_quota_index(
    directory: Path, *, region: str | None = None, env: Mapping[str, str] | None = None
) -> tuple[Path, int]:
    """Re-map every cached region (current overrides and accepted LLM answers applied) -> ``quota-index.csv``.

    One row per distinct (model_id, endpoint, quota_type, quota_code, quota_name) over the regions: a quota
    code names the same quota in every region, so a model offered in three regions is listed once. Which
    region lists which quota is in each ``fm-quotas-<region>.yml``.
    """
    paths = sorted(directory.glob("fm-quotas-*.yml"))
    if region is not None:
        paths = [path for path in paths if path.name == f"fm-quotas-{region}.yml"]
    if not paths:
        where = region or "any region"
        raise UserError(
            f"no quotas are cached for {where} in {directory}; run `buw refresh fm-quotas"
            f"{' ' + region if region else ''}` first."
        )
    overrides = _overrides(env)
    llm_cache = load_llm_cache(directory)
    rows: set[tuple[str, str, str, str, str]] = set()
    for path in paths:
        cached = _read_yaml(path)
        if not isinstance(cached, dict) or not isinstance(cached.get("quotas"), list):
            raise UserError(f"{path} is damaged; delete it and run `buw refresh fm-quotas`.")
        name = str(cached.get("region") or path.stem.removeprefix("fm-quotas-"))
        listing = cached_fm_list(directory, name)
        if listing is None:
            raise UserError(f"the model list of {name} is missing; run `buw refresh fm-list {name}` first.")
        result = map_quotas(cached["quotas"], listing["models"], listing["profiles"], overrides)
        answers = [answer for key, answer in llm_cache.items() if key[0] == name]
        if answers:
            verdicts = judge_answers(answers, result, listing["profiles"], listing["models"])
            names = {str(q.get("quota_code")): str(q.get("quota_name")) for q in cached["quotas"]}
            result = apply_verdicts(result, verdicts, names, listing["profiles"], listing["models"])
        rows.update((r.model_id, r.endpoint, r.quota_type, r.quota_code, r.quota_name) for r in result)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(sorted(rows))
    path = directory / INDEX_FILE
    _write_text(path, buffer.getvalue())
    return path, len(rows)


# --- the LLM ------------------------------------------------------------------------------------------------

_SYSTEM_PROMPT = (
    "You match Amazon Bedrock Service Quotas to foundation models. You are given one model and some quotas "
    "whose names could not be matched to a model by fixed rules. Say which of these quotas limit exactly this "
    "model (not a sibling model with another version, size or context length). Answer with JSON only, no "
    'prose: {"matches": [{"quota_code": "L-...", "model_id": "<the model id>", "endpoint": '
    '"base" | "geo" | "global", "quota_type": "tpm" | "rpm" | "tpd" | "concurrent" | "input_tpm" | '
    '"output_tpm"}]}. endpoint is base for in-region on-demand calls, geo for geographic cross-region '
    "inference profiles, global for global cross-region profiles. List only quotas that apply; an empty list "
    "is a valid answer."
)
_JSON_FENCE = re.compile(r"^\s*```(?:json)?\s*(?P<body>.*?)\s*```\s*$", re.DOTALL)


def ask_llm(
    factory: ClientFactory,
    directory: Path,
    region: str,
    llm_model_id: str,
    unresolved: Iterable[UnresolvedQuota],
    models: Sequence[Mapping[str, Any]],
    *,
    out: TextIO | None = None,
) -> list[LlmAnswer]:
    """Answers for every (undecided quota, candidate model) pair of the region, from the cache or the model.

    One Converse call per candidate model whose pairs are not all cached, listing that model's undecided
    quotas. An offered quota left out of the answer is cached as "does not apply". An answer that is not the
    JSON asked for is reported on ``out`` and not cached, so the next run asks again.
    """
    by_model: dict[str, list[UnresolvedQuota]] = defaultdict(list)
    for item in unresolved:
        if item.reason in UNDECIDED_REASONS:
            for model_id in item.candidates:
                if item not in by_model[model_id]:
                    by_model[model_id].append(item)
    cache = load_llm_cache(directory)
    answers: list[LlmAnswer] = []
    model_info = {str(m.get("model_id") or m.get("modelId")): m for m in models}
    client = None
    for model_id in sorted(by_model):
        offered = by_model[model_id]
        keys = [(region, item.quota_code, model_id) for item in offered]
        if all(key in cache for key in keys):
            answers.extend(cache[key] for key in keys)
            continue
        if client is None:
            client = factory("bedrock-runtime", region)
        text = _converse(client, llm_model_id, _prompt(model_id, model_info.get(model_id, {}), offered))
        try:
            matches = parse_llm_answer(text)
        except ValueError as error:
            if out is not None:
                out.write(f"  llm: the answer about {model_id} was not usable ({error}); nothing was cached\n")
            continue
        asked_at = _now_text()
        said = {match["quota_code"]: match for match in matches}
        for item in offered:
            match = said.pop(item.quota_code, None)
            answer = LlmAnswer(
                region=region,
                quota_code=item.quota_code,
                model_id=model_id,
                applies=match is not None,
                endpoint=match.get("endpoint") if match else None,
                quota_type=match.get("quota_type") if match else None,
                llm_model_id=llm_model_id,
                asked_at=asked_at,
                said_model_id=match.get("model_id", model_id) if match else None,
            )
            cache[(region, item.quota_code, model_id)] = answer
            answers.append(answer)
        # Codes the model made up (never offered) are kept as answers so the veto can report them.
        for code, match in said.items():
            answers.append(
                LlmAnswer(
                    region,
                    code,
                    model_id,
                    True,
                    match.get("endpoint"),
                    match.get("quota_type"),
                    llm_model_id,
                    asked_at,
                    match.get("model_id", model_id),
                )
            )
        save_llm_cache(directory, cache)
    return answers


def _prompt(model_id: str, model: Mapping[str, Any], offered: Sequence[UnresolvedQuota]) -> str:
    lines = [
        f"Model id: {model_id}",
        f"Model name: {model.get('model_name') or model.get('modelName') or ''}",
        f"Provider: {model.get('provider') or model.get('providerName') or ''}",
        "",
        "Quotas (code: name):",
    ]
    lines += [f"- {item.quota_code}: {item.quota_name}" for item in offered]
    lines += ["", "Which of these quotas limit this model? Answer with the JSON object only."]
    return "\n".join(lines)


def _converse(client: Any, llm_model_id: str, prompt: str) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = client.converse(
            modelId=llm_model_id,
            system=[{"text": _SYSTEM_PROMPT}],
            messages=[{"role": "user", "content": [{"text": prompt}]}],
            inferenceConfig={"maxTokens": 1024, "temperature": 0.0},
        )
    except (ClientError, BotoCoreError) as error:
        message = describe_aws_error(error, f"asking {llm_model_id} (Converse)")
        if message is None:
            detail = str(error).rstrip(".")
            message = (
                f"Converse with {llm_model_id} failed ({detail}); check that the model id is enabled in "
                "this region or run without --llm."
            )
        raise UserError(message) from error
    content = response.get("output", {}).get("message", {}).get("content", [])
    return "".join(block.get("text", "") for block in content if isinstance(block, dict))


def parse_llm_answer(text: str) -> list[dict[str, str]]:
    """The ``matches`` of a strict JSON answer; raises ValueError when the answer is not that JSON.

    A Markdown code fence around the object is tolerated (models add one even when told not to); any other
    prose is not.
    """
    fenced = _JSON_FENCE.match(text)
    body = fenced.group("body") if fenced else text.strip()
    try:
        data = json.loads(body)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("matches"), list):
        raise ValueError('expected an object with a "matches" list')
    matches: list[dict[str, str]] = []
    for position, item in enumerate(data["matches"], start=1):
        if not isinstance(item, dict):
            raise ValueError(f"match {position} is not an object")
        fields = {}
        for field in ("quota_code", "model_id", "endpoint", "quota_type"):
            value = item.get(field)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"match {position} field {field} is not a string")
            if value is not None:
                fields[field] = value.strip()
        if not fields.get("quota_code"):
            raise ValueError(f"match {position} has no quota_code")
        matches.append(fields)
    return matches


def judge_answers(
    answers: Iterable[LlmAnswer],
    result: QuotaMappings,
    profiles: Sequence[Mapping[str, Any]],
    models: Sequence[Mapping[str, Any]],
) -> list[LlmVerdict]:
    """Accept an answer only where the rules have nothing against it.

    Vetoed: a code that was not offered for that model (``not-offered``), a model other than the one asked
    about (``sibling``), a quota type other than the name's (``wrong-type``), an endpoint the name's scope
    excludes (``wrong-scope``), an endpoint the model has no profile for (``no-endpoint``), a key the rules
    already mapped to another code (``rule-mapped``) and a code given to two models or two codes given to one
    key (``contested``).
    """
    offered = {
        (item.quota_code, model_id): item
        for item in result.unresolved
        if item.reason in UNDECIDED_REASONS
        for model_id in item.candidates
    }
    ruled = {(row.model_id, row.endpoint, row.quota_type): row.quota_code for row in result}
    geo_prefixes = _geo_prefixes(profiles, models)
    provisional: list[tuple[LlmAnswer, str]] = []
    verdicts: list[LlmVerdict] = []
    for answer in answers:
        if not answer.applies:
            verdicts.append(LlmVerdict(answer, False, "does-not-apply"))
            continue
        reason = _veto(answer, offered, ruled, geo_prefixes)
        if reason is not None:
            verdicts.append(LlmVerdict(answer, False, reason))
        else:
            provisional.append((answer, "accepted"))
    # One code, one model; one (model, endpoint, type), one code: anything else is the model disagreeing with
    # itself, and neither side is kept.
    models_per_code: dict[str, set[str]] = defaultdict(set)
    codes_per_key: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for answer, _ in provisional:
        models_per_code[answer.quota_code].add(answer.model_id)
        codes_per_key[(answer.model_id, str(answer.endpoint), str(answer.quota_type))].add(answer.quota_code)
    for answer, _ in provisional:
        key = (answer.model_id, str(answer.endpoint), str(answer.quota_type))
        contested = len(models_per_code[answer.quota_code]) > 1 or len(codes_per_key[key]) > 1
        verdicts.append(LlmVerdict(answer, not contested, "contested" if contested else "accepted"))
    return verdicts


def _veto(
    answer: LlmAnswer,
    offered: Mapping[tuple[str, str], UnresolvedQuota],
    ruled: Mapping[tuple[str, str, str], str],
    geo_prefixes: Mapping[str, tuple[str, ...]],
) -> str | None:
    item = offered.get((answer.quota_code, answer.model_id))
    if item is None:
        return "not-offered"
    if answer.said_model_id not in (None, answer.model_id):
        return "sibling"
    parsed = parse_quota_name(item.quota_name)
    if answer.quota_type not in QUOTA_TYPES or answer.quota_type != (parsed.quota_type or item.quota_type):
        return "wrong-type"
    if answer.endpoint not in _SCOPE_ENDPOINTS.get(parsed.scope, frozenset()):
        return "wrong-scope"
    if answer.endpoint == "geo" and not geo_prefixes.get(answer.model_id):
        return "no-endpoint"
    for endpoint in _expand(answer.endpoint, answer.model_id, geo_prefixes):
        code = ruled.get((answer.model_id, endpoint, answer.quota_type))
        if code is not None and code != answer.quota_code:
            return "rule-mapped"
    return None


def apply_verdicts(
    result: QuotaMappings,
    verdicts: Iterable[LlmVerdict],
    quota_names: Mapping[str, str],
    profiles: Sequence[Mapping[str, Any]],
    models: Sequence[Mapping[str, Any]],
) -> QuotaMappings:
    """The mapping with the accepted answers added (rule ``llm:<endpoint kind>:<type>``).

    A ``geo`` answer becomes one row per geographic prefix whose system profile serves the model. Quotas
    settled this way leave ``unresolved``, and so does the rival code of a conflict the answer decided.
    """
    accepted = [verdict.answer for verdict in verdicts if verdict.accepted]
    if not accepted:
        return result
    geo_prefixes = _geo_prefixes(profiles, models)
    rows = {(row.model_id, row.endpoint, row.quota_type): row for row in result}
    settled_codes: set[str] = set()
    settled_keys: set[tuple[str, str, str]] = set()
    for answer in accepted:
        endpoint_kind, quota_type = str(answer.endpoint), str(answer.quota_type)
        for endpoint in _expand(endpoint_kind, answer.model_id, geo_prefixes):
            rows[(answer.model_id, endpoint, quota_type)] = QuotaMapping(
                answer.model_id,
                endpoint,
                quota_type,
                answer.quota_code,
                quota_names.get(answer.quota_code, answer.quota_code),
                f"llm:{endpoint_kind}:{quota_type}",
            )
        settled_codes.add(answer.quota_code)
        settled_keys.add((answer.model_id, endpoint_kind, quota_type))

    def decided(item: UnresolvedQuota) -> bool:
        if item.quota_code in settled_codes:
            return True
        if item.reason != "conflict":
            return False
        kinds = _SCOPE_ENDPOINTS.get(item.scope, frozenset())
        return any((model_id, kind, item.quota_type) in settled_keys for model_id in item.candidates for kind in kinds)

    ordered = sorted(rows.values(), key=lambda row: (row.model_id, row.endpoint, row.quota_type, row.quota_code))
    return QuotaMappings(ordered, [item for item in result.unresolved if not decided(item)])


def _geo_prefixes(
    profiles: Sequence[Mapping[str, Any]], models: Sequence[Mapping[str, Any]]
) -> dict[str, tuple[str, ...]]:
    """model id -> the geographic prefixes of the system profiles that serve it (``us``, ``eu``, ...)."""
    model_ids = {str(model.get("model_id") or model.get("modelId")) for model in models}
    prefixes: dict[str, set[str]] = defaultdict(set)
    for profile in profiles:
        profile_id = str(profile.get("profile_id") or profile.get("inferenceProfileId") or "")
        prefix, _, model_id = profile_id.partition(".")
        if model_id in model_ids and prefix and prefix != "global":
            prefixes[model_id].add(prefix)
    return {model_id: tuple(sorted(found)) for model_id, found in prefixes.items()}


def _expand(endpoint_kind: str | None, model_id: str, geo_prefixes: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    if endpoint_kind == "geo":
        return tuple(geo_prefixes.get(model_id, ()))
    return (endpoint_kind,) if endpoint_kind else ()


def load_llm_cache(directory: Path) -> dict[tuple[str, str, str], LlmAnswer]:
    """Every cached LLM answer, keyed by (region, quota_code, model_id)."""
    path = directory / LLM_CACHE_FILE
    data = _read_yaml(path)
    if data is None:
        return {}
    entries = data.get("answers") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise UserError(f"{path} is damaged; delete it and run `buw refresh fm-quotas --llm MODEL_ID` again.")
    cache: dict[tuple[str, str, str], LlmAnswer] = {}
    for entry in entries:
        try:
            answer = LlmAnswer(
                region=str(entry["region"]),
                quota_code=str(entry["quota_code"]),
                model_id=str(entry["model_id"]),
                applies=bool(entry["applies"]),
                endpoint=entry.get("endpoint"),
                quota_type=entry.get("quota_type"),
                llm_model_id=str(entry.get("llm_model_id", "")),
                asked_at=str(entry.get("asked_at", "")),
                said_model_id=entry.get("said_model_id"),
            )
        except (KeyError, TypeError, AttributeError):
            raise UserError(
                f"{path} is damaged; delete it and run `buw refresh fm-quotas --llm MODEL_ID` again."
            ) from None
        cache[(answer.region, answer.quota_code, answer.model_id)] = answer
    return cache


def save_llm_cache(directory: Path, cache: Mapping[tuple[str, str, str], LlmAnswer]) -> Path:
    """Write the LLM answers, sorted by key, to ``llm-quota-answers.yml``."""
    entries = [
        {
            "region": answer.region,
            "quota_code": answer.quota_code,
            "model_id": answer.model_id,
            "applies": answer.applies,
            "endpoint": answer.endpoint,
            "quota_type": answer.quota_type,
            "llm_model_id": answer.llm_model_id,
            "asked_at": answer.asked_at,
            "said_model_id": answer.said_model_id,
        }
        for _, answer in sorted(cache.items())
    ]
    path = directory / LLM_CACHE_FILE
    _write_yaml(path, {"answers": entries})
    return path


# --- plumbing -----------------------------------------------------------------------------------------------


def _default_clients(profile: str | None) -> ClientFactory:
    from pipelines.resources import AwsResource

    aws = AwsResource(profile_name=profile)
    cache: dict[tuple[str, str], Any] = {}

    def make(service: str, region: str) -> Any:
        if (service, region) not in cache:
            try:
                cache[(service, region)] = aws.client(service, region)
            except Exception as error:  # botocore raises ProfileNotFound and friends while building a client
                message = describe_aws_error(error, f"creating the {service} client")
                if message is None:
                    raise
                raise UserError(message) from error
        return cache[(service, region)]

    return make


def _session_region() -> str | None:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def _check_region(region: str) -> None:
    from pipelines.aws.account import BEDROCK_REGIONS

    if region not in BEDROCK_REGIONS:
        raise UserError(
            f"{region!r} is not a region where Amazon Bedrock is offered; run `buw refresh regions` to list "
            "the enabled ones."
        )


def _overrides(env: Mapping[str, str] | None) -> list[Any]:
    try:
        return load_overrides(env=env)
    except OverrideError as error:
        raise UserError(str(error)) from None


def _user_error(error: AwsApiError, doing: str) -> UserError:
    cause = error.__cause__ or error
    message = describe_aws_error(cause, doing)
    return UserError(message or f"{error} while {doing}; check the region and your AWS credentials.")


def _mapping_dict(row: QuotaMapping) -> dict[str, str]:
    return {
        "model_id": row.model_id,
        "endpoint": row.endpoint,
        "quota_type": row.quota_type,
        "quota_code": row.quota_code,
        "quota_name": row.quota_name,
        "rule": row.rule,
    }


def _unresolved_dict(item: UnresolvedQuota) -> dict[str, Any]:
    return {
        "quota_code": item.quota_code,
        "quota_name": item.quota_name,
        "quota_type": item.quota_type,
        "scope": item.scope,
        "reason": item.reason,
        "candidates": list(item.candidates),
    }


def _now_text() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise UserError(f"cannot read {path} ({error.strerror or error}); check its permissions.") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise UserError(f"{path} is not valid YAML; delete it and run the `buw refresh` that writes it.") from None


def _write_yaml(path: Path, data: Any) -> None:
    _write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120))


def _write_text(path: Path, text: str) -> None:
    """Write through a temporary file and a rename, so a reader never sees half a cache."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        os.replace(temporary, path)
    except OSError as error:
        raise UserError(
            f"cannot write {path} ({error.strerror or error}); set BUW_DATA_DIR to a writable directory."
        ) from None

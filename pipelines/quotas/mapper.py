"""Map Bedrock model endpoints to their Service Quotas codes, deterministically and without guessing.

AWS publishes no table from model ids to quota codes. The quota names do say which model they limit, in
display form ("Anthropic Claude Sonnet 4.5 V1"), and ListFoundationModels gives each model id a display name
("Claude Sonnet 4.5"). Both are reduced to the same normalised key (provider, family words, version numbers,
sizes, API version, context-length variant) and a quota maps to a model only when the keys agree exactly and
exactly one model in the listing agrees. Anything else is left out and reported in ``unresolved``, never
guessed: a wrong quota code silently turns a headroom report into fiction.

See docs/quotas.md for every rule, with examples.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pipelines.quotas.names import ParsedQuotaName, context_thousands, parse_quota_name
from pipelines.quotas.overrides import OverrideRule

CSV_HEADER: tuple[str, ...] = ("model_id", "endpoint", "quota_type", "quota_code", "quota_name")

# Display forms of each provider as quota names and ListFoundationModels' providerName write them. Keys are
# the model-id prefixes (canonical form); providerName values from the model listing are added at run time.
PROVIDER_ALIASES: dict[str, tuple[str, ...]] = {
    "ai21": ("AI21 Labs", "AI21"),
    "amazon": ("Amazon",),
    "anthropic": ("Anthropic",),
    "cohere": ("Cohere",),
    "deepseek": ("DeepSeek",),
    "google": ("Google",),
    "luma": ("Luma AI", "Luma"),
    "meta": ("Meta",),
    "minimax": ("MiniMax",),
    "mistral": ("Mistral AI", "Mistral"),
    "moonshot": ("Moonshot AI", "Moonshot"),
    "nvidia": ("NVIDIA",),
    "openai": ("OpenAI",),
    "qwen": ("Qwen",),
    "stability": ("Stability.ai", "Stability AI", "Stability"),
    "twelvelabs": ("TwelveLabs", "Twelve Labs"),
    "writer": ("Writer AI", "Writer"),
    "zai": ("Z.ai", "Z AI"),
}
# Model-id prefixes that name the same provider.
_PROVIDER_PREFIXES = {"moonshotai": "moonshot"}

# Words that some names carry and others omit for the same model ("Ministral 8B 3.0" is
# mistral.ministral-3-8b-instruct, "Gemma 3 12B" is google.gemma-3-12b-it).
_FILLER_WORDS = frozenset({"instruct", "it", "and"})
_SYNONYMS = {"embeddings": "embed", "embedding": "embed"}

_SIZE = re.compile(r"^(?:\d+x)?\d+(?:\.\d+)?b$|^a\d+(?:\.\d+)?b$")
_NUMBER = re.compile(r"^\d+(?:\.\d+)*$")
_DATE = re.compile(r"^20\d{6}$")
_API_VERSION = re.compile(r"-v(?P<number>\d+)$")
_DISPLAY_VERSION = re.compile(r"\s+v(?P<number>\d+)\s*$", re.IGNORECASE)
_MODEL_ID = re.compile(r"^(?P<base>[^:]+)(?::(?P<first>[^:]+))?(?::(?P<second>[^:]+))?$")
_GEO_PREFIX = re.compile(r"^[a-z]{2,6}(?:-[a-z]{2,6})?$")


@dataclass(frozen=True)
class QuotaMapping:
    """One row of the quota_map mart: the quota code of one quota type for one model endpoint.

    ``endpoint`` is ``base`` (in-region on-demand), a geographic cross-region prefix (``us``, ``eu``,
    ``apac``, ...), ``geo`` (every geographic prefix, when no profile listing was given), ``global`` or
    ``custom``. ``rule`` names the rule that produced the row, e.g. ``name:on-demand:tpm`` or ``override``.
    """

    model_id: str
    endpoint: str
    quota_type: str
    quota_code: str
    quota_name: str
    rule: str


@dataclass(frozen=True)
class UnresolvedQuota:
    """A per-model quota the rules could not place, with the models it might belong to.

    ``reason`` is one of ``no-scope`` (the name says no on-demand/cross-region/...), ``no-model`` (no listed
    model matches the name), ``context-variant`` (the model matches but no listed id carries the
    context-length variant), ``ambiguous`` (several models match) or ``conflict`` (another quota claims the
    same model endpoint and type).
    """

    quota_code: str
    quota_name: str
    quota_type: str
    scope: str | None
    reason: str
    candidates: tuple[str, ...] = ()


class QuotaMappings(list[QuotaMapping]):
    """The mapped rows, sorted, plus the quotas left out (``unresolved``) for a later step to decide."""

    def __init__(self, rows: Iterable[QuotaMapping] = (), unresolved: Iterable[UnresolvedQuota] = ()) -> None:
        super().__init__(rows)
        self.unresolved: tuple[UnresolvedQuota, ...] = tuple(unresolved)


@dataclass(frozen=True)
class NameKey:
    """The normalised identity of a model name: what both sides of a match are reduced to."""

    words: tuple[str, ...]
    numbers: tuple[str, ...]
    sizes: tuple[str, ...]
    api_version: int | None


@dataclass(frozen=True)
class ModelIdParts:
    """What a Bedrock model id says about its model.

    ``anthropic.claude-3-5-sonnet-20241022-v2:0`` -> provider ``anthropic``, family ``("claude", "sonnet")``,
    version ``("3.5",)``, date ``20241022``, api_version 2, revision ``0``. ``variant`` is the context-length
    (or other) suffix of provisioned/customisable variants such as ``:0:200k`` or ``:28k``.
    """

    model_id: str
    provider: str
    family: tuple[str, ...]
    version: tuple[str, ...]
    sizes: tuple[str, ...]
    date: str | None
    api_version: int | None
    revision: str | None
    variant: str | None

    @property
    def context_thousands(self) -> int | None:
        """The variant as a context length in thousands (``200k`` -> 200, ``1m`` -> 1000), or None."""
        return context_thousands(self.variant)


def parse_model_id(model_id: str) -> ModelIdParts:
    """Split a foundation-model id into provider, family, version, size, date, API version and variant."""
    match = _MODEL_ID.match(model_id.strip())
    base, first, second = (
        (match.group("base"), match.group("first"), match.group("second"))
        if match
        else (
            model_id,
            None,
            None,
        )
    )
    revision = first
    variant = second
    # "model:28k" has no revision, only a variant.
    if first is not None and second is None and not first.isdigit():
        revision, variant = None, first
    provider, _, name = base.partition(".")
    if not name:
        provider, name = "", base
    provider = _PROVIDER_PREFIXES.get(provider.lower(), provider.lower())
    api_version = None
    if (found := _API_VERSION.search(name)) is not None:
        api_version = int(found.group("number"))
        name = name[: found.start()]
    tokens = _tokens(name)
    date = next((token for token in tokens if _DATE.match(token)), None)
    tokens = _merge_version_parts([token for token in tokens if not _DATE.match(token)])
    tokens = _strip_provider(tokens, _alias_tokens(provider, ()))
    family = tuple(token for token in tokens if not _NUMBER.match(token) and not _SIZE.match(token))
    return ModelIdParts(
        model_id=model_id,
        provider=provider,
        family=family,
        version=tuple(token for token in tokens if _NUMBER.match(token)),
        sizes=tuple(token for token in tokens if _SIZE.match(token)),
        date=date,
        api_version=api_version,
        revision=revision,
        variant=variant,
    )


@dataclass(frozen=True)
class _Model:
    model_id: str
    provider: str
    keys: tuple[NameKey, ...]
    variant: str | None
    context_thousands: int | None
    customizations: tuple[str, ...]


@dataclass(frozen=True)
class _Candidate:
    mapping: QuotaMapping
    scope: str | None


def map_quotas(
    quotas: Sequence[Mapping[str, object]],
    models: Sequence[Mapping[str, object]],
    profiles: Sequence[Mapping[str, object]] | None = None,
    overrides: Sequence[OverrideRule] | None = None,
    *,
    include_custom: bool = False,
) -> QuotaMappings:
    """Map model endpoints to quota codes.

    ``quotas`` are ListServiceQuotas ``Quotas`` items (``QuotaCode``, ``QuotaName``), ``models`` are
    ListFoundationModels ``modelSummaries`` items (``modelId``, optional ``modelName``/``providerName``) and
    ``profiles`` are ListInferenceProfiles ``inferenceProfileSummaries`` items; the warehouse's snake_case
    column names (``quota_code``, ``model_id``, ``model_name``, ``provider``, ``profile_id``, ``model_arns``)
    are accepted too. Without ``profiles``, cross-region quotas map to the endpoint ``geo`` (every geographic
    prefix); with them, to one row per prefix whose system profile serves the model. ``overrides`` win over
    the rules. Custom model deployment quotas are mapped (endpoint ``custom``) only when ``include_custom`` is
    set.

    Returns the rows sorted by model_id, endpoint, quota_type, quota_code; ``.unresolved`` lists the per-model
    quotas that produced no row and why.
    """
    alias_index = _alias_index(models)
    model_list = _models(models)
    model_ids = {model.model_id for model in model_list}
    endpoints = _profile_endpoints(profiles, model_ids) if profiles is not None else None
    quota_names: dict[str, str] = {}

    candidates: list[_Candidate] = []
    unresolved: list[UnresolvedQuota] = []
    for quota in quotas:
        code = _text(quota, "QuotaCode", "quota_code")
        name = _text(quota, "QuotaName", "quota_name")
        if not code or not name:
            continue
        quota_names.setdefault(code, name)
        parsed = parse_quota_name(name)
        if parsed.quota_type is None or parsed.model_display is None:
            continue
        if parsed.scope == "custom-deployment" and not include_custom:
            continue
        matched, reason = _match_models(parsed, model_list, alias_index)
        if parsed.scope is None:
            unresolved.append(_unresolved(code, parsed, "no-scope", matched))
            continue
        if reason is not None:
            unresolved.append(_unresolved(code, parsed, reason, matched))
            continue
        model = matched[0]
        for endpoint, rule in _endpoint_rules(parsed, model.model_id, endpoints):
            mapping = QuotaMapping(model.model_id, endpoint, parsed.quota_type, code, name, rule)
            candidates.append(_Candidate(mapping, parsed.scope))

    rows, conflicts = _drop_conflicts(candidates, quota_names)
    unresolved.extend(conflicts)
    if overrides:
        rows = _apply_overrides(rows, overrides, model_ids, endpoints, quota_names)
        settled = {row.quota_code for row in rows.values() if row.rule == "override"}
        unresolved = [item for item in unresolved if item.quota_code not in settled]
    ordered = sorted(rows.values(), key=lambda row: (row.model_id, row.endpoint, row.quota_type, row.quota_code))
    unresolved_sorted = sorted(
        set(unresolved), key=lambda item: (item.quota_name, item.quota_code, item.reason, item.candidates)
    )
    return QuotaMappings(ordered, unresolved_sorted)


def mapping_csv(rows: Iterable[QuotaMapping]) -> str:
    """Render rows as CSV with exactly the header ``model_id,endpoint,quota_type,quota_code,quota_name``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for row in rows:
        writer.writerow((row.model_id, row.endpoint, row.quota_type, row.quota_code, row.quota_name))
    return buffer.getvalue()


def quota_key(display: str, api_version: int | None = None) -> NameKey:
    """The NameKey of a display name whose provider words were already removed."""
    return _key(_tokens(display), api_version)


# --- matching -----------------------------------------------------------------------------------------------


def _match_models(
    parsed: ParsedQuotaName, models: Sequence[_Model], alias_index: Sequence[tuple[tuple[str, ...], str]]
) -> tuple[list[_Model], str | None]:
    """Models whose name matches the quota's, and why there is not exactly one (None when there is)."""
    provider, tokens = _split_provider(_tokens(parsed.model_display or ""), alias_index)
    suffix = _fold_api_version(int(parsed.version_suffix[1:]) if parsed.version_suffix else None)
    wanted = _key(tokens, suffix)
    by_name = [
        model
        for model in models
        if (provider is None or provider == model.provider) and any(_same(wanted, key) for key in model.keys)
    ]
    if parsed.scope == "custom-deployment":
        # Custom models are trained from the base id or one of its context variants
        # (amazon.nova-lite-v1:0:300k); when several variants match, the ones ListFoundationModels marks as
        # customisable are the bases.
        matched = by_name
        customisable = [model for model in matched if model.customizations]
        if len(matched) > 1 and customisable:
            matched = customisable
    elif parsed.context_thousands is not None or parsed.context_variant is not None:
        matched = [model for model in by_name if model.context_thousands == parsed.context_thousands]
    else:
        # A plain quota name never covers a provisioned or long-context variant id (…:0:200k, …:1m).
        matched = [model for model in by_name if model.variant is None]
    if len(matched) == 1:
        return matched, None
    if len(matched) > 1:
        return matched, "ambiguous"
    if parsed.context_variant is not None and by_name:
        return by_name, "context-variant"
    return [], "no-model"


def _same(wanted: NameKey, key: NameKey) -> bool:
    # A name may leave out the size when the family has one size ("Meta Llama 4 Scout V1" is
    # meta.llama4-scout-17b-instruct-v1:0); a second size would make the match ambiguous and drop it.
    return (
        wanted.words == key.words
        and wanted.numbers == key.numbers
        and wanted.api_version == key.api_version
        and (not wanted.sizes or wanted.sizes == key.sizes)
    )


def _endpoint_rules(
    parsed: ParsedQuotaName, model_id: str, endpoints: Mapping[str, tuple[tuple[str, ...], bool]] | None
) -> list[tuple[str, str]]:
    """(endpoint, rule) pairs a matched quota applies to."""
    quota_type = parsed.quota_type
    context = ":context" if parsed.context_variant else ""
    if endpoints is None:
        geo, has_global = ("geo",), True
    else:
        geo, has_global = endpoints.get(model_id, ((), False))
    if parsed.scope == "on-demand":
        return [("base", f"name:on-demand:{quota_type}{context}")]
    if parsed.scope == "mantle":
        return [("base", f"name:mantle:{quota_type}{context}")]
    if parsed.scope == "cross-region":
        return [(prefix, f"name:cross-region:{quota_type}{context}") for prefix in geo]
    if parsed.scope == "global-cross-region":
        return [("global", f"name:global:{quota_type}{context}")] if has_global else []
    if parsed.scope == "custom-deployment":
        return [("custom", f"name:custom:{quota_type}{context}")]
    if parsed.scope == "model-invocation":
        # One per-model daily quota covers in-region and geographic cross-region calls; cross-region calls may
        # use twice the value, which the ":doubled" rule tells the headroom model.
        doubled = ":doubled" if parsed.doubled_for_cross_region else ""
        rules = [("base", f"name:on-demand:{quota_type}{context}")]
        rules += [(prefix, f"name:cross-region:{quota_type}{context}{doubled}") for prefix in geo]
        return rules
    return []


def _drop_conflicts(
    candidates: Sequence[_Candidate], quota_names: Mapping[str, str]
) -> tuple[dict[tuple[str, str, str], QuotaMapping], list[UnresolvedQuota]]:
    """One row per (model, endpoint, quota type); when two quota codes claim the same key, keep neither."""
    grouped: dict[tuple[str, str, str], list[_Candidate]] = defaultdict(list)
    for candidate in candidates:
        row = candidate.mapping
        grouped[(row.model_id, row.endpoint, row.quota_type)].append(candidate)
    rows: dict[tuple[str, str, str], QuotaMapping] = {}
    conflicts: list[UnresolvedQuota] = []
    for key, group in grouped.items():
        codes = {candidate.mapping.quota_code for candidate in group}
        if len(codes) == 1:
            rows[key] = min((candidate.mapping for candidate in group), key=lambda row: row.rule)
            continue
        for candidate in group:
            row = candidate.mapping
            conflicts.append(
                UnresolvedQuota(
                    quota_code=row.quota_code,
                    quota_name=quota_names.get(row.quota_code, row.quota_name),
                    quota_type=row.quota_type,
                    scope=candidate.scope,
                    reason="conflict",
                    candidates=(row.model_id,),
                )
            )
    return rows, conflicts


def _apply_overrides(
    rows: dict[tuple[str, str, str], QuotaMapping],
    overrides: Sequence[OverrideRule],
    model_ids: set[str],
    endpoints: Mapping[str, tuple[tuple[str, ...], bool]] | None,
    quota_names: Mapping[str, str],
) -> dict[tuple[str, str, str], QuotaMapping]:
    """Later overrides win over earlier ones, and every override wins over the name rules."""
    rows = dict(rows)
    for rule in overrides:
        if rule.model_id not in model_ids:
            continue
        if rule.endpoint == "geo":
            targets = ("geo",) if endpoints is None else endpoints.get(rule.model_id, ((), False))[0]
            # Rows already mapped to a prefix are overridden too, whatever the profiles say.
            targets = tuple(
                sorted(
                    set(targets)
                    | {
                        endpoint
                        for (model_id, endpoint, quota_type) in rows
                        if model_id == rule.model_id
                        and quota_type == rule.quota_type
                        and endpoint not in {"base", "global", "custom"}
                    }
                )
            )
        else:
            targets = (rule.endpoint,)
        for endpoint in targets:
            key = (rule.model_id, endpoint, rule.quota_type)
            rows.pop(key, None)
            # A code this region does not list has no value to compare usage with; leave the endpoint
            # unmapped.
            if rule.quota_code is not None and rule.quota_code in quota_names:
                rows[key] = QuotaMapping(
                    rule.model_id,
                    endpoint,
                    rule.quota_type,
                    rule.quota_code,
                    quota_names[rule.quota_code],
                    "override",
                )
    return rows


def _unresolved(code: str, parsed: ParsedQuotaName, reason: str, models: Sequence[_Model]) -> UnresolvedQuota:
    return UnresolvedQuota(
        quota_code=code,
        quota_name=parsed.name,
        quota_type=parsed.quota_type or "",
        scope=parsed.scope,
        reason=reason,
        candidates=tuple(sorted(model.model_id for model in models)),
    )


# --- inputs -------------------------------------------------------------------------------------------------


def _text(item: Mapping[str, object], *keys: str) -> str | None:
    for key in keys:
        value = item.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _models(models: Sequence[Mapping[str, object]]) -> list[_Model]:
    seen: dict[str, _Model] = {}
    for item in models:
        model_id = _text(item, "modelId", "model_id")
        if not model_id or model_id in seen:
            continue
        parts = parse_model_id(model_id)
        aliases = _alias_tokens(parts.provider, (_text(item, "providerName", "provider") or "",))
        keys = [
            _key(
                list(parts.family) + list(parts.version) + list(parts.sizes),
                _fold_api_version(parts.api_version),
            )
        ]
        display = _text(item, "modelName", "model_name")
        if display:
            suffix = None
            if (found := _DISPLAY_VERSION.search(display)) is not None:
                suffix = int(found.group("number"))
                display = display[: found.start()]
            keys.append(_key(_strip_provider(_tokens(display), aliases), _fold_api_version(suffix)))
        customizations = item.get("customizationsSupported") or item.get("customizations_supported") or ()
        seen[model_id] = _Model(
            model_id=model_id,
            provider=parts.provider,
            keys=tuple(dict.fromkeys(keys)),
            variant=parts.variant,
            context_thousands=parts.context_thousands,
            customizations=tuple(str(value) for value in customizations) if isinstance(customizations, list) else (),
        )
    return list(seen.values())


def _profile_endpoints(
    profiles: Sequence[Mapping[str, object]], model_ids: set[str]
) -> dict[str, tuple[tuple[str, ...], bool]]:
    """model id -> (geographic prefixes, has a global profile), from the system-defined inference profiles."""
    geo: dict[str, set[str]] = defaultdict(set)
    has_global: set[str] = set()
    for profile in profiles:
        profile_type = (_text(profile, "type", "profile_type") or "SYSTEM_DEFINED").upper()
        if profile_type != "SYSTEM_DEFINED":
            continue
        profile_id = _text(profile, "inferenceProfileId", "profile_id")
        if not profile_id or "." not in profile_id:
            continue
        prefix, rest = profile_id.split(".", 1)
        prefix = prefix.lower()
        if "." not in rest or not _GEO_PREFIX.match(prefix):
            continue
        model_id = rest if rest in model_ids else _model_from_arns(profile)
        if model_id is None:
            continue
        if prefix == "global":
            has_global.add(model_id)
        else:
            geo[model_id].add(prefix)
    return {
        model_id: (tuple(sorted(geo.get(model_id, ()))), model_id in has_global) for model_id in set(geo) | has_global
    }


def _model_from_arns(profile: Mapping[str, object]) -> str | None:
    arns: list[str] = []
    listed = profile.get("models")
    if isinstance(listed, list):
        arns = [str(item.get("modelArn", "")) for item in listed if isinstance(item, Mapping)]
    elif isinstance(profile.get("model_arns"), list):
        arns = [str(arn) for arn in profile["model_arns"]]  # type: ignore[union-attr]
    ids = {arn.rsplit("foundation-model/", 1)[1] for arn in arns if "foundation-model/" in arn}
    return ids.pop() if len(ids) == 1 else None


# --- tokens -------------------------------------------------------------------------------------------------


def _tokens(text: str) -> list[str]:
    """Lower-case words, numbers and sizes of a display name or id part, with letter+digit runs split."""
    tokens: list[str] = []
    for raw in re.split(r"[\s\-_/,:()\[\]]+", text.lower()):
        raw = raw.strip(".")
        if not raw:
            continue
        if _NUMBER.match(raw) or _SIZE.match(raw):
            tokens.append(raw)
            continue
        # "llama3", "qwen3", "m2.5", "x4": the family word and its number are written together in ids and
        # names.
        if (found := re.fullmatch(r"([a-z]+)(\d+(?:\.\d+)*)", raw)) is not None:
            tokens.extend((found.group(1), found.group(2)))
            continue
        if "." in raw:
            # "stability.ai", "z.ai"
            tokens.extend(_tokens(raw.replace(".", " ")))
            continue
        tokens.append(raw)
    return tokens


def _merge_version_parts(tokens: Sequence[str]) -> list[str]:
    """Ids write "3.5" as "3-5": join runs of short integers back into one dotted version."""
    merged: list[str] = []
    run: list[str] = []
    for token in [*tokens, ""]:
        if token.isdigit() and len(token) <= 2:
            run.append(token)
            continue
        if run:
            merged.append(".".join(run))
            run = []
        if token:
            merged.append(token)
    return merged


def _normalise_number(token: str) -> str:
    # "3.0" == "3", and "25.02" (Pixtral Large 25.02) == "2502" (mistral.pixtral-large-2502-v1:0).
    parts = token.split(".")
    while len(parts) > 1 and int(parts[-1]) == 0:
        parts.pop()
    return "".join(parts)


def _key(tokens: Sequence[str], api_version: int | None) -> NameKey:
    words: list[str] = []
    numbers: list[str] = []
    sizes: list[str] = []
    for token in tokens:
        if _DATE.match(token):
            continue
        if _NUMBER.match(token):
            numbers.append(_normalise_number(token))
        elif _SIZE.match(token):
            sizes.append(token)
        elif token not in _FILLER_WORDS:
            words.append(_SYNONYMS.get(token, token))
    return NameKey(tuple(sorted(words)), tuple(sorted(numbers)), tuple(sorted(sizes)), api_version)


def _fold_api_version(number: int | None) -> int | None:
    # "V1", "-v1:0", "-v0:2" and no suffix at all all name the first API version.
    return None if number is None or number <= 1 else number


def _alias_tokens(provider: str, extra: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    names = [*PROVIDER_ALIASES.get(provider, ()), *extra, provider]
    aliases = {tuple(_tokens(name)) for name in names if name}
    return tuple(sorted((alias for alias in aliases if alias), key=lambda alias: (-len(alias), alias)))


def _alias_index(models: Sequence[Mapping[str, object]]) -> list[tuple[tuple[str, ...], str]]:
    """Each provider alias (as tokens) and its provider, longest first: "mistral ai" before "mistral"."""
    index: dict[tuple[str, ...], str] = {}
    for provider in PROVIDER_ALIASES:
        for alias in _alias_tokens(provider, ()):
            index.setdefault(alias, provider)
    for item in models:
        model_id = _text(item, "modelId", "model_id") or ""
        provider = parse_model_id(model_id).provider if model_id else ""
        if not provider:
            continue
        for alias in _alias_tokens(provider, (_text(item, "providerName", "provider") or "",)):
            index.setdefault(alias, provider)
    return sorted(index.items(), key=lambda entry: (-len(entry[0]), entry[0]))


def _split_provider(
    tokens: Sequence[str], alias_index: Sequence[tuple[tuple[str, ...], str]]
) -> tuple[str | None, list[str]]:
    """Remove leading provider words ("Mistral AI Mistral 7B Instruct" -> mistral, [7b, instruct])."""
    provider: str | None = None
    rest = list(tokens)
    changed = True
    while changed:
        changed = False
        for alias, key in alias_index:
            size = len(alias)
            if len(rest) > size and tuple(rest[:size]) == alias and provider in (None, key):
                provider, rest, changed = key, rest[size:], True
                break
    return provider, rest


def _strip_provider(tokens: Sequence[str], aliases: Sequence[tuple[str, ...]]) -> list[str]:
    rest = list(tokens)
    changed = True
    while changed:
        changed = False
        for alias in aliases:
            if len(rest) > len(alias) and tuple(rest[: len(alias)]) == alias:
                rest, changed = rest[len(alias) :], True
                break
    return rest

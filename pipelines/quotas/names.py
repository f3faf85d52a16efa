"""Parse Amazon Bedrock Service Quotas names into what they limit, where, and for which model.

ListServiceQuotas gives no structured fields for any of this: the scope (on-demand, cross-region, global
cross-region, custom model deployment), the unit and the model only exist inside the English quota name, e.g.

    Cross-region model inference tokens per minute for Anthropic Claude Sonnet 4.5 V1 1M Context Length
    Model invocation max tokens per day for Amazon Nova Lite (doubled for cross-region calls)

AWS writes these names inconsistently ("Cross-region" / "Cross-Region", "model inference" / "InvokeModel"), so
the grammar below is case-insensitive and accepts hyphen or space between words. A name that does not fit the
grammar (batch inference, Knowledge Bases, provisioned model units, ...) parses with ``quota_type=None``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

QuotaType = Literal["tpm", "rpm", "tpd", "concurrent", "input_tpm", "output_tpm"]
QUOTA_TYPES: tuple[str, ...] = ("tpm", "rpm", "tpd", "concurrent", "input_tpm", "output_tpm")

Scope = Literal[
    "on-demand",
    "cross-region",
    "global-cross-region",
    "custom-deployment",
    "model-invocation",
    "mantle",
]
# "model-invocation" is the per-model tokens-per-day quota ("Model invocation max tokens per day for X"): one
# quota that covers both in-region (on-demand) and geographic cross-region calls, the latter counted at twice
# the value. "mantle" is the bedrock-mantle endpoint, whose quotas count input and output tokens separately.


@dataclass(frozen=True)
class ParsedQuotaName:
    """What one quota name says.

    ``model_display`` is the model as the quota name spells it, without the version suffix, the context-length
    variant or the "(doubled ...)" note. ``scope`` is None when the name carries no scope ("InvokeModel
    requests per minute for X"); ``quota_type`` is None for quotas that are not per-model inference limits.
    """

    name: str
    scope: Scope | None
    quota_type: QuotaType | None
    model_display: str | None
    context_variant: str | None = None
    version_suffix: str | None = None
    doubled_for_cross_region: bool = False

    @property
    def context_thousands(self) -> int | None:
        """The context-length variant in thousands of tokens ("1M Context Length" -> 1000), or None."""
        return context_thousands(self.context_variant)


_SEP = r"[\s\-]*"
# Order matters: "global cross-region" before "cross-region", the custom-deployment phrase before "on demand".
_SCOPES: tuple[tuple[str, Scope], ...] = (
    (
        rf"\(model{_SEP}customi[sz]ation\)\s*sum\s+of\s+on{_SEP}demand\s+custom\s+model\s+deployment",
        "custom-deployment",
    ),
    (rf"global\s+cross{_SEP}regions?", "global-cross-region"),
    (rf"cross{_SEP}regions?", "cross-region"),
    (rf"on{_SEP}demand", "on-demand"),
    (r"model\s+invocation\s+max(?:imum)?", "model-invocation"),
    (r"bedrock\s+mantle", "mantle"),
)
# The API words between scope and unit; all mean the same synchronous inference path.
_API = r"(?:model\s+inference|invoke\s*model|inference)"
_UNITS: tuple[tuple[str, QuotaType | None], ...] = (
    (r"input\s+tokens\s+per\s+minute", "input_tpm"),
    (r"output\s+tokens\s+per\s+minute", "output_tpm"),
    (r"tokens\s+per\s+minute", "tpm"),
    (r"requests\s+per\s+minute", "rpm"),
    (r"tokens\s+per\s+day", "tpd"),
    # StartAsyncInvoke jobs have their own concurrency quota; it does not limit the synchronous endpoint, and
    # keeping it out leaves one "concurrent" quota per model endpoint.
    (r"async\s+concurrent\s+requests", None),
    (r"concurrent\s+requests", "concurrent"),
)

_SCOPE_GROUP = "|".join(f"(?P<s{index}>{pattern})" for index, (pattern, _) in enumerate(_SCOPES))
_UNIT_GROUP = "|".join(f"(?P<u{index}>{pattern})" for index, (pattern, _) in enumerate(_UNITS))
_NAME = re.compile(
    rf"^(?:(?:{_SCOPE_GROUP})\s+(?P<api1>{_API}\s+)?|(?P<api2>{_API})\s+)"
    rf"(?:{_UNIT_GROUP})\s+for\s+(?P<model>\S.*)$",
    re.IGNORECASE,
)
_DOUBLED = re.compile(r"\s*\(\s*doubled\s+for\s+cross[\s\-]*region\s+calls?\s*\)\s*$", re.IGNORECASE)
_CONTEXT = re.compile(
    r"\s*\(?\s*(?P<variant>\d+(?:\.\d+)?\s*[km]\s+context(?:\s+(?:length|window))?)\s*\)?\s*$", re.IGNORECASE
)
_VERSION_SUFFIX = re.compile(r"\s+v(?P<number>\d+)\s*$", re.IGNORECASE)


def parse_quota_name(name: str) -> ParsedQuotaName:
    """Parse one ListServiceQuotas ``QuotaName``.

    >>> parsed = parse_quota_name(
    ...     "Cross-Region model inference tokens per minute for Anthropic Claude 3.5 Sonnet V2"
    ... )
    >>> parsed.scope, parsed.quota_type, parsed.model_display, parsed.version_suffix
    ('cross-region', 'tpm', 'Anthropic Claude 3.5 Sonnet', 'V2')
    """
    text = " ".join(name.split())
    match = _NAME.match(text)
    if match is None:
        return ParsedQuotaName(name=name, scope=None, quota_type=None, model_display=None)
    scope = next((scope for index, (_, scope) in enumerate(_SCOPES) if match.group(f"s{index}")), None)
    quota_type = next((unit for index, (_, unit) in enumerate(_UNITS) if match.group(f"u{index}") is not None), None)
    if quota_type is None:
        return ParsedQuotaName(name=name, scope=scope, quota_type=None, model_display=None)
    if scope is None and match.group("api2") is None:
        return ParsedQuotaName(name=name, scope=None, quota_type=None, model_display=None)

    model = match.group("model").strip()
    doubled = False
    context_variant = None
    version_suffix = None
    # The notes can come in either order ("... V1 1M Context Length (doubled ...)"); peel them off the end
    # until nothing changes.
    while True:
        before = model
        if (found := _DOUBLED.search(model)) is not None:
            doubled = True
            model = model[: found.start()].rstrip()
        if context_variant is None and (found := _CONTEXT.search(model)) is not None:
            context_variant = " ".join(found.group("variant").split())
            model = model[: found.start()].rstrip()
        if version_suffix is None and (found := _VERSION_SUFFIX.search(model)) is not None:
            version_suffix = f"V{int(found.group('number'))}"
            model = model[: found.start()].rstrip()
        if model == before:
            break
    if not model:
        return ParsedQuotaName(name=name, scope=scope, quota_type=None, model_display=None)
    return ParsedQuotaName(
        name=name,
        scope=scope,
        quota_type=quota_type,
        model_display=model,
        context_variant=context_variant,
        version_suffix=version_suffix,
        doubled_for_cross_region=doubled,
    )


_THOUSANDS = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[km])\b", re.IGNORECASE)


def context_thousands(variant: str | None) -> int | None:
    """Context length in thousands of tokens ("1M Context Length" -> 1000, "200K" -> 200), or None."""
    if not variant:
        return None
    match = _THOUSANDS.match(variant)
    if match is None:
        return None
    value = float(match.group("number")) * (1000 if match.group("unit").lower() == "m" else 1)
    return round(value)

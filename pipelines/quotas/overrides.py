"""User overrides for the model -> quota mapping: ``quota-overrides.yaml`` in the buw data directory.

The file is a YAML list; each entry pins or suppresses one quota type of one model endpoint:

    - model_id: anthropic.claude-sonnet-4-5-20250929-v1:0
      endpoint: us            # base, global, geo (all geographic prefixes), custom, or us, eu, apac, ...
      quota_type: tpm         # tpm, rpm, tpd, concurrent, input_tpm, output_tpm
      quota_code: L-F4DDD3EB
    - model_id: amazon.nova-lite-v1:0
      endpoint: base
      quota_type: tpd
      none: true              # this endpoint has no such quota: drop whatever the rules found
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipelines.quotas.names import QUOTA_TYPES
from pipelines.settings import data_dir as data_dir

OVERRIDES_FILE = "quota-overrides.yaml"
_FIELDS = ("model_id", "endpoint", "quota_type", "quota_code", "none")
_ENDPOINT = re.compile(r"^[a-z]{2,6}(?:-[a-z]{2,6})?$")
_QUOTA_CODE = re.compile(r"^L-[0-9A-F]{8}$")


class OverrideError(ValueError):
    """The overrides file cannot be used; the message names the file, the entry and the field."""


@dataclass(frozen=True)
class OverrideRule:
    """Pin ``quota_code`` to (model_id, endpoint, quota_type), or suppress it when ``quota_code`` is None."""

    model_id: str
    endpoint: str
    quota_type: str
    quota_code: str | None


def overrides_path(env: Mapping[str, str] | None = None) -> Path:
    """Where ``quota-overrides.yaml`` lives for this environment."""
    return data_dir(env) / OVERRIDES_FILE


def load_overrides(path: Path | None = None, env: Mapping[str, str] | None = None) -> list[OverrideRule]:
    """Read and validate the overrides file; a missing file means no overrides.

    ``path`` defaults to ``quota-overrides.yaml`` in :func:`data_dir`. Raises OverrideError with one sentence
    that names the file, the entry and the field when the file is not usable.
    """
    path = overrides_path(env) if path is None else path
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as error:
        raise OverrideError(f"Cannot read the quota overrides file {path}: {error.strerror or error}.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise OverrideError(f"The quota overrides file {path} is not valid YAML{where}; fix it or delete it.") from None
    return parse_overrides(data, source=str(path))


def parse_overrides(data: object, source: str = OVERRIDES_FILE) -> list[OverrideRule]:
    """Validate already-parsed YAML (a list of mappings) into OverrideRules, in file order."""
    if data is None:
        return []
    if not isinstance(data, list):
        raise OverrideError(
            f"{source} must be a YAML list of entries with model_id, endpoint, quota_type and quota_code "
            f"(or none: true); found a {type(data).__name__}."
        )
    rules: list[OverrideRule] = []
    for position, entry in enumerate(data, start=1):
        where = f"{source} entry {position}"
        if not isinstance(entry, dict):
            raise OverrideError(f"{where} must be a mapping with model_id, endpoint, quota_type and quota_code.")
        unknown = sorted(str(key) for key in entry if key not in _FIELDS)
        if unknown:
            raise OverrideError(f"{where} has an unknown field {unknown[0]!r}; the fields are {', '.join(_FIELDS)}.")
        model_id = _required_text(entry, "model_id", where)
        endpoint = _required_text(entry, "endpoint", where)
        if not _ENDPOINT.match(endpoint):
            raise OverrideError(
                f"{where}: field 'endpoint' must be base, global, geo, custom or a cross-region prefix "
                f"such as us or eu; got {endpoint!r}."
            )
        quota_type = _required_text(entry, "quota_type", where)
        if quota_type not in QUOTA_TYPES:
            raise OverrideError(
                f"{where}: field 'quota_type' must be one of {', '.join(QUOTA_TYPES)}; got {quota_type!r}."
            )
        suppress = entry.get("none", False)
        if not isinstance(suppress, bool):
            raise OverrideError(f"{where}: field 'none' must be true or false; got {suppress!r}.")
        if suppress:
            if entry.get("quota_code") is not None:
                raise OverrideError(f"{where}: give either field 'quota_code' or 'none: true', not both.")
            rules.append(OverrideRule(model_id, endpoint, quota_type, None))
            continue
        if "quota_code" not in entry:
            raise OverrideError(
                f"{where}: field 'quota_code' is missing; give the code (e.g. L-F4DDD3EB) or 'none: true'."
            )
        quota_code = _required_text(entry, "quota_code", where)
        if not _QUOTA_CODE.match(quota_code):
            raise OverrideError(
                f"{where}: field 'quota_code' must look like L-F4DDD3EB (as ListServiceQuotas writes it); "
                f"got {quota_code!r}."
            )
        rules.append(OverrideRule(model_id, endpoint, quota_type, quota_code))
    return rules


def _required_text(entry: Mapping[object, object], field: str, where: str) -> str:
    value = entry.get(field)
    if value is None:
        raise OverrideError(f"{where}: field {field!r} is missing.")
    if not isinstance(value, str) or not value.strip():
        raise OverrideError(f"{where}: field {field!r} must be a non-empty string; got {value!r}.")
    return value.strip()

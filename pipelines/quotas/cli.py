"""``buw quotas match``: run the quota mapper on AWS listings saved as JSON and print the mapping as CSV.

Anyone can check the mapper against their own account:

    aws service-quotas list-service-quotas --service-code bedrock > q.json
    aws bedrock list-foundation-models > m.json
    aws bedrock list-inference-profiles > p.json
    buw quotas match --quotas q.json --models m.json --profiles p.json
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from pipelines.quotas.mapper import map_quotas, mapping_csv
from pipelines.quotas.overrides import OverrideError, load_overrides


class QuotaInputError(ValueError):
    """An input file of ``buw quotas match`` is unusable; the message is one sentence that says what to do."""


_INPUTS = {
    "quotas": (
        "Quotas",
        ("QuotaCode", "QuotaName"),
        "aws service-quotas list-service-quotas --service-code bedrock",
    ),
    "models": ("modelSummaries", ("modelId",), "aws bedrock list-foundation-models"),
    "profiles": ("inferenceProfileSummaries", ("inferenceProfileId",), "aws bedrock list-inference-profiles"),
}


def read_listing(path: str | Path, kind: str) -> list[dict[str, object]]:
    """Read one saved AWS listing (the response JSON or its bare list); ``kind``: quotas, models or profiles.

    Raises QuotaInputError naming the file, what is wrong with it and the command that produces a good one.
    """
    key, required, command = _INPUTS[kind]
    path = Path(path)
    hint = f"save the output of `{command}` and pass that file"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise QuotaInputError(f"The {kind} file {path} does not exist; {hint}.") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise QuotaInputError(f"Cannot read the {kind} file {path} ({reason}); {hint}.") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise QuotaInputError(
            f"The {kind} file {path} is not valid JSON ({error.msg} at line {error.lineno}, "
            f"column {error.colno}); {hint}."
        ) from None
    if isinstance(data, dict):
        if key not in data:
            found = ", ".join(sorted(map(str, data))[:5]) or "nothing"
            raise QuotaInputError(
                f"The {kind} file {path} has no {key!r} list (it has {found}); {hint}, or a bare JSON list "
                f"of its {key} items."
            )
        data = data[key]
    if not isinstance(data, list):
        raise QuotaInputError(
            f"The {kind} file {path} must hold a {key!r} list, but it holds a {type(data).__name__}; {hint}."
        )
    for position, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            raise QuotaInputError(
                f"Item {position} of the {kind} file {path} is a {type(item).__name__}, not an object; {hint}."
            )
        for field in required:
            value = item.get(field)
            if not isinstance(value, str) or not value.strip():
                raise QuotaInputError(f"Item {position} of the {kind} file {path} has no {field!r}; {hint}.")
    return data


def match_command(
    quotas_path: str | Path,
    models_path: str | Path,
    profiles_path: str | Path | None = None,
    out: TextIO | None = None,
    *,
    env: Mapping[str, str] | None = None,
    err: TextIO | None = None,
    include_custom: bool = False,
) -> int:
    """Map the saved listings and write the CSV (see ``CSV_HEADER``) to ``out``.

    Applies ``quota-overrides.yaml`` from the data directory (``BUW_DATA_DIR``, read from ``env`` or the
    process environment). Writes one line per quota left unresolved to ``err`` (stderr by default), so the CSV
    stays clean. Returns 0; bad inputs raise QuotaInputError.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    quotas = read_listing(quotas_path, "quotas")
    models = read_listing(models_path, "models")
    profiles = read_listing(profiles_path, "profiles") if profiles_path is not None else None
    try:
        overrides = load_overrides(env=env)
    except OverrideError as error:
        raise QuotaInputError(str(error)) from None
    rows = map_quotas(quotas, models, profiles, overrides, include_custom=include_custom)
    out.write(mapping_csv(rows))
    if rows.unresolved:
        err.write(f"{len(rows.unresolved)} per-model quotas were left unmapped:\n")
        for item in rows.unresolved:
            candidates = f" [{', '.join(item.candidates)}]" if item.candidates else ""
            err.write(f"  {item.quota_code} {item.reason}: {item.quota_name}{candidates}\n")
    return 0

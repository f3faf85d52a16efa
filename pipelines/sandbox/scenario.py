"""Scenario files: the simulated AWS account the sandbox serves.

A scenario is a YAML file (schema in docs/sandbox.md, "Scenario files") that names an account, its regions,
the foundation models with their system inference profiles, the Service Quotas, the application inference
profiles (with tags) and the traffic each CloudWatch series carries. ``load_scenario`` validates it and
resolves everything the simulated APIs need: ARNs, model ARN sets, the endpoint each profile belongs to and
the quotas the simulated Bedrock enforces per endpoint. Validation errors name the offending field, e.g.
``scenario demo.yaml: application_profiles[3].tags.team: expected a string``.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

ENDPOINT_KINDS = ("base", "geo", "global")
QUOTA_TYPES = ("tpm", "rpm", "tpd")
TRAFFIC_SHAPES = ("business", "flat", "nightly", "evening")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Geographic cross-region prefixes AWS uses for system inference profiles.
GEO_PREFIXES = ("us", "eu", "apac", "jp", "au", "ca", "us-gov", "in")
INFERENCE_TYPES = ("ON_DEMAND", "INFERENCE_PROFILE", "PROVISIONED")
MODALITIES = ("TEXT", "IMAGE", "EMBEDDING", "VIDEO", "SPEECH")
CUSTOMIZATIONS = ("FINE_TUNING", "CONTINUED_PRE_TRAINING", "DISTILLATION")

_REGION_RE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_ACCOUNT_RE = re.compile(r"^\d{12}$")
_QUOTA_CODE_RE = re.compile(r"^L-[0-9A-F]{8}$")
_PROFILE_ID_RE = re.compile(r"^[a-z0-9]{12}$")
_MODEL_ID_RE = re.compile(r"^[a-z0-9-]+\.[A-Za-z0-9._:-]+$")
# The inferenceProfileName pattern from the Bedrock API model.
_PROFILE_NAME_RE = re.compile(r"^([0-9a-zA-Z:.][ _-]?)+$")
# IAM role/user names and STS session names as IAM documents them; Bedrock's requestMetadata characters
# (spaces but no other whitespace). All ASCII without quotes, so a record's JSON strings need no escaping.
_PRINCIPAL_NAME_RE = re.compile(r"^[A-Za-z0-9_+=,.@-]+$")
_SESSION_NAME_RE = re.compile(r"^[A-Za-z0-9_+=,.@-]{2,64}$")
_METADATA_RE = re.compile(r"^[a-zA-Z0-9 :_@$#=/+,.-]+$")
_LOG_GROUP_RE = re.compile(r"^[.\-_/#A-Za-z0-9]+$")
_BUCKET_RE = re.compile(r"^[a-z0-9{][a-z0-9.{}-]+[a-z0-9}]$")
_HHMM_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
# Tag limits as the Bedrock TagResource API documents them.
_TAG_KEY_MAX = 128
_TAG_VALUE_MAX = 256
_MAX_HISTORY_DAYS = 455  # CloudWatch keeps 1-hour data that long; older sandbox history would be unreachable.

BUNDLED_SCENARIOS = "scenarios"


class ScenarioError(ValueError):
    """A scenario file is missing, unreadable or invalid; the message names the file and the field."""


@dataclass(frozen=True)
class FoundationModel:
    """One foundation model as ListFoundationModels reports it in one region."""

    model_id: str
    model_name: str
    provider_name: str
    region: str
    input_modalities: tuple[str, ...]
    output_modalities: tuple[str, ...]
    inference_types: tuple[str, ...]
    response_streaming: bool
    lifecycle_status: str = "ACTIVE"
    customizations_supported: tuple[str, ...] = ()

    @property
    def arn(self) -> str:
        """The model's ARN in its own region (foundation-model ARNs carry no account)."""
        return self.model_arn(self.region)

    def model_arn(self, region: str) -> str:
        """The foundation-model ARN of this model in ``region``; ``""`` gives the global, region-less ARN."""
        return foundation_model_arn(region, self.model_id)


@dataclass(frozen=True)
class InferenceProfile:
    """A SYSTEM (cross-region) or APPLICATION inference profile in one region."""

    profile_id: str
    name: str
    description: str
    type: str  # "SYSTEM" | "APPLICATION"; the Bedrock API spells SYSTEM as SYSTEM_DEFINED (see api_type)
    region: str
    arn: str
    model_arns: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    endpoint_id: str  # the system profile id or base model id this profile belongs to / was copied from
    status: str = "ACTIVE"
    tags: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def api_type(self) -> str:
        """The profile type as the Bedrock API returns it (SYSTEM_DEFINED or APPLICATION)."""
        return "SYSTEM_DEFINED" if self.type == "SYSTEM" else self.type


@dataclass(frozen=True)
class Quota:
    """One Service Quotas entry for the bedrock service in one region."""

    region: str
    quota_code: str
    quota_name: str
    default_value: float
    applied_value: float | None
    adjustable: bool
    global_quota: bool
    arn: str
    service_code: str = "bedrock"
    unit: str = "None"

    @property
    def value(self) -> float:
        """The value in force: the applied value where one is set, else AWS's default."""
        return self.default_value if self.applied_value is None else self.applied_value


@dataclass(frozen=True)
class Endpoint:
    """What a quota applies to: a base model, or a geographic (``us.``) or global (``global.``) profile."""

    region: str
    endpoint_id: str
    kind: str  # "base" | "geo" | "global"
    base_model_id: str
    tpm_quota_code: str | None
    rpm_quota_code: str | None
    tpd_quota_code: str | None


@dataclass(frozen=True)
class Burst:
    """Extra demand at fixed UTC times, e.g. weekdays 14:00 for 25 minutes."""

    days: tuple[int, ...]  # UTC weekdays, Monday = 0
    start_minute: int  # UTC minute of the day
    minutes: int
    requests_per_minute: float


PRINCIPAL_KINDS = ("role", "user", "federated-user")
CALLER_APIS = ("converse", "invoke")


@dataclass(frozen=True)
class Principal:
    """An IAM principal that calls Bedrock: a role (called through sessions), a user or a federated user."""

    kind: str  # "role" | "user" | "federated-user"
    name: str
    sessions: tuple[str, ...] = ()  # roles only: the session names its callers assume it with
    tags: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def key(self) -> str:
        """How callers name it in the scenario: ``role/<name>``, ``user/<name>``, ``federated-user/<name>``."""
        return f"{self.kind}/{self.name}"

    def caller_arns(self, account_id: str) -> tuple[str, ...]:
        """The ``identity.arn`` values its calls are logged under (one per session for a role)."""
        if self.kind == "role":
            return tuple(f"arn:aws:sts::{account_id}:assumed-role/{self.name}/{s}" for s in self.sessions)
        if self.kind == "user":
            return (f"arn:aws:iam::{account_id}:user/{self.name}",)
        return (f"arn:aws:sts::{account_id}:federated-user/{self.name}",)


@dataclass(frozen=True)
class Caller:
    """One principal's share of a series' requests, as its invocation log records show it."""

    principal: str  # a Principal key, e.g. "role/support-assistant-app"
    weight: float = 1.0
    api: str = "converse"  # Converse/ConverseStream or InvokeModel/InvokeModelWithResponseStream
    model_id_as: str = "id"  # direct traffic: how the caller names the endpoint ("id" or "arn")
    request_metadata: tuple[tuple[str, tuple[str, ...]], ...] = ()  # key -> values, one drawn per request


@dataclass(frozen=True)
class InvocationLogging:
    """Model invocation logging of the account: where records go, and since when."""

    log_group: str
    role_arn: str
    # May hold "{region}": one bucket per region, as Bedrock needs a same-region destination. Empty: no S3
    # delivery, the records go to CloudWatch Logs only.
    s3_bucket: str
    s3_key_prefix: str
    started: datetime | int  # an instant, or a day relative to the traffic anchor (-10 = ten days before it)
    retention_days: int | None
    regions: tuple[str, ...]

    def bucket(self, region: str) -> str:
        """The log bucket of ``region``."""
        return self.s3_bucket.replace("{region}", region)


@dataclass(frozen=True)
class TrafficSpec:
    """The demand of one CloudWatch series (an application profile, or direct use of an endpoint).

    ``requests_per_minute`` is the mean weekday peak at the anchor day; everything else shapes it.
    ``start_day``/``end_day`` are days relative to the anchor (negative = before it); None = unbounded.
    """

    region: str
    model_id: str  # the CloudWatch ModelId dimension value
    endpoint_id: str
    base_model_id: str
    requests_per_minute: float
    shape: str = "business"
    utc_offset_hours: float = 0.0
    night_factor: float = 0.05
    weekend_factor: float = 0.35
    growth_per_day: float = 0.0
    input_tokens: float = 1000.0
    output_tokens: float = 200.0
    cache_read_tokens: float = 0.0
    cache_write_tokens: float = 0.0
    token_spread: float = 0.5
    streaming_share: float = 0.5
    client_error_rate: float = 0.002
    server_error_rate: float = 0.0005
    start_day: int | None = None
    end_day: int | None = None
    bursts: tuple[Burst, ...] = ()
    callers: tuple[Caller, ...] = ()

    @property
    def uses_prompt_cache(self) -> bool:
        """Whether the series publishes CacheRead/CacheWriteInputTokenCount datapoints."""
        return self.cache_read_tokens > 0 or self.cache_write_tokens > 0


@dataclass(frozen=True)
class Latency:
    """Per-model latency: a fixed part, a part per output token, and time to first token when streaming."""

    base_ms: float = 600.0
    per_output_token_ms: float = 10.0
    ttft_ms: float = 400.0


@dataclass(frozen=True)
class Scenario:
    """A whole simulated account, resolved and validated; every mapping is keyed by region."""

    name: str
    account_id: str
    regions: tuple[str, ...]
    history_days: int
    foundation_models: dict[str, tuple[FoundationModel, ...]]
    profiles: dict[str, tuple[InferenceProfile, ...]]
    quotas: dict[str, tuple[Quota, ...]]
    endpoints: dict[str, tuple[Endpoint, ...]]
    burndown: dict[str, float]
    traffic: dict[str, tuple[TrafficSpec, ...]] = field(default_factory=dict)
    latency: dict[str, Latency] = field(default_factory=dict)
    description: str = ""
    source: str = ""
    invocation_logging: InvocationLogging | None = None
    principals: dict[str, Principal] = field(default_factory=dict)

    def profile(self, region: str, profile_id: str) -> InferenceProfile | None:
        """The profile with this id (or ARN) in ``region``, or None."""
        for profile in self.profiles.get(region, ()):
            if profile_id in (profile.profile_id, profile.arn):
                return profile
        return None

    def application_profiles(self, region: str) -> tuple[InferenceProfile, ...]:
        """The APPLICATION profiles of ``region`` in file order."""
        return tuple(p for p in self.profiles.get(region, ()) if p.type == "APPLICATION")

    def endpoint(self, region: str, endpoint_id: str) -> Endpoint | None:
        """The endpoint with this id in ``region``, or None."""
        for endpoint in self.endpoints.get(region, ()):
            if endpoint.endpoint_id == endpoint_id:
                return endpoint
        return None

    def quota(self, region: str, quota_code: str) -> Quota | None:
        """The quota with this code in ``region``, or None."""
        for quota in self.quotas.get(region, ()):
            if quota.quota_code == quota_code:
                return quota
        return None

    def quota_value(self, region: str, quota_code: str | None) -> float | None:
        """The value in force for a quota code (applied, else default), or None if there is no such quota."""
        if quota_code is None:
            return None
        quota = self.quota(region, quota_code)
        return None if quota is None else quota.value


def foundation_model_arn(region: str, model_id: str) -> str:
    """``arn:aws:bedrock:<region>::foundation-model/<model_id>``; an empty region gives the global ARN."""
    return f"arn:aws:bedrock:{region}::foundation-model/{model_id}"


def application_profile_id(account_id: str, region: str, name: str) -> str:
    """A stable 12-character lowercase alphanumeric id for an application profile without an explicit id."""
    digest = int.from_bytes(hashlib.blake2b(f"{account_id}|{region}|{name}".encode(), digest_size=10).digest())
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    chars = []
    for _ in range(12):
        digest, rem = divmod(digest, 36)
        chars.append(alphabet[rem])
    return "".join(chars)


def load_scenario(name_or_path: str | os.PathLike) -> Scenario:
    """Load and validate a scenario: a bundled name (``"demo"``, ``"tiny"``) or a path to a YAML file."""
    path, text = _read_source(name_or_path)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ScenarioError(f"scenario {path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return _Builder(path).build(document)


def bundled_scenarios() -> tuple[str, ...]:
    """Names of the scenarios shipped inside the package."""
    folder = resources.files(__package__).joinpath(BUNDLED_SCENARIOS)
    return tuple(sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml")))


def _read_source(name_or_path: str | os.PathLike) -> tuple[str, str]:
    raw = os.fspath(name_or_path)
    candidate = Path(raw)
    is_bare_name = os.sep not in raw and "/" not in raw and not raw.endswith((".yaml", ".yml"))
    if is_bare_name and not candidate.exists():
        resource = resources.files(__package__).joinpath(BUNDLED_SCENARIOS, f"{raw}.yaml")
        if not resource.is_file():
            known = ", ".join(bundled_scenarios())
            raise ScenarioError(
                f"scenario {raw}: no bundled scenario of that name (bundled: {known}); pass a path to a YAML file"
            )
        return f"{raw}.yaml", resource.read_text(encoding="utf-8")
    try:
        return candidate.name, candidate.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"scenario {raw}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"scenario {raw}: cannot read the file: {exc}") from None


class _Builder:
    """Validates the YAML document field by field and resolves it into a Scenario."""

    def __init__(self, source: str) -> None:
        self.source = source

    # -- primitive checks ---------------------------------------------------------------------------------

    def fail(self, path: str, message: str) -> ScenarioError:
        return ScenarioError(f"scenario {self.source}: {path}: {message}")

    def mapping(self, value: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a mapping, got {_kind(value)}")
        for key in value:
            if not isinstance(key, str):
                raise self.fail(path, f"keys must be strings, got {key!r}")
            if key not in required and key not in optional:
                allowed = ", ".join((*required, *optional))
                raise self.fail(_join(path, key), f"unknown field (allowed: {allowed})")
        for key in required:
            if key not in value:
                raise self.fail(_join(path, key), "required field is missing")
        return dict(value)

    def string(self, value: Any, path: str, pattern: re.Pattern | None = None, max_len: int | None = None) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {_kind(value)}")
        if not value.strip():
            raise self.fail(path, "must not be empty")
        if max_len is not None and len(value) > max_len:
            raise self.fail(path, f"longer than {max_len} characters")
        if pattern is not None and not pattern.match(value):
            raise self.fail(path, f"{value!r} does not match {pattern.pattern}")
        return value

    def number(self, value: Any, path: str, lo: float | None = None, hi: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(path, f"expected a number, got {_kind(value)}")
        if lo is not None and value < lo:
            raise self.fail(path, f"must be >= {lo:g}, got {value:g}")
        if hi is not None and value > hi:
            raise self.fail(path, f"must be <= {hi:g}, got {value:g}")
        return float(value)

    def integer(self, value: Any, path: str, lo: int | None = None, hi: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected an integer, got {_kind(value)}")
        if lo is not None and value < lo:
            raise self.fail(path, f"must be >= {lo}, got {value}")
        if hi is not None and value > hi:
            raise self.fail(path, f"must be <= {hi}, got {value}")
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {_kind(value)}")
        return value

    def sequence(self, value: Any, path: str, non_empty: bool = False) -> list:
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list, got {_kind(value)}")
        if non_empty and not value:
            raise self.fail(path, "must not be empty")
        return value

    def choices(self, value: Any, path: str, allowed: tuple[str, ...], non_empty: bool = True) -> tuple[str, ...]:
        items = self.sequence(value, path, non_empty=non_empty)
        out = []
        for i, item in enumerate(items):
            text = self.string(item, f"{path}[{i}]")
            if text not in allowed:
                raise self.fail(f"{path}[{i}]", f"{text!r} is not one of {', '.join(allowed)}")
            if text in out:
                raise self.fail(f"{path}[{i}]", f"{text!r} is listed twice")
            out.append(text)
        return tuple(out)

    def timestamp(self, value: Any, path: str) -> datetime:
        if isinstance(value, datetime):
            stamp = value
        elif isinstance(value, date):
            stamp = datetime(value.year, value.month, value.day)
        elif isinstance(value, str):
            try:
                stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise self.fail(path, f"{value!r} is not an ISO 8601 timestamp") from None
        else:
            raise self.fail(path, f"expected a timestamp, got {_kind(value)}")
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return stamp.astimezone(UTC)

    # -- the document -------------------------------------------------------------------------------------

    def build(self, document: Any) -> Scenario:
        doc = self.mapping(
            document,
            "(top level)",
            required=("name", "account_id", "regions", "history_days", "foundation_models", "quotas"),
            optional=("description", "application_profiles", "direct_traffic", "principals", "invocation_logging"),
        )
        name = self.string(doc["name"], "name")
        description = self.string(doc["description"], "description") if "description" in doc else ""
        account = self.string(
            str(doc["account_id"]) if isinstance(doc["account_id"], int) else doc["account_id"],
            "account_id",
            _ACCOUNT_RE,
        )
        regions = self.sequence(doc["regions"], "regions", non_empty=True)
        region_list: list[str] = []
        for i, region in enumerate(regions):
            text = self.string(region, f"regions[{i}]", _REGION_RE)
            if text in region_list:
                raise self.fail(f"regions[{i}]", f"{text!r} is listed twice")
            region_list.append(text)
        self.regions = tuple(region_list)
        self.account = account
        history_days = self.integer(doc["history_days"], "history_days", 1, _MAX_HISTORY_DAYS)

        models, system_profiles, burndown, latency = self.foundation_models(doc["foundation_models"])
        endpoints_raw = self.endpoint_skeletons(models, system_profiles)
        quotas, enforcement = self.quotas(doc["quotas"], models)
        endpoints = self.resolve_endpoints(endpoints_raw, enforcement)

        self.principals = self.principals_section(doc.get("principals", []))
        logging_config = self.invocation_logging(doc["invocation_logging"]) if "invocation_logging" in doc else None
        profiles: dict[str, list[InferenceProfile]] = {r: list(system_profiles[r]) for r in self.regions}
        traffic: dict[str, list[TrafficSpec]] = {r: [] for r in self.regions}
        self.application_profiles(doc.get("application_profiles", []), endpoints, profiles, traffic)
        self.direct_traffic(doc.get("direct_traffic", []), endpoints, traffic)

        return Scenario(
            name=name,
            account_id=account,
            regions=self.regions,
            history_days=history_days,
            foundation_models={r: tuple(models[r]) for r in self.regions},
            profiles={r: tuple(profiles[r]) for r in self.regions},
            quotas={r: tuple(quotas[r]) for r in self.regions},
            endpoints={r: tuple(endpoints[r].values()) for r in self.regions},
            burndown=burndown,
            traffic={r: tuple(traffic[r]) for r in self.regions},
            latency=latency,
            description=description,
            source=self.source,
            invocation_logging=logging_config,
            principals=self.principals,
        )

    def region_subset(self, value: Any, path: str) -> tuple[str, ...]:
        return self.choices(value, path, self.regions)

    def foundation_models(self, value: Any):
        items = self.sequence(value, "foundation_models", non_empty=True)
        models: dict[str, list[FoundationModel]] = {r: [] for r in self.regions}
        profiles: dict[str, list[InferenceProfile]] = {r: [] for r in self.regions}
        burndown: dict[str, float] = {}
        latency: dict[str, Latency] = {}
        for i, item in enumerate(items):
            path = f"foundation_models[{i}]"
            raw = self.mapping(
                item,
                path,
                required=("model_id", "model_name", "provider_name", "inference_types"),
                optional=(
                    "input_modalities",
                    "output_modalities",
                    "response_streaming",
                    "customizations_supported",
                    "lifecycle_status",
                    "regions",
                    "on_demand_regions",
                    "burndown",
                    "latency",
                    "system_profiles",
                ),
            )
            model_id = self.string(raw["model_id"], f"{path}.model_id", _MODEL_ID_RE)
            if model_id in burndown:
                raise self.fail(f"{path}.model_id", f"{model_id!r} is defined twice")
            types = self.choices(raw["inference_types"], f"{path}.inference_types", INFERENCE_TYPES)
            regions = self.region_subset(raw["regions"], f"{path}.regions") if "regions" in raw else self.regions
            on_demand = regions
            if "on_demand_regions" in raw:
                if "ON_DEMAND" not in types:
                    raise self.fail(f"{path}.on_demand_regions", "the model has no ON_DEMAND inference type")
                on_demand = self.region_subset(raw["on_demand_regions"], f"{path}.on_demand_regions")
            lifecycle = raw.get("lifecycle_status", "ACTIVE")
            if lifecycle not in ("ACTIVE", "LEGACY"):
                raise self.fail(f"{path}.lifecycle_status", "must be ACTIVE or LEGACY")
            burndown[model_id] = self.number(raw.get("burndown", 1), f"{path}.burndown", 1, 100)
            latency[model_id] = self.latency(raw.get("latency", {}), f"{path}.latency")
            common = dict(
                model_id=model_id,
                model_name=self.string(raw["model_name"], f"{path}.model_name"),
                provider_name=self.string(raw["provider_name"], f"{path}.provider_name"),
                input_modalities=self.choices(
                    raw.get("input_modalities", ["TEXT"]), f"{path}.input_modalities", MODALITIES
                ),
                output_modalities=self.choices(
                    raw.get("output_modalities", ["TEXT"]), f"{path}.output_modalities", MODALITIES
                ),
                response_streaming=self.boolean(raw.get("response_streaming", True), f"{path}.response_streaming"),
                lifecycle_status=lifecycle,
                customizations_supported=self.choices(
                    raw.get("customizations_supported", []),
                    f"{path}.customizations_supported",
                    CUSTOMIZATIONS,
                    non_empty=False,
                ),
            )
            for region in regions:
                region_types = tuple(t for t in types if t != "ON_DEMAND" or region in on_demand)
                models[region].append(FoundationModel(region=region, inference_types=region_types, **common))
            for j, sp in enumerate(self.sequence(raw.get("system_profiles", []), f"{path}.system_profiles")):
                spath = f"{path}.system_profiles[{j}]"
                if "INFERENCE_PROFILE" not in types:
                    raise self.fail(spath, "the model has no INFERENCE_PROFILE inference type")
                for profile in self.system_profile(sp, spath, model_id, regions):
                    if any(p.profile_id == profile.profile_id for p in profiles[profile.region]):
                        raise self.fail(f"{spath}.prefix", f"profile {profile.profile_id!r} is defined twice")
                    profiles[profile.region].append(profile)
        return models, profiles, burndown, latency

    def latency(self, value: Any, path: str) -> Latency:
        raw = self.mapping(value, path, (), ("base_ms", "per_output_token_ms", "ttft_ms"))
        default = Latency()
        return Latency(
            base_ms=self.number(raw.get("base_ms", default.base_ms), f"{path}.base_ms", 1, 600_000),
            per_output_token_ms=self.number(
                raw.get("per_output_token_ms", default.per_output_token_ms),
                f"{path}.per_output_token_ms",
                0,
                1000,
            ),
            ttft_ms=self.number(raw.get("ttft_ms", default.ttft_ms), f"{path}.ttft_ms", 1, 600_000),
        )

    def system_profile(self, value: Any, path: str, model_id: str, model_regions: tuple[str, ...]):
        raw = self.mapping(
            value,
            path,
            required=("kind", "name", "description", "created_at"),
            optional=("prefix", "routes_to", "updated_at", "regions"),
        )
        kind = raw["kind"]
        if kind not in ("geo", "global"):
            raise self.fail(f"{path}.kind", "must be geo or global")
        if kind == "geo":
            if "prefix" not in raw:
                raise self.fail(f"{path}.prefix", "required for a geo profile")
            prefix = self.string(raw["prefix"], f"{path}.prefix")
            if prefix not in GEO_PREFIXES:
                raise self.fail(f"{path}.prefix", f"{prefix!r} is not one of {', '.join(GEO_PREFIXES)}")
            if "routes_to" not in raw:
                raise self.fail(f"{path}.routes_to", "required for a geo profile (the regions it routes to)")
            routes = self.sequence(raw["routes_to"], f"{path}.routes_to", non_empty=True)
            route_regions = tuple(self.string(r, f"{path}.routes_to[{k}]", _REGION_RE) for k, r in enumerate(routes))
            profile_id = f"{prefix}.{model_id}"
        else:
            if "prefix" in raw and raw["prefix"] != "global":
                raise self.fail(f"{path}.prefix", "a global profile's prefix is always 'global'")
            if "routes_to" in raw:
                raise self.fail(f"{path}.routes_to", "a global profile routes to all commercial regions")
            route_regions = ()
            profile_id = f"global.{model_id}"
        regions = self.region_subset(raw["regions"], f"{path}.regions") if "regions" in raw else model_regions
        created = self.timestamp(raw["created_at"], f"{path}.created_at")
        updated = self.timestamp(raw.get("updated_at", raw["created_at"]), f"{path}.updated_at")
        name = self.string(raw["name"], f"{path}.name", max_len=64)
        description = self.string(raw["description"], f"{path}.description", max_len=200)
        for region in regions:
            if kind == "geo":
                model_arns = tuple(foundation_model_arn(r, model_id) for r in route_regions)
            else:
                # AWS lists a global profile's models as the region-less ARN plus the calling region's ARN.
                model_arns = (foundation_model_arn("", model_id), foundation_model_arn(region, model_id))
            yield InferenceProfile(
                profile_id=profile_id,
                name=name,
                description=description,
                type="SYSTEM",
                region=region,
                arn=f"arn:aws:bedrock:{region}:{self.account}:inference-profile/{profile_id}",
                model_arns=model_arns,
                created_at=created,
                updated_at=updated,
                endpoint_id=profile_id,
            )

    def endpoint_skeletons(self, models, system_profiles) -> dict[str, dict[str, tuple[str, str]]]:
        """Per region: endpoint id -> (kind, base model id), before quotas are attached."""
        out: dict[str, dict[str, tuple[str, str]]] = {r: {} for r in self.regions}
        for region in self.regions:
            for model in models[region]:
                if "ON_DEMAND" in model.inference_types:
                    out[region][model.model_id] = ("base", model.model_id)
            for profile in system_profiles[region]:
                kind = "global" if profile.profile_id.startswith("global.") else "geo"
                out[region][profile.profile_id] = (kind, profile.profile_id.split(".", 1)[1])
        return out

    def quotas(self, value: Any, models) -> tuple[dict[str, list[Quota]], dict]:
        items = self.sequence(value, "quotas", non_empty=True)
        known_models = {m.model_id for region_models in models.values() for m in region_models}
        quotas: dict[str, list[Quota]] = {r: [] for r in self.regions}
        # (region, model id, endpoint kind, quota type) -> (quota code, path of the quota that claims it)
        enforcement: dict[tuple[str, str, str, str], tuple[str, str]] = {}
        seen_codes: set[str] = set()
        for i, item in enumerate(items):
            path = f"quotas[{i}]"
            raw = self.mapping(
                item,
                path,
                required=("code", "name", "default"),
                optional=("applied", "adjustable", "global_quota", "unit", "regions", "enforces"),
            )
            code = self.string(raw["code"], f"{path}.code", _QUOTA_CODE_RE)
            if code in seen_codes:
                raise self.fail(f"{path}.code", f"{code} is defined twice")
            seen_codes.add(code)
            name = self.string(raw["name"], f"{path}.name", max_len=256)
            default = self.number(raw["default"], f"{path}.default", 0)
            regions = self.region_subset(raw["regions"], f"{path}.regions") if "regions" in raw else self.regions
            applied: dict[str, float] = {}
            if "applied" in raw:
                value_ = raw["applied"]
                if isinstance(value_, Mapping):
                    for region, number in value_.items():
                        if region not in regions:
                            raise self.fail(f"{path}.applied.{region}", "not one of this quota's regions")
                        applied[region] = self.number(number, f"{path}.applied.{region}", 0)
                else:
                    number = self.number(value_, f"{path}.applied", 0)
                    applied = dict.fromkeys(regions, number)
            adjustable = self.boolean(raw.get("adjustable", True), f"{path}.adjustable")
            global_quota = self.boolean(raw.get("global_quota", False), f"{path}.global_quota")
            unit = self.string(raw.get("unit", "None"), f"{path}.unit")
            if "enforces" in raw:
                epath = f"{path}.enforces"
                enf = self.mapping(raw["enforces"], epath, required=("model", "endpoints", "type"))
                model_id = self.string(enf["model"], f"{epath}.model")
                if model_id not in known_models:
                    raise self.fail(f"{epath}.model", f"{model_id!r} is not one of the foundation_models")
                kinds = self.choices(enf["endpoints"], f"{epath}.endpoints", ENDPOINT_KINDS)
                qtype = self.string(enf["type"], f"{epath}.type")
                if qtype not in QUOTA_TYPES:
                    raise self.fail(f"{epath}.type", f"{qtype!r} is not one of {', '.join(QUOTA_TYPES)}")
                for region in regions:
                    for kind in kinds:
                        key = (region, model_id, kind, qtype)
                        if key in enforcement:
                            other = enforcement[key][1]
                            raise self.fail(epath, f"{other} already enforces {qtype} on {kind} {model_id}")
                        enforcement[key] = (code, path)
            for region in regions:
                quotas[region].append(
                    Quota(
                        region=region,
                        quota_code=code,
                        quota_name=name,
                        default_value=default,
                        applied_value=applied.get(region),
                        adjustable=adjustable,
                        global_quota=global_quota,
                        arn=f"arn:aws:servicequotas:{region}:{self.account}:bedrock/{code}",
                        unit=unit,
                    )
                )
        return quotas, enforcement

    def resolve_endpoints(self, skeletons, enforcement) -> dict[str, dict[str, Endpoint]]:
        out: dict[str, dict[str, Endpoint]] = {r: {} for r in self.regions}
        for region in self.regions:
            for endpoint_id, (kind, base_model) in skeletons[region].items():
                codes = {
                    qtype: enforcement.get((region, base_model, kind, qtype), (None, ""))[0] for qtype in QUOTA_TYPES
                }
                out[region][endpoint_id] = Endpoint(
                    region=region,
                    endpoint_id=endpoint_id,
                    kind=kind,
                    base_model_id=base_model,
                    tpm_quota_code=codes["tpm"],
                    rpm_quota_code=codes["rpm"],
                    tpd_quota_code=codes["tpd"],
                )
        return out

    def application_profiles(self, value: Any, endpoints, profiles, traffic) -> None:
        items = self.sequence(value, "application_profiles")
        ids: set[str] = set()
        names: set[tuple[str, str]] = set()
        for i, item in enumerate(items):
            path = f"application_profiles[{i}]"
            raw = self.mapping(
                item,
                path,
                required=("name", "region", "copy_from", "created_at"),
                optional=("id", "description", "updated_at", "tags", "traffic"),
            )
            region = self.string(raw["region"], f"{path}.region")
            if region not in self.regions:
                raise self.fail(f"{path}.region", f"{region!r} is not one of the scenario's regions")
            name = self.string(raw["name"], f"{path}.name", _PROFILE_NAME_RE, max_len=64)
            if (region, name) in names:
                raise self.fail(f"{path}.name", f"{name!r} is used twice in {region}")
            names.add((region, name))
            if "id" in raw:
                profile_id = self.string(raw["id"], f"{path}.id", _PROFILE_ID_RE)
            else:
                profile_id = application_profile_id(self.account, region, name)
            if profile_id in ids:
                raise self.fail(f"{path}.id", f"{profile_id!r} is used twice")
            ids.add(profile_id)
            source_id = self.string(raw["copy_from"], f"{path}.copy_from")
            endpoint = endpoints[region].get(source_id)
            if endpoint is None:
                raise self.fail(
                    f"{path}.copy_from",
                    f"{source_id!r} is neither a system profile nor an on-demand model in {region}",
                )
            if endpoint.kind == "base":
                model_arns: tuple[str, ...] = (foundation_model_arn(region, source_id),)
            else:
                source = next(p for p in profiles[region] if p.profile_id == source_id)
                model_arns = source.model_arns
            tags = self.tags(raw.get("tags", {}), f"{path}.tags")
            created = self.timestamp(raw["created_at"], f"{path}.created_at")
            updated = self.timestamp(raw.get("updated_at", raw["created_at"]), f"{path}.updated_at")
            if updated < created:
                raise self.fail(f"{path}.updated_at", "is before created_at")
            description = (
                self.string(raw["description"], f"{path}.description", max_len=200) if "description" in raw else ""
            )
            profiles[region].append(
                InferenceProfile(
                    profile_id=profile_id,
                    name=name,
                    description=description,
                    type="APPLICATION",
                    region=region,
                    arn=f"arn:aws:bedrock:{region}:{self.account}:application-inference-profile/{profile_id}",
                    model_arns=model_arns,
                    created_at=created,
                    updated_at=updated,
                    endpoint_id=endpoint.endpoint_id,
                    tags=tags,
                )
            )
            if "traffic" in raw:
                traffic[region].append(self.traffic(raw["traffic"], f"{path}.traffic", region, profile_id, endpoint))

    def tags(self, value: Any, path: str) -> dict[str, str]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a mapping, got {_kind(value)}")
        out: dict[str, str] = {}
        for key, val in value.items():
            if not isinstance(key, str) or not key:
                raise self.fail(path, f"tag keys must be non-empty strings, got {key!r}")
            if len(key) > _TAG_KEY_MAX:
                raise self.fail(_join(path, key), f"tag key longer than {_TAG_KEY_MAX} characters")
            if key.lower().startswith("aws:"):
                raise self.fail(_join(path, key), "the aws: prefix is reserved for AWS")
            if not isinstance(val, str):
                raise self.fail(_join(path, key), f"expected a string, got {_kind(val)}")
            if len(val) > _TAG_VALUE_MAX:
                raise self.fail(_join(path, key), f"tag value longer than {_TAG_VALUE_MAX} characters")
            out[key] = val
        return out

    def direct_traffic(self, value: Any, endpoints, traffic) -> None:
        items = self.sequence(value, "direct_traffic")
        for i, item in enumerate(items):
            path = f"direct_traffic[{i}]"
            raw = self.mapping(item, path, required=("region", "endpoint", "traffic"))
            region = self.string(raw["region"], f"{path}.region")
            if region not in self.regions:
                raise self.fail(f"{path}.region", f"{region!r} is not one of the scenario's regions")
            endpoint_id = self.string(raw["endpoint"], f"{path}.endpoint")
            endpoint = endpoints[region].get(endpoint_id)
            if endpoint is None:
                raise self.fail(
                    f"{path}.endpoint",
                    f"{endpoint_id!r} is neither a system profile nor an on-demand model in {region}",
                )
            if any(t.model_id == endpoint_id for t in traffic[region]):
                raise self.fail(f"{path}.endpoint", f"{endpoint_id!r} already has direct traffic in {region}")
            traffic[region].append(self.traffic(raw["traffic"], f"{path}.traffic", region, endpoint_id, endpoint))

    def traffic(self, value: Any, path: str, region: str, model_id: str, endpoint: Endpoint) -> TrafficSpec:
        raw = self.mapping(
            value,
            path,
            required=("requests_per_minute", "tokens"),
            optional=(
                "shape",
                "utc_offset_hours",
                "night_factor",
                "weekend_factor",
                "growth_per_day",
                "token_spread",
                "streaming_share",
                "client_error_rate",
                "server_error_rate",
                "start_day",
                "end_day",
                "bursts",
                "callers",
            ),
        )
        default = TrafficSpec(region, model_id, endpoint.endpoint_id, endpoint.base_model_id, 0.0)
        tokens = self.mapping(raw["tokens"], f"{path}.tokens", ("input", "output"), ("cache_read", "cache_write"))
        shape = raw.get("shape", default.shape)
        if shape not in TRAFFIC_SHAPES:
            raise self.fail(f"{path}.shape", f"{shape!r} is not one of {', '.join(TRAFFIC_SHAPES)}")
        start = self.integer(raw["start_day"], f"{path}.start_day", -10_000, 10_000) if "start_day" in raw else None
        end = self.integer(raw["end_day"], f"{path}.end_day", -10_000, 10_000) if "end_day" in raw else None
        if start is not None and end is not None and end <= start:
            raise self.fail(f"{path}.end_day", "must be after start_day")
        bursts = tuple(
            self.burst(b, f"{path}.bursts[{k}]")
            for k, b in enumerate(self.sequence(raw.get("bursts", []), f"{path}.bursts"))
        )
        return TrafficSpec(
            region=region,
            model_id=model_id,
            endpoint_id=endpoint.endpoint_id,
            base_model_id=endpoint.base_model_id,
            requests_per_minute=self.number(raw["requests_per_minute"], f"{path}.requests_per_minute", 0, 1e6),
            shape=shape,
            utc_offset_hours=self.number(raw.get("utc_offset_hours", 0), f"{path}.utc_offset_hours", -12, 14),
            night_factor=self.number(raw.get("night_factor", default.night_factor), f"{path}.night_factor", 0, 1),
            weekend_factor=self.number(
                raw.get("weekend_factor", default.weekend_factor), f"{path}.weekend_factor", 0, 10
            ),
            growth_per_day=self.number(raw.get("growth_per_day", 0), f"{path}.growth_per_day", -0.2, 0.2),
            input_tokens=self.number(tokens["input"], f"{path}.tokens.input", 1, 10_000_000),
            output_tokens=self.number(tokens["output"], f"{path}.tokens.output", 0, 10_000_000),
            cache_read_tokens=self.number(tokens.get("cache_read", 0), f"{path}.tokens.cache_read", 0, 10_000_000),
            cache_write_tokens=self.number(tokens.get("cache_write", 0), f"{path}.tokens.cache_write", 0, 10_000_000),
            token_spread=self.number(raw.get("token_spread", default.token_spread), f"{path}.token_spread", 0, 2),
            streaming_share=self.number(
                raw.get("streaming_share", default.streaming_share), f"{path}.streaming_share", 0, 1
            ),
            client_error_rate=self.number(
                raw.get("client_error_rate", default.client_error_rate), f"{path}.client_error_rate", 0, 0.5
            ),
            server_error_rate=self.number(
                raw.get("server_error_rate", default.server_error_rate), f"{path}.server_error_rate", 0, 0.5
            ),
            start_day=start,
            end_day=end,
            bursts=bursts,
            callers=tuple(
                self.caller(c, f"{path}.callers[{k}]", endpoint)
                for k, c in enumerate(self.sequence(raw.get("callers", []), f"{path}.callers"))
            ),
        )

    def principals_section(self, value: Any) -> dict[str, Principal]:
        out: dict[str, Principal] = {}
        for i, item in enumerate(self.sequence(value, "principals")):
            path = f"principals[{i}]"
            raw = self.mapping(item, path, required=(), optional=(*PRINCIPAL_KINDS, "sessions", "tags"))
            kinds = [k for k in PRINCIPAL_KINDS if k in raw]
            if len(kinds) != 1:
                raise self.fail(path, "give exactly one of role, user or federated-user")
            kind = kinds[0]
            name = self.string(raw[kind], f"{path}.{kind}", _PRINCIPAL_NAME_RE, max_len=64)
            sessions: tuple[str, ...] = ()
            if kind == "role":
                items = self.sequence(raw.get("sessions"), f"{path}.sessions", non_empty=True)
                sessions = tuple(
                    self.string(s, f"{path}.sessions[{k}]", _SESSION_NAME_RE, max_len=64) for k, s in enumerate(items)
                )
                if len(set(sessions)) != len(sessions):
                    raise self.fail(f"{path}.sessions", "a session name is listed twice")
            elif "sessions" in raw:
                raise self.fail(f"{path}.sessions", "only roles have sessions")
            if kind == "federated-user" and "tags" in raw:
                raise self.fail(f"{path}.tags", "federated users have no IAM tags")
            principal = Principal(kind, name, sessions, self.tags(raw.get("tags", {}), f"{path}.tags"))
            if principal.key in out:
                raise self.fail(f"{path}.{kind}", f"{principal.key!r} is defined twice")
            out[principal.key] = principal
        return out

    def invocation_logging(self, value: Any) -> InvocationLogging:
        path = "invocation_logging"
        raw = self.mapping(
            value,
            path,
            required=("log_group", "role_name", "logging_started"),
            optional=("s3_bucket", "s3_key_prefix", "retention_days", "regions"),
        )
        started_raw = raw["logging_started"]
        started: datetime | int
        if isinstance(started_raw, int) and not isinstance(started_raw, bool):
            started = self.integer(started_raw, f"{path}.logging_started", -10_000, 10_000)
        else:
            started = self.timestamp(started_raw, f"{path}.logging_started")
        role = self.string(raw["role_name"], f"{path}.role_name", _PRINCIPAL_NAME_RE, max_len=64)
        retention = raw.get("retention_days")
        return InvocationLogging(
            log_group=self.string(raw["log_group"], f"{path}.log_group", _LOG_GROUP_RE, max_len=512),
            role_arn=f"arn:aws:iam::{self.account}:role/{role}",
            s3_bucket=self.string(raw["s3_bucket"], f"{path}.s3_bucket", _BUCKET_RE, max_len=63)
            if "s3_bucket" in raw
            else "",
            s3_key_prefix=self.string(raw["s3_key_prefix"], f"{path}.s3_key_prefix") if "s3_key_prefix" in raw else "",
            started=started,
            retention_days=None if retention is None else self.integer(retention, f"{path}.retention_days", 1, 3653),
            regions=self.region_subset(raw["regions"], f"{path}.regions") if "regions" in raw else self.regions,
        )

    def caller(self, value: Any, path: str, endpoint: Endpoint) -> Caller:
        raw = self.mapping(value, path, ("principal",), ("weight", "api", "model_id_as", "request_metadata"))
        principal = self.string(raw["principal"], f"{path}.principal")
        if principal not in self.principals:
            known = ", ".join(self.principals) or "none"
            raise self.fail(f"{path}.principal", f"{principal!r} is not one of the principals (defined: {known})")
        api = raw.get("api", "converse")
        if api not in CALLER_APIS:
            raise self.fail(f"{path}.api", f"{api!r} is not one of {', '.join(CALLER_APIS)}")
        model_id_as = raw.get("model_id_as", "id")
        if model_id_as not in ("id", "arn"):
            raise self.fail(f"{path}.model_id_as", f"{model_id_as!r} is not one of id, arn")
        metadata = []
        meta_raw = raw.get("request_metadata", {})
        if not isinstance(meta_raw, Mapping):
            raise self.fail(f"{path}.request_metadata", f"expected a mapping, got {_kind(meta_raw)}")
        for key, values in meta_raw.items():
            kpath = _join(f"{path}.request_metadata", str(key))
            self.string(key, kpath, _METADATA_RE, max_len=256)
            items = [values] if isinstance(values, str) else self.sequence(values, kpath, non_empty=True)
            metadata.append(
                (key, tuple(self.string(v, f"{kpath}[{k}]", _METADATA_RE, max_len=256) for k, v in enumerate(items)))
            )
        return Caller(
            principal=principal,
            weight=self.number(raw.get("weight", 1), f"{path}.weight", 0.0001, 1e6),
            api=api,
            model_id_as=model_id_as,
            request_metadata=tuple(metadata),
        )

    def burst(self, value: Any, path: str) -> Burst:
        raw = self.mapping(value, path, required=("days", "start", "minutes", "requests_per_minute"))
        days = self.choices(raw["days"], f"{path}.days", WEEKDAYS)
        start = self.string(raw["start"], f"{path}.start", _HHMM_RE)
        hours, minutes = (int(x) for x in start.split(":"))
        return Burst(
            days=tuple(sorted(WEEKDAYS.index(d) for d in days)),
            start_minute=hours * 60 + minutes,
            minutes=self.integer(raw["minutes"], f"{path}.minutes", 1, 1440),
            requests_per_minute=self.number(raw["requests_per_minute"], f"{path}.requests_per_minute", 0, 1e6),
        )


def _join(path: str, key: str) -> str:
    return key if path == "(top level)" else f"{path}.{key}"


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__

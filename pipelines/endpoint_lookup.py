"""Which endpoint, and which CloudWatch series, an id the user typed (``buw analyze -m``) means.

Two places need it: before a run, to narrow the metrics read to the chosen endpoints' series (from the region's
ListInferenceProfiles and ListFoundationModels answers), and after the marts are built, to pick the report pages
(from the ``endpoints`` mart, which the reports must agree with). Both follow the same rule: an application
profile belongs to the endpoint whose system profile (or base model) has the same set of model ARNs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pipelines.errors import UserError


def bare_id(model_id: str) -> str:
    """A profile or model ARN reduced to its id (the part after the last '/'); ids are returned unchanged."""
    return model_id.rsplit("/", 1)[-1] if model_id.startswith("arn:") else model_id


@dataclass(frozen=True)
class EndpointSeries:
    """An endpoint and every CloudWatch series (ModelId) that publishes under it."""

    endpoint: str
    series: tuple[str, ...]


def series_for_ids(profiles: Sequence, models: Sequence, region: str, model_ids: Iterable[str]) -> list[EndpointSeries]:
    """The endpoints the ids name and their series, from the region's profile and model listings.

    ``profiles`` are ``InferenceProfileRecord``s (both types), ``models`` ``FoundationModelRecord``s. An unknown
    id, or a base model only reachable through inference profiles, is a ``UserError`` that says what to pass.
    """
    systems = {p.profile_id: p for p in profiles if p.type != "APPLICATION"}
    applications = {p.profile_id: p for p in profiles if p.type == "APPLICATION"}
    by_arn = {p.profile_arn: p for p in profiles}
    models_by_id = {m.model_id: m for m in models}
    models_by_arn = {m.model_arn: m for m in models}

    def endpoint_of_application(profile) -> str:
        arns = set(profile.model_arns)
        for system in systems.values():
            if set(system.model_arns) == arns:
                return system.profile_id
        if len(arns) == 1:
            arn = next(iter(arns))
            model = models_by_arn.get(arn)
            return model.model_id if model is not None else arn.rsplit("/", 1)[-1]
        return profile.profile_id

    def series_of(endpoint: str) -> tuple[str, ...]:
        members = {endpoint}
        members.update(pid for pid, profile in applications.items() if endpoint_of_application(profile) == endpoint)
        return tuple(sorted(members))

    chosen: dict[str, EndpointSeries] = {}
    for given in model_ids:
        key = bare_id(given)
        profile = by_arn.get(given) or systems.get(key) or applications.get(key)
        if profile is not None and profile.type == "APPLICATION":
            endpoint = endpoint_of_application(profile)
        elif profile is not None:
            endpoint = profile.profile_id
        elif key in models_by_id:
            model = models_by_id[key]
            if "ON_DEMAND" not in model.inference_types:
                through = sorted(pid for pid, system in systems.items() if model.model_arn in system.model_arns)
                if through:
                    raise UserError(
                        f"{given!r} has no usage of its own in {region}; it is called through "
                        f"{', '.join(through)}: pass one of those to -m."
                    )
            endpoint = key
        else:
            raise UserError(
                f"{given!r} is not a foundation model or inference profile in {region}; "
                "list them with `aws bedrock list-inference-profiles` or omit -m to analyse every endpoint."
            )
        chosen[endpoint] = EndpointSeries(endpoint, series_of(endpoint))
    return [chosen[name] for name in sorted(chosen)]


def resolve_endpoints(connection, region: str, model_ids: Sequence[str]) -> list[tuple[str, str]]:
    """The (region, endpoint) of each id as the ``endpoints`` mart knows it: endpoint, profile or base model ids."""
    rows = connection.execute(
        "select series_id, endpoint, profile_arn, base_model_id from endpoints where region = $region",
        {"region": region},
    ).fetchall()
    lookup: dict[str, str] = {}
    profiled: dict[str, set[str]] = {}
    for series_id, endpoint, profile_arn, base_model_id in rows:
        for key in (series_id, endpoint, profile_arn):
            if key:
                lookup.setdefault(key, endpoint)
        if base_model_id and base_model_id == endpoint:
            lookup.setdefault(base_model_id, endpoint)
        elif base_model_id:
            profiled.setdefault(base_model_id, set()).add(endpoint)
    resolved = []
    for model_id in model_ids:
        key = bare_id(model_id) if model_id not in lookup else model_id
        endpoint = lookup.get(model_id) or lookup.get(key)
        if endpoint is None and model_id in profiled:
            raise UserError(
                f"{model_id!r} has no usage of its own in {region}; it is called through "
                f"{', '.join(sorted(profiled[model_id]))}: pass one of those to -m."
            )
        if endpoint is None:
            known = ", ".join(sorted(set(lookup.values()))[:6])
            raise UserError(
                f"{model_id!r} is not a model, inference profile or endpoint seen in {region}; "
                f"known endpoints include {known or 'none'}."
            )
        resolved.append((region, endpoint))
    return sorted(set(resolved))


def endpoints_with_usage(connection, region: str) -> list[tuple[str, str]]:
    """Every (region, endpoint) of ``region`` with at least one datapoint in the marts."""
    rows = connection.execute(
        "select distinct region, endpoint from endpoint_minute where region = $region order by endpoint",
        {"region": region},
    ).fetchall()
    return [tuple(row) for row in rows]

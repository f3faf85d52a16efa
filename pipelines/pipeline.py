"""One incremental pipeline run outside the Dagster UI: what `buw analyze`, `buw demo` and `buw report` do.

Extraction calls the same functions as the extract assets and records each snapshot and metric partition in the
Dagster instance (so the UI shows them as materialized); the SQL models and the reports then run as one real
Dagster run through ``dg.materialize``, tagged with the run's ``as_of``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import dagster as dg

from pipelines.errors import UserError, explain
from pipelines.report import SUMMARY_WINDOW
from pipelines.resources import AwsResource, WarehouseResource, current_minute


@dataclass(frozen=True)
class AnalyzeRequest:
    """What the user asked `buw analyze` for."""

    region: str
    model_ids: tuple[str, ...] = ()
    granularity: dict[str, str] = field(default_factory=dict)
    as_of: datetime | None = None
    output_dir: Path | None = None
    profile: str | None = None
    days: int = 30
    interactive: bool = False


@dataclass(frozen=True)
class RunSummary:
    """What a pipeline run did: partitions read, GetMetricData cost, reports written."""

    as_of: datetime
    partitions: int
    calls: int
    metrics_requested: int
    datapoints: int
    reports: tuple[Path, ...]
    index: Path | None
    rows: tuple[tuple, ...]


def _instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.get()


def _record(instance: dg.DagsterInstance, asset: str, metadata: dict, partition: str | None = None) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=asset, partition=partition, metadata=metadata)
    )


def extract_snapshots(
    aws: AwsResource, warehouse: WarehouseResource, regions: Sequence[str], listed_at: datetime, account_id: str
) -> None:
    """Snapshot foundation models, inference profiles with tags, and quotas of every region into the lake.

    ``listed_at`` (AWS's clock) dates the snapshot and names its partition.
    """
    from pipelines.assets.extract import (
        extract_foundation_models,
        extract_inference_profiles,
        extract_service_quotas,
    )

    instance = _instance()
    lake = warehouse.lake()
    models = extract_foundation_models(aws, lake, regions, listed_at)
    profiles, tags = extract_inference_profiles(aws, lake, regions, listed_at, account_id)
    quotas = extract_service_quotas(aws, lake, regions, listed_at)
    for result in (models, profiles, tags, quotas):
        _record(instance, result.dataset, {"rows": result.rows, "listed_at": listed_at.isoformat() + "Z"})


def extract_metrics(
    aws: AwsResource,
    warehouse: WarehouseResource,
    regions: Sequence[str],
    as_of: datetime,
    account_id: str,
    days: int,
    console,
    now: datetime,
):
    """Read every metric partition an incremental run needs, with a progress bar; returns the results.

    ``now`` is AWS's clock, which CloudWatch's retention tiers are measured from.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pipelines.assets.extract import ExtractResult, refresh_metrics

    instance = _instance()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    ) as progress:
        tasks: dict[str, int] = {}

        def planned(todo: list) -> None:
            for region in regions:
                total = sum(1 for planned_region, _ in todo if planned_region == region)
                tasks[region] = progress.add_task(f"CloudWatch {region}", total=total, detail="")

        def landed(result: ExtractResult) -> None:
            key = dg.MultiPartitionKey({"date": result.day.isoformat(), "region": result.region})
            metadata = {
                "calls": result.stats.calls,
                "metrics_requested": result.stats.metrics_requested,
                "datapoints": result.stats.datapoints,
                "rows": result.rows,
                "as_of": as_of.isoformat() + "Z",
            }
            _record(instance, "metric_points", metadata, partition=str(key))
            detail = f"{result.day.isoformat()} {result.stats.calls} calls"
            progress.update(tasks[result.region], advance=1, detail=detail)

        results = refresh_metrics(
            aws, warehouse.lake(), as_of, regions, account_id, days, now=now, on_plan=planned, on_partition=landed
        )
    if not console.is_terminal:
        calls = sum(result.stats.calls for result in results)
        console.print(f"read {len(results)} metric partitions with {calls} GetMetricData calls")
    return results


def build_models_and_reports(
    warehouse: WarehouseResource,
    as_of: datetime,
    endpoints: Iterable[tuple[str, str]] | None = None,
    granularity: dict[str, str] | None = None,
    steps: str = "all",
) -> None:
    """Materialize the SQL models and/or the reports (``steps``: all, models, reports) as one Dagster run."""
    from pipelines.assets.models import build_models_asset
    from pipelines.assets.report import ENDPOINTS_TAG, GRANULARITY_TAG, reports
    from pipelines.resources import AS_OF_TAG

    tags = {AS_OF_TAG: as_of.isoformat()}
    if endpoints is not None:
        tags[ENDPOINTS_TAG] = json.dumps(sorted(endpoints))
    if granularity:
        tags[GRANULARITY_TAG] = json.dumps(granularity, sort_keys=True)
    models = build_models_asset()
    selection = {"all": None, "models": [models], "reports": [reports]}[steps]
    # Entered, so Dagster finds this instance as the current one while it loads the definitions of the run.
    with _instance() as instance:
        result = dg.materialize(
            [models, reports],
            selection=selection,
            instance=instance,
            resources={"warehouse": warehouse},
            tags=tags,
            # The run's event log is in the Dagster UI; the terminal gets warnings only.
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            raise_on_error=False,
        )
    if not result.success:
        failure = next((event for event in result.all_events if event.event_type_value == "STEP_FAILURE"), None)
        detail = failure.event_specific_data.error.message.strip().splitlines()[-1] if failure else "see the run"
        raise UserError(f"building the marts and reports failed: {detail}")


def summary_rows(warehouse: WarehouseResource, endpoints: Iterable[tuple[str, str]] | None = None) -> list[tuple]:
    """(region, endpoint, p90 TPM, peak TPM, utilisation of the TPM quota at p90 and at peak, throttled minutes).

    TPM is input + output tokens; utilisation is of quota TPM (with the output burndown), which is what the
    quota counts. All over the report index's window (SUMMARY_WINDOW), so the terminal and the index agree.
    """
    wanted = set(endpoints) if endpoints is not None else None
    with warehouse.connect(read_only=True) as connection:
        tables = {row[0] for row in connection.execute("select table_name from duckdb_tables()").fetchall()}
        headroom = "quota_headroom" in tables
        query = """
            with tpm as (
                select region, endpoint, p90, max
                from window_stats
                where series_id = '*' and metric = 'tpm' and "window" = $window
            ),
            throttled as (
                select region, endpoint, throttled_minutes as minutes
                from throttle_attribution
                where series_id = '*' and "window" = $window
            )
            select tpm.region, tpm.endpoint, tpm.p90, tpm.max, coalesce(throttled.minutes, 0) as throttled_minutes
            from tpm left join throttled using (region, endpoint)
            order by tpm.region, tpm.max desc nulls last
        """
        rows = connection.execute(query, {"window": SUMMARY_WINDOW}).fetchall()
        utilisation = {}
        if headroom:
            for region, endpoint, p90, peak in connection.execute(
                """
                select region, endpoint, utilisation_p90, utilisation_max
                from quota_headroom where quota_type = 'tpm' and "window" = $window
                """,
                {"window": SUMMARY_WINDOW},
            ).fetchall():
                utilisation[(region, endpoint)] = (p90, peak)
    out = []
    for region, endpoint, p90, peak, throttled in rows:
        if wanted is not None and (region, endpoint) not in wanted:
            continue
        util_p90, util_max = utilisation.get((region, endpoint), (None, None))
        out.append((region, endpoint, p90, peak, util_p90, util_max, throttled))
    return out


def print_summary(console, rows: Sequence[tuple], index: Path | None) -> None:
    from rich.table import Table

    def number(value) -> str:
        return "—" if value is None else f"{value:,.0f}"

    def percent(value) -> str:
        return "no quota" if value is None else f"{value * 100:.1f} %"

    table = Table(title=f"Last {SUMMARY_WINDOW[:-1]} days per endpoint (as in the report index)", show_lines=False)
    headers = (
        "region",
        "endpoint",
        "p90 TPM",
        "peak TPM",
        "p90 quota TPM, % of TPM quota",
        "peak quota TPM, % of TPM quota",
        "throttled minutes",
    )
    for name in headers:
        if name in ("region", "endpoint"):
            # Ids must stay whole: users copy them into `buw analyze -m` and SQL.
            table.add_column(name, no_wrap=True)
        else:
            table.add_column(name, justify="right", max_width=14)
    for region, endpoint, p90, peak, util_p90, util_max, throttled in rows:
        table.add_row(region, endpoint, number(p90), number(peak), percent(util_p90), percent(util_max), str(throttled))
    console.print(table)
    if index is not None:
        console.print(f"Report index: {index}")


# The commands ---


def _validate_region(region: str) -> None:
    from pipelines.aws.account import BEDROCK_REGIONS

    if region not in BEDROCK_REGIONS:
        raise UserError(
            f"{region!r} is not a region where Amazon Bedrock is offered; use one of "
            f"{', '.join(sorted(BEDROCK_REGIONS)[:8])}, … (see `buw refresh regions`)."
        )


def resolve_endpoints(warehouse: WarehouseResource, region: str, model_ids: Sequence[str]) -> list[tuple[str, str]]:
    """The (region, endpoint) of each id the user gave: endpoint ids, profile ids or ARNs, base model ids."""
    with warehouse.connect(read_only=True) as connection:
        rows = connection.execute(
            """
            select series_id, endpoint, profile_arn, base_model_id
            from endpoints where region = $region
            """,
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
        key = model_id.rsplit("/", 1)[-1] if model_id.startswith("arn:") and model_id not in lookup else model_id
        endpoint = lookup.get(model_id) or lookup.get(key)
        if endpoint is None and model_id in profiled:
            raise UserError(
                f"{model_id!r} has no usage of its own in {region}; it is called through "
                f"{', '.join(sorted(profiled[model_id]))}: pass one of those to -m."
            )
        if endpoint is None:
            known = ", ".join(sorted({value for value in lookup.values()})[:6])
            raise UserError(
                f"{model_id!r} is not a model, inference profile or endpoint seen in {region}; "
                f"known endpoints include {known or 'none'}."
            )
        resolved.append((region, endpoint))
    return sorted(set(resolved))


def endpoints_with_usage(warehouse: WarehouseResource, region: str) -> list[tuple[str, str]]:
    """Every (region, endpoint) of ``region`` with at least one datapoint in the warehouse."""
    with warehouse.connect(read_only=True) as connection:
        rows = connection.execute(
            "select distinct region, endpoint from endpoint_minute where region = $region order by endpoint",
            {"region": region},
        ).fetchall()
    return [tuple(row) for row in rows]


def _known_ids(warehouse: WarehouseResource, region: str, as_of: datetime) -> set[str]:
    """Model ids, profile ids and ARNs in the region's latest snapshots (to reject an unknown -m early)."""
    import duckdb

    from pipelines.lake import Partition

    lake = warehouse.lake()
    known: set[str] = set()
    for dataset, columns in (
        ("inference_profiles", ("profile_id", "profile_arn")),
        ("foundation_models", ("model_id", "model_arn")),
    ):
        path = Partition(dataset, region, as_of.date()).path(lake)
        if not path.exists():
            continue
        for row in duckdb.sql(
            f"select {', '.join(columns)} from read_parquet($path)", params={"path": str(path)}
        ).fetchall():
            known.update(value for value in row if value)
    return known


def _prompt_model(warehouse: WarehouseResource, region: str, as_of: datetime, console) -> list[str]:
    """Ask provider, model and endpoint (as bedrock-usage-analyzer does) from the region's snapshots."""
    import duckdb
    from rich.prompt import Prompt

    from pipelines.lake import Partition

    lake = warehouse.lake()
    models_path = Partition("foundation_models", region, as_of.date()).path(lake)
    profiles_path = Partition("inference_profiles", region, as_of.date()).path(lake)
    models = duckdb.sql(
        "select provider, model_id, model_name, list_contains(inference_types, 'ON_DEMAND') as on_demand "
        "from read_parquet($path) order by provider, model_name",
        params={"path": str(models_path)},
    ).fetchall()
    providers = sorted({provider for provider, _, _, _ in models})
    provider = Prompt.ask("Provider", choices=providers, console=console)
    choices = {name: (model_id, on_demand) for p, model_id, name, on_demand in models if p == provider}
    name = Prompt.ask("Model", choices=sorted(choices), console=console)
    model_id, on_demand = choices[name]
    # The base model is an endpoint of its own only where it is offered on demand.
    endpoints = [model_id] if on_demand else []
    if profiles_path.exists():
        endpoints += [
            row[0]
            for row in duckdb.sql(
                "select profile_id from read_parquet($path) where type = 'SYSTEM' and profile_id like '%.' || $model",
                params={"path": str(profiles_path), "model": model_id},
            ).fetchall()
        ]
    if not endpoints:
        raise UserError(f"{name} has no on-demand or inference-profile endpoint in {region}; pick another model.")
    endpoint = Prompt.ask("Endpoint", choices=endpoints, default=endpoints[-1], console=console)
    return [endpoint]


def run_analyze(request: AnalyzeRequest, console, endpoint_url: str | None = None) -> RunSummary:
    """`buw analyze`: one incremental run for one region of the caller's account."""
    from pipelines.assets.extract import ExtractError, identity_for

    _validate_region(request.region)
    aws = AwsResource(regions=[request.region], profile_name=request.profile, endpoint_url=endpoint_url)
    warehouse = WarehouseResource(reports_dir=str(request.output_dir) if request.output_dir else None)
    _check_output_dir(warehouse.reports())
    as_of = request.as_of or current_minute()
    try:
        # Snapshots are dated by AWS's clock; as_of only sets where the windows end.
        account_id, now = identity_for(aws, request.region)
        extract_snapshots(aws, warehouse, [request.region], now.replace(second=0), account_id)
        model_ids = list(request.model_ids)
        if model_ids:
            known = _known_ids(warehouse, request.region, now)
            unknown = [
                model_id for model_id in model_ids if model_id not in known and model_id.rsplit("/", 1)[-1] not in known
            ]
            if unknown:
                raise UserError(
                    f"{unknown[0]!r} is not a foundation model or inference profile in {request.region}; "
                    "list them with `aws bedrock list-inference-profiles` or omit -m to analyse every endpoint."
                )
        elif request.interactive:
            model_ids = _prompt_model(warehouse, request.region, now, console)
        results = extract_metrics(aws, warehouse, [request.region], as_of, account_id, request.days, console, now)
    except ExtractError as error:
        raise UserError(explain(error, f"extracting {request.region}") or str(error)) from error
    build_models_and_reports(warehouse, as_of, steps="models")
    if model_ids:
        endpoints = resolve_endpoints(warehouse, request.region, model_ids)
    else:
        endpoints = endpoints_with_usage(warehouse, request.region)
    build_models_and_reports(warehouse, as_of, endpoints=endpoints, granularity=request.granularity, steps="reports")
    return _finish(console, warehouse, as_of, results, endpoints)


def _check_output_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".buw-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise UserError(
            f"cannot write reports to {path} ({error.strerror}); pass a writable -o/--output-dir."
        ) from None


def _finish(console, warehouse, as_of, results, endpoints) -> RunSummary:
    rows = summary_rows(warehouse, endpoints)
    index = warehouse.reports() / "index.html"
    print_summary(console, rows, index if index.exists() else None)
    return RunSummary(
        as_of=as_of,
        partitions=len(results),
        calls=sum(result.stats.calls for result in results),
        metrics_requested=sum(result.stats.metrics_requested for result in results),
        datapoints=sum(result.stats.datapoints for result in results),
        reports=tuple(sorted(warehouse.reports().glob("*/*.html"))),
        index=index if index.exists() else None,
        rows=tuple(rows),
    )


@contextmanager
def _sandbox_credentials(endpoint_url: str) -> Iterator[None]:
    """Dummy credentials and the sandbox endpoint for the demo; the caller's AWS settings come back after it."""
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_ENDPOINT_URL": endpoint_url})
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_demo(
    scenario: str = "demo", as_of: datetime | None = None, output_dir: Path | None = None, console=None
) -> RunSummary:
    """`buw demo`: start the sandbox in-process and run the whole pipeline on every region of the scenario."""
    from pipelines.assets.extract import identity_for
    from pipelines.sandbox.scenario import ScenarioError
    from pipelines.sandbox.server import SandboxServer

    try:
        sandbox = SandboxServer(scenario, now=as_of, port=0)
    except (ScenarioError, FileNotFoundError) as error:
        raise UserError(f"cannot load scenario {scenario!r}: {error}") from None
    with sandbox, _sandbox_credentials(sandbox.endpoint_url):
        regions = list(sandbox.scenario.regions)
        as_of = sandbox.now().replace(tzinfo=None, second=0, microsecond=0)
        console.print(
            f"sandbox account {sandbox.scenario.account_id} at {sandbox.endpoint_url}; as_of {as_of:%Y-%m-%d %H:%M}Z"
        )
        aws = AwsResource(regions=regions, endpoint_url=sandbox.endpoint_url)
        warehouse = WarehouseResource(reports_dir=str(output_dir) if output_dir else None)
        _check_output_dir(warehouse.reports())
        account_id, now = identity_for(aws, regions[0])
        extract_snapshots(aws, warehouse, regions, now.replace(second=0), account_id)
        results = extract_metrics(aws, warehouse, regions, as_of, account_id, 30, console, now)
        build_models_and_reports(warehouse, as_of)
        return _finish(console, warehouse, as_of, results, None)


def rerender_reports(
    region: str | None, model_ids: Sequence[str], as_of: datetime | None, output_dir: Path | None, console
) -> None:
    """`buw report`: render again from the marts, calling nothing in AWS."""
    warehouse = WarehouseResource(reports_dir=str(output_dir) if output_dir else None)
    if not warehouse.database().exists():
        raise UserError(f"there is no warehouse at {warehouse.database()} yet; run `buw analyze` or `buw demo` first.")
    _check_output_dir(warehouse.reports())
    endpoints = None
    if model_ids:
        if region is None:
            raise UserError("-m needs -r/--region to tell which region's endpoint is meant.")
        endpoints = resolve_endpoints(warehouse, region, model_ids)
    elif region is not None:
        with warehouse.connect(read_only=True) as connection:
            endpoints = [
                tuple(row)
                for row in connection.execute(
                    "select distinct region, endpoint from endpoints where region = $region",
                    {"region": region},
                ).fetchall()
            ]
    with warehouse.connect(read_only=True) as connection:
        built = connection.execute("select count(*) from duckdb_tables() where table_name = 'window_stats'").fetchone()
        stored = connection.execute("select max(as_of) from window_stats").fetchone()[0] if built[0] else None
    if stored is None and as_of is None:
        raise UserError("the warehouse holds no usage yet; run `buw analyze` (or pass --as-of to build the marts).")
    # A new as_of moves every window, so the marts are rebuilt first; otherwise only the pages are rendered.
    build_models_and_reports(warehouse, as_of or stored, endpoints=endpoints, steps="all" if as_of else "reports")
    _finish(console, warehouse, as_of or stored, [], endpoints)

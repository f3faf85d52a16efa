"""Runs outside the Dagster UI: what `buw analyze`, `buw demo` and `buw report` do.

Each is one real Dagster run in the instance the UI reads (DAGSTER_HOME): the snapshots, the range of metric
days the lake still needs, the SQL models with their checks and the reports, through the same assets a UI
materialization, a backfill or the schedule runs. The CLI only decides what to ask for (as_of, the days, the
regions and endpoints) and sets it as run tags; everything that touches AWS or the warehouse happens in the run.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from pipelines.endpoint_lookup import resolve_endpoints
from pipelines.errors import UserError, describe_aws_text, describe_refused_step, explain
from pipelines.report import SUMMARY_WINDOW
from pipelines.resources import AwsResource, WarehouseResource, default_as_of


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
    # caller_attribution dimensions to print (``--breakdown``); any of them also reads the invocation logs.
    breakdowns: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunSummary:
    """What a pipeline run did: the Dagster run, days read, GetMetricData cost, reports written."""

    as_of: datetime
    partitions: int
    calls: int
    metrics_requested: int
    datapoints: int
    reports: tuple[Path, ...]
    index: Path | None
    rows: tuple[tuple, ...]
    run_id: str | None = None
    estimated_cost_usd: float = 0.0


# Which process runs an in-process run ("<host>:<pid>"), so the next run can tell one that was killed.
PROCESS_TAG = "buw/process"
_UNFINISHED = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def _instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.get()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_abandoned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the runs a `buw` process on this machine started and never finished, because it was killed.

    Such a run would stay "started" in the UI forever and keep its slot of the ``cloudwatch`` pool, so every later
    metrics run would wait for it. Returns the ids of the runs marked.
    """
    host = socket.gethostname()
    reaped = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=_UNFINISHED)):
        owner_host, _, pid = run.tags.get(PROCESS_TAG, "").rpartition(":")
        if owner_host != host or not pid.isdigit() or _process_alive(int(pid)):
            continue
        instance.report_run_failed(run, f"the buw process that ran it (pid {pid}) ended before the run finished")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        reaped.append(run.run_id)
    return reaped


def wait_for_pool(instance: dg.DagsterInstance, pool: str, status=None, poll_s: float = 1.0) -> None:
    """Return once ``pool`` has a free slot, saying which runs hold it meanwhile.

    Dagster's in-process executor also waits for a slot, but with Ctrl-C and SIGTERM held back until a step
    runs, so a `buw` waiting there could not be stopped. Waiting here first, both stop it (as KeyboardInterrupt);
    a run that takes the slot between this check and the step is waited for by Dagster, briefly.
    """
    import signal
    import sys
    import time

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    shown = getattr(status, "status", None)
    said = None
    try:
        while True:
            info = instance.event_log_storage.get_concurrency_info(pool)
            limit = info.limit if info.limit is not None else info.slot_count
            if not limit or info.active_slot_count < limit:
                return
            holders = ", ".join(sorted(run_id[:8] for run_id in info.active_run_ids))
            sentence = f"waiting for run {holders} to finish reading CloudWatch (Ctrl-C stops buw)"
            if sentence != said:
                # A spinner shows only in a terminal; piped output gets the sentence as a line.
                if status is not None and status.console.is_terminal:
                    status.update(sentence)
                else:
                    print(f"buw: {sentence}", file=sys.stderr, flush=True)
                said = sentence
            time.sleep(poll_s)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if said is not None and status is not None and shown is not None:
            status.update(shown)


def pipeline_assets() -> list:
    """Every asset of the code location, as ``pipelines.definitions`` holds them."""
    from pipelines.assets.extract import EXTRACT_ASSETS
    from pipelines.assets.models import build_models_asset
    from pipelines.assets.report import reports

    return [*EXTRACT_ASSETS, build_models_asset(), reports]


def failure_sentence(result: dg.ExecuteInProcessResult) -> str:
    """The cause of a failed run in one sentence: the failing step and its innermost error message."""
    for event in result.all_events:
        if event.event_type_value != "STEP_FAILURE":
            continue
        data = event.event_specific_data
        failure = getattr(data, "user_failure_data", None)
        if failure is not None and failure.description:
            return f"{event.step_key}: {failure.description}"
        error = data.error
        while error is not None and error.cause is not None:
            error = error.cause
        lines = (error.message if error is not None else "").strip().splitlines()
        return f"{event.step_key}: {lines[-1] if lines else 'failed'}"
    return f"the run ended {result.dagster_run.status.value.lower()}"


def aws_refusal(result: dg.ExecuteInProcessResult) -> str | None:
    """The one sentence for a run AWS refused (an action denied, credentials expired or unknown), else None."""
    for event in result.all_events:
        if event.event_type_value != "STEP_FAILURE":
            continue
        data = event.event_specific_data
        doing = f"extracting {event.step_key}"
        failure = getattr(data, "user_failure_data", None)
        sentence = describe_aws_text(failure.description, doing) if failure and failure.description else None
        if sentence is None and data.error is not None:
            sentence = describe_refused_step(data.error, doing)
        if sentence:
            return sentence
    return None


def interrupted(result: dg.ExecuteInProcessResult) -> bool:
    """Whether a step of the run failed because the process got SIGINT (Ctrl-C) or SIGTERM."""
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.event_specific_data.error
            while error is not None:
                if error.cls_name == "DagsterExecutionInterruptedError":
                    return True
                error = error.cause
    return False


def execute(
    aws: AwsResource | None,
    warehouse: WarehouseResource,
    tags: dict[str, str],
    selection: Sequence[str] | None = None,
    status=None,
    optional: Sequence[str] = (),
) -> dg.ExecuteInProcessResult:
    """One Dagster run of the pipeline's assets (``selection``: asset keys, default every asset) in this process.

    One run per warehouse at a time: a second one refuses at once (``pipelines.runlock``). The run, its event
    log, materializations and check results land in the Dagster instance, so the UI shows it like any other; a
    failure becomes a ``UserError`` naming the step and the cause (the traceback stays in
    the run's log).
    """
    from pipelines.assets.extract import METRICS_POOL, OPTIONAL_EXTRACT_ASSETS
    from pipelines.lake import sweep_temp_files
    from pipelines.report.render import sweep_stale_temp_files
    from pipelines.runlock import run_lock

    resources = {"warehouse": warehouse, "aws": aws or AwsResource()}
    assets = pipeline_assets()
    if selection is None:
        selection = [
            key.to_user_string()
            for asset in assets
            for key in asset.keys
            if key.to_user_string() not in OPTIONAL_EXTRACT_ASSETS or key.to_user_string() in optional
        ]
    # Entered, so Dagster finds this instance as the current one while it loads the definitions of the run.
    with run_lock(warehouse.root()), _instance() as instance:
        reap_abandoned_runs(instance)
        # No other buw run is at work on this warehouse now: what a killed one left half-written goes.
        sweep_temp_files(warehouse.lake())
        if warehouse.reports().is_dir():
            sweep_stale_temp_files(warehouse.reports(), max_age=0)
        if "metric_points" in selection:
            wait_for_pool(instance, METRICS_POOL, status)
        result = dg.materialize(
            assets,
            selection=list(selection),
            instance=instance,
            resources=resources,
            tags={**tags, PROCESS_TAG: f"{socket.gethostname()}:{os.getpid()}"},
            # The run's event log is in the Dagster UI; the terminal gets the outcome in one sentence (a failed
            # step would otherwise print its stack trace there, at ERROR level).
            run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
            raise_on_error=False,
        )
    if not result.success:
        if interrupted(result):
            # Dagster turns Ctrl-C inside a step into a failed step; the user pressed it, so it is an interrupt.
            raise KeyboardInterrupt
        refusal = aws_refusal(result)
        if refusal:
            raise UserError(refusal)
        raise UserError(
            f"run {result.run_id[:8]} failed at {failure_sentence(result)} (the whole log is in the "
            "Dagster UI: `buw dev`)."
        )
    return result


def extract_cost(result: dg.ExecuteInProcessResult) -> dict[str, float]:
    """calls, metrics_requested, datapoints, estimated_cost_usd and days of the run's metric_points step."""
    figures = {"calls": 0, "metrics_requested": 0, "datapoints": 0, "estimated_cost_usd": 0.0, "days": 0}
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("metric_points")]
    if events:
        metadata = events[0].materialization.metadata
        for name in ("calls", "metrics_requested", "datapoints", "estimated_cost_usd"):
            if name in metadata:
                figures[name] = metadata[name].value
        figures["days"] = len(events)
    return figures


def run_tags(
    as_of: datetime,
    days: Sequence | None = None,
    series: Iterable[str] | None = None,
    report_region: str | None = None,
    model_ids: Sequence[str] = (),
    granularity: dict[str, str] | None = None,
    endpoints: Iterable[tuple[str, str]] | None = None,
) -> dict[str, str]:
    """The run tags that carry what the CLI decided into the assets."""
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from pipelines.assets.report import (
        ENDPOINTS_TAG,
        GRANULARITY_TAG,
        MODEL_IDS_TAG,
        REPORT_REGION_TAG,
    )
    from pipelines.resources import AS_OF_TAG, SERIES_TAG

    tags = {AS_OF_TAG: as_of.isoformat()}
    if days:
        tags[ASSET_PARTITION_RANGE_START_TAG] = min(days).isoformat()
        tags[ASSET_PARTITION_RANGE_END_TAG] = max(days).isoformat()
    if series is not None:
        tags[SERIES_TAG] = json.dumps(sorted(set(series)))
    if report_region is not None:
        tags[REPORT_REGION_TAG] = report_region
    if model_ids:
        tags[MODEL_IDS_TAG] = json.dumps(list(model_ids))
    if endpoints is not None:
        tags[ENDPOINTS_TAG] = json.dumps(sorted(endpoints))
    if granularity:
        tags[GRANULARITY_TAG] = json.dumps(granularity, sort_keys=True)
    return tags


def build_models_and_reports(
    warehouse: WarehouseResource,
    as_of: datetime,
    endpoints: Iterable[tuple[str, str]] | None = None,
    granularity: dict[str, str] | None = None,
    steps: str = "all",
) -> None:
    """Materialize the SQL models and/or the reports (``steps``: all, models, reports) as one Dagster run."""
    from pipelines.assets.models import build_models_asset

    models = [key.to_user_string() for key in build_models_asset().keys]
    selection = {"all": [*models, "reports"], "models": models, "reports": ["reports"]}[steps]
    execute(None, warehouse, run_tags(as_of, granularity=granularity, endpoints=endpoints), selection)


def plan_days(warehouse: WarehouseResource, as_of: datetime, regions: Sequence[str], days: int, console) -> list:
    """The metric days this run reads; says which held days are read again because their files are gone.

    A metric day file that is missing or unreadable is read again (and said so); any other unreadable lake file
    stops the run here, before it reads anything.
    """
    from pipelines.extraction import days_to_read
    from pipelines.preflight import check_lake

    wanted, problems = days_to_read(warehouse.lake(), as_of, regions, days)
    check_lake(warehouse.lake(), {(region, day) for region in regions for day in wanted})
    for problem in sorted(set(problems)):
        console.print(f"[yellow]{problem}: reading that day again[/yellow]")
    return wanted


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


def _listings(aws: AwsResource, region: str) -> tuple[list, list]:
    """The region's inference profiles (both types) and foundation models, as records."""
    from pipelines.assets.extract import ExtractError
    from pipelines.aws import AwsApiError
    from pipelines.aws.bedrock import list_foundation_models, list_inference_profiles

    client = aws.client("bedrock", region)
    try:
        return list_inference_profiles(client), list_foundation_models(client)
    except AwsApiError as error:
        raise ExtractError(f"listing the models of {region}: {error}") from error


def _prompt_model(profiles: list, models: list, region: str, console) -> list[str]:
    """Ask provider, model and endpoint (as bedrock-usage-analyzer does) from the region's listings."""
    from rich.prompt import Prompt

    providers = sorted({model.provider for model in models})
    provider = Prompt.ask("Provider", choices=providers, console=console)
    choices = {model.model_name: model for model in models if model.provider == provider}
    name = Prompt.ask("Model", choices=sorted(choices), console=console)
    model = choices[name]
    # The base model is an endpoint of its own only where it is offered on demand.
    endpoints = [model.model_id] if "ON_DEMAND" in model.inference_types else []
    endpoints += sorted(
        profile.profile_id
        for profile in profiles
        if profile.type != "APPLICATION" and profile.profile_id.endswith("." + model.model_id)
    )
    if not endpoints:
        raise UserError(f"{name} has no on-demand or inference-profile endpoint in {region}; pick another model.")
    endpoint = Prompt.ask("Endpoint", choices=endpoints, default=endpoints[-1], console=console)
    return [endpoint]


def run_analyze(request: AnalyzeRequest, console, endpoint_url: str | None = None) -> RunSummary:
    """`buw analyze`: one incremental run for one region of the caller's account, as one Dagster run."""
    from pipelines.assets.extract import ExtractError, identity_for
    from pipelines.endpoint_lookup import series_for_ids
    from pipelines.preflight import check_region

    check_region(request.region)
    aws = AwsResource(regions=[request.region], profile_name=request.profile, endpoint_url=endpoint_url)
    warehouse = WarehouseResource(reports_dir=str(request.output_dir) if request.output_dir else None)
    _check_output_dir(warehouse.reports())
    model_ids = list(request.model_ids)
    series = None
    try:
        # AWS's clock sets the default as_of and CloudWatch's retention, whatever this machine's clock says.
        _, now = identity_for(aws, request.region)
        as_of = request.as_of or default_as_of(now, warehouse.as_of_lag())
        if model_ids or request.interactive:
            profiles, models = _listings(aws, request.region)
            if not model_ids:
                model_ids = _prompt_model(profiles, models, request.region, console)
            chosen = series_for_ids(profiles, models, request.region, model_ids)
            series = sorted({name for endpoint in chosen for name in endpoint.series})
    except ExtractError as error:
        raise UserError(explain(error, f"extracting {request.region}") or str(error)) from error
    days = plan_days(warehouse, as_of, [request.region], request.days, console)
    tags = run_tags(
        as_of,
        days=days,
        series=series,
        report_region=request.region,
        model_ids=model_ids,
        granularity=request.granularity,
    )
    with console.status(f"reading {request.region} from {days[0]} to {days[-1]} and building the warehouse") as status:
        result = execute(
            aws, warehouse, tags, status=status, optional=("invocation_logs",) if request.breakdowns else ()
        )
    endpoints = _rendered_endpoints(warehouse, tags)
    summary = _finish(console, warehouse, as_of, result, endpoints, regions=[request.region])
    for dimension in request.breakdowns:
        print_breakdown(console, breakdown_rows(warehouse, dimension, endpoints), dimension)
    return summary


BREAKDOWN_TOP = 5


def breakdown_rows(
    warehouse: WarehouseResource, dimension: str, endpoints: Iterable[tuple[str, str]] | None = None
) -> list[tuple]:
    """(region, endpoint, value, tokens, share, requests, peak TPM, share in throttled minutes) of the top callers
    by tokens per endpoint over SUMMARY_WINDOW, and each endpoint's '(not in logs)' row, from caller_attribution."""
    wanted = set(endpoints) if endpoints is not None else None
    with warehouse.connect(read_only=True) as connection:
        rows = connection.execute(
            """
            select region, endpoint, dimension_value, tokens, share, requests, peak_tpm, share_in_throttled_minutes
            from caller_attribution
            where dimension = $dimension and "window" = $window
            qualify is_remainder
                or row_number() over (
                    partition by region, endpoint, is_remainder order by tokens desc, dimension_value
                ) <= $top
            order by region, endpoint, is_remainder, tokens desc, dimension_value
            """,
            {"dimension": dimension, "window": SUMMARY_WINDOW, "top": BREAKDOWN_TOP},
        ).fetchall()
    return [row for row in rows if wanted is None or (row[0], row[1]) in wanted]


def print_breakdown(console, rows: Sequence[tuple], dimension: str) -> None:
    from rich.table import Table

    if not rows:
        console.print(
            f"no callers by {dimension} in the last {SUMMARY_WINDOW[:-1]} days: the invocation logs hold none "
            "(is model invocation logging on in this region, and does the key exist?)"
        )
        return
    table = Table(title=f"Top callers by {dimension}, last {SUMMARY_WINDOW[:-1]} days (shares of the metrics)")
    cells = [
        (
            region,
            endpoint,
            value,
            f"{tokens:,}",
            "—" if share is None else f"{share * 100:.1f} %",
            f"{requests:,}",
            "—" if peak is None else f"{peak:,}",
            "—" if throttled is None else f"{throttled * 100:.1f} %",
        )
        for region, endpoint, value, tokens, share, requests, peak, throttled in rows
    ]
    names = ("region", "endpoint", dimension, "tokens", "share", "requests", "peak TPM", "share when throttled")
    for index, name in enumerate(names):
        if index == 0:
            table.add_column(name, no_wrap=True, min_width=max(len(row[0]) for row in cells))
        elif index < 3:
            # Long ids fold onto a second line in a narrow terminal rather than push a number off the table.
            table.add_column(name, overflow="fold")
        else:
            # A number is never cut: its column is as wide as its widest value.
            widest = max(len(row[index]) for row in cells)
            table.add_column(name, justify="right", no_wrap=True, min_width=widest)
    for row in cells:
        table.add_row(*row)
    console.print(table)


def _rendered_endpoints(warehouse: WarehouseResource, tags: dict[str, str]) -> list[tuple[str, str]] | None:
    from pipelines.assets.report import selected_endpoints

    with warehouse.connect(read_only=True) as connection:
        return selected_endpoints(tags, connection)


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


def no_usage_sentences(
    warehouse: WarehouseResource, as_of: datetime | None, regions: Sequence[str] | None
) -> list[str]:
    """ "no Bedrock usage in REGION between START and END" for each region without a single datapoint.

    START and END bound the metrics the lake has read for the region (an empty account leaves no datapoint,
    only its coverage); ``as_of``, when given, is the END. ``regions`` defaults to every region the lake has read.
    """
    import duckdb

    from pipelines.lake import dataset_glob, has_data

    lake = warehouse.lake()
    covered: dict[str, tuple[datetime, datetime]] = {}
    if has_data(lake, "metric_coverage"):
        rows = duckdb.sql(
            "select region, min(range_start), max(range_end) from read_parquet($glob, hive_partitioning = true) "
            "group by region",
            params={"glob": dataset_glob(lake, "metric_coverage")},
        ).fetchall()
        covered = {region: (start, end) for region, start, end in rows}
    with warehouse.connect(read_only=True) as connection:
        built = connection.execute("select count(*) from duckdb_tables() where table_name = 'endpoint_minute'")
        active = set()
        if built.fetchone()[0]:
            active = {
                row[0]
                for row in connection.execute(
                    "select distinct region from endpoint_minute where ts < coalesce($as_of, ts + interval 1 minute)",
                    {"as_of": as_of},
                ).fetchall()
            }
    sentences = []
    for region in sorted(regions if regions is not None else covered):
        if region in active:
            continue
        start, end = covered.get(region, (None, as_of))
        end = as_of or end
        if end is None:
            continue
        span = (
            f"between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC"
            if start
            else f"up to {end:%Y-%m-%d %H:%M} UTC"
        )
        sentences.append(f"no Bedrock usage in {region} {span}: CloudWatch holds no Bedrock metric for it there.")
    return sentences


def _finish(console, warehouse, as_of, result, endpoints, regions: Sequence[str] | None = None) -> RunSummary:
    rows = summary_rows(warehouse, endpoints)
    index = warehouse.reports() / "index.html"
    cost = extract_cost(result) if result is not None else {}
    if cost.get("days"):
        console.print(
            f"run {result.run_id[:8]}: read {cost['days']} day(s) with {cost['calls']:,} GetMetricData calls, "
            f"{cost['metrics_requested']:,} metrics requested (≈ ${cost['estimated_cost_usd']:.4f}), "
            f"{cost['datapoints']:,} datapoints"
        )
    silent = [] if rows else no_usage_sentences(warehouse, as_of, regions)
    if silent:
        # An empty table and blank report pages would read as a failure; say what was looked at instead.
        for sentence in silent:
            console.print(sentence)
        if index.exists():
            console.print(f"Report index: {index}")
    else:
        print_summary(console, rows, index if index.exists() else None)
    return RunSummary(
        as_of=as_of,
        partitions=int(cost.get("days", 0)),
        calls=int(cost.get("calls", 0)),
        metrics_requested=int(cost.get("metrics_requested", 0)),
        datapoints=int(cost.get("datapoints", 0)),
        reports=tuple(sorted(warehouse.reports().glob("*/*.html"))),
        index=index if index.exists() else None,
        rows=tuple(rows),
        run_id=result.run_id if result is not None else None,
        estimated_cost_usd=float(cost.get("estimated_cost_usd", 0.0)),
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
    from pipelines.sandbox.scenario import ScenarioError
    from pipelines.sandbox.server import SandboxServer

    try:
        sandbox = SandboxServer(scenario, now=as_of, port=0)
    except (ScenarioError, FileNotFoundError) as error:
        raise UserError(f"cannot load scenario {scenario!r}: {error}") from None
    with sandbox, _sandbox_credentials(sandbox.endpoint_url):
        regions = list(sandbox.scenario.regions)
        warehouse = WarehouseResource(reports_dir=str(output_dir) if output_dir else None)
        now = sandbox.now().astimezone(UTC).replace(tzinfo=None)
        as_of = as_of or default_as_of(now, warehouse.as_of_lag())
        console.print(
            f"sandbox account {sandbox.scenario.account_id} at {sandbox.endpoint_url}; as_of {as_of:%Y-%m-%d %H:%M}Z"
        )
        aws = AwsResource(regions=regions, endpoint_url=sandbox.endpoint_url)
        _check_output_dir(warehouse.reports())
        days = plan_days(warehouse, as_of, regions, 30, console)
        with console.status(
            f"reading {', '.join(regions)} from {days[0]} to {days[-1]} and building the warehouse"
        ) as status:
            result = execute(aws, warehouse, run_tags(as_of, days=days), status=status)
        return _finish(console, warehouse, as_of, result, None)


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
        with warehouse.connect(read_only=True) as connection:
            endpoints = resolve_endpoints(connection, region, model_ids)
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
        # An account without usage leaves coverage but no datapoint: say that rather than "run buw analyze".
        silent = no_usage_sentences(warehouse, None, [region] if region else None)
        if silent:
            for sentence in silent:
                console.print(sentence)
            return
        raise UserError("the warehouse holds no usage yet; run `buw analyze` (or pass --as-of to build the marts).")
    # A new as_of moves every window, so the marts are rebuilt first; otherwise only the pages are rendered.
    build_models_and_reports(warehouse, as_of or stored, endpoints=endpoints, steps="all" if as_of else "reports")
    _finish(console, warehouse, as_of or stored, None, endpoints)

"""What each ``buw`` command does; the argument parsing lives in cli.py.

``analyze`` and ``demo`` are each one real Dagster run of the pipeline's assets (snapshots, the metric days the
lake needs, the marts with their checks, the reports) in the instance the UI reads (``DAGSTER_HOME``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from pipelines.errors import UserError, explain

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _dagster_home() -> Path:
    """DAGSTER_HOME, defaulting to ./.dagster so CLI runs and `dagster dev` share one instance."""
    home = Path(os.environ.get("DAGSTER_HOME") or ".dagster").resolve()
    settings = home / "dagster.yaml"
    try:
        home.mkdir(parents=True, exist_ok=True)
        if not settings.exists():
            # One metrics run reads CloudWatch at a time (pool "cloudwatch" on metric_points) and keeps itself
            # under 50 calls/s, so a backfill from the UI stays under the account's GetMetricData TPS quota.
            # Freshness policies (each asset's expected age, shown in the UI) are evaluated only where enabled.
            settings.write_text(
                "telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n"
                "freshness:\n  enabled: true\n"
            )
    except OSError as error:
        raise UserError(
            f"DAGSTER_HOME {home} cannot be used ({error.strerror or error}); point it at a writable directory."
        ) from None
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _console():
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:
        # Piped or captured output: wide enough that endpoint ids are not cut.
        console = Console(highlight=False, width=160)
    return console


# sandbox ---


def sandbox_command(args: argparse.Namespace) -> int:
    from pipelines.sandbox.auth import PolicyError, load_policy
    from pipelines.sandbox.scenario import ScenarioError
    from pipelines.sandbox.server import FAULT_KINDS, SandboxPortInUse, run
    from pipelines.settings import parse_as_of

    kinds = tuple(kind.strip() for kind in args.fault_kinds.split(",") if kind.strip())
    unknown = sorted(set(kinds) - set(FAULT_KINDS))
    if unknown:
        raise UserError(f"--fault-kinds has {', '.join(unknown)}; choose from {', '.join(FAULT_KINDS)}.")
    if not 0.0 <= args.fault_rate <= 1.0:
        raise UserError(f"--fault-rate {args.fault_rate} is outside 0..1.")
    if args.tps is not None and not args.tps > 0:
        raise UserError(f"--tps {args.tps:g} is not a positive rate; give calls per second, e.g. --tps 50.")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port} is not a TCP port; use 1..65535, or 0 for a free one.")
    policy = None
    if args.policy is not None:
        try:
            policy = load_policy(Path(args.policy))
        except PolicyError as error:
            raise UserError(f"--policy {args.policy}: {error}.") from None
    try:
        now = parse_as_of(args.now) if args.now else None
    except ValueError as error:
        raise UserError(f"--now: {error}.") from None
    try:
        run(
            host=args.host,
            port=args.port,
            scenario=args.scenario,
            seed=args.seed,
            now=now,
            fault_rate=args.fault_rate,
            fault_kinds=kinds,
            tps=args.tps,
            policy=policy,
            reject_credentials=args.reject_credentials,
        )
    except SandboxPortInUse as error:
        raise UserError(str(error)) from None
    except (ScenarioError, FileNotFoundError) as error:
        raise UserError(f"cannot load scenario {args.scenario!r}: {error}") from None
    return 0


# sql ---


def sql_command(args: argparse.Namespace) -> int:
    # Only the settings module and DuckDB: `buw sql` starts in a fraction of a second because it imports neither
    # Dagster nor boto3.
    import duckdb

    from pipelines.settings import database_path

    query = args.query.strip()
    if not query or not query.strip(";").strip():
        raise UserError('the query is empty; pass one SQL statement, e.g. buw sql "select * from endpoints limit 5".')
    database = database_path()
    if not database.exists():
        raise UserError(f"there is no warehouse at {database} yet; run `buw analyze` or `buw demo` first.")
    try:
        # External access off: the session reads the warehouse and nothing else (no files, no COPY, no extensions
        # to install), so a query pasted from elsewhere cannot read or write files as the user.
        connection = duckdb.connect(str(database), read_only=True, config={"enable_external_access": False})
    except duckdb.Error as error:
        raise UserError(f"cannot open {database}: {_first_line(error)}") from None
    with connection:
        connection.execute("set timezone = 'UTC'")
        try:
            relation = connection.sql(query)
            if relation is None:
                return 0
            columns, rows = relation.columns, relation.fetchall()
        except duckdb.Error as error:
            raise UserError(_query_failure(connection, query, error)) from None
    _print_rows(columns, rows, args.format)
    return 0


def _query_failure(connection, query: str, error: Exception) -> str:
    """One sentence for a failed query, with a hint for the mistakes people make most with this warehouse."""
    import re

    import duckdb

    # DuckDB ends some messages with "!", which reads oddly before the hint.
    message = f"the query failed: {_first_line(error).rstrip('!')}"
    if isinstance(error, duckdb.ParserException) and re.search(r'(?<!["\w])window(?![\w"])', query, re.IGNORECASE):
        return f'{message}; window is an SQL keyword, so write the column as "window" (in double quotes).'
    if isinstance(error, duckdb.CatalogException) and "does not exist" in str(error):
        tables = [
            name
            for (name,) in connection.execute(
                "select table_name from duckdb_tables() where schema_name = 'main' order by table_name"
            ).fetchall()
        ]
        # Only on this error path: the models module is heavier than the rest of `buw sql`.
        from pipelines.models import READ_THROUGH, seed_names

        named = sorted(name for name in READ_THROUGH if re.search(rf"\b{name}\b", query, re.IGNORECASE))
        if named:
            return (
                f"{message}; {named[0]} is read from the lake while the models build and is not kept in the "
                "warehouse: its rows are in usage_minute (1-minute) and usage_bucket (5-minute and 1-hour)."
            )

        seeds = set(seed_names())
        marts = [name for name in tables if not name.startswith("stg_") and name not in seeds]
        others = [name for name in tables if name.startswith("stg_") or name in seeds]
        return (
            f"{message}; the marts are {', '.join(marts) or 'not built yet'}"
            + (f" (staging and lookup tables: {', '.join(others)})" if others else "")
            + "."
        )
    if isinstance(error, duckdb.PermissionException):
        return f"{message}; buw sql only reads the warehouse's tables (files, COPY and ATTACH are disabled)."
    return message


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _print_rows(columns: list[str], rows: list[tuple], output_format: str) -> None:
    if output_format == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    elif output_format == "json":
        import json

        print(json.dumps([dict(zip(columns, row, strict=True)) for row in rows], default=str, indent=2))
    else:
        from rich.table import Table

        table = Table(*columns, show_lines=False)
        for row in rows:
            table.add_row(*("" if value is None else str(value) for value in row))
        _console().print(table)


# quotas ---


def quotas_match_command(args: argparse.Namespace) -> int:
    from pipelines.quotas.cli import QuotaInputError, match_command

    try:
        return match_command(args.quotas, args.models, args.profiles, out=sys.stdout)
    except QuotaInputError as error:
        raise UserError(str(error)) from None


def refresh_command(args: argparse.Namespace) -> int:
    from pipelines.quotas.refresh import refresh

    return refresh(args.what, region=args.region, llm_model_id=args.llm, profile=args.profile)


# env ---


def env_command() -> int:
    import shlex

    from pipelines.resources import WarehouseResource

    home = _dagster_home()
    warehouse = WarehouseResource()
    settings = {
        "DAGSTER_HOME": str(home),
        "BUW_WAREHOUSE": str(warehouse.root()),
        "BUW_REPORTS": str(warehouse.reports()),
    }
    for name in ("BUW_REGIONS", "BUW_AS_OF_LAG_MINUTES", "AWS_PROFILE", "AWS_REGION", "AWS_ENDPOINT_URL"):
        if os.environ.get(name):
            settings[name] = os.environ[name]
    for name, value in settings.items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


# dev ---


# `dagster dev` gets this long to stop its webserver, daemon and code servers after SIGTERM before it is killed.
DEV_STOP_SECONDS = 20.0


def dev_command(args: argparse.Namespace) -> int:
    from pipelines.sandbox.server import SandboxServer
    from pipelines.settings import reports_dir, warehouse_root

    if not 0 < args.port < 65536:
        raise UserError(f"--port {args.port} is not a TCP port; give one between 1 and 65535.")
    home = _dagster_home()
    with SandboxServer("demo", port=0) as sandbox:
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "AWS_ENDPOINT_URL": sandbox.endpoint_url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": sandbox.scenario.regions[0],
            "BUW_REGIONS": ",".join(sandbox.scenario.regions),
            # The UI runs from the project root; these keep it on the warehouse the CLI uses from here.
            "BUW_WAREHOUSE": str(warehouse_root()),
            "BUW_REPORTS": str(reports_dir()),
        }
        env.pop("AWS_PROFILE", None)
        print(f"sandbox at {sandbox.endpoint_url}; starting the Dagster UI on http://127.0.0.1:{args.port}", flush=True)
        command = [
            sys.executable,
            "-m",
            "dagster",
            "dev",
            "-w",
            str(PROJECT_ROOT / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(args.port),
        ]
        # Its own session (and so process group): a signal to `buw dev` reaches dagster dev only through
        # _supervise, which then stops the whole group (webserver, daemon, code servers) before the sandbox
        # they use goes away.
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, start_new_session=True)
        return _supervise(process)


def _supervise(process: subprocess.Popen, grace: float = DEV_STOP_SECONDS) -> int:
    """Wait for ``process`` (a process group leader); on SIGTERM or SIGINT stop its whole group.

    The group gets SIGTERM, then SIGKILL for whatever is left after ``grace`` seconds. Returns the process's exit
    code, or 0 when it was stopped by a signal to us.
    """
    import signal
    import time

    received: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        received.append(signum)

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        deadline = None
        while process.poll() is None:
            if received and deadline is None:
                _signal_group(process.pid, signal.SIGTERM)
                deadline = time.monotonic() + grace
            if deadline is not None and time.monotonic() > deadline:
                _signal_group(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.2)
    finally:
        # dagster dev may exit before its children do (or crash and leave them): stop what is left of the group.
        _stop_group(process.pid, grace)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0 if received else process.returncode


def _signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to process group ``pgid``; False once the group has no process left."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        # A zombie-only group on macOS; nothing left that runs.
        return False
    return True


def _stop_group(pgid: int, grace: float) -> None:
    import signal
    import time

    if not _signal_group(pgid, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _signal_group(pgid, 0):
            return
        time.sleep(0.1)
    _signal_group(pgid, signal.SIGKILL)


# analyze / demo / report ---


BREAKDOWN_FORMS = "principal, session, tag:<key> or metadata:<key>"


def parse_breakdown(text: str) -> str:
    """A ``--breakdown`` value as the caller_attribution dimension it names; a malformed one is a UserError."""
    value = text.strip()
    if value in ("principal", "session"):
        return value
    kind, _, key = value.partition(":")
    if kind in ("tag", "metadata") and key.strip():
        return f"{kind}:{key.strip()}"
    raise UserError(f"--breakdown {text!r} is not one of {BREAKDOWN_FORMS} (e.g. --breakdown tag:team).")


def analyze_command(args: argparse.Namespace, *, granularity: dict[str, str], as_of: datetime | None) -> int:
    from pipelines.pipeline import AnalyzeRequest, run_analyze

    # -y/--yes: never prompt, even in a terminal (for scripts run from one).
    interactive = sys.stdin.isatty() and sys.stdout.isatty() and not args.yes
    region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region is None:
        if not interactive:
            raise UserError("no region given; pass -r/--region (e.g. -r us-east-1) or set AWS_REGION.")
        from rich.prompt import Prompt

        region = Prompt.ask("AWS region", default="us-east-1")
    breakdowns = tuple(parse_breakdown(text) for text in args.breakdown)
    request = AnalyzeRequest(
        breakdowns=breakdowns,
        region=region,
        model_ids=tuple(args.model_id),
        granularity=granularity,
        as_of=as_of,
        output_dir=Path(args.output_dir).resolve() if args.output_dir else None,
        profile=args.profile,
        days=args.days,
        interactive=interactive,
    )
    _dagster_home()
    try:
        run_analyze(request, console=_console())
    except Exception as error:
        message = explain(error, f"analyzing {region}")
        if message is None or isinstance(error, UserError):
            raise
        raise UserError(message) from error
    return 0


def demo_command(args: argparse.Namespace, *, as_of: datetime | None) -> int:
    from pipelines.pipeline import run_demo

    _dagster_home()
    output_dir = Path(args.output_dir).resolve() if args.output_dir else None
    run_demo(scenario=args.scenario, as_of=as_of, output_dir=output_dir, console=_console())
    return 0


def report_command(args: argparse.Namespace, *, as_of: datetime | None) -> int:
    from pipelines.pipeline import rerender_reports

    _dagster_home()
    output_dir = Path(args.output_dir).resolve() if args.output_dir else None
    rerender_reports(
        region=args.region,
        model_ids=tuple(args.model_id),
        as_of=as_of,
        output_dir=output_dir,
        console=_console(),
    )
    return 0

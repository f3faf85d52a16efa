"""The ``buw`` command: analyze an account, run the demo, serve the sandbox, query and re-render the warehouse."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime

from pipelines.errors import UserError

GRANULARITIES = ("1min", "5min", "1hour")
WINDOW_NAMES = {"1hour": "1h", "1day": "1d", "7days": "7d", "14days": "14d", "30days": "30d"}


def parse_granularity(text: str) -> dict[str, str]:
    """``1min``/``5min``/``1hour`` for every window, or JSON per window as bedrock-usage-analyzer takes it.

    Returns {window: granularity} with our window names (1h, 1d, 7d, 14d, 30d). The granularity sets the chart
    bucket of each window in the report; the warehouse always keeps the finest data CloudWatch still has.
    """
    text = text.strip()
    if text in GRANULARITIES:
        return dict.fromkeys(WINDOW_NAMES.values(), text)
    try:
        given = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(
            f"--granularity {text!r} is neither one of {', '.join(GRANULARITIES)} nor valid JSON ({error.msg}); "
            'use e.g. \'{"1hour": "1min", "1day": "1min", "7days": "5min", "14days": "1hour", "30days": "1hour"}\'.'
        ) from None
    if not isinstance(given, dict):
        raise UserError("--granularity JSON must be an object mapping windows to granularities.")
    chosen = dict.fromkeys(WINDOW_NAMES.values(), "1min")
    for window, granularity in given.items():
        if window not in WINDOW_NAMES and window not in WINDOW_NAMES.values():
            raise UserError(f"--granularity names an unknown window {window!r}; windows are {', '.join(WINDOW_NAMES)}.")
        if granularity not in GRANULARITIES:
            raise UserError(f"--granularity gives {granularity!r} for {window}; use one of {', '.join(GRANULARITIES)}.")
        chosen[WINDOW_NAMES.get(window, window)] = granularity
    return chosen


def _as_of(text: str | None) -> datetime | None:
    if text is None:
        return None
    from pipelines.settings import parse_as_of

    try:
        return parse_as_of(text)
    except ValueError as error:
        raise UserError(f"--as-of: {error}.") from None


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the command's --help (exit status 2, as argparse's)."""

    def error(self, message: str):
        self.exit(2, f"buw: {message}; see `{self.prog} --help`.\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="buw",
        description="Bedrock Usage Warehouse: TPM, RPM and TPD per Amazon Bedrock endpoint, who drives them, "
        "when throttling happened and how far usage is from the Service Quotas — kept in a local DuckDB warehouse.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    analyze = commands.add_parser(
        "analyze",
        help="extract an account's usage incrementally, build the marts and write the reports",
        description="Extract CloudWatch usage, inference profiles, tags and quotas for a region into the warehouse "
        "(only what is missing or changed since the last run), rebuild the marts and write HTML + JSON reports. "
        "Prompts for what is missing when run in a terminal; never prompts otherwise.",
    )
    analyze.add_argument("-r", "--region", help="AWS region, e.g. us-east-1 (default: AWS_REGION)")
    analyze.add_argument(
        "-m",
        "--model-id",
        action="append",
        default=[],
        help="endpoint to report: base model id, us./eu./global. profile id, or a system or application profile "
        "ARN or id; repeatable (default: every endpoint with usage in the region)",
    )
    analyze.add_argument(
        "-g",
        "--granularity",
        default="1min",
        help="chart bucket per window: 1min, 5min, 1hour, or JSON per window like bedrock-usage-analyzer's",
    )
    analyze.add_argument("-y", "--yes", action="store_true", help="never prompt, even in a terminal")
    analyze.add_argument("-o", "--output-dir", help="where reports go (default: BUW_REPORTS or reports/out)")
    analyze.add_argument("--as-of", help="end of every window, ISO-8601 UTC (default: the current minute)")
    analyze.add_argument("--profile", help="AWS named profile (default: AWS_PROFILE)")
    analyze.add_argument("--days", type=int, default=30, help="days of history to backfill on a first run (30)")
    analyze.add_argument(
        "--breakdown",
        action="append",
        default=[],
        metavar="DIMENSION",
        help="also read the model invocation logs and print the top callers per endpoint by principal, session, "
        "tag:<IAM tag key> or metadata:<requestMetadata key>; repeatable (needs the invocation-log permissions "
        "of docs/iam-policy.md)",
    )

    demo = commands.add_parser(
        "demo",
        help="run the whole pipeline on the bundled sandbox account and write its reports",
        description="Start the sandbox in-process, run extraction, models and reports for every endpoint of the "
        "demo account, print the index path and a summary. Needs no AWS account.",
    )
    demo.add_argument("--scenario", default="demo", help="sandbox scenario name or YAML path (demo)")
    demo.add_argument("--as-of", help="pin the clock, ISO-8601 UTC (default: the current minute)")
    demo.add_argument("-o", "--output-dir", help="where reports go (default: BUW_REPORTS or reports/out)")

    sandbox = commands.add_parser(
        "sandbox",
        help="serve the simulated Bedrock account on a local AWS-compatible endpoint",
        description="Serve CloudWatch, Bedrock, Service Quotas, STS, Account and EC2 on one port until "
        "interrupted. Point any boto3 tool at it with AWS_ENDPOINT_URL and dummy credentials.",
    )
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=4566, help="port (0 picks a free one)")
    sandbox.add_argument("--scenario", default="demo", help="bundled scenario name or a YAML path")
    sandbox.add_argument("--seed", type=int, default=0, help="traffic seed")
    sandbox.add_argument("--now", help="pin the sandbox clock, ISO-8601 UTC")
    sandbox.add_argument("--fault-rate", type=float, default=0.0, help="share of AWS calls that fail (0..1)")
    sandbox.add_argument(
        "--fault-kinds", default="throttle,500,reset,slow", help="comma list of throttle,500,reset,slow"
    )
    sandbox.add_argument("--tps", type=float, help="calls per second above which ThrottlingException is returned")
    sandbox.add_argument(
        "--policy",
        metavar="FILE",
        help="IAM policy JSON: calls whose action it does not allow get AccessDenied (e.g. docs/iam-policy.md's)",
    )
    sandbox.add_argument(
        "--reject-credentials",
        choices=("expired", "invalid"),
        help="refuse every call as AWS refuses an expired session token or an unknown access key",
    )

    sql = commands.add_parser(
        "sql",
        help="run a SQL query on the warehouse and print the result",
        description="Run SQL against warehouse/usage.duckdb and print a table, CSV or JSON. The session is read-only "
        "and reads the warehouse's tables only (no files, COPY or ATTACH); it never waits for a model build.",
    )
    sql.add_argument(
        "query", help='SQL, e.g. "select * from endpoints limit 5"; quote the column "window": it is a keyword'
    )
    sql.add_argument("--format", choices=("table", "csv", "json"), default="table")

    report = commands.add_parser(
        "report",
        help="re-render the reports from the warehouse without calling AWS",
        description="Render HTML + JSON reports and the index from the marts already in the warehouse.",
    )
    report.add_argument("-o", "--output-dir", help="where reports go (default: BUW_REPORTS or reports/out)")
    report.add_argument("-r", "--region", help="only this region")
    report.add_argument("-m", "--model-id", action="append", default=[], help="only these endpoints (repeatable)")
    report.add_argument("--as-of", help="as_of recorded by the last model build is used unless given")

    commands.add_parser(
        "env",
        help="print the environment Dagster's own CLI needs to use this warehouse and instance",
        description="Print `export` lines (DAGSTER_HOME, BUW_WAREHOUSE, BUW_REPORTS and the AWS settings in use) "
        "for a shell, so `dagster asset materialize -m pipelines.definitions ...` runs in the instance the UI "
        'reads: eval "$(buw env)".',
    )

    dev = commands.add_parser(
        "dev",
        help="start the sandbox and the Dagster UI (dagster dev) wired to it",
        description="Serve the sandbox on a free port and run `dagster dev -w workspace.yaml` with "
        "AWS_ENDPOINT_URL pointing at it. Stop with Ctrl-C (or SIGTERM): the UI and the sandbox both stop.",
    )
    dev.add_argument("--port", type=int, default=3000, help="port of the Dagster UI on 127.0.0.1 (default 3000)")

    quotas = commands.add_parser("quotas", help="model to Service Quotas mapping")
    quota_commands = quotas.add_subparsers(dest="quotas_command", metavar="SUBCOMMAND", required=True)
    match = quota_commands.add_parser(
        "match",
        help="map model ids to quota codes from AWS listings saved as JSON; prints CSV",
        description="Read ListServiceQuotas, ListFoundationModels and (optionally) ListInferenceProfiles output "
        "saved as JSON and print model_id,endpoint,quota_type,quota_code,quota_name as CSV.",
    )
    match.add_argument(
        "--quotas", required=True, help="`aws service-quotas list-service-quotas --service-code bedrock`"
    )
    match.add_argument("--models", required=True, help="`aws bedrock list-foundation-models`")
    match.add_argument("--profiles", help="`aws bedrock list-inference-profiles` (gives the geographic prefixes)")

    refresh = commands.add_parser("refresh", help="refresh region, model and quota metadata from AWS")
    refresh.add_argument("what", choices=("regions", "fm-list", "fm-quotas", "quota-index"), help="what to refresh")
    refresh.add_argument("region", nargs="?", help="region (default: every Bedrock region enabled)")
    refresh.add_argument("--llm", metavar="MODEL_ID", help="let a Bedrock model pick among undecided quotas")
    refresh.add_argument("--profile", help="AWS named profile")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``buw`` console script."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("buw: interrupted; the warehouse keeps every partition that finished.", file=sys.stderr)
        return 130
    except Exception as error:
        from pipelines.errors import explain

        message = explain(error)
        if message is None or args.debug:
            raise
        print(f"buw: {message}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    from pipelines import preflight

    if args.command == "sandbox":
        from pipelines.commands import sandbox_command

        return sandbox_command(args)
    if args.command == "analyze":
        from pipelines.commands import analyze_command

        granularity = parse_granularity(args.granularity)
        as_of = _as_of(args.as_of)
        # The windows end at as_of, and CloudWatch serves nothing older than its retention.
        preflight.check_as_of(as_of, oldest=preflight.CLOUDWATCH_RETENTION)
        preflight.check_days(args.days)
        preflight.check_endpoint_url()
        _check_warehouse(write=True, lake=False)
        return analyze_command(args, granularity=granularity, as_of=as_of)
    if args.command == "demo":
        from pipelines.commands import demo_command

        # The demo's as_of sets the sandbox's clock, so any past time is a valid one.
        as_of = _as_of(args.as_of)
        _check_warehouse(write=True, lake=False)
        return demo_command(args, as_of=as_of)
    if args.command == "sql":
        from pipelines.commands import sql_command

        if not args.query.strip():
            raise UserError('the query is empty; pass one SQL statement, e.g. buw sql "select * from endpoints".')
        _check_warehouse(write=False)
        return sql_command(args)
    if args.command == "report":
        from pipelines.commands import report_command

        # A report may look back as far as the warehouse holds data, which can be older than CloudWatch keeps.
        as_of = _as_of(args.as_of)
        preflight.check_as_of(as_of, oldest=None)
        if args.region is not None:
            preflight.check_region(args.region)
        # A new as_of rebuilds the marts; otherwise the reports are rendered from them as they are.
        _check_warehouse(write=as_of is not None)
        return report_command(args, as_of=as_of)
    if args.command == "env":
        from pipelines.commands import env_command

        return env_command()
    if args.command == "dev":
        from pipelines.commands import dev_command

        return dev_command(args)
    if args.command == "quotas":
        from pipelines.commands import quotas_match_command

        return quotas_match_command(args)
    if args.command == "refresh":
        from pipelines.commands import refresh_command

        preflight.check_endpoint_url()
        return refresh_command(args)
    raise UserError(f"unknown command {args.command!r}; see `buw --help`.")


def _check_warehouse(*, write: bool, lake: bool = True) -> None:
    """What a command that reads (and, with ``write``, builds) the warehouse needs before it starts.

    ``lake=False`` leaves the lake's files to the run's planning, which reads unreadable metric days again.
    """
    # The settings module, not the warehouse resource: `buw sql` must not import Dagster or boto3.
    from pipelines import preflight, settings

    preflight.check_warehouse_dir(settings.warehouse_root(), write=write)
    preflight.check_database(settings.database_path())
    if write and lake:
        preflight.check_lake(settings.lake_dir())
    if write:
        preflight.check_overrides()


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

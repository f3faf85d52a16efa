"""CloudWatch Logs: the model invocation log group, Logs Insights queries and FilterLogEvents.

The account has one log group per logging region (the scenario's ``invocation_logging.log_group``) with one
stream, ``aws/bedrock/modelinvocations``. Its events are the invocation records of
:mod:`pipelines.sandbox.invocation_logs`, visible from when logging was switched on until the sandbox clock.

Logs Insights queries run in background threads, as on AWS: StartQuery answers a queryId at once, the query is
``Scheduled`` then ``Running``, and GetQueryResults shows ``Complete`` with the rows and statistics. At most
:data:`MAX_CONCURRENT_QUERIES` queries may be unfinished at once (LimitExceededException beyond). Every scan is
counted in the sandbox stats (``logs_records_scanned``, ``logs_bytes_scanned``).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from pipelines.sandbox.invocation_logs import (
    DAY_MS,
    LOG_STREAM,
    InvocationLogs,
    duckdb_cursor,
    invocation_logs,
    message_sql,
)
from pipelines.sandbox.logs_insights import MAX_LIMIT, QueryError, compile_query, parse_query, run_query
from pipelines.sandbox.protocols import ApiError
from pipelines.sandbox.services import CallContext, Handler, decode_token, encode_token, fingerprint
from pipelines.sandbox.traffic import Traffic

# Logs Insights quotas as AWS documents them for Logs Insights QL on standard log groups.
MAX_CONCURRENT_QUERIES = 30
RESULTS_PAGE_MAX = 10_000
# FilterLogEvents answers at most 10,000 events or 1 MB, whichever comes first.
FILTER_EVENTS_MAX = 10_000
FILTER_BYTES_MAX = 1_048_576
DESCRIBE_GROUPS_MAX = 50
_FINISHED = ("Complete", "Failed", "Cancelled", "Timeout")
_KEPT_QUERIES = 1000


@dataclass
class _Query:
    query_id: str
    region: str
    log_group: str
    text: str
    created: float
    status: str = "Scheduled"
    rows: list = field(default_factory=list)
    statistics: dict[str, float] = field(default_factory=dict)
    ready_at: float = 0.0
    error: str = ""


class LogsState:
    """The Logs Insights queries of one sandbox server.

    ``min_query_seconds`` keeps every query ``Running`` at least that long (default 0): a test raises it to hold
    queries open and reach the concurrency limit deterministically.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queries: OrderedDict[str, _Query] = OrderedDict()
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="buw-logs-insights")
        self.min_query_seconds = 0.0

    def status(self, query: _Query) -> str:
        if query.status == "Complete" and time.monotonic() < query.ready_at:
            return "Running"
        return query.status

    def unfinished(self) -> int:
        return sum(1 for q in self.queries.values() if self.status(q) not in _FINISHED)


_STATES: weakref.WeakKeyDictionary[Traffic, LogsState] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def logs_state(traffic: Traffic) -> LogsState:
    """The query state of the sandbox serving ``traffic`` (one per server)."""
    with _STATES_LOCK:
        state = _STATES.get(traffic)
        if state is None:
            state = _STATES[traffic] = LogsState()
        return state


def _logs(ctx: CallContext) -> InvocationLogs:
    return invocation_logs(ctx.traffic)


def _group_exists(ctx: CallContext, name: str) -> bool:
    logs = _logs(ctx)
    if not logs.enabled(ctx.region) or logs.config is None or name != logs.config.log_group:
        return False
    return logs.started_ms <= int(ctx.now.timestamp() * 1000)


def _require_group(ctx: CallContext, name: str | None) -> str:
    if not name:
        raise ApiError("InvalidParameterException", "A log group name or identifier is required.")
    # An identifier may be the group's ARN.
    match = re.match(r"^arn:aws:logs:[^:]+:\d{12}:log-group:(.+?)(:\*)?$", name)
    if match:
        name = match.group(1)
    if not _group_exists(ctx, name):
        raise ApiError(
            "ResourceNotFoundException",
            f"Log group '{name}' does not exist for account ID '{ctx.account_id}'",
        )
    return name


def _group_arn(ctx: CallContext, name: str) -> str:
    return f"arn:aws:logs:{ctx.region}:{ctx.account_id}:log-group:{name}"


def describe_log_groups(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """DescribeLogGroups: the invocation log group where logging is on, by prefix or pattern, paged."""
    logs = _logs(ctx)
    prefix = params.get("logGroupNamePrefix")
    pattern = params.get("logGroupNamePattern")
    if prefix and pattern:
        raise ApiError(
            "InvalidParameterException", "LogGroup name prefix and LogGroup name pattern are mutually exclusive"
        )
    groups = []
    if logs.config is not None and _group_exists(ctx, logs.config.log_group):
        name = logs.config.log_group
        if (not prefix or name.startswith(prefix)) and (not pattern or pattern.lower() in name.lower()):
            group: dict[str, Any] = {
                "logGroupName": name,
                "creationTime": logs.started_ms,
                "metricFilterCount": 0,
                "arn": _group_arn(ctx, name) + ":*",
                "storedBytes": 0,
                "logGroupClass": "STANDARD",
                "logGroupArn": _group_arn(ctx, name),
            }
            if logs.config.retention_days:
                group["retentionInDays"] = logs.config.retention_days
            groups.append(group)
    limit = params.get("limit") or DESCRIBE_GROUPS_MAX
    if not 1 <= limit <= DESCRIBE_GROUPS_MAX:
        raise ApiError("InvalidParameterException", f"limit must be between 1 and {DESCRIBE_GROUPS_MAX}.")
    return {"logGroups": groups[:limit]}


def describe_log_streams(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """DescribeLogStreams: Bedrock writes every record of a region to one stream."""
    name = _require_group(ctx, params.get("logGroupName") or params.get("logGroupIdentifier"))
    logs = _logs(ctx)
    prefix = params.get("logStreamNamePrefix") or ""
    if not LOG_STREAM.startswith(prefix):
        return {"logStreams": []}
    now_ms = int(ctx.now.timestamp() * 1000)
    stream = {
        "logStreamName": LOG_STREAM,
        "creationTime": logs.started_ms,
        "firstEventTimestamp": logs.started_ms,
        "lastEventTimestamp": now_ms,
        "lastIngestionTime": now_ms,
        "arn": f"{_group_arn(ctx, name)}:log-stream:{LOG_STREAM}",
        "storedBytes": 0,
    }
    return {"logStreams": [stream]}


# ---- Logs Insights ------------------------------------------------------------------------------------------


def start_query(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """StartQuery: checks the group, the time range, the query text and the concurrency limit, then runs."""
    language = params.get("queryLanguage") or "CWLI"
    if language != "CWLI":
        raise ApiError("InvalidParameterException", f"The sandbox runs Logs Insights QL (CWLI) only, not {language}.")
    names = list(params.get("logGroupNames") or params.get("logGroupIdentifiers") or [])
    if params.get("logGroupName"):
        names.insert(0, params["logGroupName"])
    if not names:
        raise ApiError(
            "InvalidParameterException", "Specify either logGroupName, logGroupNames or logGroupIdentifiers."
        )
    groups = sorted({_require_group(ctx, name) for name in names})
    start, end = int(params["startTime"]), int(params["endTime"])
    if end < start:
        raise ApiError("InvalidParameterException", "endTime must be greater than or equal to startTime.")
    limit = params.get("limit")
    if limit is not None and not 1 <= int(limit) <= MAX_LIMIT:
        raise ApiError("InvalidParameterException", f"limit must be between 1 and {MAX_LIMIT}.")
    text = params["queryString"]
    logs = _logs(ctx)
    try:
        # Compiled once against the record columns now, so an unsupported query is refused at once, as AWS does.
        compile_query(
            parse_query(text),
            logs.empty(ctx.region),
            account_id=ctx.account_id,
            region=ctx.region,
            log_group=groups[0],
            limit=None,
        )
    except QueryError as exc:
        raise ApiError("MalformedQueryException", str(exc)) from None
    state = logs_state(ctx.traffic)
    with state.lock:
        if state.unfinished() >= MAX_CONCURRENT_QUERIES:
            raise ApiError(
                "LimitExceededException",
                f"Account maximum query concurrency limit of [{MAX_CONCURRENT_QUERIES}] reached.",
            )
        query_id = str(uuid.UUID(bytes=hashlib.sha256(f"{len(state.queries)}|{time.time_ns()}".encode()).digest()[:16]))
        query = _Query(query_id, ctx.region, groups[0], text, time.monotonic())
        state.queries[query_id] = query
        while len(state.queries) > _KEPT_QUERIES:
            state.queries.popitem(last=False)
    # startTime and endTime are whole seconds, both included.
    lo, hi = logs.visible_range(ctx.now, start * 1000, (end + 1) * 1000)
    state.pool.submit(_run, state, query, logs, ctx, lo, hi, None if limit is None else int(limit))
    return {"queryId": query_id}


def _run(
    state: LogsState, query: _Query, logs: InvocationLogs, ctx: CallContext, lo: int, hi: int, limit: int | None
) -> None:
    with state.lock:
        if query.status == "Cancelled":
            return
        query.status = "Running"
    try:
        table = logs.records(ctx.region, lo, hi) if hi > lo else logs.empty(ctx.region)
        result = run_query(
            query.text,
            table,
            account_id=ctx.account_id,
            region=ctx.region,
            log_group=query.log_group,
            limit=limit,
        )
    except QueryError as exc:
        with state.lock:
            query.status, query.error = "Failed", str(exc)
        return
    except Exception as exc:  # never leave a query Running forever
        with state.lock:
            query.status, query.error = "Failed", f"{type(exc).__name__}: {exc}"
        return
    ctx.count("logs_records_scanned", result.records_scanned)
    ctx.count("logs_bytes_scanned", result.bytes_scanned)
    with state.lock:
        if query.status == "Cancelled":
            return
        query.rows = result.rows
        query.statistics = {
            "recordsMatched": float(result.records_matched),
            "recordsScanned": float(result.records_scanned),
            "estimatedRecordsSkipped": 0.0,
            "bytesScanned": float(result.bytes_scanned),
            "estimatedBytesSkipped": 0.0,
            "logGroupsScanned": 1.0,
        }
        query.ready_at = query.created + state.min_query_seconds
        query.status = "Complete"


def _find_query(ctx: CallContext, query_id: str) -> tuple[LogsState, _Query]:
    state = logs_state(ctx.traffic)
    with state.lock:
        query = state.queries.get(query_id)
    if query is None or query.region != ctx.region:
        raise ApiError("ResourceNotFoundException", f"Query {query_id} does not exist.")
    return state, query


def get_query_results(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """GetQueryResults: status, statistics, and the rows in pages of at most 10,000 (``nextToken``)."""
    state, query = _find_query(ctx, params["queryId"])
    with state.lock:
        status = state.status(query)
        rows = query.rows if status == "Complete" else []
        statistics = query.statistics if status == "Complete" else {}
    page_size = params.get("maxItems") or RESULTS_PAGE_MAX
    if not 1 <= page_size <= RESULTS_PAGE_MAX:
        raise ApiError("InvalidParameterException", f"maxItems must be between 1 and {RESULTS_PAGE_MAX}.")
    offset = 0
    if params.get("nextToken"):
        token = decode_token(params["nextToken"], "InvalidParameterException", "The nextToken is not valid.")
        if token.get("q") != query.query_id or not isinstance(token.get("o"), int):
            raise ApiError("InvalidParameterException", "The nextToken is not valid.")
        offset = token["o"]
    page = rows[offset : offset + page_size]
    ctx.count("logs_results_returned", len(page))
    result: dict[str, Any] = {
        "queryLanguage": "CWLI",
        "results": page,
        "statistics": statistics or {"recordsMatched": 0.0, "recordsScanned": 0.0, "bytesScanned": 0.0},
        "status": status,
    }
    if offset + page_size < len(rows):
        result["nextToken"] = encode_token({"q": query.query_id, "o": offset + page_size})
    return result


def stop_query(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """StopQuery: cancels a query that has not finished; a finished one cannot be stopped."""
    state, query = _find_query(ctx, params["queryId"])
    with state.lock:
        if state.status(query) in _FINISHED:
            raise ApiError("InvalidParameterException", f"Query {query.query_id} is not running.")
        query.status = "Cancelled"
        query.rows = []
    return {"success": True}


def describe_queries(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """DescribeQueries: the region's recent queries, newest first, optionally by status."""
    state = logs_state(ctx.traffic)
    wanted = params.get("status")
    out = []
    with state.lock:
        for query in reversed(state.queries.values()):
            status = state.status(query)
            if query.region != ctx.region or (wanted and status != wanted):
                continue
            if params.get("logGroupName") and query.log_group != params["logGroupName"]:
                continue
            out.append(
                {
                    "queryLanguage": "CWLI",
                    "queryId": query.query_id,
                    "queryString": query.text,
                    "status": status,
                    "logGroupName": query.log_group,
                }
            )
    return {"queries": out[: params.get("maxResults") or 1000]}


# ---- FilterLogEvents ----------------------------------------------------------------------------------------


def filter_log_events(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """FilterLogEvents: events of a time range matching a filter pattern, oldest first, paged by nextToken."""
    name = _require_group(ctx, params.get("logGroupName") or params.get("logGroupIdentifier"))
    streams = params.get("logStreamNames")
    prefix = params.get("logStreamNamePrefix")
    if streams and prefix:
        raise ApiError("InvalidParameterException", "logStreamNames and logStreamNamePrefix cannot both be specified.")
    limit = params.get("limit") or FILTER_EVENTS_MAX
    if not 1 <= limit <= FILTER_EVENTS_MAX:
        raise ApiError("InvalidParameterException", f"limit must be between 1 and {FILTER_EVENTS_MAX}.")
    logs = _logs(ctx)
    start = params.get("startTime")
    end = params.get("endTime")
    lo, hi = logs.visible_range(ctx.now, 0 if start is None else int(start), 2**62 if end is None else int(end) + 1)
    request_key = [ctx.region, name, start, end, params.get("filterPattern"), streams, prefix]
    # The position after the last event sent: (timestamp, requestId), the order events come in.
    after: tuple[int, str] | None = None
    if params.get("nextToken"):
        token = decode_token(params["nextToken"], "InvalidParameterException", "The nextToken is not valid.")
        if token.get("r") != fingerprint(request_key) or not isinstance(token.get("a"), list):
            raise ApiError("InvalidParameterException", "The nextToken is not valid for this request.")
        after = (int(token["a"][0]), str(token["a"][1]))
        if not _REQUEST_ID_RE.fullmatch(after[1]):
            raise ApiError("InvalidParameterException", "The nextToken is not valid for this request.")
        lo = max(lo, after[0])
        # A token carries the clock of the first page, so paging reads one consistent snapshot.
        hi = min(hi, int(token.get("t", hi)))
    searched = not (streams and LOG_STREAM not in streams) and not (prefix and not LOG_STREAM.startswith(prefix))
    events: list[dict[str, Any]] = []
    more = False
    if searched and hi > lo:
        page, more = _matching(logs, ctx, name, params.get("filterPattern") or "", lo, hi, after, limit)
        lines = logs.renderer(ctx.region).lines(page)
        stamps = page.column("@timestamp").to_pylist()
        request_ids = page.column("requestId").to_pylist()
        size = 0
        for stamp, request_id, message in zip(stamps, request_ids, lines, strict=True):
            size += len(message.encode("utf-8")) + 26
            if events and size > FILTER_BYTES_MAX:
                more = True
                break
            events.append(
                {
                    "logStreamName": LOG_STREAM,
                    "timestamp": stamp,
                    "message": message,
                    "ingestionTime": stamp + 2000,
                    "eventId": _event_id(stamp, request_id),
                }
            )
            after = (stamp, request_id)
        ctx.count("logs_events_returned", len(events))
        ctx.count("logs_bytes_returned", sum(len(e["message"].encode("utf-8")) for e in events))
    result: dict[str, Any] = {
        "events": events,
        "searchedLogStreams": [{"logStreamName": LOG_STREAM, "searchedCompletely": not more}] if searched else [],
    }
    if more and after is not None:
        result["nextToken"] = encode_token({"r": fingerprint(request_key), "a": list(after), "t": hi})
    return result


def _matching(
    logs: InvocationLogs,
    ctx: CallContext,
    group: str,
    pattern: str,
    lo: int,
    hi: int,
    after: tuple[int, str] | None,
    limit: int,
) -> tuple[pa.Table, bool]:
    """Up to ``limit`` matching records of ``[lo, hi)`` after the position ``after``, read a day at a time so a
    page costs the days it reaches, not the whole range; and whether more follow."""
    pieces: list[pa.Table] = []
    found = 0
    cursor = lo
    while cursor < hi and found <= limit:
        stop = min(hi, (cursor // DAY_MS + 1) * DAY_MS)
        table = logs.records(ctx.region, cursor, stop)
        cursor = stop
        if table.num_rows == 0:
            continue
        condition = filter_pattern_sql(pattern, table.column_names, ctx, group)
        if after is not None:
            condition = (
                f'({condition}) and ("@timestamp" > {after[0]} or '
                f'("@timestamp" = {after[0]} and "requestId" > \'{after[1]}\'))'
            )
        con = duckdb_cursor()
        try:
            con.register("records", table.append_column("__row", pa.array(np.arange(table.num_rows))))
            rows = con.execute(
                f'select "__row" from records where {condition} '
                f'order by "@timestamp", "requestId" limit {limit + 1 - found}'
            ).fetchnumpy()["__row"]
        except duckdb.Error as exc:
            raise ApiError("InvalidParameterException", f"Invalid filter pattern: {str(exc).splitlines()[0]}") from None
        finally:
            con.close()
        if len(rows):
            pieces.append(table.take(pa.array(rows)))
            found += len(rows)
    if not pieces:
        return logs.empty(ctx.region), False
    page = pa.concat_tables(pieces)
    return page.slice(0, limit), page.num_rows > limit


def _event_id(stamp: int, request_id: str) -> str:
    # CloudWatch event ids are 56-digit decimal strings; derived here from the time and the record.
    digest = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:16])
    return f"{stamp:020d}{digest % 10**36:036d}"


_REQUEST_ID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TERM_RE = re.compile(r'\s*([?-]?)("(?:[^"\\]|\\.)*"|[^\s"]+)')
_JSON_CONDITION_RE = re.compile(r"^\s*\$\.([A-Za-z0-9_.@-]+)\s*(=|!=|<=|>=|<|>)\s*(\"(?:[^\"\\]|\\.)*\"|[^\s)&|]+)\s*$")
_EXISTS_RE = re.compile(r"^\s*\$\.([A-Za-z0-9_.@-]+)\s+(NOT\s+)?EXISTS\s*$", re.IGNORECASE)


def filter_pattern_sql(pattern: str, columns: list[str], ctx: CallContext, group: str) -> str:
    """SQL for a filter pattern: terms (``ERROR``, ``"a phrase"``, ``?either ?or``, ``-not``) or a JSON
    pattern ``{ $.field = "value" && $.n > 5 || ... }`` with ``*`` wildcards in string values."""
    pattern = pattern.strip()
    if not pattern:
        return "true"
    if pattern.startswith("{"):
        if not pattern.endswith("}"):
            raise ApiError("InvalidParameterException", "Invalid filter pattern: a JSON pattern ends with '}'.")
        return _json_pattern(pattern[1:-1], set(columns))
    message = f"({message_sql(columns, ctx.account_id, ctx.region)})"
    required, optional, excluded = [], [], []
    for sign, term in _TERM_RE.findall(pattern):
        text = term[1:-1].replace('\\"', '"') if term.startswith('"') else term
        condition = f"contains({message}, '{text.replace(chr(39), chr(39) * 2)}')"
        {"": required, "?": optional, "-": excluded}[sign].append(condition)
    parts = list(required)
    if optional:
        parts.append("(" + " or ".join(optional) + ")")
    parts += [f"not {c}" for c in excluded]
    return " and ".join(parts) or "true"


def _json_pattern(body: str, columns: set[str]) -> str:
    # Split on || first, then &&, keeping parenthesised groups together.
    def split(text: str, separator: str) -> list[str]:
        parts, depth, current, i = [], 0, "", 0
        in_string = False
        while i < len(text):
            c = text[i]
            if c == '"' and (i == 0 or text[i - 1] != "\\"):
                in_string = not in_string
            if not in_string:
                if c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
                elif depth == 0 and text.startswith(separator, i):
                    parts.append(current)
                    current, i = "", i + len(separator)
                    continue
            current += c
            i += 1
        parts.append(current)
        return parts

    def condition(text: str) -> str:
        text = text.strip()
        if text.startswith("(") and text.endswith(")"):
            return "(" + _json_pattern(text[1:-1], columns) + ")"
        exists = _EXISTS_RE.match(text)
        if exists:
            column = exists.group(1)
            present = f'"{column}" is not null' if column in columns else "false"
            return f"not ({present})" if exists.group(2) else present
        match = _JSON_CONDITION_RE.match(text)
        if match is None:
            raise ApiError("InvalidParameterException", f"Invalid filter pattern: cannot read {text!r}.")
        column, op, raw = match.groups()
        if column not in columns:
            return "false"
        ident = '"' + column.replace('"', '""') + '"'
        numeric = re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", raw) is not None
        if raw.startswith('"') or not numeric:
            # Strings may be quoted or bare (``$.eventType = UpdateTrail``); numbers never are quoted.
            value = raw[1:-1].replace('\\"', '"') if raw.startswith('"') else raw
            if op not in ("=", "!="):
                raise ApiError("InvalidParameterException", "Invalid filter pattern: strings take = or != only.")
            like = value.replace("'", "''").replace("%", "\\%").replace("_", "\\_").replace("*", "%")
            test = f"cast({ident} as varchar) like '{like}' escape '\\'"
            return f"coalesce({test}, false)" if op == "=" else f"not coalesce({test}, false)"
        number = float(raw)
        sql_op = "<>" if op == "!=" else op
        return f"coalesce(try_cast({ident} as double) {sql_op} {number!r}, false)"

    alternatives = []
    for alternative in split(body, "||"):
        alternatives.append("(" + " and ".join(condition(c) for c in split(alternative, "&&")) + ")")
    return " or ".join(alternatives)


HANDLERS: dict[tuple[str, str], Handler] = {
    ("logs", "DescribeLogGroups"): describe_log_groups,
    ("logs", "DescribeLogStreams"): describe_log_streams,
    ("logs", "StartQuery"): start_query,
    ("logs", "GetQueryResults"): get_query_results,
    ("logs", "StopQuery"): stop_query,
    ("logs", "DescribeQueries"): describe_queries,
    ("logs", "FilterLogEvents"): filter_log_events,
}

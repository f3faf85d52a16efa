"""Bedrock model invocation log records of the simulated account, derived from the traffic model.

Nothing is stored. The records of one region and UTC day are computed on demand from the same per-minute arrays
CloudWatch's datapoints come from (:meth:`Traffic.series_day`): each minute's successful requests of a series
become that many records, its token totals are split among them integer-exactly (so the records of a series and
minute add up to the CloudWatch Sums), and its throttled, client-error and server-error requests become records
with an ``errorCode`` and no token counts. Callers, sessions, API flavour and ``requestMetadata`` values are drawn
from the scenario's ``callers`` with a counter-based generator keyed by (seed, region, series, day), so a day's
records never change when the clock moves.

A day is a columnar :class:`pyarrow.Table` whose column names are the records' field paths (``identity.arn``,
``input.inputTokenCount``, ...). :class:`Renderer` turns rows into the JSON text Bedrock writes with Arrow's
compute kernels (S3 objects, FilterLogEvents) and computes each line's length in numpy (bytes scanned);
:func:`message_sql` renders the same text inside DuckDB for Logs Insights' ``@message``.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.sandbox.scenario import Caller, Principal, Scenario, TrafficSpec
from pipelines.sandbox.traffic import MINUTES_PER_DAY, Traffic

LOG_STREAM = "aws/bedrock/modelinvocations"
OPERATIONS = ("Converse", "ConverseStream", "InvokeModel", "InvokeModelWithResponseStream")
# Failed calls are logged with the error Bedrock answered: throttles, client errors, server errors.
ERROR_CODES = ("ThrottlingException", "ValidationException", "InternalServerException")
MINUTE_MS = 60_000
DAY_MS = MINUTES_PER_DAY * MINUTE_MS
# Bedrock delivers a log object to S3 every few minutes; the sandbox cuts one object per 5-minute chunk.
S3_CHUNK_MS = 5 * MINUTE_MS
# A caller without ``callers`` in the scenario is the account's own IAM user (what STS reports for the sandbox).
DEFAULT_PRINCIPAL = Principal("user", "sandbox")
# Request and response bodies are never simulated: a short placeholder stands where Bedrock writes them.
_INPUT_BODY = '{"messages":"[omitted]"}'
_OUTPUT_BODY = '{"output":"[omitted]"}'
# Spread of single requests' shares of a minute's tokens (lognormal sigma).
_REQUEST_SPREAD = 0.6
_DAY_CACHE = 8

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


@dataclass(frozen=True)
class _Dictionaries:
    """Per region: the distinct strings records refer to by index."""

    arns: tuple[str, ...]
    principal_of_arn: tuple[str, ...]
    model_ids: tuple[str, ...]
    metadata: dict[str, tuple[str, ...]]  # key -> values
    series: tuple[str, ...]


class InvocationLogs:
    """The account's invocation logs: per-day record tables, time-range slices and the sandbox's own totals."""

    def __init__(self, traffic: Traffic) -> None:
        self.traffic = traffic
        self.scenario: Scenario = traffic.scenario
        self.config = self.scenario.invocation_logging
        self._cache: OrderedDict[tuple[str, int], pa.Table] = OrderedDict()
        self._lock = threading.Lock()
        self._dictionaries: dict[str, _Dictionaries] = {}
        self._renderers: dict[str, Renderer] = {}

    # ---- configuration -----------------------------------------------------------------------------------

    def enabled(self, region: str) -> bool:
        """Whether the region logs invocations at all."""
        return self.config is not None and region in self.config.regions

    @property
    def started_ms(self) -> int:
        """Epoch milliseconds when logging was switched on (the log group's creation time)."""
        assert self.config is not None
        started = self.config.started
        if isinstance(started, datetime):
            return int(started.timestamp() * 1000)
        return (self.traffic.anchor_minute + started * MINUTES_PER_DAY) * MINUTE_MS

    def visible_range(self, now: datetime, start_ms: int, end_ms: int) -> tuple[int, int]:
        """``[start, end)`` cut to what the logs hold at ``now``: after logging started, before now, and within
        the retention period."""
        now_ms = int(now.timestamp() * 1000)
        lo = max(start_ms, self.started_ms, self.traffic.history_start_minute * MINUTE_MS)
        if self.config is not None and self.config.retention_days:
            lo = max(lo, now_ms - self.config.retention_days * DAY_MS)
        return lo, min(end_ms, now_ms)

    # ---- records -----------------------------------------------------------------------------------------

    def records(self, region: str, start_ms: int, end_ms: int) -> pa.Table:
        """The logged records with ``start <= @timestamp < end``, in time order (empty where logging is off)."""
        if not self.enabled(region) or end_ms <= start_ms:
            return self.empty(region)
        pieces = []
        for day in range(start_ms // DAY_MS, (end_ms - 1) // DAY_MS + 1):
            table = self.day(region, day)
            stamps = table.column("@timestamp").to_numpy()
            lo, hi = np.searchsorted(stamps, [start_ms, end_ms])
            if hi > lo:
                pieces.append(table.slice(int(lo), int(hi - lo)))
        if not pieces:
            return self.empty(region)
        return pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]

    def empty(self, region: str) -> pa.Table:
        """A record table with no rows and the region's columns."""
        return self.day(region, -1).slice(0, 0) if self.enabled(region) else _empty_table(())

    def day(self, region: str, day: int) -> pa.Table:
        """Every logged record of one UTC day (epoch day number), sorted by ``@timestamp``."""
        key = (region, day)
        with self._lock:
            table = self._cache.get(key)
            if table is not None:
                self._cache.move_to_end(key)
                return table
        table = self._compute_day(region, day)
        with self._lock:
            self._cache[key] = table
            while len(self._cache) > _DAY_CACHE:
                self._cache.popitem(last=False)
        return table

    def dictionaries(self, region: str) -> _Dictionaries:
        """The strings the region's records use: caller ARNs, modelId spellings, metadata values, series."""
        found = self._dictionaries.get(region)
        if found is None:
            found = self._dictionaries[region] = self._build_dictionaries(region)
        return found

    def _principal(self, key: str) -> Principal:
        return self.scenario.principals.get(key, DEFAULT_PRINCIPAL)

    def _callers(self, spec: TrafficSpec) -> tuple[Caller, ...]:
        return spec.callers or (Caller(principal=DEFAULT_PRINCIPAL.key),)

    def _build_dictionaries(self, region: str) -> _Dictionaries:
        arns: dict[str, str] = {}
        model_ids: dict[str, None] = {}
        metadata: dict[str, dict[str, None]] = {}
        specs = self.scenario.traffic.get(region, ())
        for spec in specs:
            for caller in self._callers(spec):
                principal = self._principal(caller.principal)
                for arn in principal.caller_arns(self.scenario.account_id):
                    arns.setdefault(arn, principal.key)
                model_ids.setdefault(self._model_id_form(region, spec, caller), None)
                for key, values in caller.request_metadata:
                    metadata.setdefault(key, {}).update(dict.fromkeys(values))
        return _Dictionaries(
            arns=tuple(arns),
            principal_of_arn=tuple(arns.values()),
            model_ids=tuple(model_ids),
            metadata={k: tuple(v) for k, v in sorted(metadata.items())},
            series=tuple(spec.model_id for spec in specs),
        )

    def _model_id_form(self, region: str, spec: TrafficSpec, caller: Caller) -> str:
        """``modelId`` as the caller sends it: an application profile's ARN, else the endpoint's id or ARN."""
        profile = self.scenario.profile(region, spec.model_id)
        if profile is not None and profile.type == "APPLICATION":
            return profile.arn
        if caller.model_id_as == "arn":
            if profile is not None:
                return profile.arn
            return f"arn:aws:bedrock:{region}::foundation-model/{spec.model_id}"
        return spec.model_id

    def _compute_day(self, region: str, day: int) -> pa.Table:
        dicts = self.dictionaries(region)
        parts = []
        if day >= 0:
            for series_index, spec in enumerate(self.scenario.traffic.get(region, ())):
                series_day = self.traffic.series_day(region, spec.model_id, day)
                if series_day is not None:
                    parts.append(self._series_records(region, spec, series_index, day, series_day, dicts))
        columns = {name: np.concatenate([p[name] for p in parts]) if parts else None for name in _ARRAY_COLUMNS}
        meta = {
            key: np.concatenate([p["meta"][key] for p in parts]) if parts else np.zeros(0, np.int32)
            for key in dicts.metadata
        }
        stamps = columns["ts"] if parts else np.zeros(0, np.int64)
        # Time order, ties by requestId: the order FilterLogEvents, S3 objects and Logs Insights all show.
        if parts:
            # The first 8 bytes of a requestId order like its text (hex keeps byte order).
            rid_key = columns["rid"][:, :8].copy().view(">u8").ravel().astype(np.uint64)
            order = np.lexsort((rid_key, stamps))
        else:
            order = np.zeros(0, np.int64)
        started = self.started_ms if self.config is not None else 0
        order = order[stamps[order] >= started]
        table = _to_table({k: (v[order] if v is not None else None) for k, v in columns.items()}, meta, order, dicts)
        sizes = self.renderer(region).lengths(table)
        return table.append_column("__bytes", pa.array(sizes, type=pa.int64()))

    def renderer(self, region: str) -> Renderer:
        """Renders the region's records as Bedrock's JSON lines."""
        found = self._renderers.get(region)
        if found is None:
            found = self._renderers[region] = Renderer(self.scenario.account_id, region)
        return found

    def _series_records(
        self, region: str, spec: TrafficSpec, series_index: int, day: int, sd, dicts: _Dictionaries
    ) -> dict:
        digest = hashlib.blake2b(
            f"{self.traffic.seed}|{region}|{spec.model_id}|{day}|invocation-logs".encode(), digest_size=16
        ).digest()
        rng = np.random.Generator(np.random.Philox(key=np.frombuffer(digest, dtype=np.uint64).copy()))
        minutes = np.arange(MINUTES_PER_DAY, dtype=np.int64)
        ok = sd.ok.astype(np.int64)
        failed = [sd.throttles.astype(np.int64), sd.client_errors.astype(np.int64), sd.server_errors.astype(np.int64)]
        n_ok = int(ok.sum())
        first = np.cumsum(ok) - ok
        minute_ok = np.repeat(minutes, ok)
        position = np.arange(n_ok) - np.repeat(first, ok)
        weights_in = rng.lognormal(0.0, _REQUEST_SPREAD, n_ok)
        weights_out = rng.lognormal(0.0, _REQUEST_SPREAD, n_ok)
        tokens = {
            "in": _split(sd.tokens["InputTokenCount"][0], ok, first, weights_in),
            "out": _split(sd.tokens["OutputTokenCount"][0], ok, first, weights_out),
            "cr": _split(sd.tokens["CacheReadInputTokenCount"][0], ok, first, weights_in),
            "cw": _split(sd.tokens["CacheWriteInputTokenCount"][0], ok, first, weights_in),
        }
        streamed = np.repeat(sd.ttft[0].astype(np.int64), ok)
        stream_ok = position < streamed

        minute_failed = [np.repeat(minutes, counts) for counts in failed]
        n_failed = sum(len(m) for m in minute_failed)
        n = n_ok + n_failed
        minute = np.concatenate([minute_ok, *minute_failed])
        error = np.concatenate(
            [np.full(n_ok, -1, np.int8), *[np.full(len(m), i, np.int8) for i, m in enumerate(minute_failed)]]
        )
        stream = np.concatenate([stream_ok, rng.random(n_failed) < spec.streaming_share])

        callers = self._callers(spec)
        weights = np.array([c.weight for c in callers], dtype=np.float64)
        caller = rng.choice(len(callers), size=n, p=weights / weights.sum()) if len(callers) > 1 else np.zeros(n, int)
        arn_index = {arn: i for i, arn in enumerate(dicts.arns)}
        offsets, sessions, api, form = [], [], [], []
        for c in callers:
            principal_arns = self._principal(c.principal).caller_arns(self.scenario.account_id)
            offsets.append(arn_index[principal_arns[0]])
            sessions.append(len(principal_arns))
            api.append(0 if c.api == "converse" else 2)
            form.append(dicts.model_ids.index(self._model_id_form(region, spec, c)))
        pick = rng.random(n)
        arn = np.asarray(offsets)[caller] + np.floor(pick * np.asarray(sessions)[caller]).astype(np.int64)
        operation = np.asarray(api)[caller] + stream.astype(np.int64)
        meta = {}
        meta_draw = rng.random(n)
        for key, values in dicts.metadata.items():
            column = np.full(n, -1, np.int32)
            for i, c in enumerate(callers):
                choices = dict(c.request_metadata).get(key)
                if choices:
                    mine = caller == i
                    index = np.asarray([values.index(v) for v in choices], dtype=np.int32)
                    column[mine] = index[np.floor(meta_draw[mine] * len(choices)).astype(np.int64)]
            meta[key] = column
        stamps = (day * MINUTES_PER_DAY + minute) * MINUTE_MS + rng.integers(0, MINUTE_MS, n)
        none = np.full(n_failed, -1, np.int64)
        return {
            "ts": stamps,
            "rid": _request_ids(rng, n),
            "op": operation.astype(np.int32),
            "model": np.asarray(form, dtype=np.int32)[caller],
            "arn": arn.astype(np.int32),
            "error": error.astype(np.int32),
            "in": np.concatenate([tokens["in"], none]),
            "out": np.concatenate([tokens["out"], none]),
            "cr": np.concatenate([tokens["cr"], none]),
            "cw": np.concatenate([tokens["cw"], none]),
            "series": np.full(n, series_index, np.int32),
            "meta": meta,
        }

    # ---- totals the sandbox knows ------------------------------------------------------------------------

    def caller_totals(self, region: str, start: datetime, end: datetime) -> list[dict]:
        """The sandbox's own per-caller totals of ``[start, end)``: one row per (CloudWatch ModelId, caller ARN)
        with successful ``requests``, ``input_tokens``, ``output_tokens``, cache tokens and ``errors`` (failed
        calls); ``principal`` is ``role/<name>``, ``user/<name>`` or ``federated-user/<name>``."""
        table = self.records(region, int(start.timestamp() * 1000), int(end.timestamp() * 1000))
        if table.num_rows == 0:
            return []
        dicts = self.dictionaries(region)
        principal_of = dict(zip(dicts.arns, dicts.principal_of_arn, strict=True))
        con = duckdb_cursor()
        try:
            con.register("records", table)
            rows = con.execute(
                """
                select "__series", "identity.arn",
                    count(*) filter (where "errorCode" is null),
                    coalesce(sum("input.inputTokenCount"), 0),
                    coalesce(sum("output.outputTokenCount"), 0),
                    coalesce(sum("input.cacheReadInputTokenCount"), 0),
                    coalesce(sum("input.cacheWriteInputTokenCount"), 0),
                    count(*) filter (where "errorCode" is not null)
                from records group by all order by all
                """
            ).fetchall()
        finally:
            con.close()
        names = ("requests", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "errors")
        return [
            {
                "model_id": row[0],
                "arn": row[1],
                "principal": principal_of.get(row[1], row[1]),
                **dict(zip(names, map(int, row[2:]), strict=True)),
            }
            for row in rows
        ]

    # ---- S3 delivery ---------------------------------------------------------------------------------------

    def s3_prefix(self, region: str) -> str:
        """Where Bedrock puts a region's objects in its bucket."""
        assert self.config is not None
        return f"{self.config.s3_key_prefix}AWSLogs/{self.scenario.account_id}/BedrockModelInvocationLogs/{region}/"

    def s3_objects(self, region: str, day: int, now: datetime) -> list[tuple[str, int, int]]:
        """``(key, chunk start ms, chunk end ms)`` of the day's delivered objects, in key order: one per 5-minute
        chunk that holds records and has closed by ``now``."""
        lo, hi = self.visible_range(now, day * DAY_MS, (day + 1) * DAY_MS)
        if hi <= lo:
            return []
        table = self.day(region, day)
        stamps = table.column("@timestamp").to_numpy()
        chunks = np.unique(stamps // S3_CHUNK_MS)
        out = []
        for chunk in chunks.tolist():
            start, end = chunk * S3_CHUNK_MS, (chunk + 1) * S3_CHUNK_MS
            if start < lo or end > hi:
                continue
            out.append((self._object_key(region, start), start, end))
        return out

    def s3_object(self, region: str, key: str, now: datetime) -> tuple[int, int] | None:
        """``(chunk start ms, chunk end ms)`` of a delivered object's key, or None when there is no such object."""
        match = _KEY_TIME_RE.search(key)
        if match is None or not key.startswith(self.s3_prefix(region)):
            return None
        delivered = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
        start = int(delivered.timestamp() * 1000) + int(match.group(2)) - S3_CHUNK_MS
        end = start + S3_CHUNK_MS
        lo, hi = self.visible_range(now, start, end)
        if start % S3_CHUNK_MS or (lo, hi) != (start, end) or self._object_key(region, start) != key:
            return None
        stamps = self.day(region, start // DAY_MS).column("@timestamp").to_numpy()
        first, last = np.searchsorted(stamps, [start, end])
        return (start, end) if last > first else None

    def _object_key(self, region: str, start_ms: int) -> str:
        moment = datetime.fromtimestamp(start_ms / 1000, UTC)
        # Bedrock names an object after its delivery time plus a random suffix; here a hash keeps it stable.
        delivered = datetime.fromtimestamp((start_ms + S3_CHUNK_MS) / 1000, UTC)
        suffix = hashlib.blake2b(f"{self.traffic.seed}|{region}|{start_ms}".encode(), digest_size=8).hexdigest()
        return (
            f"{self.s3_prefix(region)}{moment:%Y/%m/%d/%H}/"
            f"{delivered:%Y%m%dT%H%M%S}{delivered.microsecond // 1000:03d}Z_{suffix}.json.gz"
        )

    def s3_object_body(self, region: str, start_ms: int, end_ms: int) -> bytes:
        """The gzipped newline-delimited JSON records of one chunk."""
        table = self.records(region, start_ms, end_ms)
        text = self.renderer(region).text(table)
        # mtime 0: the same object is byte-identical on every read, as a stored object would be.
        return gzip.compress(text, compresslevel=6, mtime=0)


_KEY_TIME_RE = re.compile(r"/(\d{8}T\d{6})(\d{3})Z_[0-9a-f]{16}\.json\.gz$")
_ARRAY_COLUMNS = ("ts", "rid", "op", "model", "arn", "error", "in", "out", "cr", "cw", "series")


def _split(totals: np.ndarray, counts: np.ndarray, first: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Split each minute's integer total among its ``counts`` requests in proportion to ``weights``, exactly.

    Cumulative shares are cut at floor(total x share); the last share of a minute is exactly 1, so the pieces
    of a minute add up to its total and none is negative.
    """
    if len(weights) == 0:
        return np.zeros(0, np.int64)
    cumulative = np.concatenate([[0.0], np.cumsum(weights)])
    base = np.repeat(cumulative[first], counts)
    end = np.repeat(cumulative[first + counts], counts)
    share = (cumulative[1:] - base) / (end - base)
    last = np.cumsum(counts)[counts > 0] - 1
    share[last] = 1.0
    total = np.repeat(totals.astype(np.int64), counts)
    bounds = np.floor(total * share).astype(np.int64)
    previous = np.concatenate([[0], bounds[:-1]])
    starts = np.zeros(len(weights), bool)
    starts[first[counts > 0]] = True
    previous[starts] = 0
    return bounds - previous


def _request_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random version-4 UUIDs as text, one row of 36 ASCII bytes each, rendered in numpy."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexed = np.empty((n, 32), dtype=np.uint8)
    hexed[:, 0::2] = _HEX[raw >> 4]
    hexed[:, 1::2] = _HEX[raw & 0x0F]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    for lo, hi, at in ((0, 8, 0), (8, 12, 9), (12, 16, 14), (16, 20, 19), (20, 32, 24)):
        out[:, at : at + hi - lo] = hexed[:, lo:hi]
    return out


def _fixed_strings(rows: np.ndarray) -> pa.Array:
    """A string array from an (n, width) array of ASCII bytes, without a Python object per row."""
    n, width = rows.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(rows).tobytes()))


def _dictionary(indices: np.ndarray, values: tuple[str, ...]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(indices, type=pa.int32(), mask=indices < 0), pa.array(values or ("",), type=pa.string())
    )


def _to_table(columns: dict, meta: dict[str, np.ndarray], order: np.ndarray, dicts: _Dictionaries) -> pa.Table:
    if columns["ts"] is None:
        return _empty_table(tuple(dicts.metadata))
    error = columns["error"]

    def counts(values: np.ndarray) -> pa.Array:
        return pa.array(values, type=pa.int64(), mask=values < 0)

    data = {
        "@timestamp": pa.array(columns["ts"], type=pa.int64()),
        "requestId": _fixed_strings(columns["rid"]),
        "operation": _dictionary(columns["op"], OPERATIONS),
        "modelId": _dictionary(columns["model"], dicts.model_ids),
        "identity.arn": _dictionary(columns["arn"], dicts.arns),
        "errorCode": _dictionary(error, ERROR_CODES),
        "input.inputTokenCount": counts(columns["in"]),
        "input.cacheReadInputTokenCount": counts(columns["cr"]),
        "input.cacheWriteInputTokenCount": counts(columns["cw"]),
        "output.outputTokenCount": counts(columns["out"]),
    }
    for key, values in dicts.metadata.items():
        data[f"requestMetadata.{key}"] = _dictionary(meta[key][order], values)
    data["__series"] = _dictionary(columns["series"], dicts.series)
    return pa.table(data)


def _empty_table(metadata_keys: tuple[str, ...]) -> pa.Table:
    fields = [
        ("@timestamp", pa.int64()),
        ("requestId", pa.string()),
        *[
            (name, pa.dictionary(pa.int32(), pa.string()))
            for name in ("operation", "modelId", "identity.arn", "errorCode")
        ],
        *[
            (name, pa.int64())
            for name in (
                "input.inputTokenCount",
                "input.cacheReadInputTokenCount",
                "input.cacheWriteInputTokenCount",
                "output.outputTokenCount",
            )
        ],
        *[(f"requestMetadata.{key}", pa.dictionary(pa.int32(), pa.string())) for key in metadata_keys],
        ("__series", pa.dictionary(pa.int32(), pa.string())),
    ]
    return pa.table({name: pa.array([], type=kind) for name, kind in fields})


# ---- the JSON text of a record ------------------------------------------------------------------------------


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def message_sql(columns: list[str], account_id: str, region: str) -> str:
    """A DuckDB expression that renders a record row as Bedrock's JSON line (fields in Bedrock's order)."""

    def text(column: str) -> str:
        return f'cast("{column}" as varchar)'

    ok = " || ".join(
        [
            _sql_text(
                f',"input":{{"inputContentType":"application/json","inputBodyJson":{_INPUT_BODY},"inputTokenCount":'
            ),
            text("input.inputTokenCount"),
            _sql_text(',"cacheReadInputTokenCount":'),
            text("input.cacheReadInputTokenCount"),
            _sql_text(',"cacheWriteInputTokenCount":'),
            text("input.cacheWriteInputTokenCount"),
            _sql_text(
                f'}},"output":{{"outputContentType":"application/json","outputBodyJson":{_OUTPUT_BODY},"outputTokenCount":'
            ),
            text("output.outputTokenCount"),
            _sql_text("}"),
        ]
    )
    failed = " || ".join(
        [
            _sql_text(',"errorCode":"'),
            text("errorCode"),
            _sql_text(f'","input":{{"inputContentType":"application/json","inputBodyJson":{_INPUT_BODY}}}'),
        ]
    )
    parts = [
        _sql_text('{"schemaType":"ModelInvocationLog","schemaVersion":"1.0","timestamp":"'),
        "strftime(make_timestamp(\"@timestamp\" * 1000), '%Y-%m-%dT%H:%M:%SZ')",
        _sql_text(f'","accountId":"{account_id}","identity":{{"arn":'),
        f"to_json({text('identity.arn')})",
        _sql_text(f'}},"region":"{region}","requestId":"'),
        '"requestId"',
        _sql_text('","operation":"'),
        text("operation"),
        _sql_text('","modelId":'),
        f"to_json({text('modelId')})",
        f'case when "errorCode" is null then {ok} else {failed} end',
    ]
    keys = [c[len("requestMetadata.") :] for c in columns if c.startswith("requestMetadata.")]
    if keys:
        members = ", ".join(
            f'case when "requestMetadata.{k}" is not null then '
            f"{_sql_text(_json_key(k))} || to_json({text('requestMetadata.' + k)}) end"
            for k in keys
        )
        joined = f"concat_ws(',', {members})"
        opening = _sql_text(',"requestMetadata":{')
        parts.append(f"case when {joined} <> '' then {opening} || {joined} || '}}' else '' end")
    parts.append("'}'")
    return " || ".join(parts)


def _json_key(key: str) -> str:
    escaped = key.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}":'


class Renderer:
    """Bedrock's JSON line of each record, built in Python from pre-rendered pieces (the S3 objects and
    FilterLogEvents), and its length in numpy (bytes scanned). :func:`message_sql` renders the same text in
    DuckDB for Logs Insights. Every string in a record is ASCII without quotes or backslashes (the scenario
    validates names and metadata), so a JSON string is the text in quotes."""

    def __init__(self, account_id: str, region: str) -> None:
        self.head = '{"schemaType":"ModelInvocationLog","schemaVersion":"1.0","timestamp":"'
        self.after_time = f'Z","accountId":"{account_id}","identity":{{"arn":"'
        self.after_arn = f'"}},"region":"{region}","requestId":"'
        self.ok = f',"input":{{"inputContentType":"application/json","inputBodyJson":{_INPUT_BODY},"inputTokenCount":'
        self.output = (
            f'}},"output":{{"outputContentType":"application/json","outputBodyJson":{_OUTPUT_BODY},"outputTokenCount":'
        )
        self.failed = [
            f',"errorCode":"{code}","input":{{"inputContentType":"application/json","inputBodyJson":{_INPUT_BODY}}}'
            for code in ERROR_CODES
        ]

    def _pieces(self, table: pa.Table) -> dict:
        def indices(name: str) -> np.ndarray:
            return _codes(table.column(name).combine_chunks())

        def values(name: str) -> list[str]:
            column = table.column(name).combine_chunks()
            return column.dictionary.to_pylist() if len(column) else []

        def counts(name: str) -> np.ndarray:
            return table.column(name).to_numpy(zero_copy_only=False)

        meta_keys = [c for c in table.column_names if c.startswith("requestMetadata.")]
        return {
            "operation": (indices("operation"), values("operation")),
            "model": (indices("modelId"), values("modelId")),
            "arn": (indices("identity.arn"), values("identity.arn")),
            "error": table.column("errorCode").combine_chunks(),
            "tokens": [counts(c) for c in _TOKEN_COLUMNS],
            "meta": [(k[len("requestMetadata.") :], table.column(k).combine_chunks()) for k in meta_keys],
        }

    def render(self, table: pa.Table, newline: bool = False) -> pa.Array:
        """The JSON line of every record as one Arrow string array, concatenated by Arrow's compute kernels
        (no Python object per record); with ``newline`` each line ends in ``\\n``."""
        n = table.num_rows
        if n == 0:
            return pa.array([], type=pa.string())

        def text(name: str) -> pa.Array:
            return table.column(name).combine_chunks().cast(pa.string())

        # Seconds repeat: render each distinct second once and pick them by index.
        seconds = table.column("@timestamp").to_numpy() // 1000
        first = int(seconds.min())
        span = np.arange(first, int(seconds.max()) + 1).astype("datetime64[s]")
        stamps = pa.array(np.datetime_as_string(span, unit="s").astype(object), type=pa.string())
        stamps = stamps.take(pa.array(seconds - first))
        error = table.column("errorCode").combine_chunks()
        tokens = [table.column(c).combine_chunks().cast(pa.string()) for c in _TOKEN_COLUMNS]
        ok = pc.binary_join_element_wise(
            self.ok,
            tokens[0],
            ',"cacheReadInputTokenCount":',
            tokens[1],
            ',"cacheWriteInputTokenCount":',
            tokens[2],
            self.output,
            tokens[3],
            "}",
            "",
        )
        failed = pa.array(self.failed, type=pa.string()).take(pa.array(_codes(error)))
        body = pc.if_else(error.is_null(), ok, failed)
        pieces = [
            self.head,
            stamps,
            self.after_time,
            text("identity.arn"),
            self.after_arn,
            table.column("requestId").combine_chunks(),
            '","operation":"',
            text("operation"),
            '","modelId":"',
            text("modelId"),
            '"',
            body,
        ]
        members = []
        for name in (c for c in table.column_names if c.startswith("requestMetadata.")):
            key = name[len("requestMetadata.") :]
            members.append(pc.binary_join_element_wise(f'"{key}":"', text(name), '"', ""))
        if members:
            # Comma-join the members a record has (a null member is one it does not have).
            joined = members[0]
            for member in members[1:]:
                joined = pc.coalesce(pc.binary_join_element_wise(joined, member, ","), joined, member)
            wrapped = pc.binary_join_element_wise(',"requestMetadata":{', joined, "}", "")
            pieces.append(pc.fill_null(wrapped, ""))
        pieces.append("}\n" if newline else "}")
        return pc.binary_join_element_wise(*pieces, "")

    def lines(self, table: pa.Table) -> list[str]:
        """The JSON lines of a record table, in its row order."""
        return self.render(table).to_pylist()

    def text(self, table: pa.Table) -> bytes:
        """The records as newline-delimited JSON (what an S3 object holds before gzip)."""
        if table.num_rows == 0:
            return b""
        rendered = self.render(table, newline=True)
        offsets = np.frombuffer(
            rendered.buffers()[1], dtype=np.int32, count=len(rendered) + 1, offset=rendered.offset * 4
        )
        return rendered.buffers()[2].to_pybytes()[int(offsets[0]) : int(offsets[-1])]

    def lengths(self, table: pa.Table) -> np.ndarray:
        """The UTF-8 length of each record's JSON line, computed without rendering it."""
        n = table.num_rows
        if n == 0:
            return np.zeros(0, np.int64)
        p = self._pieces(table)

        def lookup(pair: tuple[np.ndarray, list[str]]) -> np.ndarray:
            index, values = pair
            sizes = np.array([len(v.encode()) for v in values] or [0], dtype=np.int64)
            return sizes[index]

        fixed = len(self.head) + 19 + len(self.after_time) + len(self.after_arn) + 36
        fixed += len('","operation":"') + len('","modelId":"') + 1 + 1  # closing quote of modelId, final brace
        total = np.full(n, fixed, np.int64) + lookup(p["arn"]) + lookup(p["operation"]) + lookup(p["model"])
        errors = p["error"]
        error_null = errors.is_null().to_numpy(zero_copy_only=False)
        ok_fixed = len(self.ok) + len(',"cacheReadInputTokenCount":') + len(',"cacheWriteInputTokenCount":')
        ok_fixed += len(self.output) + 1
        ok_size = np.full(n, ok_fixed, np.int64)
        for values in p["tokens"]:
            ok_size += _digits(np.nan_to_num(values, nan=0).astype(np.int64))
        failed_sizes = np.array([len(f) for f in self.failed], dtype=np.int64)
        error_index = _codes(errors)
        total += np.where(error_null, ok_size, failed_sizes[np.clip(error_index, 0, len(failed_sizes) - 1)])
        meta_size = np.zeros(n, np.int64)
        meta_count = np.zeros(n, np.int64)
        for key, column in p["meta"]:
            present = ~column.is_null().to_numpy(zero_copy_only=False)
            sizes = np.array([len(v.encode()) for v in column.dictionary.to_pylist()] or [0], dtype=np.int64)
            index = _codes(column)
            member = len(key.encode()) + 5 + sizes[np.clip(index, 0, len(sizes) - 1)]  # "key":"value"
            meta_size += np.where(present, member, 0)
            meta_count += present
        wrapper = len(',"requestMetadata":{') + 1
        total += np.where(meta_count > 0, meta_size + (meta_count - 1) + wrapper, 0)
        return total


_TOKEN_COLUMNS = (
    "input.inputTokenCount",
    "input.cacheReadInputTokenCount",
    "input.cacheWriteInputTokenCount",
    "output.outputTokenCount",
)


def _codes(column: pa.Array) -> np.ndarray:
    """The dictionary indices of a dictionary array as int64, nulls as 0 (callers mask them)."""
    if not len(column):
        return np.zeros(0, np.int64)
    return column.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)


def _digits(values: np.ndarray) -> np.ndarray:
    """Decimal digits of non-negative integers."""
    out = np.ones(len(values), np.int64)
    bound = 10
    for _ in range(18):
        out += values >= bound
        bound *= 10
    return out


_DATABASE = duckdb.connect()
_DATABASE_LOCK = threading.Lock()


def duckdb_cursor() -> duckdb.DuckDBPyConnection:
    """A cursor of one shared in-memory DuckDB: opening a connection per query costs tens of milliseconds. Each
    cursor has its own registered tables; use one per thread and close it."""
    with _DATABASE_LOCK:
        return _DATABASE.cursor()


_REGISTRY: weakref.WeakKeyDictionary[Traffic, InvocationLogs] = weakref.WeakKeyDictionary()
_REGISTRY_LOCK = threading.Lock()


def invocation_logs(traffic: Traffic) -> InvocationLogs:
    """The invocation logs of a sandbox's traffic model (one per server, made on first use)."""
    with _REGISTRY_LOCK:
        found = _REGISTRY.get(traffic)
        if found is None:
            found = _REGISTRY[traffic] = InvocationLogs(traffic)
        return found

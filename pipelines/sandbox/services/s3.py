"""S3: the invocation-log bucket of each logging region, as Bedrock delivers to it (ListObjectsV2, GetObject).

Objects are laid out as Bedrock writes them,
``<prefix>AWSLogs/<account>/BedrockModelInvocationLogs/<region>/YYYY/MM/DD/HH/<time>Z_<id>.json.gz``, one per
5-minute chunk of records (newline-delimited JSON, gzipped), delivered once the chunk has closed by the sandbox
clock. Nothing is stored: a listing computes the keys of the days its prefix reaches, an object is rendered when
listed or read (sizes and ETags of rendered objects are remembered, and recent bodies up to 128 MB). Objects and
bytes read count in the sandbox stats (``s3_objects_read``, ``s3_bytes_read``, ``s3_records_read``).
"""

from __future__ import annotations

import hashlib
import re
import threading
import weakref
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from pipelines.sandbox.invocation_logs import DAY_MS, InvocationLogs, invocation_logs
from pipelines.sandbox.protocols import ApiError
from pipelines.sandbox.services import CallContext, Handler, decode_token, encode_token
from pipelines.sandbox.traffic import Traffic

LIST_PAGE_MAX = 1000
# Bedrock delivers a chunk's object shortly after the chunk closes.
DELIVERY_DELAY = timedelta(minutes=1)
# Rendered bodies kept for reads after a listing (which renders each object for its size): about a day of a
# million records.
_OBJECT_CACHE_BYTES = 128 * 1024 * 1024


class _Objects:
    """Rendered objects of one sandbox: (size, etag) of every object rendered, and the latest bodies."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.meta: dict[str, tuple[int, str]] = {}
        self.bodies: OrderedDict[str, bytes] = OrderedDict()
        self.cached_bytes = 0


_OBJECTS: weakref.WeakKeyDictionary[Traffic, _Objects] = weakref.WeakKeyDictionary()
_OBJECTS_LOCK = threading.Lock()


def _objects(traffic: Traffic) -> _Objects:
    with _OBJECTS_LOCK:
        found = _OBJECTS.get(traffic)
        if found is None:
            found = _OBJECTS[traffic] = _Objects()
        return found


def _bucket_region(ctx: CallContext, bucket: str) -> tuple[InvocationLogs, str]:
    logs = invocation_logs(ctx.traffic)
    if logs.config is not None and logs.config.s3_bucket:
        for region in logs.config.regions:
            if logs.config.bucket(region) == bucket:
                return logs, region
    raise ApiError("NoSuchBucket", "The specified bucket does not exist", 404)


def _body(ctx: CallContext, logs: InvocationLogs, region: str, key: str, start: int, end: int) -> bytes:
    store = _objects(ctx.traffic)
    with store.lock:
        body = store.bodies.get(key)
        if body is not None:
            store.bodies.move_to_end(key)
            return body
    body = logs.s3_object_body(region, start, end)
    with store.lock:
        store.meta[key] = (len(body), hashlib.md5(body, usedforsecurity=False).hexdigest())
        store.bodies[key] = body
        store.cached_bytes += len(body)
        while store.cached_bytes > _OBJECT_CACHE_BYTES and len(store.bodies) > 1:
            store.cached_bytes -= len(store.bodies.popitem(last=False)[1])
    return body


def _meta(ctx: CallContext, logs: InvocationLogs, region: str, key: str, start: int, end: int) -> tuple[int, str]:
    store = _objects(ctx.traffic)
    with store.lock:
        found = store.meta.get(key)
    if found is None:
        _body(ctx, logs, region, key, start, end)
        with store.lock:
            found = store.meta[key]
    return found


def _delivered_by(ctx: CallContext) -> datetime:
    return ctx.now - DELIVERY_DELAY


def _day_keys(logs: InvocationLogs, region: str, prefix: str, now: datetime):
    """``(key, start, end)`` of every delivered object whose key may start with ``prefix``, in key order."""
    base = logs.s3_prefix(region)
    if not (prefix.startswith(base) or base.startswith(prefix)):
        return
    first = max(logs.started_ms, logs.traffic.history_start_minute * 60_000) // DAY_MS
    last = int(now.timestamp() * 1000) // DAY_MS
    for day in range(first, last + 1):
        moment = datetime.fromtimestamp(day * DAY_MS / 1000, UTC)
        day_prefix = f"{base}{moment:%Y/%m/%d}/"
        if not (prefix.startswith(day_prefix) or day_prefix.startswith(prefix)):
            continue
        for key, start, end in logs.s3_objects(region, day, now):
            if key.startswith(prefix):
                yield key, start, end


def list_objects_v2(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """ListObjectsV2 of a log bucket: Prefix, Delimiter, StartAfter, MaxKeys (≤ 1000), ContinuationToken."""
    bucket = params["Bucket"]
    logs, region = _bucket_region(ctx, bucket)
    prefix = params.get("Prefix") or ""
    delimiter = params.get("Delimiter") or ""
    max_keys = params.get("MaxKeys")
    max_keys = LIST_PAGE_MAX if max_keys is None else int(max_keys)
    if max_keys < 0:
        raise ApiError("InvalidArgument", "MaxKeys must not be negative.")
    max_keys = min(max_keys, LIST_PAGE_MAX)
    after = params.get("StartAfter") or ""
    now = _delivered_by(ctx)
    token = params.get("ContinuationToken")
    if token:
        state = decode_token(token, "InvalidArgument", "The continuation token provided is incorrect")
        if not isinstance(state.get("k"), str) or not isinstance(state.get("t"), (int, float)):
            raise ApiError("InvalidArgument", "The continuation token provided is incorrect")
        after = max(after, state["k"])
        # The listing continues with the clock of its first page: one consistent snapshot.
        now = datetime.fromtimestamp(state["t"], UTC)
    contents: list[dict[str, Any]] = []
    common: list[str] = []
    truncated = False
    last_returned = ""
    for key, start, end in _day_keys(logs, region, prefix, now):
        if key <= after:
            continue
        if delimiter:
            cut = key.find(delimiter, len(prefix))
            if cut >= 0:
                rolled = key[: cut + len(delimiter)]
                if rolled <= after or (common and common[-1] == rolled):
                    continue
                if len(contents) + len(common) >= max_keys:
                    truncated = True
                    break
                common.append(rolled)
                last_returned = rolled + "\uffff"
                continue
        if len(contents) + len(common) >= max_keys:
            truncated = True
            break
        size, etag = _meta(ctx, logs, region, key, start, end)
        contents.append(
            {
                "Key": key,
                "LastModified": datetime.fromtimestamp(end / 1000, UTC) + DELIVERY_DELAY / 2,
                "ETag": f'"{etag}"',
                "Size": size,
                "StorageClass": "STANDARD",
            }
        )
        last_returned = key
    encode = params.get("EncodingType") == "url"

    def out(text: str) -> str:
        return quote(text, safe="/") if encode else text

    result: dict[str, Any] = {
        "IsTruncated": truncated,
        "Contents": [{**c, "Key": out(c["Key"])} for c in contents] or None,
        "Name": bucket,
        "Prefix": out(prefix),
        "MaxKeys": max_keys,
        "KeyCount": len(contents) + len(common),
    }
    if delimiter:
        result["Delimiter"] = out(delimiter)
        result["CommonPrefixes"] = [{"Prefix": out(p)} for p in common] or None
    if encode:
        result["EncodingType"] = "url"
    if token:
        result["ContinuationToken"] = token
    if params.get("StartAfter"):
        result["StartAfter"] = out(params["StartAfter"])
    if truncated:
        result["NextContinuationToken"] = encode_token({"k": last_returned, "t": now.timestamp()})
    ctx.count("s3_keys_listed", len(contents))
    return result


def _locate(ctx: CallContext, params: dict[str, Any]) -> tuple[InvocationLogs, str, str, int, int]:
    logs, region = _bucket_region(ctx, params["Bucket"])
    key = params["Key"]
    found = logs.s3_object(region, key, _delivered_by(ctx))
    if found is None:
        raise ApiError("NoSuchKey", "The specified key does not exist.", 404)
    return logs, region, key, found[0], found[1]


def _object_headers(size: int, etag: str, end: int) -> dict[str, Any]:
    return {
        "AcceptRanges": "bytes",
        "LastModified": datetime.fromtimestamp(end / 1000, UTC) + DELIVERY_DELAY / 2,
        "ContentLength": size,
        "ETag": f'"{etag}"',
        "ContentType": "application/x-gzip",
    }


def get_object(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """GetObject of a delivered log object (gzipped JSON lines); a ``Range`` of bytes answers 206."""
    logs, region, key, start, end = _locate(ctx, params)
    body = _body(ctx, logs, region, key, start, end)
    size, etag = _meta(ctx, logs, region, key, start, end)
    result = _object_headers(size, etag, end)
    byte_range = params.get("Range")
    if byte_range:
        match = re.match(r"^bytes=(\d*)-(\d*)$", byte_range.strip())
        if match is None or match.groups() == ("", ""):
            raise ApiError("InvalidArgument", "The Range header is not valid.")
        first, last = match.groups()
        if first == "":
            lo, hi = max(0, size - int(last)), size - 1
        else:
            lo, hi = int(first), min(size - 1, int(last)) if last else size - 1
        if lo >= size or lo > hi:
            raise ApiError("InvalidRange", "The requested range is not satisfiable", 416)
        result.update(ContentRange=f"bytes {lo}-{hi}/{size}", ContentLength=hi - lo + 1, __status__=206)
        body = body[lo : hi + 1]
    result["Body"] = body
    ctx.count("s3_objects_read", 1)
    ctx.count("s3_bytes_read", len(body))
    if not byte_range:
        ctx.count("s3_records_read", logs.records(region, start, end).num_rows)
    return result


def head_object(ctx: CallContext, params: dict[str, Any]) -> dict[str, Any]:
    """HeadObject of a delivered log object."""
    logs, region, key, start, end = _locate(ctx, params)
    size, etag = _meta(ctx, logs, region, key, start, end)
    return _object_headers(size, etag, end)


HANDLERS: dict[tuple[str, str], Handler] = {
    ("s3", "ListObjectsV2"): list_objects_v2,
    ("s3", "GetObject"): get_object,
    ("s3", "HeadObject"): head_object,
}

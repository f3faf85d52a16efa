"""AWS wire protocols for the sandbox, driven by botocore's own service models.

The sandbox answers whatever boto3 sends, so the shapes come from the very files botocore serializes requests
and parses responses with (``botocore/data/<service>/<version>/service-2.json``). This module turns an HTTP
request into ``(service, operation, params)`` and turns a handler's result or an :class:`ApiError` back into
the bytes that protocol expects:

- ``smithy-rpc-v2-cbor`` (CloudWatch's first-listed protocol, sent by SDKs that prefer it): CBOR bodies,
  timestamps as tag 1 epoch seconds;
- ``json`` (awsJson 1.0/1.1: Service Quotas, Logs, and CloudWatch as botocore 1.44 resolves it);
- ``query`` (STS, CloudWatch for older clients) and its ``ec2`` variant;
- ``rest-json`` (Bedrock, Account): operation chosen by method and the model's ``requestUri``.

Routing uses the SigV4 credential scope (``Credential=KEY/DATE/REGION/SERVICE/aws4_request``); signatures are
not verified. Lists of datapoints arrive from the CloudWatch handler as numpy arrays and are encoded without
creating a Python object per element, which is what keeps GetMetricData above a million datapoints a second.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import re
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, unquote
from xml.sax.saxutils import escape as xml_escape

import cbor2
import numpy as np
from botocore.loaders import create_loader
from botocore.model import OperationModel, ServiceModel, Shape

UTC = UTC

# SigV4 signing name -> botocore service names that sign with it, in the order their operations are tried.
# bedrock-runtime signs as "bedrock" (see its model's metadata.signingName), so both share one scope.
SIGNING_NAME_SERVICES: dict[str, tuple[str, ...]] = {
    "monitoring": ("cloudwatch",),
    "bedrock": ("bedrock", "bedrock-runtime"),
    "bedrock-runtime": ("bedrock-runtime",),
    "servicequotas": ("service-quotas",),
    "sts": ("sts",),
    "account": ("account",),
    "ec2": ("ec2",),
    "logs": ("logs",),
    "s3": ("s3",),
    "iam": ("iam",),
}

# Services outside the sandbox that speak rest-xml, so their "not implemented" error is one their client can read.
REST_XML_SIGNING_NAMES = frozenset({"s3", "s3-outposts", "cloudfront", "route53"})

_CREDENTIAL_RE = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request")


class ApiError(Exception):
    """An AWS error answered in the caller's protocol.

    ``code`` is what ``ClientError.response['Error']['Code']`` shows, ``status`` the HTTP status, ``sender``
    whether the caller (not the service) is at fault. ``query_code`` is the code the query protocol uses when
    it differs from the JSON one (``AccessDenied`` for ``AccessDeniedException``); ``namespace`` the Smithy
    namespace of a JSON/CBOR ``__type`` when the error is not the service's own.
    """

    def __init__(
        self,
        code: str,
        message: str,
        status: int = 400,
        *,
        sender: bool | None = None,
        query_code: str | None = None,
        namespace: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.sender = status < 500 if sender is None else sender
        self.query_code = query_code
        self.namespace = namespace


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request as the server read it; header names are lower case."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class HttpResponse:
    """Status, headers and body ready for the socket."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class Route:
    """Where a request goes: the signing scope, the protocol it speaks and the operation it names.

    ``operation_name`` is set whenever the request names an operation (even one the model or the sandbox does
    not know) so errors can say which call was refused; ``operation`` is set only when the model has it.
    """

    signing_name: str
    region: str
    protocol: str
    service: ServiceModel | None
    operation_name: str | None
    operation: OperationModel | None = None
    path_params: Mapping[str, str] = field(default_factory=dict)

    @property
    def endpoint_prefix(self) -> str:
        """The service's endpoint prefix (``monitoring``, ``servicequotas``, ...) or the signing name."""
        if self.service is not None:
            return self.service.endpoint_prefix
        return self.signing_name

    @property
    def call_name(self) -> str:
        """``prefix:Operation`` as the stats endpoint reports calls."""
        return f"{self.endpoint_prefix}:{self.operation_name or 'unknown'}"


# ------------------------------------------------------------------------------------------------------------
# Service models


@functools.lru_cache(maxsize=1)
def _loader():
    return create_loader()


@functools.cache
def service_model(service_name: str) -> ServiceModel:
    """The botocore service model boto3 itself uses for ``service_name`` (e.g. ``cloudwatch``)."""
    loader = _loader()
    return ServiceModel(loader.load_service_model(service_name, "service-2"), service_name=service_name)


def _protocols(model: ServiceModel) -> tuple[str, ...]:
    listed = model.metadata.get("protocols") or [model.metadata["protocol"]]
    return tuple(listed)


@dataclass(frozen=True)
class _UriRoute:
    method: str
    segments: tuple[str, ...]  # literal segment or "{label}" / "{label+}"
    query_literals: tuple[tuple[str, str], ...]
    operation: str

    @property
    def literal_count(self) -> int:
        return sum(1 for s in self.segments if not s.startswith("{"))


@functools.cache
def _uri_routes(service_name: str) -> tuple[_UriRoute, ...]:
    model = service_model(service_name)
    routes = []
    for name in model.operation_names:
        http = model.operation_model(name).http
        uri = http.get("requestUri", "/")
        path, _, query = uri.partition("?")
        literals = tuple((k, v) for k, v in parse_qsl(query, keep_blank_values=True))
        segments = tuple(s for s in path.split("/") if s)
        routes.append(_UriRoute(http.get("method", "POST"), segments, literals, name))
    # The most literal match wins: "/inference-profiles" must not be taken for "/{anything}", nor S3's
    # "/{Bucket}?list-type=2" (ListObjectsV2) for "/{Bucket}" (ListObjects).
    routes.sort(key=lambda r: (-r.literal_count, -len(r.segments), -len(r.query_literals), r.operation))
    return tuple(routes)


def _match_uri(service_name: str, method: str, path: str, query: str) -> tuple[str, dict[str, str]] | None:
    segments = [s for s in path.split("/") if s]
    query_pairs = dict(parse_qsl(query, keep_blank_values=True))
    for route in _uri_routes(service_name):
        if route.method != method:
            continue
        params = _match_segments(route.segments, segments)
        if params is None:
            continue
        if any(k not in query_pairs or (v and query_pairs[k] != v) for k, v in route.query_literals):
            continue
        return route.operation, params
    return None


def _match_segments(pattern: tuple[str, ...], segments: list[str]) -> dict[str, str] | None:
    params: dict[str, str] = {}
    for i, part in enumerate(pattern):
        if part.startswith("{") and part.endswith("+}"):
            rest = segments[i:]
            if not rest:
                return None
            params[part[1:-2]] = unquote("/".join(rest))
            return params
        if i >= len(segments):
            return None
        if part.startswith("{"):
            params[part[1:-1]] = unquote(segments[i])
        elif part != segments[i]:
            return None
    return params if len(segments) == len(pattern) else None


# ------------------------------------------------------------------------------------------------------------
# Routing


def credential_scope(request: HttpRequest) -> tuple[str, str] | None:
    """``(region, signing_name)`` from the SigV4 Authorization header or a presigned URL, else None."""
    auth = request.headers.get("authorization", "")
    match = _CREDENTIAL_RE.search(auth)
    if match is None:
        cred = dict(parse_qsl(request.query)).get("X-Amz-Credential", "")
        parts = cred.split("/")
        if len(parts) == 5 and parts[4] == "aws4_request":
            return parts[2], parts[3]
        return None
    return match.group(3), match.group(4)


def _form(request: HttpRequest) -> dict[str, str]:
    pairs = parse_qsl(request.query, keep_blank_values=True)
    content_type = request.headers.get("content-type", "")
    if request.body and "x-www-form-urlencoded" in content_type:
        pairs += parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)
    return dict(pairs)


def wire_protocol(request: HttpRequest) -> str:
    """The protocol a request speaks, judged from the request itself."""
    headers = request.headers
    if headers.get("smithy-protocol", "").lower() == "rpc-v2-cbor":
        return "smithy-rpc-v2-cbor"
    if "x-amz-target" in headers:
        return "json"
    if "x-www-form-urlencoded" in headers.get("content-type", "") or "Action=" in request.query:
        return "query"
    return "rest-json"


def route(request: HttpRequest) -> Route | None:
    """Resolve the service, protocol and operation of ``request``; None when it carries no SigV4 scope."""
    scope = credential_scope(request)
    if scope is None:
        return None
    region, signing_name = scope
    wire = wire_protocol(request)
    candidates = SIGNING_NAME_SERVICES.get(signing_name, ())
    if not candidates:
        if wire == "rest-json" and signing_name in REST_XML_SIGNING_NAMES:
            wire = "rest-xml"
        return Route(signing_name, region, wire, None, _operation_named(request, wire))

    first: Route | None = None
    for service_name in candidates:
        model = service_model(service_name)
        protocols = _protocols(model)
        # EC2 speaks its own variant of query; a request the service cannot speak is answered in its own protocol.
        protocol = "ec2" if wire == "query" and "ec2" in protocols else wire if wire in protocols else protocols[0]
        if protocol in ("rest-json", "rest-xml"):
            matched = _match_uri(service_name, request.method, request.path, request.query)
            if matched is None:
                if first is None:
                    first = Route(signing_name, region, protocol, model, _operation_named(request, wire))
                continue
            name, path_params = matched
            return Route(signing_name, region, protocol, model, name, model.operation_model(name), path_params)
        name = _operation_named(request, protocol)
        operation = model.operation_model(name) if name in model.operation_names else None
        return Route(signing_name, region, protocol, model, name, operation)
    return first


def _operation_named(request: HttpRequest, protocol: str) -> str | None:
    if protocol == "smithy-rpc-v2-cbor":
        parts = request.path.rstrip("/").split("/")
        return parts[-1] if len(parts) >= 2 and parts[-2] == "operation" else None
    if protocol == "json":
        target = request.headers.get("x-amz-target", "")
        return target.rsplit(".", 1)[-1] or None
    if protocol in ("query", "ec2"):
        return _form(request).get("Action")
    return f"{request.method} {request.path}"


# ------------------------------------------------------------------------------------------------------------
# Request decoding


def decode_request(route_: Route, request: HttpRequest) -> dict[str, Any]:
    """The operation's input parameters as a boto3 user would have passed them (datetimes aware UTC)."""
    operation = route_.operation
    assert operation is not None
    shape = operation.input_shape
    if shape is None:
        return {}
    try:
        if route_.protocol == "smithy-rpc-v2-cbor":
            raw = cbor2.loads(request.body) if request.body else {}
            return _from_document(shape, raw or {})
        if route_.protocol == "json":
            raw = json.loads(request.body) if request.body else {}
            return _from_document(shape, raw or {})
        if route_.protocol in ("query", "ec2"):
            return _from_query(shape, _query_tree(_form(request)), ec2=route_.protocol == "ec2")
        return _from_rest(shape, route_, request)
    except ApiError:
        raise
    except (ValueError, TypeError, KeyError, cbor2.CBORDecodeError) as exc:
        raise ApiError("SerializationException", f"The request body could not be read: {exc}") from exc


def _wire_name(shape: Shape, member_name: str) -> str:
    return shape.serialization.get("name", member_name)


def _from_document(shape: Shape, value: Any) -> Any:
    """Normalise a JSON/CBOR document node to the Python types botocore users pass."""
    kind = shape.type_name
    if value is None:
        return None
    if kind == "structure":
        result = {}
        for name, member in shape.members.items():
            raw = value.get(_wire_name(member, name))
            if raw is not None:
                result[name] = _from_document(member, raw)
        return result
    if kind == "list":
        return [_from_document(shape.member, v) for v in value]
    if kind == "map":
        return {k: _from_document(shape.value, v) for k, v in value.items()}
    return _scalar(shape, value)


def _scalar(shape: Shape, value: Any) -> Any:
    kind = shape.type_name
    if kind == "timestamp":
        return _to_datetime(value)
    if kind in ("integer", "long"):
        return int(value)
    if kind in ("float", "double"):
        return float(value)
    if kind == "boolean":
        if isinstance(value, str):
            return value.lower() == "true"
        return bool(value)
    if kind == "blob":
        return value if isinstance(value, bytes) else base64.b64decode(value)
    return value


def _to_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    text = str(value).strip()
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        pass
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_LEAF = ""


def _query_tree(form: Mapping[str, str]) -> dict:
    """``{"A.member.1.B": "x"}`` -> nested dicts; a key's own value sits under ``""``."""
    root: dict = {}
    for key, value in form.items():
        if key in ("Action", "Version"):
            continue
        node = root
        for part in key.split("."):
            node = node.setdefault(part, {})
        node[_LEAF] = value
    return root


def _query_key(member: Shape, member_name: str, ec2: bool) -> str:
    if ec2:
        if "queryName" in member.serialization:
            return member.serialization["queryName"]
        if "name" in member.serialization:
            name = member.serialization["name"]
            return name[0].upper() + name[1:]
        return member_name
    return member.serialization.get("name", member_name)


def _indexed(node: dict) -> list:
    items = [(int(k), v) for k, v in node.items() if k.isdigit()]
    return [v for _, v in sorted(items)]


def _from_query(shape: Shape, node: dict, *, ec2: bool) -> Any:
    kind = shape.type_name
    if kind == "structure":
        result = {}
        for name, member in shape.members.items():
            child = node.get(_query_key(member, name, ec2))
            if child is None and member.type_name == "list" and member.serialization.get("flattened"):
                # A flattened list may be named after its member's locationName.
                child = node.get(member.member.serialization.get("name", ""))
            if child is not None:
                result[name] = _from_query(member, child, ec2=ec2)
        return result
    if kind == "list":
        if node.get(_LEAF) == "" and len(node) == 1:
            return []
        if ec2 or shape.serialization.get("flattened"):
            items = _indexed(node)
        else:
            items = _indexed(node.get(shape.member.serialization.get("name", "member"), {}))
        return [_from_query(shape.member, item, ec2=ec2) for item in items]
    if kind == "map":
        entries = node if shape.serialization.get("flattened") else node.get("entry", {})
        key_name = shape.key.serialization.get("name", "key")
        value_name = shape.value.serialization.get("name", "value")
        result = {}
        for entry in _indexed(entries):
            key = entry.get(key_name, {}).get(_LEAF)
            if key is not None:
                result[key] = _from_query(shape.value, entry.get(value_name, {}), ec2=ec2)
        return result
    return _scalar(shape, node.get(_LEAF, ""))


def _from_rest(shape: Shape, route_: Route, request: HttpRequest) -> dict[str, Any]:
    result: dict[str, Any] = {}
    query_multi: dict[str, list[str]] = {}
    for key, value in parse_qsl(request.query, keep_blank_values=True):
        query_multi.setdefault(key, []).append(value)
    body_members = {}
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        wire = member.serialization.get("name", name)
        if location == "uri":
            if wire in route_.path_params:
                result[name] = _scalar(member, route_.path_params[wire])
        elif location == "querystring":
            if member.type_name == "map":
                result[name] = {k: v[-1] for k, v in query_multi.items()}
            elif wire in query_multi:
                values = query_multi[wire]
                if member.type_name == "list":
                    result[name] = [_scalar(member.member, v) for v in values]
                else:
                    result[name] = _scalar(member, values[-1])
        elif location == "header":
            if wire.lower() in request.headers:
                result[name] = _scalar(member, request.headers[wire.lower()])
        elif location is None:
            body_members[name] = member
    payload = shape.serialization.get("payload")
    if payload is not None:
        member = shape.members[payload]
        if member.type_name in ("blob", "string"):
            result[payload] = request.body
        elif request.body:
            result[payload] = _from_document(member, json.loads(request.body))
    elif body_members and request.body:
        document = json.loads(request.body)
        for name, member in body_members.items():
            raw = document.get(_wire_name(member, name))
            if raw is not None:
                result[name] = _from_document(member, raw)
    return result


# ------------------------------------------------------------------------------------------------------------
# Response encoding


def request_id(request: HttpRequest, route_: Route | None) -> str:
    """A RequestId derived from the request, so equal requests get byte-identical answers."""
    digest = hashlib.sha256()
    digest.update(request.method.encode())
    digest.update(b"\0" + request.path.encode() + b"\0" + request.query.encode() + b"\0")
    digest.update(request.body)
    if route_ is not None:
        digest.update(f"\0{route_.region}\0{route_.signing_name}".encode())
    return str(uuid.UUID(bytes=digest.digest()[:16], version=4))


def encode_response(route_: Route, output: Mapping[str, Any], req_id: str) -> HttpResponse:
    """Serialize a handler's ``output`` dict for the route's protocol."""
    operation = route_.operation
    assert operation is not None and route_.service is not None
    shape = operation.output_shape
    protocol = route_.protocol
    if protocol == "smithy-rpc-v2-cbor":
        out = bytearray()
        if shape is None:
            _cbor_head(out, 5, 0)
        else:
            _cbor_value(out, shape, output)
        headers = (
            ("Content-Type", "application/cbor"),
            ("smithy-protocol", "rpc-v2-cbor"),
            ("x-amzn-RequestId", req_id),
        )
        return HttpResponse(200, headers, bytes(out))
    if protocol == "json":
        body = _json_bytes(_to_document(shape, output, "unixTimestamp") if shape is not None else {})
        version = route_.service.metadata.get("jsonVersion", "1.0")
        headers = (("Content-Type", f"application/x-amz-json-{version}"), ("x-amzn-RequestId", req_id))
        return HttpResponse(200, headers, body)
    if protocol == "query":
        return HttpResponse(
            200,
            (("Content-Type", "text/xml"), ("x-amzn-RequestId", req_id)),
            _query_xml(route_.service, operation, output, req_id),
        )
    if protocol == "ec2":
        return HttpResponse(
            200,
            (("Content-Type", "text/xml;charset=UTF-8"), ("x-amzn-RequestId", req_id)),
            _ec2_xml(route_.service, operation, output, req_id),
        )
    if protocol == "rest-xml":
        return _rest_xml_response(route_.service, operation, output, req_id)
    return _rest_json_response(operation, output, req_id)


# S3 names the root elements of its answers after the resource, not the operation.
_XML_ROOTS = {"ListObjectsV2": "ListBucketResult", "ListObjects": "ListBucketResult"}


def _rest_xml_response(
    model: ServiceModel, operation: OperationModel, output: Mapping[str, Any], req_id: str
) -> HttpResponse:
    """A rest-xml answer (S3): header members as headers, a blob payload as the raw body, else an XML document
    named after the output shape (``ListBucketResult`` for ListObjectsV2, as S3 names it)."""
    shape = operation.output_shape
    status = int(operation.http.get("responseCode", 200))
    headers = [("x-amz-request-id", req_id), ("x-amzn-RequestId", req_id)]
    if shape is None:
        return HttpResponse(status, tuple(headers), b"")
    payload = shape.serialization.get("payload")
    for name, member in shape.members.items():
        value = output.get(name)
        if value is None:
            continue
        location = member.serialization.get("location")
        if location == "header":
            header = member.serialization.get("name", name)
            # The server writes the body's length; only a HEAD answer states another one.
            if header.lower() != "content-length" or operation.http.get("method") == "HEAD":
                headers.append((header, _header_text(member, value)))
        elif location == "statusCode":
            status = int(value)
    # A partial answer (S3's 206 for a byte range) has no status member in the model.
    status = int(output.get("__status__", status))
    if payload is not None:
        member = shape.members[payload]
        value = output.get(payload)
        if member.type_name in ("blob", "string"):
            body = b"" if value is None else value if isinstance(value, bytes) else str(value).encode()
            return HttpResponse(status, tuple(headers), body)
    root = _XML_ROOTS.get(operation.name, operation.name + "Result")
    namespace = model.metadata.get("xmlNamespace") or "http://s3.amazonaws.com/doc/2006-03-01/"
    body_members = {
        k: v for k, v in output.items() if k in shape.members and not shape.members[k].serialization.get("location")
    }
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n', f'<{root} xmlns="{namespace}">']
    _xml_members(parts, shape, body_members)
    parts.append(f"</{root}>")
    headers.insert(0, ("Content-Type", "application/xml"))
    return HttpResponse(status, tuple(headers), "".join(parts).encode("utf-8"))


def _rest_json_response(operation: OperationModel, output: Mapping[str, Any], req_id: str) -> HttpResponse:
    shape = operation.output_shape
    status = int(operation.http.get("responseCode", 200))
    headers = [("Content-Type", "application/json"), ("x-amzn-RequestId", req_id)]
    document: dict[str, Any] = {}
    if shape is not None:
        payload = shape.serialization.get("payload")
        for name, member in shape.members.items():
            value = output.get(name)
            if value is None:
                continue
            location = member.serialization.get("location")
            if location == "header":
                headers.append((member.serialization.get("name", name), _header_text(member, value)))
            elif location == "statusCode":
                status = int(value)
            elif payload is None and location is None:
                document[_wire_name(member, name)] = _to_document(member, value, "unixTimestamp")
        if payload is not None and output.get(payload) is not None:
            member = shape.members[payload]
            value = output[payload]
            if member.type_name in ("blob", "string"):
                body = value if isinstance(value, bytes) else str(value).encode()
                return HttpResponse(status, tuple(headers), body)
            document = _to_document(member, value, "unixTimestamp")
    return HttpResponse(status, tuple(headers), _json_bytes(document))


def _header_text(shape: Shape, value: Any) -> str:
    if shape.type_name == "timestamp":
        return format_datetime(_to_datetime(value), usegmt=True)
    if shape.type_name == "boolean":
        return "true" if value else "false"
    return str(value)


_ARRAY_MARKER = re.compile(r'"\\u0000buw-array-(\d+)\\u0000"')


class _JsonArray:
    """A numpy array to be written into a JSON document as pre-rendered text (see :func:`_json_bytes`)."""

    def __init__(self, values: np.ndarray, as_float: bool) -> None:
        self.values = values
        self.as_float = as_float


def _json_bytes(document: Any) -> bytes:
    arrays: list[_JsonArray] = []

    def placeholder(value: Any) -> str:
        if isinstance(value, _JsonArray):
            arrays.append(value)
            return f"\x00buw-array-{len(arrays) - 1}\x00"
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=placeholder)
    if not arrays:
        return text.encode("utf-8")
    # json.dumps quotes each placeholder and escapes its NULs; split once and splice the rendered arrays in.
    pieces = _ARRAY_MARKER.split(text)
    parts = []
    for i, piece in enumerate(pieces):
        if i % 2:
            array = arrays[int(piece)]
            parts.append(_json_numbers(array.values, array.as_float))
        else:
            parts.append(piece.encode("utf-8"))
    return b"".join(parts)


def _json_numbers(values: np.ndarray, as_float: bool) -> bytes:
    """A JSON array of numbers, rendered in numpy passes when every value is a small non-negative integer.

    Integers are right-aligned in a fixed width (JSON allows the blanks before a number); doubles keep a ``.0``
    so parsers read them as floats, as AWS writes them. Anything else falls back to the json module.
    """
    n = len(values)
    if n == 0:
        return b"[]"
    as_int = values.astype(np.int64)
    if not np.array_equal(as_int, values) or as_int.min() < 0 or as_int.max() >= 10**15:
        items = values.astype(np.float64).tolist() if as_float else values.tolist()
        return json.dumps(items, allow_nan=False, separators=(",", ":")).encode()
    width = len(str(int(as_int.max())))
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    column = as_int[:, None]
    digits = ((column // powers) % 10).astype(np.uint8) + ord("0")
    leading = column < powers
    leading[:, -1] = False
    digits[leading] = ord(" ")
    suffix = b".0," if as_float else b","
    out = np.empty((n, width + len(suffix)), dtype=np.uint8)
    out[:, :width] = digits
    out[:, width:] = np.frombuffer(suffix, dtype=np.uint8)
    return b"[" + out.tobytes()[:-1] + b"]"


def _epoch(value: Any) -> float | int:
    seconds = _to_datetime(value).timestamp() if isinstance(value, datetime) else float(value)
    return int(seconds) if seconds.is_integer() else seconds


def _iso(value: Any) -> str:
    moment = _to_datetime(value)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _timestamp_text(shape: Shape, value: Any, default_format: str) -> Any:
    fmt = shape.serialization.get("timestampFormat", default_format)
    if fmt == "iso8601":
        return _iso(value)
    if fmt == "rfc822":
        return format_datetime(_to_datetime(value), usegmt=True)
    return _epoch(value)


def _to_document(shape: Shape, value: Any, timestamp_format: str) -> Any:
    """A JSON-ready value for ``shape``; member order follows the model so output bytes are stable."""
    kind = shape.type_name
    if kind == "structure":
        document = {}
        for name, member in shape.members.items():
            member_value = value.get(name)
            if member_value is not None:
                document[_wire_name(member, name)] = _to_document(member, member_value, timestamp_format)
        return document
    if kind == "list":
        if isinstance(value, np.ndarray):
            # Timestamps are epoch seconds (integers when whole); values are doubles.
            return _JsonArray(value, as_float=shape.member.type_name != "timestamp")
        return [_to_document(shape.member, v, timestamp_format) for v in value]
    if kind == "map":
        return {str(k): _to_document(shape.value, value[k], timestamp_format) for k in sorted(value)}
    if kind == "timestamp":
        return _timestamp_text(shape, value, timestamp_format)
    if kind == "blob":
        raw = value if isinstance(value, bytes) else str(value).encode()
        return base64.b64encode(raw).decode("ascii")
    if kind in ("float", "double"):
        # AWS writes doubles with a fraction (800000.0); botocore's JSON parser keeps ints as ints.
        return float(value)
    if kind in ("integer", "long"):
        return int(value)
    if kind == "boolean":
        return bool(value)
    return value


# ---- CBOR

_DOUBLE_ITEM = np.dtype([("head", "u1"), ("value", ">f8")])
_TIMESTAMP_ITEM = np.dtype([("tag", "u1"), ("head", "u1"), ("value", ">f8")])


def _cbor_head(out: bytearray, major: int, length: int) -> None:
    if length < 24:
        out.append((major << 5) | length)
    elif length < 0x100:
        out += bytes(((major << 5) | 24, length))
    elif length < 0x10000:
        out.append((major << 5) | 25)
        out += length.to_bytes(2, "big")
    elif length < 0x100000000:
        out.append((major << 5) | 26)
        out += length.to_bytes(4, "big")
    else:
        out.append((major << 5) | 27)
        out += length.to_bytes(8, "big")


def _cbor_text(out: bytearray, text: str) -> None:
    encoded = text.encode("utf-8")
    _cbor_head(out, 3, len(encoded))
    out += encoded


def _cbor_double(out: bytearray, number: float) -> None:
    out.append(0xFB)
    out += struct.pack(">d", number)


def cbor_doubles(values: np.ndarray) -> bytes:
    """A CBOR array of float64 items, built in one numpy pass (0xfb + 8 big-endian bytes each)."""
    items = np.empty(len(values), dtype=_DOUBLE_ITEM)
    items["head"] = 0xFB
    items["value"] = values
    out = bytearray()
    _cbor_head(out, 4, len(values))
    return bytes(out) + items.tobytes()


def cbor_timestamps(seconds: np.ndarray) -> bytes:
    """A CBOR array of tag-1 epoch-second timestamps (0xc1 0xfb + 8 bytes each), built in one numpy pass."""
    items = np.empty(len(seconds), dtype=_TIMESTAMP_ITEM)
    items["tag"] = 0xC1
    items["head"] = 0xFB
    items["value"] = seconds
    out = bytearray()
    _cbor_head(out, 4, len(seconds))
    return bytes(out) + items.tobytes()


def _cbor_value(out: bytearray, shape: Shape, value: Any) -> None:
    kind = shape.type_name
    if kind == "structure":
        present = [(name, member) for name, member in shape.members.items() if value.get(name) is not None]
        _cbor_head(out, 5, len(present))
        for name, member in present:
            _cbor_text(out, _wire_name(member, name))
            _cbor_value(out, member, value[name])
    elif kind == "list":
        if isinstance(value, np.ndarray):
            if shape.member.type_name == "timestamp":
                out += cbor_timestamps(value)
            else:
                out += cbor_doubles(value)
            return
        _cbor_head(out, 4, len(value))
        for item in value:
            _cbor_value(out, shape.member, item)
    elif kind == "map":
        _cbor_head(out, 5, len(value))
        for key in sorted(value):
            _cbor_text(out, str(key))
            _cbor_value(out, shape.value, value[key])
    elif kind == "timestamp":
        out.append(0xC1)
        _cbor_double(out, float(_epoch(value)))
    elif kind in ("float", "double"):
        number = float(value)
        if math.isnan(number) or math.isinf(number):
            out += cbor2.dumps(number)
        else:
            _cbor_double(out, number)
    elif kind in ("integer", "long"):
        number = int(value)
        if number >= 0:
            _cbor_head(out, 0, number)
        else:
            _cbor_head(out, 1, -1 - number)
    elif kind == "boolean":
        out.append(0xF5 if value else 0xF4)
    elif kind == "blob":
        raw = value if isinstance(value, bytes) else str(value).encode()
        _cbor_head(out, 2, len(raw))
        out += raw
    else:
        _cbor_text(out, str(value))


# ---- XML (query and ec2)
# ------------------------------------------------------------------------------------


def _xml_scalar(shape: Shape, value: Any) -> str:
    kind = shape.type_name
    if kind == "timestamp":
        return xml_escape(str(_timestamp_text(shape, value, "iso8601")))
    if kind == "boolean":
        return "true" if value else "false"
    if kind in ("float", "double"):
        return repr(float(value))
    if kind in ("integer", "long"):
        return str(int(value))
    if kind == "blob":
        raw = value if isinstance(value, bytes) else str(value).encode()
        return base64.b64encode(raw).decode("ascii")
    return xml_escape(str(value))


def _xml_members(parts: list[str], shape: Shape, value: Mapping[str, Any]) -> None:
    for name, member in shape.members.items():
        member_value = value.get(name)
        if member_value is None:
            continue
        tag = member.serialization.get("name", name)
        if member.type_name == "list" and member.serialization.get("flattened"):
            item_tag = member.member.serialization.get("name", tag)
            for item in member_value:
                _xml_element(parts, item_tag, member.member, item)
        else:
            _xml_element(parts, tag, member, member_value)


def _xml_element(parts: list[str], tag: str, shape: Shape, value: Any) -> None:
    kind = shape.type_name
    parts.append(f"<{tag}>")
    if kind == "structure":
        _xml_members(parts, shape, value)
    elif kind == "list":
        item_tag = shape.member.serialization.get("name", "member")
        if isinstance(value, np.ndarray):
            parts.append(_xml_array(item_tag, shape.member, value))
        else:
            for item in value:
                _xml_element(parts, item_tag, shape.member, item)
    elif kind == "map":
        key_tag = shape.key.serialization.get("name", "key")
        value_tag = shape.value.serialization.get("name", "value")
        for key in sorted(value):
            parts.append("<entry>")
            _xml_element(parts, key_tag, shape.key, key)
            _xml_element(parts, value_tag, shape.value, value[key])
            parts.append("</entry>")
    else:
        parts.append(_xml_scalar(shape, value))
    parts.append(f"</{tag}>")


def _xml_array(item_tag: str, member: Shape, values: np.ndarray) -> str:
    if not len(values):
        return ""
    if member.type_name == "timestamp":
        texts = np.datetime_as_string(values.astype("datetime64[s]"), unit="s")
        items = [f"{t}Z" for t in texts.tolist()]
    else:
        items = [repr(v) for v in values.astype(np.float64).tolist()]
    sep = f"</{item_tag}><{item_tag}>"
    return f"<{item_tag}>{sep.join(items)}</{item_tag}>"


def _query_xml(model: ServiceModel, operation: OperationModel, output: Mapping[str, Any], req_id: str) -> bytes:
    namespace = model.metadata.get("xmlNamespace", "")
    name = operation.name
    parts = [f'<{name}Response xmlns="{namespace}">']
    shape = operation.output_shape
    if shape is not None:
        wrapper = shape.serialization.get("resultWrapper", f"{name}Result")
        parts.append(f"<{wrapper}>")
        _xml_members(parts, shape, output)
        parts.append(f"</{wrapper}>")
    parts.append(f"<ResponseMetadata><RequestId>{req_id}</RequestId></ResponseMetadata></{name}Response>")
    return "".join(parts).encode("utf-8")


def _ec2_xml(model: ServiceModel, operation: OperationModel, output: Mapping[str, Any], req_id: str) -> bytes:
    namespace = f"http://ec2.amazonaws.com/doc/{model.api_version}/"
    name = operation.name
    parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<{name}Response xmlns="{namespace}">']
    parts.append(f"<requestId>{req_id}</requestId>")
    shape = operation.output_shape
    if shape is not None:
        _xml_members(parts, shape, output)
    parts.append(f"</{name}Response>")
    return "".join(parts).encode("utf-8")


# ---- errors


def _error_shape(model: ServiceModel | None, code: str) -> Shape | None:
    if model is None:
        return None
    for shape in model.error_shapes:
        if shape.name == code or shape.metadata.get("error", {}).get("code") == code:
            return shape
    return None


def encode_error(route_: Route | None, error: ApiError, req_id: str, protocol: str | None = None) -> HttpResponse:
    """Serialize ``error`` the way the route's protocol carries errors, so botocore reports ``error.code``."""
    protocol = protocol or (route_.protocol if route_ is not None else "rest-json")
    model = route_.service if route_ is not None else None
    shape = _error_shape(model, error.code)
    fault = "Sender" if error.sender else "Receiver"
    query_code = error.query_code or error.code
    if protocol in ("query", "ec2"):
        message = xml_escape(error.message)
        if protocol == "ec2":
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
                f"<Code>{query_code}</Code><Message>{message}</Message></Error></Errors>"
                f"<RequestID>{req_id}</RequestID></Response>"
            )
        else:
            namespace = model.metadata.get("xmlNamespace", "") if model is not None else ""
            body = (
                f'<ErrorResponse xmlns="{namespace}"><Error><Type>{fault}</Type><Code>{query_code}</Code>'
                f"<Message>{message}</Message></Error><RequestId>{req_id}</RequestId></ErrorResponse>"
            )
        return HttpResponse(
            error.status, (("Content-Type", "text/xml"), ("x-amzn-RequestId", req_id)), body.encode("utf-8")
        )

    if protocol == "rest-xml":
        body = (
            f"<Error><Code>{error.code}</Code><Message>{xml_escape(error.message)}</Message>"
            f"<RequestId>{req_id}</RequestId></Error>"
        )
        headers = (("Content-Type", "application/xml"), ("x-amzn-RequestId", req_id))
        return HttpResponse(error.status, headers, body.encode("utf-8"))

    message_key = "message"
    if shape is not None and "Message" in shape.members:
        message_key = "Message"
    type_name = shape.name if shape is not None else error.code
    headers: list[tuple[str, str]] = [("x-amzn-RequestId", req_id)]
    query_compatible = model is not None and "awsQueryCompatible" in model.metadata
    if query_compatible:
        # CloudWatch's JSON and CBOR answers carry the old query error code in this header; botocore uses it.
        headers.append(("x-amzn-query-error", f"{query_code};{fault}"))
    if protocol == "smithy-rpc-v2-cbor":
        namespace = error.namespace or _smithy_namespace(model)
        out = bytearray()
        _cbor_head(out, 5, 2)
        _cbor_text(out, "__type")
        _cbor_text(out, f"{namespace}#{type_name}" if namespace else type_name)
        _cbor_text(out, message_key)
        _cbor_text(out, error.message)
        headers[:0] = [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor")]
        return HttpResponse(error.status, tuple(headers), bytes(out))
    if protocol == "json":
        version = model.metadata.get("jsonVersion", "1.0") if model is not None else "1.0"
        namespace = error.namespace or _smithy_namespace(model)
        document = {
            "__type": f"{namespace}#{type_name}" if namespace else type_name,
            message_key: error.message,
        }
        headers.insert(0, ("Content-Type", f"application/x-amz-json-{version}"))
        return HttpResponse(error.status, tuple(headers), _json_bytes(document))
    headers[:0] = [("Content-Type", "application/json"), ("x-amzn-ErrorType", error.code)]
    return HttpResponse(error.status, tuple(headers), _json_bytes({message_key: error.message}))


def _smithy_namespace(model: ServiceModel | None) -> str:
    if model is None:
        return ""
    return "com.amazonaws." + model.metadata.get("endpointPrefix", model.service_name).replace("-", "")

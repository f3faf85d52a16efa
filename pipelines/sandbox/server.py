"""The sandbox endpoint: one HTTP port that answers boto3 for every service of the simulated account.

``SandboxServer`` runs in a background thread (tests, ``buw demo``); :func:`run` serves in the foreground for
``buw sandbox``. Requests are routed by their SigV4 credential scope and answered in the wire protocol they
speak (see :mod:`pipelines.sandbox.protocols`); the handlers live in :mod:`pipelines.sandbox.services`.

Besides AWS calls the server answers a small control API under ``/_sandbox/`` (never subject to faults): ``GET
health``, ``GET stats``, ``POST reset``, ``GET|POST clock``.
"""

from __future__ import annotations

import contextlib
import errno
import http
import json
import logging
import random
import socket
import struct
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pipelines.sandbox import auth, protocols
from pipelines.sandbox.protocols import ApiError, HttpRequest, HttpResponse, Route
from pipelines.sandbox.scenario import Scenario, load_scenario
from pipelines.sandbox.services import (
    CallContext,
    Handler,
    ResultCache,
    bedrock,
    cloudwatch,
    iam,
    logs,
    misc,
    s3,
    servicequotas,
)
from pipelines.sandbox.traffic import Traffic

UTC = UTC
FAULT_KINDS: tuple[str, ...] = ("throttle", "500", "reset", "slow")
CONTROL_PREFIX = "/_sandbox/"

HANDLERS: dict[tuple[str, str], Handler] = {
    **cloudwatch.HANDLERS,
    **bedrock.HANDLERS,
    **servicequotas.HANDLERS,
    **misc.HANDLERS,
    **logs.HANDLERS,
    **iam.HANDLERS,
    **s3.HANDLERS,
}

log = logging.getLogger(__name__)


class SandboxPortInUse(OSError):
    """The port asked for is taken by another process."""


class SandboxClock:
    """The sandbox's notion of now: pinned (moves only by set/advance) or the wall clock plus an offset."""

    def __init__(self, pinned: datetime | None) -> None:
        self._lock = threading.Lock()
        self._pinned = _utc(pinned) if pinned is not None else None
        self._offset = timedelta()

    def now(self) -> datetime:
        """The current sandbox time (aware UTC)."""
        with self._lock:
            if self._pinned is not None:
                return self._pinned
            return datetime.now(UTC) + self._offset

    def set(self, when: datetime) -> None:
        """Pin the clock at ``when``."""
        with self._lock:
            self._pinned = _utc(when)

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward (or back) by ``delta``, pinned or not."""
        with self._lock:
            if self._pinned is not None:
                self._pinned += delta
            else:
                self._offset += delta


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class SandboxStats:
    """Counters behind ``GET /_sandbox/stats``: calls per operation, metrics requested, datapoints, faults."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()

    def call(self, name: str) -> None:
        """Count one AWS call (faulted or not) under ``prefix:Operation``."""
        with self._lock:
            self._calls[name] += 1

    def fault(self, kind: str) -> None:
        """Count one injected fault (or one TPS refusal, kind ``tps``)."""
        with self._lock:
            self._faults[kind] += 1

    def add(self, name: str, amount: int) -> None:
        """Add to a named counter (``metrics_requested``, ``datapoints_returned``)."""
        with self._lock:
            self._counts[name] += amount

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy, keys sorted so equal runs print equal stats."""
        with self._lock:
            return {
                "calls": dict(sorted(self._calls.items())),
                "metrics_requested": self._counts["metrics_requested"],
                "datapoints_returned": self._counts["datapoints_returned"],
                "faults": dict(sorted(self._faults.items())),
                # Invocation-log reads (logs_*, s3_*): what a run scanned, to check it reads each record once.
                **{name: n for name, n in sorted(self._counts.items()) if name.startswith(("logs_", "s3_"))},
            }

    def reset(self) -> None:
        """Zero every counter."""
        with self._lock:
            self._calls.clear()
            self._faults.clear()
            self._counts.clear()


class _TokenBucket:
    """At most ``rate`` calls a second on average, bursts up to ``max(1, rate)``."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._capacity = max(1.0, rate)
        self._tokens = self._capacity
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


class SandboxServer:
    """The simulated AWS account behind a local HTTP endpoint.

    ``scenario`` is a bundled scenario name, a YAML path or a loaded :class:`Scenario`; ``now`` pins the clock
    (else the wall clock); traffic is anchored on the initial clock, so moving the clock later never changes
    the value of any minute. ``fault_rate`` is the share of AWS calls that fail with one of ``fault_kinds``,
    drawn from a sequence seeded by ``fault_seed`` (default ``seed``) so a run repeats, and the same account can
    meet other faults; ``tps`` limits AWS calls per second
    (ThrottlingException above). ``policy`` (an IAM policy document, JSON text or a path) makes every call
    its actions do not allow fail with the service's access-denied error; ``reject_credentials``
    (``expired`` or ``invalid``) makes every call fail as AWS does for such credentials (see
    :mod:`pipelines.sandbox.auth`).
    """

    def __init__(
        self,
        scenario: str | Scenario = "demo",
        *,
        seed: int = 0,
        now: datetime | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        fault_rate: float = 0.0,
        fault_kinds: tuple[str, ...] | list[str] = FAULT_KINDS,
        fault_seed: int | None = None,
        tps: float | None = None,
        slow_seconds: float = 2.0,
        policy: auth.Policy | dict | str | Path | None = None,
        reject_credentials: str | None = None,
    ) -> None:
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault rate must be between 0 and 1; got {fault_rate}")
        unknown = [kind for kind in fault_kinds if kind not in FAULT_KINDS]
        if unknown or not fault_kinds:
            raise ValueError(
                f"unknown fault kind {', '.join(map(repr, unknown)) or '(none given)'}; use {', '.join(FAULT_KINDS)}"
            )
        if tps is not None and not tps > 0:
            raise ValueError(f"tps must be positive; got {tps}")
        if reject_credentials is not None and reject_credentials not in auth.REJECT_KINDS:
            raise ValueError(
                f"credentials can be rejected as {' or '.join(auth.REJECT_KINDS)}; got {reject_credentials!r}"
            )
        self.policy = auth.load_policy(policy) if policy is not None else None
        self.reject_credentials = reject_credentials
        self.scenario = scenario if not isinstance(scenario, str) else load_scenario(scenario)
        self.seed = seed
        self.host = host
        self.port = port
        self.fault_rate = fault_rate
        self.fault_kinds = tuple(fault_kinds)
        self.fault_seed = seed if fault_seed is None else fault_seed
        self.tps = tps
        self.slow_seconds = slow_seconds
        self._clock = SandboxClock(now)
        self.traffic = Traffic(self.scenario, seed, anchor=self._clock.now())
        self._stats = SandboxStats()
        self._cache = ResultCache()
        self._fault_lock = threading.Lock()
        self._faults = random.Random(self.fault_seed)
        self._bucket = _TokenBucket(tps) if tps else None
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle
    # --------------------------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """``http://host:port`` for AWS_ENDPOINT_URL (the bound port once started)."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> SandboxServer:
        """Bind and serve in a background thread; raises :class:`SandboxPortInUse` when the port is taken."""
        if self._httpd is not None:
            return self
        try:
            httpd = _HttpServer((self.host, self.port), _RequestHandler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                taken = SandboxPortInUse(
                    f"port {self.port} on {self.host} is already in use; pass --port 0 for a free one "
                    "or stop the other process"
                )
                taken.errno = errno.EADDRINUSE
                raise taken from exc
            raise
        httpd.sandbox = self
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="buw-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close idle keep-alive connections and release the port."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- clock and stats
    # --------------------------------------------------------------------------------------

    def now(self) -> datetime:
        """The sandbox clock (aware UTC)."""
        return self._clock.now()

    def set_now(self, when: datetime) -> None:
        """Pin the sandbox clock at ``when``; the traffic of every minute stays what it was."""
        self._clock.set(when)

    def advance(self, delta: timedelta) -> None:
        """Move the sandbox clock by ``delta``."""
        self._clock.advance(delta)

    def stats(self) -> dict[str, Any]:
        """Calls per operation, metrics requested, datapoints returned and faults since the last reset."""
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        """Zero the stats, restart the fault sequence and forget cached results."""
        self._stats.reset()
        self._cache.clear()
        with self._fault_lock:
            self._faults = random.Random(self.fault_seed)

    # ---- request handling
    # -------------------------------------------------------------------------------------

    def handle(self, request: HttpRequest) -> HttpResponse | None:
        """Answer one HTTP request; None means drop the connection without an answer (the ``reset`` fault)."""
        if request.path.startswith(CONTROL_PREFIX):
            return self._control(request)
        route = protocols.route(request)
        req_id = protocols.request_id(request, route)
        if route is None:
            return protocols.encode_error(
                None,
                ApiError("MissingAuthenticationToken", "Request is missing a SigV4 Authorization header.", 403),
                req_id,
                protocols.wire_protocol(request),
            )
        self._stats.call(route.call_name)
        refusal = self._authorize(route)
        if refusal is not None:
            return protocols.encode_error(route, refusal, req_id)
        if self._bucket is not None and not self._bucket.take():
            self._stats.fault("tps")
            return protocols.encode_error(route, ApiError("ThrottlingException", "Rate exceeded"), req_id)
        fault = self._draw_fault()
        if fault is not None:
            self._stats.fault(fault)
            if fault == "throttle":
                return protocols.encode_error(route, ApiError("ThrottlingException", "Rate exceeded"), req_id)
            if fault == "500":
                return protocols.encode_error(
                    route,
                    ApiError("InternalFailure", "The sandbox injected an internal failure.", 500),
                    req_id,
                )
            if fault == "reset":
                return None
            time.sleep(self.slow_seconds)
        try:
            return self._dispatch(route, request, req_id)
        except ApiError as error:
            return protocols.encode_error(route, error, req_id)
        except Exception:
            log.exception("sandbox handler failed for %s", route.call_name)
            error = ApiError("InternalFailure", f"The sandbox failed while answering {route.call_name}.", 500)
            return protocols.encode_error(route, error, req_id)

    def set_policy(self, policy: auth.Policy | dict | str | Path | None) -> None:
        """Enforce ``policy`` from the next call on (None: every call allowed)."""
        self.policy = auth.load_policy(policy) if policy is not None else None

    def _authorize(self, route: Route) -> ApiError | None:
        # AWS authenticates the caller before it authorises the action, and both before throttling.
        if self.reject_credentials is not None:
            return auth.rejected_credentials(route, self.reject_credentials)
        policy = self.policy
        action = auth.iam_action(route)
        if policy is None or action is None:
            return None
        decision = policy.decide(action)
        if decision == "allow":
            return None
        # The identity STS GetCallerIdentity reports for the sandbox's caller.
        principal = f"arn:aws:iam::{self.scenario.account_id}:user/sandbox"
        return auth.access_denied(route, action, principal, explicit=decision == "explicit-deny")

    def _draw_fault(self) -> str | None:
        if self.fault_rate <= 0:
            return None
        with self._fault_lock:
            if self._faults.random() >= self.fault_rate:
                return None
            return self._faults.choice(self.fault_kinds)

    def _dispatch(self, route: Route, request: HttpRequest, req_id: str) -> HttpResponse:
        handler = HANDLERS.get((route.endpoint_prefix, route.operation_name or ""))
        if route.operation is None or handler is None:
            code = "InvalidAction" if route.protocol in ("query", "ec2") else "UnknownOperationException"
            raise ApiError(code, f"The sandbox does not implement {route.call_name}.")
        misc.check_region(route.region, tuple(self.scenario.regions))
        params = protocols.decode_request(route, request)
        ctx = CallContext(
            region=route.region,
            now=self._clock.now(),
            scenario=self.scenario,
            traffic=self.traffic,
            cache=self._cache,
            count=self._stats.add,
        )
        return protocols.encode_response(route, handler(ctx, params), req_id)

    def _control(self, request: HttpRequest) -> HttpResponse:
        name = request.path[len(CONTROL_PREFIX) :].strip("/")
        if name == "health" and request.method == "GET":
            return _json_response(200, self._health())
        if name == "stats" and request.method == "GET":
            return _json_response(200, self.stats())
        if name == "reset" and request.method == "POST":
            self.reset_stats()
            return _json_response(200, {"status": "reset"})
        if name == "clock" and request.method in ("GET", "POST"):
            if request.method == "POST":
                try:
                    self._set_clock(json.loads(request.body or b"{}"))
                except (ValueError, TypeError) as exc:
                    return _json_response(400, {"message": str(exc)})
            return _json_response(200, {"now": _iso(self.now())})
        return _json_response(404, {"message": f"no sandbox control endpoint {request.method} {request.path}"})

    def _set_clock(self, body: Any) -> None:
        if not isinstance(body, dict) or not ({"now", "advance_seconds"} & body.keys()):
            raise ValueError('send {"now": "<ISO-8601>"} or {"advance_seconds": <number>}')
        if "now" in body:
            self.set_now(datetime.fromisoformat(str(body["now"]).replace("Z", "+00:00")))
        if "advance_seconds" in body:
            self.advance(timedelta(seconds=float(body["advance_seconds"])))

    def _health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "scenario": self.scenario.name,
            "seed": self.seed,
            "now": _iso(self.now()),
            "regions": list(self.scenario.regions),
            "endpoint": self.endpoint_url,
        }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _json_response(status: int, document: Any) -> HttpResponse:
    body = json.dumps(document, sort_keys=True).encode()
    return HttpResponse(status, (("Content-Type", "application/json"),), body)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    # Idle keep-alive connections would otherwise make server_close() wait for their threads.
    block_on_close = False
    request_queue_size = 128
    sandbox: SandboxServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def track(self, connection: socket.socket, alive: bool) -> None:
        with self._connections_lock:
            if alive:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "buw-sandbox"
    sys_version = ""
    timeout = 120
    server: _HttpServer

    def setup(self) -> None:
        super().setup()
        # Responses go out in one write; without NODELAY small error bodies can wait on delayed ACKs.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        body = self._read_body()
        path, _, query = self.path.partition("?")
        request = HttpRequest(
            method=self.command,
            path=path,
            query=query,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )
        response = self.server.sandbox.handle(request)
        if response is None:
            # An RST instead of a FIN: the client sees "connection reset by peer", as with a dropped AWS
            # connection.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        self._write(response)

    def _write(self, response: HttpResponse) -> None:
        try:
            reason = http.HTTPStatus(response.status).phrase
        except ValueError:
            reason = ""
        lines = [f"HTTP/1.1 {response.status} {reason}"]
        lines += [f"{name}: {value}" for name, value in response.headers]
        # A HEAD answer (S3 HeadObject) carries the length of the body it describes, set by its handler.
        if not any(name.lower() == "content-length" for name, _ in response.headers):
            lines.append(f"Content-Length: {len(response.body)}")
        # The sandbox clock, as AWS sends its own: clients that read the service time see the pinned clock.
        lines.append(f"Date: {formatdate(self.server.sandbox.now().timestamp(), usegmt=True)}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        payload = response.body if self.command != "HEAD" else b""
        self.wfile.write(head + payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve


def run(
    host: str = "127.0.0.1",
    port: int = 4566,
    scenario: str | Scenario = "demo",
    seed: int = 0,
    now: datetime | None = None,
    fault_rate: float = 0.0,
    fault_kinds: tuple[str, ...] | list[str] = FAULT_KINDS,
    tps: float | None = None,
    policy: auth.Policy | dict | str | Path | None = None,
    reject_credentials: str | None = None,
) -> None:
    """Serve the sandbox in the foreground until KeyboardInterrupt, after printing the endpoint and the
    environment to point boto3 at it. Raises :class:`SandboxPortInUse` when the port is taken."""
    server = SandboxServer(
        scenario,
        seed=seed,
        now=now,
        host=host,
        port=port,
        fault_rate=fault_rate,
        fault_kinds=fault_kinds,
        tps=tps,
        policy=policy,
        reject_credentials=reject_credentials,
    )
    server.start()
    region = server.scenario.regions[0] if server.scenario.regions else "us-east-1"
    print(f"Sandbox for scenario {server.scenario.name!r} (seed {seed}) serving at {server.endpoint_url}")
    print(f"Clock: {_iso(server.now())}{' (pinned)' if now is not None else ''}")
    if policy is not None:
        print("An IAM policy is enforced: a call whose action it does not allow gets AccessDenied.")
    if reject_credentials is not None:
        print(f"Every call is refused: the caller's credentials are {reject_credentials}.")
    print("Point boto3 (or any AWS SDK tool) at it with:")
    print(
        f"export AWS_ENDPOINT_URL={server.endpoint_url} AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test "
        f"AWS_REGION={region}"
    )
    print("unset AWS_PROFILE")
    print("Press Ctrl+C to stop.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()

"""Operation handlers of the simulated account, one module per AWS service.

A handler takes the call's :class:`CallContext` and the decoded input parameters and returns the output dict
in the shape botocore's model describes; it raises :class:`~pipelines.sandbox.protocols.ApiError` for anything
AWS would refuse. Handlers never see the wire protocol: the same handler answers CBOR, JSON and query clients.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pipelines.sandbox.protocols import ApiError

if TYPE_CHECKING:
    from pipelines.sandbox.scenario import Scenario
    from pipelines.sandbox.traffic import Traffic


class ResultCache:
    """A small thread-safe LRU for results that repeat across pages of one paginated read."""

    def __init__(self, size: int = 8) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The cached value for ``key``, computing (outside the lock) and storing it on a miss."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = compute()
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        """Forget every cached result."""
        with self._lock:
            self._items.clear()


@dataclass(frozen=True)
class CallContext:
    """What a handler may know about one call: signed region, sandbox clock and the simulated account."""

    region: str
    now: datetime
    scenario: Scenario
    traffic: Traffic
    cache: ResultCache
    count: Callable[[str, int], None]

    @property
    def account_id(self) -> str:
        """The simulated account id."""
        return self.scenario.account_id

    @property
    def has_region(self) -> bool:
        """Whether the scenario has anything in this region (else AWS would answer with empty lists)."""
        return self.region in self.scenario.regions


Handler = Callable[[CallContext, dict[str, Any]], dict[str, Any]]


def encode_token(state: Mapping[str, Any]) -> str:
    """An opaque, deterministic pagination token (standard base64, as Service Quotas' model requires)."""
    raw = json.dumps(state, sort_keys=True, separators=(",", ":")).encode()
    return base64.b64encode(raw).decode("ascii")


def decode_token(token: str, code: str, message: str) -> dict[str, Any]:
    """The state inside a token from :func:`encode_token`; ``ApiError(code, message)`` when it is not one."""
    try:
        state = json.loads(base64.b64decode(token.encode("ascii"), validate=True))
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise ApiError(code, message) from exc
    if not isinstance(state, dict):
        raise ApiError(code, message)
    return state


def fingerprint(value: Any) -> str:
    """A short stable digest of a request's parameters (datetimes as ISO text), to bind tokens to requests."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def paginate(
    items: list,
    params: Mapping[str, Any],
    *,
    token_key: str,
    limit_key: str,
    default_limit: int,
    max_limit: int,
    bad_token_code: str,
    bad_limit_code: str,
    request_key: Any = None,
) -> tuple[list, str | None]:
    """Slice ``items`` for one page; returns the page and the next token (None on the last page)."""
    limit = params.get(limit_key)
    if limit is None:
        limit = default_limit
    if not 1 <= int(limit) <= max_limit:
        raise ApiError(bad_limit_code, f"{limit_key} must be between 1 and {max_limit}; got {limit}.")
    digest = fingerprint(request_key)
    offset = 0
    token = params.get(token_key)
    if token:
        state = decode_token(token, bad_token_code, f"The {token_key} is not valid for this request.")
        if state.get("r") != digest or not isinstance(state.get("o"), int) or state["o"] < 0:
            raise ApiError(bad_token_code, f"The {token_key} is not valid for this request.")
        offset = state["o"]
    page = items[offset : offset + int(limit)]
    end = offset + int(limit)
    next_token = encode_token({"o": end, "r": digest}) if end < len(items) else None
    return page, next_token

"""Admission: the one path every request into the gateway takes, whatever its transport.

    authenticate (API key or JWT) -> act for someone (service identities only) -> scope
    -> rate limit -> stream slot (streams) -> params limits (runs started)

Each step raises a domain error (Unauthenticated, PermissionDenied, RateLimited, TooManyStreams,
InvalidArgument); REST, the v1 WebSocket, the FastAgency routes and gRPC only map those to their
own codes. Limits are per gateway process: with N replicas behind a balancer that spreads an
identity's requests evenly, it may make N x rate requests a second and hold N x streams.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flotilla.auth import SCOPE_ACT_AS, Authenticator, Identity, acting_for
from flotilla.errors import InvalidArgument, PermissionDenied, RateLimited, TooManyStreams

MAX_PARAMS_BYTES = 256 * 1024
"""Largest run params, as JSON; the dispatcher enforces the same bound."""


@dataclass(frozen=True, kw_only=True)
class Limits:
    rate_per_s: float
    """Requests an identity may make per second, on average."""
    burst: int
    """Requests an identity may make at once before the average applies."""
    max_streams: int
    """Streams (WebSocket or gRPC watch) an identity may hold open at once."""
    max_params_depth: int
    """Deepest nesting of objects/lists in run params."""
    max_params_bytes: int = MAX_PARAMS_BYTES


class RateLimiter:
    """A token bucket per identity: `rate` requests a second on average, `burst` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}  # identity -> (tokens, last refill)

    def retry_after(self, identity: str) -> float | None:
        """None if the request may go now (and counts it); else seconds until it may."""
        now = time.monotonic()
        tokens, last = self._buckets.get(identity, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens >= 1.0:
            self._buckets[identity] = (tokens - 1.0, now)
            return None
        self._buckets[identity] = (tokens, now)
        return (1.0 - tokens) / self._rate


class StreamSlots:
    """Counts open streams per identity."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._open: dict[str, int] = {}

    def acquire(self, identity: str) -> bool:
        if self._open.get(identity, 0) >= self._limit:
            return False
        self._open[identity] = self._open.get(identity, 0) + 1
        return True

    def release(self, identity: str) -> None:
        left = self._open.get(identity, 1) - 1
        if left > 0:
            self._open[identity] = left
        else:
            self._open.pop(identity, None)

    def open(self, identity: str) -> int:
        return self._open.get(identity, 0)


def depth(value: object) -> int:
    """How deeply lists and objects nest in a JSON value (a scalar is 0)."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


class Admission:
    def __init__(self, authenticator: Authenticator, limits: Limits) -> None:
        self._authenticator = authenticator
        self.limits = limits
        self._rate = RateLimiter(limits.rate_per_s, limits.burst)
        self._streams = StreamSlots(limits.max_streams)

    def identify(self, token: str | None, act_as: str | None = None) -> Identity:
        """Who the token is, or whom it acts for (only a token with the act_as scope may)."""
        identity = self._authenticator.authenticate(token)
        if act_as is None:
            return identity
        if SCOPE_ACT_AS not in identity.scopes:  # not implied by admin: a service's power only
            raise PermissionDenied(f"{identity.name!r} lacks the {SCOPE_ACT_AS!r} scope")
        try:
            return acting_for(identity, act_as)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None

    def admit(self, identity: Identity, scope: str) -> None:
        """The identity has `scope` and is within its rate limit (this request counts)."""
        if not identity.allows(scope):
            raise PermissionDenied(f"{identity.name!r} lacks the {scope!r} scope")
        wait = self._rate.retry_after(identity.name)
        if wait is not None:
            raise RateLimited(f"rate limit of {identity.name!r} exceeded; retry in {wait:.2f} s", wait)

    def enter(self, token: str | None, scope: str, act_as: str | None = None) -> Identity:
        """identify, then admit: what every request does first."""
        identity = self.identify(token, act_as)
        self.admit(identity, scope)
        return identity

    @contextmanager
    def stream(self, identity: Identity) -> Iterator[None]:
        """Holds one of the identity's stream slots while the stream is open."""
        if not self._streams.acquire(identity.name):
            raise TooManyStreams(f"{identity.name!r} already holds {self.limits.max_streams} open streams")
        try:
            yield
        finally:
            self._streams.release(identity.name)

    def open_streams(self, identity: Identity) -> int:
        return self._streams.open(identity.name)

    def check_params(self, params: Any) -> str:
        """Run params (a JSON object, or its text) within the limits, as compact JSON text."""
        if isinstance(params, str):
            if len(params.encode()) > self.limits.max_params_bytes:
                raise InvalidArgument(f"params are larger than {self.limits.max_params_bytes} bytes")
            try:
                params = json.loads(params) if params else {}
            except ValueError:
                raise InvalidArgument("params are not valid JSON") from None
        if not isinstance(params, dict):
            raise InvalidArgument("params must be a JSON object")
        if depth(params) > self.limits.max_params_depth:
            raise InvalidArgument(f"params nest deeper than {self.limits.max_params_depth} levels")
        text = json.dumps(params, separators=(",", ":"))
        if len(text.encode()) > self.limits.max_params_bytes:
            raise InvalidArgument(f"params are larger than {self.limits.max_params_bytes} bytes")
        return text

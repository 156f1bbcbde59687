"""Prometheus metrics: every metric Flotilla defines, and how a service exposes them.

Services only call this module. Metric objects are module-level, in prometheus_client's default
registry (with its process and GC collectors): a metric is a process-wide counter by nature, and
the one exception to "what a process shares is built in its main". Label values are bounded:
workflow names come from the catalogue (a name the process does not know counts as `other`),
routes are templates, gRPC methods are registered ones; nothing is labelled by run or identity.
The hot paths hold pre-bound label children (`.labels()` once, then `inc()`/`observe()`).

Exposition needs a bearer token, the same way on every service (README, Observability): the
gateway answers `GET /metrics` on its HTTP port (`metrics_response`), the dispatcher, worker and
UI serve `GET /metrics` on a port of their own (`MetricsServer`); a scrape without
`Authorization: Bearer <metrics token>` gets 401, and with no token configured metrics are off.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Container, Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import grpc
from grpc import aio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from flotilla.errors import ConfigurationError

# No `_created` series: one more series per labelled child, which Prometheus does not need.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Latency buckets: requests and calls (milliseconds to tens of seconds).
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Model calls and first events (a cold local model takes seconds).
_SLOW = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# People answering (seconds to a day).
_HUMAN = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0)

OTHER = "other"
"""The label value of anything outside a bounded set (an unknown workflow, an unmatched route)."""

# --- runs (dispatcher: started, cancelled while queued; worker: finished) ---
RUNS_STARTED = Counter(
    "flotilla_runs_started", "Runs created (a repeated idempotency key is not counted).", ["workflow"]
)
RUNS_FINISHED = Counter(
    "flotilla_runs_finished",
    "Runs ended with workflow_completed, by status (completed, failed, cancelled).",
    ["workflow", "status"],
)
RUN_FIRST_EVENT_SECONDS = Histogram(
    "flotilla_run_first_event_seconds",
    "From the run's creation to its first event (workflow_started), first attempts only.",
    ["workflow"],
    buckets=_SLOW,
)
RUN_INPUT_WAIT_SECONDS = Histogram(
    "flotilla_run_input_wait_seconds",
    "Time a run spent waiting for a person to answer a question (answered or expired).",
    buckets=_HUMAN,
)

# --- the job queue (dispatcher polls the consumer; worker counts what it takes) ---
JOBS_PENDING = Gauge(
    "flotilla_jobs_pending",
    "Jobs in the work queue from the workers' consumer info: `pending` not yet delivered, "
    "`ack_pending` delivered to a worker and not yet acked.",
    ["state"],
)
WORKER_RUNS_IN_FLIGHT = Gauge("flotilla_worker_runs_in_flight", "Runs this worker holds now.")
JOB_REDELIVERIES = Counter(
    "flotilla_job_redeliveries", "Jobs this worker took that had been delivered before (another attempt)."
)
DEAD_LETTERS = Counter(
    "flotilla_dead_letters", "Jobs dead-lettered, by reason (attempts, orphan, malformed).", ["reason"]
)

# --- LLM calls (worker) ---
LLM_CALLS = Counter("flotilla_llm_calls", "Backend completions (replayed ones not counted).", ["model", "outcome"])
LLM_TOKENS = Counter(
    "flotilla_llm_tokens", "Tokens the backend reported, by kind (prompt, completion).", ["model", "kind"]
)
LLM_CALL_SECONDS = Histogram("flotilla_llm_call_seconds", "Latency of backend completions.", ["model"], buckets=_SLOW)

# --- the gateway's streams ---
STREAMS_OPEN = Gauge(
    "flotilla_gateway_streams_open", "Open run streams, by protocol (v1, fastagency, grpc).", ["protocol"]
)
STREAM_SLOW_CLOSES = Counter(
    "flotilla_gateway_stream_slow_closes", "Streams closed because the client did not keep up.", ["protocol"]
)

# --- transport latency ---
GRPC_SERVER_SECONDS = Histogram(
    "flotilla_grpc_server_handling_seconds",
    "gRPC calls served, by method and status code (a stream's lifetime for streaming methods).",
    ["method", "code"],
    buckets=_FAST,
)
HTTP_REQUEST_SECONDS = Histogram(
    "flotilla_http_request_duration_seconds",
    "HTTP requests served, by method, route template and status (WebSockets not included).",
    ["method", "route", "status"],
    buckets=_FAST,
)


def _sample_names(name: str, kind: str) -> list[str]:
    """The names a family's samples carry in the text format."""
    if kind == "counter":
        return [f"{name}_total"]
    if kind == "histogram":
        return [f"{name}_bucket", f"{name}_sum", f"{name}_count"]
    return [name]


def _families() -> list[tuple[str, str]]:
    metrics: list[Any] = [
        RUNS_STARTED, RUNS_FINISHED, RUN_FIRST_EVENT_SECONDS, RUN_INPUT_WAIT_SECONDS, JOBS_PENDING,
        WORKER_RUNS_IN_FLIGHT, JOB_REDELIVERIES, DEAD_LETTERS, LLM_CALLS, LLM_TOKENS, LLM_CALL_SECONDS,
        STREAMS_OPEN, STREAM_SLOW_CLOSES, GRPC_SERVER_SECONDS, HTTP_REQUEST_SECONDS,
    ]  # fmt: skip
    return [(family.name, family.type) for metric in metrics for family in metric.describe()]


METRIC_FAMILIES = frozenset(name for name, _ in _families())
"""The name of every metric Flotilla defines."""
METRIC_NAMES = frozenset(sample for name, kind in _families() for sample in _sample_names(name, kind))
"""Every sample name those metrics expose (the dashboard's test checks its expressions against it)."""


def bounded(value: str, known: Container[str]) -> str:
    """`value` when it is in the bounded set `known`, else `other`."""
    return value if value in known else OTHER


# --- exposition ---


def authorized(authorization: str | None, token: str) -> bool:
    """The header carries `Bearer <token>` (constant-time compare); never with no token set."""
    if not token or not authorization or authorization[:7].lower() != "bearer ":
        return False
    return hmac.compare_digest(authorization[7:].strip().encode(), token.encode())


def exposition() -> tuple[bytes, str]:
    """The registry in Prometheus' text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def check_settings(port: int, token: str, *, variable: str) -> None:
    """A metrics port needs a token (scrapes are refused without one): fail at start, naming it."""
    if port and not token:
        raise ConfigurationError(
            f"a metrics port is set but no token: set {variable} (scrapers send it as a Bearer token)"
        )


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the base's name)
        """Scrapes are not worth a log line each."""


def _wsgi_metrics(token: str) -> Callable[[dict[str, Any], Callable[..., Any]], list[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: metrics are at /metrics\n"]
        if not authorized(environ.get("HTTP_AUTHORIZATION"), token):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
            return [b"a metrics token is required (Authorization: Bearer <token>)\n"]
        body, content_type = exposition()
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    return app


class MetricsServer:
    """`GET /metrics` on `host:port` (0: a free port; `.port` says which), in a daemon thread, so
    a busy event loop still answers scrapes. Refuses a scrape without the bearer token."""

    def __init__(self, host: str, port: int, token: str) -> None:
        if not token:
            raise ConfigurationError("a metrics server needs a token")
        self._server = make_server(host, port, _wsgi_metrics(token), server_class=_Server, handler_class=_QuietHandler)
        self.port: int = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve_metrics(host: str, port: int, token: str) -> MetricsServer | None:
    """Start a metrics server when `port` is set (not 0); None when metrics are off."""
    if not port:
        return None
    return MetricsServer(host, port, token).start()


# --- gRPC: one interceptor on every server (flotilla.lifecycle.GrpcServer) ---

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
else:
    Handler = grpc.RpcMethodHandler


class GrpcMetricsInterceptor(aio.ServerInterceptor):
    """Times every call (the outermost interceptor: refusals count too), by method and code."""

    def __init__(self) -> None:
        self._children: dict[tuple[str, str], Any] = {}
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}
        """The last handler seen per method and its timed twin: a registered method's handler is
        the same object call after call, so it is wrapped once (bounded: registered methods)."""

    def _observe(self, method: str, code: str, seconds: float) -> None:
        child = self._children.get((method, code))
        if child is None:  # bounded: registered methods times status codes
            child = self._children[(method, code)] = GRPC_SERVER_SECONDS.labels(method, code)
        child.observe(seconds)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        last = self._wrapped.get(method)
        if last is not None and last[0] is handler:
            return last[1]
        timed = self._timed(handler, method)
        self._wrapped[method] = (handler, timed)
        return timed

    def _timed(self, handler: Handler, method: str) -> Handler:
        serializers = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(self._call(handler.unary_unary, method), **serializers)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(self._call(handler.stream_unary, method), **serializers)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(self._stream(handler.unary_stream, method), **serializers)
        return grpc.stream_stream_rpc_method_handler(self._stream(handler.stream_stream, method), **serializers)

    def _call(self, behavior: Any, method: str) -> Any:
        async def timed(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            start = time.perf_counter()
            outcome = "UNKNOWN"  # it raised
            try:
                result = await behavior(request, context)
                outcome = "OK"
                return result
            except (asyncio.CancelledError, GeneratorExit):
                outcome = "CANCELLED"  # the client went away
                raise
            finally:
                self._observe(method, _code(context, outcome), time.perf_counter() - start)

        return timed

    def _stream(self, behavior: Any, method: str) -> Any:
        if not inspect.isasyncgenfunction(behavior):  # writes with context.write(): a coroutine
            return self._call(behavior, method)

        async def timed(request: Any, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            start = time.perf_counter()
            outcome = "UNKNOWN"
            try:
                async for response in behavior(request, context):
                    yield response
                outcome = "OK"
            except (asyncio.CancelledError, GeneratorExit):
                outcome = "CANCELLED"
                raise
            finally:
                self._observe(method, _code(context, outcome), time.perf_counter() - start)

        return timed


def _code(context: aio.ServicerContext[Any, Any], outcome: str) -> str:
    """The call's status: what the handler set (or aborted with), else how it ended (OK, UNKNOWN
    when it raised, CANCELLED when the client left)."""
    try:
        code = context.code()
    except Exception:  # noqa: BLE001  (older grpc: no code() on the aio context)
        code = None
    if isinstance(code, grpc.StatusCode) and code is not grpc.StatusCode.OK:
        return code.name
    return outcome


# --- HTTP: the gateway's ASGI middleware, the UI's WSGI one ---


class AsgiHttpMetrics:
    """Times every HTTP request (not WebSockets) by method, route template (FastAPI's matched
    route; `other` when none matched) and status."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._children: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or OTHER
            self._observe(scope["method"], route, status, time.perf_counter() - start)

    def _observe(self, method: str, route: str, status: int, seconds: float) -> None:
        if method not in _HTTP_METHODS:
            method = OTHER  # before the key: a client's made-up methods must not grow the cache
        key = (method, route, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = HTTP_REQUEST_SECONDS.labels(method, route, str(status))
        child.observe(seconds)


_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def wsgi_route(path: str) -> str:
    """A bounded route for a UI path: `/`, the first segment when it is one of Mesop's or
    Flotilla's `/__name__/` prefixes, else `other`."""
    if path == "/":
        return path
    first = path.split("/", 2)[1] if path.startswith("/") else ""
    return f"/{first}" if first.startswith("__") and first.endswith("__") and len(first) <= 40 else OTHER


def wsgi_http_metrics(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """Times each request of a WSGI app until its response starts, by method, route and status."""

    def timed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start = time.perf_counter()
        status = "500"

        def start_with_status(status_line: str, headers: Any, *exc_info: Any) -> Any:
            nonlocal status
            status = status_line.split(" ", 1)[0]
            return start_response(status_line, headers, *exc_info)

        try:
            return app(environ, start_with_status)
        finally:
            method = environ.get("REQUEST_METHOD", "")
            HTTP_REQUEST_SECONDS.labels(
                method if method in _HTTP_METHODS else OTHER, wsgi_route(environ.get("PATH_INFO", "")), status
            ).observe(time.perf_counter() - start)

    return timed

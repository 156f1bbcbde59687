"""OpenTelemetry traces: the one set-up, context propagation, and the spans every service makes.

A run start is one trace: the UI's span of the person's action and its gRPC client span
(`sync_client_interceptors`, on `flotilla.rpc.sync_channel`), or a REST client's `traceparent` →
the gateway's request span (its gRPC API's server span, or FastAPI's own of an HTTP/WebSocket
request; `untraced_request` leaves probes out) → a gRPC client span whose W3C `traceparent` rides
in the call's metadata (`client_interceptors`, on every `flotilla.rpc.aio_channel`) → the
dispatcher's server span (`GrpcTracingInterceptor`, on every `flotilla.lifecycle.GrpcServer`),
whose `traceparent` the run keeps (`traceparent()`, in its header) → the job, published with
`traceparent` in its NATS headers (`inject_headers`, in `jetstream.enqueue`; a job the
dispatcher's upkeep queues again, outside any span, carries the run's) → the worker's attempt
span, a child of it (`context_from` the job's headers; a takeover by another worker gets the same
redelivered job, so joins the same trace) → a span for each LLM call (`llm._service`) and each
tool call (`workflows.tool_call_scope`). While a span is current, every log line carries its
`trace_id` and `span_id` (`add_trace_ids`, installed by flotilla.logs).

Off by default: `setup_tracing` turns it on only when the settings name an OTLP endpoint
(settings.TracingSettings). Off, no tracer provider is installed and every helper here returns at
its first line: no span objects, no header parsing, no interceptors added, FastAPI's telemetry off. Like
Prometheus metrics, the tracer provider is process-wide by nature (OpenTelemetry's global): each
service's `main` sets it up once, before it configures logging and builds its servers (the UI in
gunicorn's worker, after the fork: the exporter's channel and thread must not cross it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

import grpc
from grpc import aio
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span as Span  # re-exported: callers type what `span` gives with it
from opentelemetry.trace import SpanKind as SpanKind  # re-exported: callers name span kinds with it
from opentelemetry.trace import Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from flotilla.errors import ConfigurationError
from flotilla.settings import TracingSettings

_TRACEPARENT = "traceparent"
_PROPAGATOR = TraceContextTextMapPropagator()
_HEALTH_PREFIX = "/grpc.health.v1.Health/"
_UNTRACED_PATHS = frozenset({"/livez", "/readyz", "/metrics"})
"""Probes and scrapes: many, and nothing to learn from a trace of them."""


class _State:
    tracer: trace.Tracer | None = None
    provider: TracerProvider | None = None


def enabled() -> bool:
    """Whether this process exports traces (`setup_tracing` found an endpoint)."""
    return _State.tracer is not None


def setup_tracing(settings: TracingSettings, service: str, *, instance: str | None = None) -> bool:
    """Export this process's spans over OTLP/gRPC when `settings` name an endpoint; True if so.
    `service` is the default `service.name`, `instance` the `service.instance.id` (a worker's id;
    default host-pid). Spans are batched in a background thread and flushed at exit."""
    if not settings.otlp_endpoint or _State.tracer is not None:
        return _State.tracer is not None
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    url = check_settings(settings)
    credentials = None
    if url.scheme == "https" and settings.otlp_ca_file:
        credentials = grpc.ssl_channel_credentials(root_certificates=Path(settings.otlp_ca_file).read_bytes())
    exporter = OTLPSpanExporter(
        endpoint=f"{url.hostname}:{url.port or (443 if url.scheme == 'https' else 4317)}",
        insecure=url.scheme == "http",
        credentials=credentials,
        headers=_headers(settings.otlp_headers.get_secret_value()),
        timeout=10,
    )
    resource = Resource.create(
        {
            "service.name": settings.trace_service_name or service,
            "service.namespace": "flotilla",
            "service.instance.id": instance or f"{socket.gethostname()}-{os.getpid()}",
        }
    )
    provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
    trace.set_tracer_provider(provider)
    _State.provider = provider
    _State.tracer = provider.get_tracer("flotilla")
    return True


def check_settings(settings: TracingSettings) -> SplitResult:
    """The OTLP endpoint's parts; ConfigurationError when it (or its CA file) cannot work.
    `setup_tracing` checks too; a service that sets tracing up after a fork (the UI's gunicorn
    worker) checks before it, so a bad setting stops the start with one line."""
    url = urlsplit(settings.otlp_endpoint)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ConfigurationError(
            f"the OTLP endpoint {settings.otlp_endpoint!r} is not http://host:port (plaintext) or https://host:port (TLS)"
        )
    if url.scheme == "https" and settings.otlp_ca_file and not Path(settings.otlp_ca_file).is_file():
        raise ConfigurationError(f"the OTLP CA file {settings.otlp_ca_file} does not exist")
    return url


def shutdown_tracing() -> None:
    """Export what is left and stop (also done at exit); tracing is off afterwards."""
    provider, _State.provider, _State.tracer = _State.provider, None, None
    if provider is not None:
        provider.shutdown()


def _headers(value: str) -> dict[str, str] | None:
    pairs = [item.split("=", 1) for item in value.split(",") if "=" in item]
    return {key.strip().lower(): val.strip() for key, val in pairs} or None


# --- spans ---


@contextlib.contextmanager
def _current(
    tracer: trace.Tracer, name: str, kind: SpanKind, parent: Context | None, attributes: Mapping[str, Any] | None
) -> Iterator[Span]:
    with tracer.start_as_current_span(name, context=parent, kind=kind, attributes=attributes) as current:
        yield current


def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Context | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> contextlib.AbstractContextManager[Span | None]:
    """A span, current inside the `with` (a child of `parent`, else of the current span); the
    `with` gives it (to add attributes), or None when tracing is off. An exception leaving the
    `with` is recorded on the span and marks it as an error."""
    tracer = _State.tracer
    if tracer is None:
        return contextlib.nullcontext()
    return _current(tracer, name, kind, parent, attributes)


def traceparent() -> str:
    """The current span's `traceparent`, or "" (tracing off, no span): a run keeps the one it was
    started in, so every job queued for it joins the run's trace (`inject_headers`)."""
    if _State.tracer is None:
        return ""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get(_TRACEPARENT, "")


def inject_headers(started_in: str = "") -> dict[str, str] | None:
    """The current span's `traceparent` as message headers; with no span current, `started_in`
    (the `traceparent` a run was started in: a job the dispatcher's upkeep queues again joins the
    run's trace); else None (tracing off too)."""
    if _State.tracer is None:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    if not carrier and started_in:
        carrier[_TRACEPARENT] = started_in
    return carrier or None


def context_from(headers: Mapping[str, str] | None) -> Context | None:
    """The span context a message's (or request's) `traceparent` header names, or None."""
    if _State.tracer is None or not headers:
        return None
    value = headers.get(_TRACEPARENT)
    if not value:
        return None
    return _PROPAGATOR.extract({_TRACEPARENT: value})


def add_trace_ids(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the current span's `trace_id` and `span_id` on the line."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event


# --- gRPC: client interceptors on every channel, a server interceptor on every GrpcServer ---


def _with_traceparent(details: aio.ClientCallDetails) -> aio.ClientCallDetails:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    if not carrier:
        return details
    metadata = aio.Metadata(*(details.metadata or ()))
    for key, value in carrier.items():
        metadata.add(key, value)
    return aio.ClientCallDetails(details.method, details.timeout, metadata, details.credentials, details.wait_for_ready)


def _rpc_attributes(method: str) -> dict[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


def _end_call(current: Span | None, code: grpc.StatusCode) -> None:
    if current is not None:
        current.set_attribute("rpc.grpc.status_code", code.value[0])
        if code is not grpc.StatusCode.OK:
            current.set_status(Status(StatusCode.ERROR, code.name))


class _UnaryUnaryClientSpan(aio.UnaryUnaryClientInterceptor):
    """A client span around each unary call made inside a trace, its `traceparent` in the call's
    metadata; a call outside any (a readiness probe's) starts no trace."""

    async def intercept_unary_unary(self, continuation: Any, details: aio.ClientCallDetails, request: Any) -> Any:
        if not trace.get_current_span().get_span_context().is_valid:
            return await continuation(details, request)
        method = details.method.decode() if isinstance(details.method, bytes) else str(details.method)
        with span(method.lstrip("/"), kind=SpanKind.CLIENT, attributes=_rpc_attributes(method)) as current:
            call = await continuation(_with_traceparent(details), request)
            _end_call(current, await call.code())
            return call


class _UnaryStreamTraceparent(aio.UnaryStreamClientInterceptor):
    """A stream (a watch) lives long: its `traceparent` is the current span's, no span of its own."""

    async def intercept_unary_stream(self, continuation: Any, details: aio.ClientCallDetails, request: Any) -> Any:
        return await continuation(_with_traceparent(details), request)


def client_interceptors() -> list[aio.ClientInterceptor]:
    """What an aio channel adds when tracing is on (nothing when off)."""
    if _State.tracer is None:
        return []
    return [_UnaryUnaryClientSpan(), _UnaryStreamTraceparent()]


@dataclasses.dataclass(frozen=True)
class _SyncCallDetails(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: tuple[tuple[str, str | bytes], ...] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class _SyncUnaryUnaryClientSpan(grpc.UnaryUnaryClientInterceptor):
    """`_UnaryUnaryClientSpan` for a blocking channel (the UI's): a client span around each unary
    call made inside a trace (a person's action), its `traceparent` in the call's metadata."""

    def intercept_unary_unary(self, continuation: Any, details: grpc.ClientCallDetails, request: Any) -> Any:
        if not trace.get_current_span().get_span_context().is_valid:
            return continuation(details, request)
        method = str(details.method)
        with span(method.lstrip("/"), kind=SpanKind.CLIENT, attributes=_rpc_attributes(method)) as current:
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier)
            traced = _SyncCallDetails(
                method=details.method,
                timeout=details.timeout,
                metadata=(*(details.metadata or ()), *carrier.items()),
                credentials=details.credentials,
                wait_for_ready=getattr(details, "wait_for_ready", None),
                compression=getattr(details, "compression", None),
            )
            call = continuation(traced, request)
            _end_call(current, call.code())
            return call


def sync_client_interceptors() -> list[grpc.UnaryUnaryClientInterceptor]:
    """What a blocking channel adds when tracing is on (nothing when off): unary calls only, its
    watches are short polls outside any action and carry no trace."""
    if _State.tracer is None:
        return []
    return [_SyncUnaryUnaryClientSpan()]


if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
else:
    Handler = grpc.RpcMethodHandler


def server_interceptors(*, new_traces: bool = True) -> list[aio.ServerInterceptor]:
    """What a GrpcServer adds when tracing is on (nothing when off); see GrpcTracingInterceptor."""
    return [GrpcTracingInterceptor(new_traces=new_traces)] if _State.tracer is not None else []


class GrpcTracingInterceptor(aio.ServerInterceptor):
    """A server span for every call but health checks, a child of the caller's `traceparent`;
    current while a unary call is handled (so the dispatcher's StartRun passes it on to the job).
    A call without a `traceparent` starts a trace only with `new_traces` (the gateway's gRPC API,
    which the UI calls); a server whose callers pass their trace on (the dispatcher: the gateway
    does) serves untraced calls, a probe's, without one."""

    def __init__(self, *, new_traces: bool = True) -> None:
        self._new_traces = new_traces
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(details)
        if handler is None or details.method.startswith(_HEALTH_PREFIX):
            return handler
        if not self._new_traces and not _has_traceparent(details.invocation_metadata):
            return handler
        last = self._wrapped.get(details.method)
        if last is not None and last[0] is handler:
            return last[1]
        traced = self._traced(handler, details.method)
        self._wrapped[details.method] = (handler, traced)
        return traced

    def _traced(self, handler: Handler, method: str) -> Handler:
        serializers = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(_unary(handler.unary_unary, method), **serializers)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(_unary(handler.stream_unary, method), **serializers)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(_streaming(handler.unary_stream, method), **serializers)
        return grpc.stream_stream_rpc_method_handler(_streaming(handler.stream_stream, method), **serializers)


def _has_traceparent(metadata: Any) -> bool:
    return any(key == _TRACEPARENT for key, _ in metadata or ())


def _parent(context: aio.ServicerContext[Any, Any]) -> Context | None:
    for key, value in context.invocation_metadata() or ():
        if key == _TRACEPARENT and isinstance(value, str):
            return _PROPAGATOR.extract({_TRACEPARENT: value})
    return None


def _end_with(current: Span, context: aio.ServicerContext[Any, Any]) -> None:
    try:
        code = context.code()
    except Exception:  # noqa: BLE001  (older grpc: no code() on the aio context)
        code = None
    if isinstance(code, grpc.StatusCode):
        _end_call(current, code)


def _unary(behavior: Any, method: str) -> Any:
    name = method.lstrip("/")
    attributes = _rpc_attributes(method)

    async def traced(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        with span(name, kind=SpanKind.SERVER, parent=_parent(context), attributes=attributes) as current:
            try:
                return await behavior(request, context)
            finally:
                if current is not None:
                    _end_with(current, context)

    return traced


def _streaming(behavior: Any, method: str) -> Any:
    """A stream's span covers its lifetime but is not made current: an async generator may be
    closed from another context than it ran in, which a current span's detach cannot survive."""
    name = method.lstrip("/")
    attributes = _rpc_attributes(method)

    def start(context: aio.ServicerContext[Any, Any]) -> Span:
        tracer = _State.tracer or trace.get_tracer("flotilla")  # shut down meanwhile: a no-op span
        return tracer.start_span(name, context=_parent(context), kind=SpanKind.SERVER, attributes=attributes)

    if not inspect.isasyncgenfunction(behavior):  # writes with context.write(): a coroutine

        async def traced_call(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            current = start(context)
            try:
                return await behavior(request, context)
            finally:
                _end_with(current, context)
                current.end()

        return traced_call

    async def traced(request: Any, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        current = start(context)
        try:
            async for response in behavior(request, context):
                yield response
        finally:
            _end_with(current, context)
            current.end()

    return traced


# --- HTTP and WebSocket: FastAPI's own spans (the gateway's app) ---


def untraced_request(scope: MutableMapping[str, Any]) -> bool:
    """For FastAPI's `telemetry` `exclude`: probes and scrapes make no spans."""
    return scope.get("path") in _UNTRACED_PATHS

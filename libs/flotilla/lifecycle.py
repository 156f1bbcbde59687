"""Process lifecycle shared by the services: waiting for SIGINT/SIGTERM, serving gRPC."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from contextlib import contextmanager
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection as grpc_reflection
from pydantic import ValidationError

from flotilla import tracing
from flotilla.errors import ConfigurationError
from flotilla.metrics import GrpcMetricsInterceptor


async def wait_for_shutdown() -> signal.Signals:
    """Block until SIGINT or SIGTERM; return which."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if not received.done():
            received.set_result(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await received
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


class GrpcServer:
    """A grpc.aio server with health checking for the given services; TLS when `credentials`
    are given, `interceptors` before every call (authentication), reflection only when asked.
    Every call is timed (flotilla.metrics), refused ones included, and traced when tracing is on
    (`new_traces`: whether a call that carries no trace context starts one, flotilla.tracing)."""

    def __init__(
        self,
        host: str,
        port: int,
        register: Callable[[aio.Server], None],
        services: Iterable[str],
        *,
        credentials: grpc.ServerCredentials | None = None,
        interceptors: Sequence[aio.ServerInterceptor] = (),
        reflection: bool = False,
        new_traces: bool = True,
    ) -> None:
        tracing_interceptors = tracing.server_interceptors(new_traces=new_traces)
        self._server = aio.server(
            interceptors=[GrpcMetricsInterceptor(), *tracing_interceptors, *interceptors],
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_concurrent_streams", 100_000),  # one per watched run
                # Clients keep long watches alive with pings every 20 s (the gateway's channel): allow
                # them, or the server answers GOAWAY "too_many_pings" and every watch breaks at once.
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
                ("grpc.http2.max_ping_strikes", 0),
            ],
        )
        register(self._server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self._services = list(services)
        if reflection:
            names = [*self._services, grpc_reflection.SERVICE_NAME, health.SERVICE_NAME]
            grpc_reflection.enable_server_reflection(names, self._server)
        address = f"{host}:{port}"
        self.tls = credentials is not None
        if credentials is None:
            self.port = self._server.add_insecure_port(address)
        else:
            self.port = self._server.add_secure_port(address, credentials)

    async def start(self) -> None:
        await self._server.start()

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ["", *self._services]:
            await self._health.set(name, status)

    async def stop(self, grace_s: float) -> None:
        await self.set_serving(False)
        await self._server.stop(grace_s)


YOUNG_GC_THRESHOLD = 10_000
"""Allocations between two collections of the youngest generation (Python's default: 700)."""


def settle_heap() -> None:
    """Call once a service has imported what it keeps for its lifetime (modules, schemas, its
    app): those objects leave the cyclic collector's sight for good (`gc.freeze`), and the young
    generation is collected less often. Without it the gateway spent about a sixth of its CPU in
    the collector, scanning the same long-lived objects per request."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, middle, old)


def run_service(main: Coroutine[Any, Any, None]) -> None:
    """Run a service's main coroutine on uvloop (faster NATS and gRPC I/O), else asyncio."""
    settle_heap()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


@contextmanager
def exit_on_bad_configuration(service: str) -> Iterator[None]:
    """Settings that cannot work end the process with one clear line and exit code 2, not a
    traceback: the message names the variable to set."""
    try:
        yield
    except (ConfigurationError, ValidationError) as exc:
        sys.stderr.write(f"{service}: cannot start: {exc}\n")  # before logging is set up
        raise SystemExit(2) from None

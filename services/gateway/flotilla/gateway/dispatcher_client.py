"""The gateway's gRPC client of the dispatcher, and how its errors become HTTP answers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import structlog
from fastapi import Request
from fastapi.responses import JSONResponse
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from flotilla.auth import ServiceTokenSigner
from flotilla.events import is_terminal
from flotilla.protocol import (
    DISPATCHER_SERVICE,
    Caller,
    DispatcherStub,
    ListEventsRequest,
    ListWorkflowsRequest,
    ReplyDelta,
    RunEvent,
    WatchRunRequest,
    WatchRunResponse,
)
from flotilla.rpc import aio_channel, signed

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Deltas:
    """Pieces of the reply being written (ephemeral: a stream may drop them; the finished message
    comes as an event)."""

    deltas: list[ReplyDelta]


WATCH_RETRY_S = 30.0
"""How long a watch keeps trying to reach a dispatcher that went away (restart, failover)."""
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.CANCELLED}

_HTTP_STATUS = {
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


async def rpc_error_response(request: Request, error: Exception) -> JSONResponse:
    """The app's handler for gRPC errors from the dispatcher: its status code becomes HTTP's."""
    if not isinstance(error, aio.AioRpcError):  # registered for AioRpcError only
        raise error
    status = _HTTP_STATUS.get(error.code(), 502)
    detail = error.details() or error.code().name
    if status in (502, 503, 504):
        detail = f"the dispatcher could not answer: {detail}"
    return JSONResponse({"detail": detail}, status_code=status)


async def _end_of(call: aio.UnaryStreamCall[WatchRunRequest, WatchRunResponse]) -> None:
    """Reads a watch to its end after the terminal event (the dispatcher ends it there): cheaper
    for both sides than cancelling it, which resets the HTTP/2 stream. A stream that does not end
    is cancelled when its run stream closes."""
    with contextlib.suppress(aio.AioRpcError):
        async for _ in call:
            pass


class DispatcherClient:
    """One channel to the dispatcher for the gateway process's lifetime."""

    def __init__(
        self, address: str, signer: ServiceTokenSigner, *, ca_file: str | None = None, server_name: str | None = None
    ) -> None:
        """Every call carries `signer`'s service token; TLS when `ca_file` is given."""
        self._channel = aio_channel(
            address,
            ca_file=ca_file,
            server_name=server_name,
            options=[("grpc.keepalive_time_ms", 20_000), ("grpc.max_receive_message_length", 64 * 1024 * 1024)],
        )
        self.stub = signed(DispatcherStub(self._channel), signer)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def served_workflows(self) -> int | None:
        """How many workflows live workers serve, or None when the dispatcher does not answer or
        does not report SERVING (which it does only while NATS is up)."""
        try:
            reply = await self._health.Check(health_pb2.HealthCheckRequest(service=DISPATCHER_SERVICE), timeout=1.0)
            if reply.status != health_pb2.HealthCheckResponse.SERVING:
                return None
            catalogue = await self.stub.ListWorkflows(ListWorkflowsRequest(), timeout=1.0)
        except aio.AioRpcError:
            return None
        return len(catalogue.workflows)

    async def events(self, run_id: str, caller: Caller, *, include_hidden: bool = False) -> list[RunEvent]:
        """Every stored event of the run (all pages)."""
        events: list[RunEvent] = []
        after = 0
        while True:
            request = ListEventsRequest(run_id=run_id, after_seq=after, caller=caller, include_hidden=include_hidden)
            page = await self.stub.ListEvents(request)
            events.extend(page.events)
            if not page.more:
                return events
            after = page.next_after_seq

    async def watch(
        self, run_id: str, after: int, caller: Caller, *, include_hidden: bool = False, include_deltas: bool = False
    ) -> AsyncIterator[list[RunEvent] | Deltas]:
        """The run's events after `after`, in batches, ending after the terminal event; with
        `include_deltas`, also the reply being written (`Deltas`, each after the events it
        follows). If the dispatcher goes away, watches again from the last seq yielded (for up to
        WATCH_RETRY_S), so the caller sees every event once and in order. Other errors
        (NOT_FOUND, ...) and exhausted retries raise the dispatcher's AioRpcError."""
        last = after
        retry_until: float | None = None
        while True:
            request = WatchRunRequest(
                run_id=run_id,
                after_seq=last,
                caller=caller,
                include_hidden=include_hidden,
                include_deltas=include_deltas,
            )
            call = self.stub.WatchRun(request)
            try:
                async for batch in call:
                    retry_until = None
                    events = [event for event in batch.events if event.seq > last]
                    if events:
                        last = events[-1].seq
                        yield events
                        if is_terminal(events[-1]):
                            await _end_of(call)
                            return
                    if batch.deltas:
                        yield Deltas(list(batch.deltas))
                # Ended without the terminal event (a dispatcher shutting down): watch again.
            except aio.AioRpcError as exc:
                now = asyncio.get_running_loop().time()
                retry_until = retry_until or now + WATCH_RETRY_S
                if exc.code() not in _RETRYABLE or now > retry_until:
                    raise
                log.info("watch interrupted; resuming", code=exc.code().name, after=last)
                await asyncio.sleep(0.2)
            finally:
                call.cancel()

    async def close(self) -> None:
        await self._channel.close()

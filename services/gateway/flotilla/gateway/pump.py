"""The one run-stream pump every streaming API uses: watch -> bounded outbox -> timed writer,
with a reader for the client's frames. What differs between the v1 WebSocket (stream.py),
FastAgency's WebSocket (fastagency.py) and gRPC's WatchRun (grpc_api.py) is pluggable: a `Codec`
(how events become frames, what a client's frame does) and a `Transport` (how a frame is sent,
a frame received, a stream closed).

Each stream has three tasks: the *watch* reads the run's events from the dispatcher into a bounded
outbox (when it holds `buffer` events the watch waits, and the dispatcher keeps the rest), the
*writer* sends the outbox to the client in order, and the *reader* hands each client frame to the
codec (each frame counts against the identity's rate limit); the codec's replies go through the
outbox, in order with the events. A client that reads slowly or not at all holds up only its own
stream, and only for a while: when one send stalls for `send_timeout_s` (its TCP window or HTTP/2
flow-control window stayed shut) the stream ends as too slow (WebSocket 4408).

The reply being written (`Deltas`, when the protocol asked for them) goes through the same outbox,
in order with the events, but never waits for room: a delta that finds the outbox full is dropped
(the client's text stops growing; the finished message still comes as an event).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

import grpc
import structlog
from fastapi import WebSocket, WebSocketDisconnect
from grpc import aio

from flotilla.admission import Admission
from flotilla.auth import SCOPE_RUNS_WRITE, Identity
from flotilla.errors import FlotillaError, RateLimited
from flotilla.events import is_terminal
from flotilla.gateway.dispatcher_client import Deltas
from flotilla.metrics import STREAM_SLOW_CLOSES, STREAMS_OPEN
from flotilla.protocol import ReplyDelta, RunEvent

log = structlog.get_logger(__name__)

# Close codes of a run stream (the reason says more); refusals at the door (1008, 4401, 4403,
# 4429) are admission's: see identity.py.
CLOSE_NORMAL = 1000
"""The run ended: `workflow_completed` was the last frame."""
CLOSE_INTERNAL = 1011
"""A bug in the gateway (logged); reconnect."""
CLOSE_UNAVAILABLE = 1013
"""The dispatcher went away for longer than the gateway waits for it; reconnect."""
CLOSE_UNKNOWN_RUN = 4404
"""No such run (or another identity's)."""
CLOSE_TOO_SLOW = 4408
"""The client did not keep up: a send to it stalled for the send timeout."""

MAX_FRAME_BYTES = 256 * 1024
"""Largest frame a client may send."""
CLOSE_WAIT_S = 10.0
"""Longest a stream waits to hand its close frame to the server (it never waits with
WebSocketProtocol, which queues it at once)."""


class ClientGone(Exception):
    """The client left: there is nothing to send to or close."""


@dataclass(frozen=True)
class End:
    """Why a stream ends; `code` None: the client left, there is nothing to close."""

    code: int | None
    reason: str = ""
    resume: bool = False
    """Say where to reconnect from (if the codec is resumable)."""
    error: aio.AioRpcError | None = None
    """The dispatcher's error that ended the watch, for transports that pass statuses on."""


Frame: TypeAlias = Any
"""What a transport sends: a JSON-able dict (WebSockets) or a protobuf message (gRPC)."""


class Codec(Protocol):
    """One protocol over the pump."""

    name: str
    """The protocol's name in metrics (a fixed word: v1, fastagency, grpc)."""
    resumable: bool
    """Close reasons end with `; reconnect with after=<last seq sent>` where resuming makes sense."""

    def encode(self, events: list[RunEvent]) -> list[tuple[int, Frame | None]]:
        """Frames for events in order, each with the seq the client has once it is sent (None:
        this protocol does not show that event)."""

    def encode_deltas(self, deltas: list[ReplyDelta]) -> list[Frame]:
        """Frames for pieces of the reply being written (none: this protocol does not show them)."""

    async def on_frame(self, text: str) -> Frame | None:
        """Act on one text frame from the client; a frame to send back, or None."""

    def client_error(self, detail: str, **extra: Any) -> Frame:
        """The frame that tells the client what was wrong with what it sent."""


class Transport(Protocol):
    async def send(self, frame: Frame) -> None:
        """Send one frame; raise ClientGone if the client left."""

    async def receive(self) -> str | None:
        """The client's next text frame (None: a frame that is not text); raise ClientGone when it
        leaves. A transport without client frames never returns."""

    async def close(self, end: End, reason: str) -> None:
        """End the stream as `end` says (`reason` has the resume hint when there is one)."""


class WebSocketTransport:
    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket

    async def send(self, frame: Frame) -> None:
        try:
            await self._websocket.send_text(json.dumps(frame))
        except (WebSocketDisconnect, OSError):
            raise ClientGone from None

    async def receive(self) -> str | None:
        message = await self._websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise ClientGone
        text = message.get("text")
        return text if isinstance(text, str) else None

    async def close(self, end: End, reason: str) -> None:
        try:
            async with asyncio.timeout(CLOSE_WAIT_S):
                await self._websocket.close(code=end.code or CLOSE_NORMAL, reason=reason[:120])
        except (TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
            pass  # the client is gone (or stuck): the server drops the connection


_Item: TypeAlias = list[RunEvent] | Deltas | Frame | End
"""What the writer sends: a batch of events, reply deltas, a reply to a client frame, or the close
(after what is queued)."""


class _Outbox:
    """Batches of events and replies waiting for one client, holding at most `limit` events (a
    batch that alone is larger goes in once the outbox is empty); the watch waits for room."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._items: deque[_Item] = deque()
        self._events = 0
        self._changed = asyncio.Condition()

    async def put(self, item: _Item) -> None:
        size = _size(item)
        async with self._changed:
            await self._changed.wait_for(lambda: not self._events or self._events + size <= self._limit)
            self._items.append(item)
            self._events += size
            self._changed.notify_all()

    async def offer(self, item: _Item) -> bool:
        """Queue `item` if there is room now; False (not queued) otherwise: never waits for room."""
        async with self._changed:
            if self._events and self._events + _size(item) > self._limit:
                return False
            self._items.append(item)
            self._events += _size(item)
            self._changed.notify_all()
            return True

    async def get(self) -> _Item:
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._items))
            item = self._items.popleft()
            self._events -= _size(item)
            self._changed.notify_all()
            return item


def _size(item: _Item) -> int:
    """A batch counts its events; a reply counts one (a client that floods frames and reads
    nothing fills its own outbox, and its reader waits)."""
    return len(item) if isinstance(item, list) else 1


class _StallWatch:
    """Times the writer's sends: a send still under way `timeout_s` after it began is cancelled
    (`send` returns False). One timer per stall window, not one per send: it is armed by a send
    when none is pending and, when it fires, re-armed for the send under way (if any), so most
    sends cost two clock reads instead of a timer's setup and teardown."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._loop = asyncio.get_running_loop()
        self._writer: asyncio.Task[Any] | None = None
        self._began: float | None = None
        """When the send under way began; None between sends."""
        self._timer: asyncio.TimerHandle | None = None
        self._stalled = False

    async def send(self, transport: Transport, frame: Frame) -> bool:
        """False when the send stalled past the timeout; ClientGone when the client left."""
        self._writer = self._writer or asyncio.current_task()
        self._began = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_at(self._began + self._timeout_s, self._check)
        try:
            await transport.send(frame)
        except asyncio.CancelledError:
            # Cancelled by _check alone: the send stalled. Any other cancellation goes on.
            if self._stalled and self._writer is not None and self._writer.uncancel() == 0:
                return False
            raise
        finally:
            self._began = None
        return True

    def _check(self) -> None:
        self._timer = None
        if self._began is None or self._writer is None:
            return  # no send under way: the next one arms the timer again
        deadline = self._began + self._timeout_s
        if self._loop.time() >= deadline:
            self._stalled = True
            self._writer.cancel()
        else:
            self._timer = self._loop.call_at(deadline, self._check)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


@dataclass(frozen=True)
class PumpLimits:
    buffer: int
    """Events the outbox holds; when full, the watch waits."""
    send_timeout_s: float
    """A send that stalls this long ends the stream as too slow."""


class RunStream:
    """One client's stream of one run, already accepted and admitted."""

    def __init__(
        self,
        transport: Transport,
        codec: Codec,
        limits: PumpLimits,
        *,
        admission: Admission,
        identity: Identity,
        after: int = 0,
    ) -> None:
        self._transport = transport
        self._codec = codec
        self._limits = limits
        self._admission = admission
        self._identity = identity
        self._outbox = _Outbox(limits.buffer)
        self.sent = after
        """Seq of the last event handed to the client."""

    async def run(self, watch: AsyncIterator[list[RunEvent] | Deltas]) -> None:
        """Until the run ends (its terminal event sent), the client leaves or is too slow, or the
        dispatcher stream ends; then close the stream saying why."""
        protocol = self._codec.name
        STREAMS_OPEN.labels(protocol).inc()
        try:
            await self._run(watch)
        finally:
            STREAMS_OPEN.labels(protocol).dec()

    async def _run(self, watch: AsyncIterator[list[RunEvent] | Deltas]) -> None:
        watching = asyncio.create_task(self._watch(watch))
        tasks = {watching, asyncio.create_task(self._write()), asyncio.create_task(self._read())}
        end: End | None = None
        try:
            # The watch ending after queueing its last item does not end the stream; the writer
            # reaching that item does.
            pending = tasks
            while end is None:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is not None:
                        log.error("stream task failed", error=repr(task.exception()))
                        end = end or End(CLOSE_INTERNAL, "internal error", resume=True)
                    elif task is not watching:
                        end = end or task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if end.code is None:
            return
        reason = end.reason
        if end.resume and self._codec.resumable:
            reason = f"{reason}; reconnect with after={self.sent}"
        if end.code == CLOSE_TOO_SLOW:
            STREAM_SLOW_CLOSES.labels(self._codec.name).inc()
            log.info("closing a slow client", reason=reason)
        await self._transport.close(end, reason)

    async def _watch(self, watch: AsyncIterator[list[RunEvent] | Deltas]) -> None:
        """The run's events into the outbox, waiting for room when it is full (a full outbox alone
        ends nothing, since catching up from an old seq fills it at once: a send that stalls does).
        A dispatcher restart is retried inside the watch, from the last seq read, so nothing is
        missed or repeated. How the watch ends is queued behind the events."""
        try:
            # Closed at once when the stream ends (cancelled while waiting for room): that ends
            # the gRPC call now, not at garbage collection.
            async with aclosing(watch) as batches:  # type: ignore[type-var]
                async for batch in batches:
                    if isinstance(batch, Deltas):
                        await self._outbox.offer(batch)  # ephemeral: dropped rather than waited for
                    else:
                        await self._outbox.put(list(batch))
            # A watch ends after the run's terminal event, and the writer ends the stream there;
            # a watch that ends without one leaves the client to reconnect.
            await self._outbox.put(End(CLOSE_UNAVAILABLE, "the dispatcher stream ended", resume=True))
        except aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                await self._outbox.put(End(CLOSE_UNKNOWN_RUN, (exc.details() or "")[:120], error=exc))
            else:
                log.warning("watch ended", code=exc.code().name, detail=exc.details())
                end = End(CLOSE_UNAVAILABLE, "the dispatcher stream ended", resume=True, error=exc)
                await self._outbox.put(end)

    async def _write(self) -> End:
        """Sends the outbox in order; ends after the terminal event, at a queued end, when a
        send stalls, or when the client leaves."""
        watch = _StallWatch(self._limits.send_timeout_s)
        try:
            return await self._write_until_end(watch)
        except ClientGone:
            return End(None)
        finally:
            watch.stop()

    async def _write_until_end(self, watch: _StallWatch) -> End:
        while True:
            item = await self._outbox.get()
            if isinstance(item, End):
                return item
            if isinstance(item, Deltas):
                for frame in self._codec.encode_deltas(item.deltas):
                    if not await watch.send(self._transport, frame):
                        return self._stalled()
                continue
            if not isinstance(item, list):
                if not await watch.send(self._transport, item):
                    return self._stalled()
                continue
            for seq, frame in self._codec.encode(item):
                if frame is not None and not await watch.send(self._transport, frame):
                    return self._stalled()
                self.sent = seq
            if item and is_terminal(item[-1]):
                return End(CLOSE_NORMAL)

    def _stalled(self) -> End:
        return End(
            CLOSE_TOO_SLOW, f"client too slow (a send stalled for {self._limits.send_timeout_s:g} s)", resume=True
        )

    async def _read(self) -> End:
        """Each client frame, within the identity's rate limit, to the codec; its reply (or what
        was wrong) is queued in order with the events, and counts against the outbox."""
        while True:
            try:
                text = await self._transport.receive()
            except ClientGone:
                return End(None)
            reply = await self._reply(text)
            if reply is not None:
                await self._outbox.put(reply)

    async def _reply(self, text: str | None) -> Frame | None:
        try:
            self._admission.admit(self._identity, SCOPE_RUNS_WRITE)
        except RateLimited as exc:
            return self._codec.client_error(str(exc), retry_after_s=round(exc.retry_after_s, 3))
        except FlotillaError as exc:
            return self._codec.client_error(str(exc))
        if text is None:
            return self._codec.client_error("frames must be text, not binary")
        if len(text) > MAX_FRAME_BYTES:
            return self._codec.client_error(f"frame larger than {MAX_FRAME_BYTES} bytes")
        return await self._codec.on_frame(text)

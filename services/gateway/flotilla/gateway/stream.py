"""WS /v1/runs/{run_id}/stream: a run's events, live, and answers from the client.

Each stream has three tasks: the *watch* reads the run's events from the dispatcher into a bounded
outbox (`ws_send_buffer_events`; when it is full the watch waits, and the dispatcher keeps the
rest), the *writer* sends the outbox to the client, and the *reader* takes the client's answers.
A client that reads slowly or not at all holds up only its own stream, and only for a while: when
one send stalls for `ws_send_timeout_s` (the client's TCP window stayed shut, with uvicorn's and
the kernel's buffers full), the stream is closed with 4408 and the seq to reconnect after.
Events go out in order, so `after=<last seq received>` resumes exactly where the client left off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from grpc import aio

from flotilla.admission import Admission
from flotilla.auth import SCOPE_RUNS_READ, SCOPE_RUNS_WRITE, Identity
from flotilla.errors import FlotillaError, InvalidArgument, RateLimited
from flotilla.events import event_to_json, is_terminal
from flotilla.gateway.dispatcher_client import DispatcherClient
from flotilla.gateway.deps import AdmissionDep, DispatcherDep, SettingsDep
from flotilla.gateway.identity import caller, close_code, socket_token
from flotilla.gateway.routes import MAX_SEQ
from flotilla.protocol import Caller, RunEvent, SubmitInputRequest

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1")

# Close codes of the stream (the reason says more); refusals at the door (1008 bad `after`, 4401,
# 4403, 4429 over the rate limit or too many streams) are admission's: see identity.py.
CLOSE_NORMAL = 1000
"""The run ended: `workflow_completed` was the last frame."""
CLOSE_INTERNAL = 1011
"""A bug in the gateway (logged); reconnect with `after`."""
CLOSE_UNAVAILABLE = 1013
"""The dispatcher went away for longer than the gateway waits for it; reconnect with `after`."""
CLOSE_UNKNOWN_RUN = 4404
"""No such run (or another identity's)."""
CLOSE_TOO_SLOW = 4408
"""The client did not keep up: a send to it stalled for `ws_send_timeout_s`. The reason ends with
`reconnect with after=<seq>`, the last event sent before the close frame; reconnect with it."""

MAX_FRAME_BYTES = 256 * 1024
CLOSE_WAIT_S = 10.0
"""Longest a stream waits to hand its close frame to the server (it never waits with
WebSocketProtocol, which queues it at once)."""


@dataclass(frozen=True)
class _End:
    """Why a stream ends; `code` None: the client left, there is nothing to close."""

    code: int | None
    reason: str = ""
    resume: bool = False
    """Append `; reconnect with after=<last seq sent>` to the reason."""


_Item: TypeAlias = RunEvent | dict[str, Any] | _End
"""What the writer sends: an event, a reply to a client frame, or the close (after what is queued)."""


class _Outbox:
    """The events and replies waiting for one client: at most `limit`; more wait for room."""

    def __init__(self, limit: int, sent: int) -> None:
        self.queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=limit)
        self.sent = sent
        """Seq of the last event handed to the connection."""


@router.websocket("/runs/{run_id}/stream")
async def stream_run(
    websocket: WebSocket,
    run_id: str,
    dispatcher: DispatcherDep,
    settings: SettingsDep,
    admission: AdmissionDep,
    after: int = 0,
    include_hidden: bool = False,
) -> None:
    await websocket.accept()
    slot = contextlib.ExitStack()
    try:
        # Every connection counts against the rate limit: each reconnect reads the log again.
        identity = admission.enter(socket_token(websocket), SCOPE_RUNS_READ)
        if not 0 <= after <= MAX_SEQ:
            raise InvalidArgument(f"after must be from 0 to {MAX_SEQ}")
        slot.enter_context(admission.stream(identity))
    except FlotillaError as exc:
        await websocket.close(code=close_code(exc), reason=str(exc)[:120])
        return
    who = caller(identity)
    outbox = _Outbox(settings.ws_send_buffer_events, sent=after)
    with slot, structlog.contextvars.bound_contextvars(run_id=run_id):
        watch = asyncio.create_task(_watch(dispatcher, run_id, after, who, outbox, include_hidden))
        tasks = {
            watch,
            asyncio.create_task(_write(websocket, outbox, settings.ws_send_timeout_s)),
            asyncio.create_task(_read(websocket, dispatcher, run_id, who, identity, admission, outbox)),
        }
        end: _End | None = None
        try:
            # Whichever ends first ends the stream: the run (terminal event sent), the client (gone,
            # or too slow) or the dispatcher; the watch ending after queueing its last item does not.
            pending = tasks
            while end is None:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is not None:
                        log.error("stream task failed", error=repr(task.exception()))
                        end = end or _End(CLOSE_INTERNAL, "internal error", resume=True)
                    elif task is not watch:
                        end = end or task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if end.code is not None:
            reason = f"{end.reason}; reconnect with after={outbox.sent}" if end.resume else end.reason
            if end.code == CLOSE_TOO_SLOW:
                log.info("closing a slow client", reason=reason)
            try:
                async with asyncio.timeout(CLOSE_WAIT_S):
                    await websocket.close(code=end.code, reason=reason[:120])
            except (TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
                pass  # the client is gone (or stuck): the server drops the connection


async def _watch(
    dispatcher: DispatcherClient, run_id: str, after: int, who: Caller, outbox: _Outbox, include_hidden: bool
) -> None:
    """The run's events into the outbox, waiting for room when it is full (the dispatcher keeps
    the rest; a full outbox alone ends nothing, since catching up from an old seq fills it at
    once: a send that stalls does). A dispatcher restart is retried inside `watch`, from the last
    seq read, so nothing is missed or repeated. How the watch ends is queued behind the events."""
    batches = dispatcher.watch(run_id, after, who, include_hidden=include_hidden)
    try:
        async for batch in batches:
            for event in batch:
                await outbox.queue.put(event)
    except aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            await outbox.queue.put(_End(CLOSE_UNKNOWN_RUN, (exc.details() or "")[:120]))
        else:
            log.warning("watch ended", code=exc.code().name, detail=exc.details())
            await outbox.queue.put(_End(CLOSE_UNAVAILABLE, "the dispatcher stream ended", resume=True))
    finally:
        if isinstance(batches, AsyncGenerator):
            await batches.aclose()  # cancelled while waiting for room: end the gRPC call now, not at GC


async def _write(websocket: WebSocket, outbox: _Outbox, send_timeout_s: float) -> _End:
    """Sends the outbox in order; ends after the terminal event, at a queued end, or when a send
    stalls (the client's TCP window stayed shut for `send_timeout_s`)."""
    while True:
        item = await outbox.queue.get()
        if isinstance(item, _End):
            return item
        text = json.dumps(event_to_json(item) if isinstance(item, RunEvent) else item)
        try:
            async with asyncio.timeout(send_timeout_s):
                await websocket.send_text(text)
        except TimeoutError:
            return _End(CLOSE_TOO_SLOW, f"client too slow (a send stalled for {send_timeout_s:g} s)", resume=True)
        except (WebSocketDisconnect, OSError):
            return _End(None)
        if isinstance(item, RunEvent):
            outbox.sent = item.seq
            if is_terminal(item):
                return _End(CLOSE_NORMAL)


async def _read(
    websocket: WebSocket,
    dispatcher: DispatcherClient,
    run_id: str,
    who: Caller,
    identity: Identity,
    admission: Admission,
    outbox: _Outbox,
) -> _End:
    """`{"type": "input", "request_id": ..., "value": ...}` frames; anything else gets an error frame
    (sent in order with the events, and counted against the client's outbox)."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return _End(None)
        text = message.get("text")
        try:
            admission.admit(identity, SCOPE_RUNS_WRITE)  # each frame counts against the rate limit
        except RateLimited as exc:
            reply: dict[str, Any] | None = {
                "type": "client_error",
                "detail": str(exc),
                "retry_after_s": round(exc.retry_after_s, 3),
            }
        except FlotillaError as exc:
            reply = {"type": "client_error", "detail": str(exc)}
        else:
            if text is None:
                reply = {"type": "client_error", "detail": "frames must be JSON text, not binary"}
            else:
                reply = await _handle_frame(dispatcher, run_id, text, who)
        if reply is not None:
            await outbox.queue.put(reply)


async def _handle_frame(dispatcher: DispatcherClient, run_id: str, text: str, who: Caller) -> dict[str, Any] | None:
    if len(text) > MAX_FRAME_BYTES:
        return {"type": "client_error", "detail": f"frame larger than {MAX_FRAME_BYTES} bytes"}
    try:
        frame = json.loads(text)
    except ValueError:
        return {"type": "client_error", "detail": "frames must be JSON objects"}
    if not isinstance(frame, dict) or frame.get("type") != "input":
        return {"type": "client_error", "detail": 'expected {"type": "input", "request_id": ..., "value": ...}'}
    request_id, value = frame.get("request_id"), frame.get("value")
    if not isinstance(request_id, str) or not isinstance(value, str):
        return {"type": "client_error", "detail": "request_id and value must be strings"}
    try:
        await dispatcher.stub.SubmitInput(
            SubmitInputRequest(run_id=run_id, request_id=request_id, value=value, caller=who)
        )
    except aio.AioRpcError as exc:
        return {"type": "client_error", "request_id": request_id, "detail": exc.details() or exc.code().name}
    return None

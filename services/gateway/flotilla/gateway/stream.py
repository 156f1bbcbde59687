"""WS /v1/runs/{run_id}/stream: a run's events, live, and answers from the client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from grpc import aio

from flotilla.events import event_to_json, is_terminal
from flotilla.auth import SCOPE_RUNS_READ, SCOPE_RUNS_WRITE, Identity, Unauthenticated
from flotilla.gateway.dispatcher import DispatcherClient
from flotilla.gateway.identity import authenticate_websocket, caller
from flotilla.gateway.limits import StreamSlots
from flotilla.gateway.routes import MAX_SEQ
from flotilla.protocol import Caller, SubmitInputRequest, WatchRunRequest

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1")

CLOSE_NORMAL = 1000
CLOSE_UNKNOWN_RUN = 4404
CLOSE_UNAVAILABLE = 1013  # try again later
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_MANY = 4429
MAX_FRAME_BYTES = 256 * 1024
WATCH_RETRY_S = 30.0
"""How long a stream keeps trying to re-watch a dispatcher that went away."""
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.CANCELLED}


@router.websocket("/runs/{run_id}/stream")
async def stream_run(websocket: WebSocket, run_id: str, after: int = 0) -> None:
    dispatcher: DispatcherClient = websocket.app.state.dispatcher
    await websocket.accept()
    try:
        identity = authenticate_websocket(websocket)
    except Unauthenticated as exc:
        await websocket.close(code=CLOSE_UNAUTHENTICATED, reason=str(exc)[:120])
        return
    if not identity.allows(SCOPE_RUNS_READ):
        await websocket.close(code=CLOSE_FORBIDDEN, reason=f"lacks the {SCOPE_RUNS_READ!r} scope")
        return
    if not 0 <= after <= MAX_SEQ:
        await websocket.close(code=1008, reason=f"after must be from 0 to {MAX_SEQ}")
        return
    who = caller(identity)
    slots: StreamSlots = websocket.app.state.stream_slots
    if not slots.acquire(identity.name):
        await websocket.close(code=CLOSE_TOO_MANY, reason="too many open streams for this identity")
        return
    with structlog.contextvars.bound_contextvars(run_id=run_id):
        # Whichever ends first ends the stream: the run (terminal event) or the client (disconnect),
        # so a client that leaves while the run is quiet frees its slot and its watch at once.
        tasks = {
            asyncio.create_task(_send_events(websocket, dispatcher, run_id, after, who)),
            asyncio.create_task(_receive_inputs(websocket, dispatcher, run_id, who, identity)),
        }
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            slots.release(identity.name)
            for task in tasks:
                task.cancel()
            for result in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(result, Exception) and not isinstance(result, WebSocketDisconnect):
                    log.warning("stream ended with an error", error=repr(result))


async def _send_events(
    websocket: WebSocket, dispatcher: DispatcherClient, run_id: str, after: int, who: Caller
) -> None:
    """Forward the run's events; if the dispatcher goes away (restart, failover), watch again
    from the last seq sent, so the client sees every event once and in order."""
    last = after
    retry_until = None
    while True:
        call = dispatcher.stub.WatchRun(WatchRunRequest(run_id=run_id, after_seq=last, caller=who))
        try:
            async for batch in call:
                retry_until = None
                for event in batch.events:
                    if event.seq <= last:
                        continue
                    await websocket.send_text(json.dumps(event_to_json(event)))
                    last = event.seq
                    if is_terminal(event):
                        await websocket.close(code=CLOSE_NORMAL)
                        return
        except aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                await websocket.close(code=CLOSE_UNKNOWN_RUN, reason=(exc.details() or "")[:120])
                return
            now = asyncio.get_running_loop().time()
            retry_until = retry_until or now + WATCH_RETRY_S
            if exc.code() not in _RETRYABLE or now > retry_until:
                log.warning("watch ended", code=exc.code().name, detail=exc.details())
                await websocket.close(
                    code=CLOSE_UNAVAILABLE, reason=f"the dispatcher stream ended; reconnect with after={last}"
                )
                return
            log.info("watch interrupted; resuming", code=exc.code().name, after=last)
            await asyncio.sleep(0.2)
        finally:
            call.cancel()


async def _receive_inputs(
    websocket: WebSocket, dispatcher: DispatcherClient, run_id: str, who: Caller, identity: Identity
) -> None:
    """`{"type": "input", "request_id": ..., "value": ...}` frames; anything else gets an error frame."""
    while True:
        text = await websocket.receive_text()
        if not identity.allows(SCOPE_RUNS_WRITE):
            reply: dict[str, Any] | None = {"type": "client_error", "detail": f"lacks the {SCOPE_RUNS_WRITE!r} scope"}
        else:
            reply = await _handle_frame(dispatcher, run_id, text, who)
        if reply is not None:
            await websocket.send_text(json.dumps(reply))


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

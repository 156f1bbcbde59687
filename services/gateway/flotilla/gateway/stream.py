"""WS /v1/runs/{run_id}/stream: a run's events, live, as event JSON; answers from the client as
`{"type": "input", "request_id": ..., "value": ...}` frames; the reply being written as
`{"type": "reply_delta", ...}` frames when asked for (`?deltas=true`; ephemeral, no seq: a
client written for events only never sees them). The
pump (pump.py) does the streaming;
this module is the v1 protocol over it. Events go out in order, so `after=<last seq received>`
resumes exactly where the client left off; a close that can be resumed says that seq.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import structlog
from fastapi import APIRouter, WebSocket
from grpc import aio

from flotilla.auth import SCOPE_RUNS_READ
from flotilla.errors import FlotillaError, InvalidArgument
from flotilla.events import delta_to_json, event_to_json
from flotilla.gateway.deps import GatewayDep
from flotilla.gateway.dispatcher_client import DispatcherClient
from flotilla.gateway.identity import caller, close_code, socket_token
from flotilla.gateway.pump import RunStream, WebSocketTransport
from flotilla.gateway.routes import MAX_SEQ
from flotilla.protocol import Caller, ReplyDelta, RunEvent, SubmitInputRequest

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1")


class V1Codec:
    """Events as their JSON; input frames become SubmitInput calls; errors as `client_error`."""

    name = "v1"
    resumable = True

    def __init__(self, dispatcher: DispatcherClient, run_id: str, who: Caller) -> None:
        self._dispatcher = dispatcher
        self._run_id = run_id
        self._who = who

    def encode(self, events: list[RunEvent]) -> list[tuple[int, dict[str, Any] | None]]:
        return [(event.seq, event_to_json(event)) for event in events]

    def encode_deltas(self, deltas: list[ReplyDelta]) -> list[dict[str, Any]]:
        return [delta_to_json(delta) for delta in deltas]

    def client_error(self, detail: str, **extra: Any) -> dict[str, Any]:
        return {"type": "client_error", "detail": detail, **extra}

    async def on_frame(self, text: str) -> dict[str, Any] | None:
        try:
            frame = json.loads(text)
        except ValueError:
            return self.client_error("frames must be JSON objects")
        if not isinstance(frame, dict) or frame.get("type") != "input":
            return self.client_error('expected {"type": "input", "request_id": ..., "value": ...}')
        request_id, value = frame.get("request_id"), frame.get("value")
        if not isinstance(request_id, str) or not isinstance(value, str):
            return self.client_error("request_id and value must be strings")
        request = SubmitInputRequest(run_id=self._run_id, request_id=request_id, value=value, caller=self._who)
        try:
            await self._dispatcher.stub.SubmitInput(request)
        except aio.AioRpcError as exc:
            return self.client_error(exc.details() or exc.code().name, request_id=request_id)
        return None


@router.websocket("/runs/{run_id}/stream")
async def stream_run(
    websocket: WebSocket,
    run_id: str,
    gateway: GatewayDep,
    after: int = 0,
    include_hidden: bool = False,
    deltas: bool = False,
) -> None:
    dispatcher, admission = gateway.dispatcher, gateway.admission
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
    codec = V1Codec(dispatcher, run_id, who)
    stream = RunStream(
        WebSocketTransport(websocket), codec, gateway.limits, admission=admission, identity=identity, after=after
    )
    with slot, structlog.contextvars.bound_contextvars(run_id=run_id):
        await stream.run(dispatcher.watch(run_id, after, who, include_hidden=include_hidden, include_deltas=deltas))

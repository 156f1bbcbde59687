"""FastAgency 0.10's FastAPI wire protocol next to v1, so FastAgency's own clients (`FastAPIProvider`
and the Mesop UI on top of it) list and run Flotilla workflows without changing a line.

The identity is the gateway's usual bearer token, carried one of two ways:
- `/fastagency/...` with `Authorization: Bearer <token>` (the WebSocket also takes `?token=`);
- `/fa/<token>/fastagency/...`: the token inside the base URL's path, for the stock client, which
  sends no headers: `FastAPIProvider(fastapi_url="https://gateway.example/fa/<token>")`.

The routes, as FastAgency's own `FastAPIAdapter` serves them:
- `GET .../fastagency/discovery` (and `//fastagency/discovery`, which the client requests):
  `[{name, description}]` (scope workflows:read).
- `POST .../fastagency/initiate_workflow` `{workflow_name, workflow_uuid, user_id, params}` checks
  that a live worker serves the workflow and answers `{user_id, workflow_uuid, name, params}`, with
  `user_id` the token's identity, whatever the client sent (scope runs:write). Like FastAgency's own
  server it starts nothing, so a retried initiate can never start a second run.
- `WS .../fastagency/ws`: the first frame `{name, workflow_uuid, user_id, params}` starts the run,
  with the client's `workflow_uuid` as its idempotency key (per identity: connecting again with the
  same uuid finds the same run, never a second one; its params are checked here, and a problem is
  told as FastAgency `error` message before the close, which FastAgency's UIs show the person); then
  every event of the run from its start, as FastAgency's JSON; after each `text_input`/
  `multiple_choice` the client sends one plain-text frame, its answer; after `workflow_completed`
  the server closes with 1000.
  A question already answered when the client connects is replayed as a `text_message` (it is never
  asked twice). Flotilla kinds FastAgency has no type for are not sent: `input_answered` (the
  client gave the answer itself), `run_retried` (a worker took the run over; the conversation goes
  on unbroken) and the hidden `llm_completion`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

import grpc
import structlog
from fastapi import APIRouter, Depends, HTTPException, WebSocket, WebSocketDisconnect
from grpc import aio
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flotilla.admission import Admission
from flotilla.auth import SCOPE_RUNS_WRITE, SCOPE_WORKFLOWS_READ, Identity
from flotilla.errors import FlotillaError, WorkflowNotFound
from flotilla.events import HIDDEN_KINDS, INPUT_REQUEST_KINDS, event_to_json
from flotilla.gateway.dispatcher_client import DispatcherClient
from flotilla.gateway.identity import (
    CLOSE_TOO_MANY,
    caller,
    close_code,
    http_error,
    require_path_token,
    socket_token,
)
from flotilla.gateway.deps import Gateway, GatewayDep
from flotilla.gateway.routes import CatalogueReader, Writer, list_workflows
from flotilla.gateway.schemas import ERROR_RESPONSES, WORKFLOW_EXAMPLES, WorkflowOut, json_example
from flotilla.gateway.pump import (
    CLOSE_UNAVAILABLE,
    CLOSE_UNKNOWN_RUN,
    MAX_FRAME_BYTES,
    RunStream,
    WebSocketTransport,
)
from flotilla.protocol import (
    Caller,
    ListWorkflowsRequest,
    ReplyDelta,
    RunEvent,
    StartRunRequest,
    SubmitInputRequest,
)

log = structlog.get_logger(__name__)
router = APIRouter(tags=["FastAgency"], responses=ERROR_RESPONSES)

CLOSE_BAD_INPUT = 1008
CLOSE_CONFLICT = 4409
FIRST_FRAME_TIMEOUT_S = 30.0
SKIPPED_KINDS = frozenset({"input_answered", "run_retried", *HIDDEN_KINDS})
"""Flotilla event kinds FastAgency has no message type for."""
_CONTENT_FIELDS: dict[str, tuple[str, ...]] = {
    "text_message": ("body",),
    "text_input": ("prompt", "suggestions", "password"),
    "multiple_choice": ("prompt", "choices", "default", "single"),
    "suggested_function_call": ("function_name", "call_id", "arguments"),
    "function_call_execution": ("function_name", "call_id", "retval"),
    "system_message": ("message",),
    "error": ("short", "long"),
}
_CLOSE_CODES = {
    grpc.StatusCode.NOT_FOUND: CLOSE_UNKNOWN_RUN,
    grpc.StatusCode.INVALID_ARGUMENT: CLOSE_BAD_INPUT,
    grpc.StatusCode.FAILED_PRECONDITION: CLOSE_CONFLICT,
    grpc.StatusCode.ALREADY_EXISTS: CLOSE_CONFLICT,
    grpc.StatusCode.RESOURCE_EXHAUSTED: CLOSE_TOO_MANY,
}
_WORKFLOW_NAME = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")


_UUID_EXAMPLE = "6f1c0e0a9b7d4d2e8c1f3a5b7d9e1f20"
INITIATED_EXAMPLE: dict[str, Any] = {
    "user_id": "alice",
    "workflow_uuid": str(uuid.UUID(_UUID_EXAMPLE)),
    "name": "learning_chat",
    "params": {},
}


class InitiateBody(BaseModel):
    """FastAgency's `InititateChatModel`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"workflow_name": "learning_chat", "workflow_uuid": _UUID_EXAMPLE, "user_id": None, "params": {}}
            ]
        },
    )

    workflow_name: str = _WORKFLOW_NAME
    workflow_uuid: uuid.UUID = Field(description="The client's id for the run: the same uuid names the same run")
    user_id: str | None = Field(default=None, max_length=256, description="Ignored: the token says who calls")
    params: dict[str, Any] = Field(default_factory=dict)


class FirstFrame(BaseModel):
    """FastAgency's `InitiateWorkflowModel`: the WebSocket client's first frame."""

    model_config = ConfigDict(extra="forbid")

    name: str = _WORKFLOW_NAME
    workflow_uuid: uuid.UUID
    user_id: str | None = Field(default=None, max_length=256)
    params: dict[str, Any] = Field(default_factory=dict)


class InitiatedOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [INITIATED_EXAMPLE]})

    user_id: str = Field(description="The identity the run belongs to")
    workflow_uuid: uuid.UUID
    name: str
    params: dict[str, Any]


def fastagency_message(
    event: Mapping[str, Any],
    workflow_uuid: str,
    *,
    description: str | None = None,
    answered: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    """A Flotilla event (as `event_to_json` makes it) as FastAgency's `IOMessage.model_dump()`: the
    common fields, `type`, and the kind's own fields under `content`; None for kinds it lacks.
    `answered` maps request ids already answered to how to show the answer."""
    kind = str(event["type"])
    if kind in SKIPPED_KINDS or kind not in {*_CONTENT_FIELDS, "workflow_started", "workflow_completed"}:
        return None  # also a kind newer than this mapping
    content: dict[str, Any]
    if kind in INPUT_REQUEST_KINDS and answered is not None and event["request_id"] in answered:
        kind, content = "text_message", {"body": f"{event['prompt']}\n\n(answered: {answered[event['request_id']]})"}
    elif kind == "workflow_started":
        content = {"name": event["workflow"], "description": description, "params": event["params"] or {}}
    elif kind == "workflow_completed":
        result = event["result"]
        if event["status"] != "completed":
            result = f"{event['status']}: {event['error']}" if event["error"] else event["status"]
        content = {"result": result if isinstance(result, str) or result is None else json.dumps(result)}
    else:
        content = {name: event[name] for name in _CONTENT_FIELDS[kind]}
        if kind == "multiple_choice":
            content["default"] = content["default"] or None
        for name in ("arguments", "message"):  # FastAgency declares these as objects
            if name in content and not isinstance(content[name], dict):
                content[name] = {} if content[name] is None else {"value": content[name]}
    return {
        "workflow_uuid": workflow_uuid,
        "sender": event["sender"] or None,
        "recipient": event["recipient"] or None,
        "auto_reply": False,
        "uuid": uuid.uuid5(uuid.NAMESPACE_URL, f"flotilla:{event['run_id']}:{event['seq']}").hex,
        "type": kind,
        "content": content,
    }


def _error_message(workflow_uuid: str, short: str, long: str | None = None) -> dict[str, Any]:
    return {
        "workflow_uuid": workflow_uuid,
        "sender": "Flotilla",
        "recipient": None,
        "auto_reply": False,
        "uuid": uuid.uuid4().hex,
        "type": "error",
        "content": {"short": short, "long": long},
    }


# --- HTTP ---------------------------------------------------------------------------------------


PathCatalogueReader = Annotated[Identity, Depends(require_path_token(SCOPE_WORKFLOWS_READ))]
PathWriter = Annotated[Identity, Depends(require_path_token(SCOPE_RUNS_WRITE))]


_DISCOVERED: dict[int | str, dict[str, Any]] = {200: {"content": json_example(WORKFLOW_EXAMPLES)}}
_INITIATED: dict[int | str, dict[str, Any]] = {200: {"content": json_example(INITIATED_EXAMPLE)}}


@router.get(
    "/fastagency/discovery", response_model=list[WorkflowOut], summary="FastAgency: workflows", responses=_DISCOVERED
)
@router.get("//fastagency/discovery", response_model=list[WorkflowOut], include_in_schema=False)
async def discovery(gateway: GatewayDep, identity: CatalogueReader) -> list[dict[str, str]]:
    workflows: list[dict[str, str]] = await list_workflows(gateway, identity)
    return workflows


@router.get(
    "/fa/{token}/fastagency/discovery",
    response_model=list[WorkflowOut],
    summary="FastAgency: workflows (token in the path)",
    responses=_DISCOVERED,
)
@router.get("/fa/{token}//fastagency/discovery", response_model=list[WorkflowOut], include_in_schema=False)
async def discovery_by_path(gateway: GatewayDep, identity: PathCatalogueReader) -> list[dict[str, str]]:
    workflows: list[dict[str, str]] = await list_workflows(gateway, identity)
    return workflows


async def _initiate(
    body: InitiateBody, dispatcher: DispatcherClient, admission: Admission, identity: Identity
) -> dict[str, Any]:
    try:
        admission.check_params(body.params)
    except FlotillaError as exc:
        raise http_error(exc) from None
    catalogue = await dispatcher.stub.ListWorkflows(ListWorkflowsRequest())
    if body.workflow_name not in {workflow.name for workflow in catalogue.workflows}:
        raise HTTPException(status_code=404, detail=str(WorkflowNotFound(body.workflow_name)))
    return {
        "user_id": identity.name,
        "workflow_uuid": body.workflow_uuid,
        "name": body.workflow_name,
        "params": body.params,
    }


@router.post(
    "/fastagency/initiate_workflow",
    response_model=InitiatedOut,
    summary="FastAgency: prepare a run",
    responses=_INITIATED,
)
async def initiate_workflow(body: InitiateBody, gateway: GatewayDep, identity: Writer) -> dict[str, Any]:
    return await _initiate(body, gateway.dispatcher, gateway.admission, identity)


@router.post(
    "/fa/{token}/fastagency/initiate_workflow",
    response_model=InitiatedOut,
    summary="FastAgency: prepare a run (token in the path)",
    responses=_INITIATED,
)
async def initiate_workflow_by_path(body: InitiateBody, gateway: GatewayDep, identity: PathWriter) -> dict[str, Any]:
    return await _initiate(body, gateway.dispatcher, gateway.admission, identity)


# --- WebSocket ----------------------------------------------------------------------------------


@router.websocket("/fastagency/ws")
async def ws(websocket: WebSocket, gateway: GatewayDep) -> None:
    await _serve(websocket, None, gateway)


@router.websocket("/fa/{token}/fastagency/ws")
async def ws_by_path(websocket: WebSocket, token: str, gateway: GatewayDep) -> None:
    await _serve(websocket, token, gateway)


async def _serve(websocket: WebSocket, token: str | None, gateway: Gateway) -> None:
    dispatcher, admission = gateway.dispatcher, gateway.admission
    await websocket.accept()
    slot = contextlib.ExitStack()
    try:
        identity = admission.enter(socket_token(websocket) if token is None else token, SCOPE_RUNS_WRITE)
        slot.enter_context(admission.stream(identity))
    except FlotillaError as exc:
        await websocket.close(code=close_code(exc), reason=str(exc)[:120])
        return
    try:
        with slot:
            codec = await _open_session(websocket, identity, dispatcher, admission)
            if codec is not None:
                with structlog.contextvars.bound_contextvars(run_id=codec.run_id):
                    transport = WebSocketTransport(websocket)
                    stream = RunStream(transport, codec, gateway.limits, admission=admission, identity=identity)
                    await stream.run(dispatcher.watch(codec.run_id, 0, codec.who))
    except WebSocketDisconnect:
        pass


async def _receive_text(websocket: WebSocket) -> str:
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    return text if isinstance(text, str) else bytes(message.get("bytes") or b"").decode("utf-8", "replace")


async def _open_session(
    websocket: WebSocket, identity: Identity, dispatcher: DispatcherClient, admission: Admission
) -> FastAgencyCodec | None:
    """Read the first frame and start its run (or find it, when the client connects again); on bad
    input, say why (an `error` message, then the close code and reason)."""

    async def refuse(code: int, short: str, workflow_uuid: str = "") -> None:
        await websocket.send_text(json.dumps(_error_message(workflow_uuid, short)))
        await websocket.close(code=code, reason=short.encode()[:120].decode("utf-8", "ignore"))

    try:
        text = await asyncio.wait_for(_receive_text(websocket), FIRST_FRAME_TIMEOUT_S)
    except TimeoutError:
        await refuse(CLOSE_BAD_INPUT, f"no first frame within {FIRST_FRAME_TIMEOUT_S:.0f} s")
        return None
    problem = f"larger than {MAX_FRAME_BYTES} bytes" if len(text) > MAX_FRAME_BYTES else None
    try:
        first = FirstFrame.model_validate_json(text if problem is None else "")
    except ValidationError as exc:
        problem = problem or "; ".join(f"{'.'.join(map(str, e['loc'])) or 'frame'}: {e['msg']}" for e in exc.errors())
        await refuse(
            CLOSE_BAD_INPUT, f"the first frame must be JSON {{name, workflow_uuid, user_id, params}}: {problem}"
        )
        return None
    workflow_uuid = first.workflow_uuid.hex
    try:
        params_json = admission.check_params(first.params)
    except FlotillaError as exc:
        await refuse(CLOSE_BAD_INPUT, str(exc), workflow_uuid)
        return None
    who = caller(identity)
    start = StartRunRequest(
        workflow=first.name,
        params_json=params_json,
        idempotency_key=f"fastagency:{workflow_uuid}",
        caller=who,
    )
    try:
        reply = await dispatcher.stub.StartRun(start)
        if reply.run.workflow != first.name:
            conflict = (
                f"workflow_uuid {workflow_uuid} already names a run of {reply.run.workflow!r}, not {first.name!r}"
            )
            await refuse(CLOSE_CONFLICT, conflict, workflow_uuid)
            return None
        answered: dict[str, str] = {}
        if not reply.created:  # connected again: which questions are answered already?
            answered = _answers_so_far(await dispatcher.events(reply.run.run_id, who))
        catalogue = await dispatcher.stub.ListWorkflows(ListWorkflowsRequest())
    except aio.AioRpcError as exc:
        await refuse(_CLOSE_CODES.get(exc.code(), CLOSE_UNAVAILABLE), exc.details() or exc.code().name, workflow_uuid)
        return None
    description = next((w.description for w in catalogue.workflows if w.name == first.name), None)
    return FastAgencyCodec(dispatcher, reply.run.run_id, who, workflow_uuid, description, answered)


def _answers_so_far(events: Iterable[RunEvent]) -> dict[str, str]:
    """Request id -> the answer as shown on replay (a password's answer is not shown)."""
    events = list(events)
    passwords = {
        e.text_input.request_id for e in events if e.WhichOneof("kind") == "text_input" and e.text_input.password
    }
    shown: dict[str, str] = {}
    for event in events:
        if event.WhichOneof("kind") == "input_answered":
            answer = event.input_answered
            value = "********" if answer.request_id in passwords else answer.value
            shown[answer.request_id] = f"{value} (timed out: the default)" if answer.timed_out else value
    return shown


class FastAgencyCodec:
    """FastAgency's wire protocol over the pump: events as FastAgency messages (some kinds not
    shown), each plain-text frame the answer to the oldest question not yet answered."""

    name = "fastagency"
    resumable = False  # a FastAgency client reconnects with its workflow_uuid, not a seq

    def __init__(
        self,
        dispatcher: DispatcherClient,
        run_id: str,
        who: Caller,
        workflow_uuid: str,
        description: str | None,
        answered: dict[str, str],
    ) -> None:
        self.dispatcher = dispatcher
        self.run_id = run_id
        self.who = who
        self.workflow_uuid = workflow_uuid
        self.description = description
        self.answered = answered
        self.pending: deque[str] = deque()
        """Request ids of questions sent and not yet answered, oldest first: the client answers in order."""

    def encode(self, events: list[RunEvent]) -> list[tuple[int, dict[str, Any] | None]]:
        return [(event.seq, self._message(event)) for event in events]

    def _message(self, event: RunEvent) -> dict[str, Any] | None:
        message = fastagency_message(
            event_to_json(event), self.workflow_uuid, description=self.description, answered=self.answered
        )
        if message is not None and message["type"] in INPUT_REQUEST_KINDS:
            self.pending.append(str(getattr(event, message["type"]).request_id))
        return message

    def encode_deltas(self, deltas: list[ReplyDelta]) -> list[dict[str, Any]]:
        return []  # FastAgency's protocol has no partial messages (its watch asks for none)

    def client_error(self, detail: str, **extra: Any) -> dict[str, Any]:
        return _error_message(self.workflow_uuid, detail)

    async def on_frame(self, text: str) -> dict[str, Any] | None:
        if not self.pending:
            return self.client_error("no question is waiting for an answer; ignored")
        request_id = self.pending.popleft()
        try:
            await self.dispatcher.stub.SubmitInput(
                SubmitInputRequest(run_id=self.run_id, request_id=request_id, value=text, caller=self.who)
            )
        except aio.AioRpcError as exc:
            return _error_message(self.workflow_uuid, "the answer was not used", exc.details() or exc.code().name)
        return None

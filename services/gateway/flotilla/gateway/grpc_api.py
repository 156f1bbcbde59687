"""The gateway's gRPC API (flotilla.v1.Gateway): REST's operations for internal clients (the UI).

Each call is authenticated from its metadata, checked for its scope and rate limit, stamped with
the caller, and forwarded to the dispatcher; the dispatcher's status codes pass through.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
import structlog
from google.protobuf.message import Message
from grpc import aio

from flotilla.admission import Admission
from flotilla.auth import (
    SCOPE_ADMIN,
    SCOPE_RUNS_READ,
    SCOPE_RUNS_WRITE,
    SCOPE_WORKFLOWS_READ,
    Identity,
    Unauthenticated,
)
from flotilla.errors import FlotillaError, InvalidArgument, PermissionDenied, RateLimited, TooManyStreams
from flotilla.gateway.dispatcher_client import DispatcherClient
from flotilla.gateway.identity import caller
from flotilla.gateway.pump import (
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_TOO_SLOW,
    CLOSE_UNAVAILABLE,
    End,
    Frame,
    PumpLimits,
    RunStream,
)
from flotilla.lifecycle import GrpcServer
from flotilla.protocol import (
    GATEWAY_SERVICE,
    CancelRunRequest,
    CancelRunResponse,
    GatewayServicer,
    ReplyDelta,
    RunEvent,
    GetRunRequest,
    ListEventsRequest,
    ListEventsResponse,
    ListRunsRequest,
    ListRunsResponse,
    ListWorkflowsRequest,
    ListWorkflowsResponse,
    ForkRunRequest,
    ListDeadLettersRequest,
    ListDeadLettersResponse,
    ReplyRunRequest,
    RetryRunRequest,
    Run,
    StartRunRequest,
    StartRunResponse,
    SubmitInputRequest,
    SubmitInputResponse,
    WatchRunRequest,
    WatchRunResponse,
    WhoAmIRequest,
    WhoAmIResponse,
    add_GatewayServicer_to_server,
)

log = structlog.get_logger(__name__)

ACT_AS_METADATA = "flotilla-act-as"
if TYPE_CHECKING:
    Context = aio.ServicerContext[Any, Any]
else:
    Context = aio.ServicerContext


_CODES: list[tuple[type[FlotillaError], grpc.StatusCode]] = [
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (RateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (TooManyStreams, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
]
"""Admission's refusals as gRPC status codes (RateLimited also sets a `retry-after` trailer)."""


async def _refuse(context: Context, error: FlotillaError) -> NoReturn:
    for kind, code in _CODES:
        if isinstance(error, kind):
            if isinstance(error, RateLimited):
                context.set_trailing_metadata((("retry-after", str(max(1, math.ceil(error.retry_after_s)))),))
            await context.abort(code, str(error))
    raise error


class WatchCodec:
    """WatchRun over the pump: each batch of events one response; no client frames."""

    name = "grpc"
    resumable = False  # the status says what happened; the client resumes from its last seq

    def encode(self, events: list[RunEvent]) -> list[tuple[int, Frame | None]]:
        return [(events[-1].seq, WatchRunResponse(events=events))] if events else []

    def encode_deltas(self, deltas: list[ReplyDelta]) -> list[Frame]:
        return [WatchRunResponse(deltas=deltas)]

    async def on_frame(self, text: str) -> Frame | None:
        return None

    def client_error(self, detail: str, **extra: Any) -> Frame:
        raise AssertionError("WatchRun takes no client frames")


_END_STATUS = {
    CLOSE_TOO_SLOW: grpc.StatusCode.UNAVAILABLE,
    CLOSE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    CLOSE_INTERNAL: grpc.StatusCode.INTERNAL,
}


class GrpcTransport:
    """A server-streaming call as the pump's transport: frames by `context.write`."""

    def __init__(self, context: Context) -> None:
        self._context = context

    async def send(self, frame: Frame) -> None:
        await self._context.write(frame)

    async def receive(self) -> str | None:
        await asyncio.Event().wait()  # a server-streaming call: the client sends nothing more
        raise AssertionError("unreachable")

    async def close(self, end: End, reason: str) -> None:
        if end.error is not None:
            await _abort_like(self._context, end.error)
        if end.code != CLOSE_NORMAL:
            await self._context.abort(_END_STATUS.get(end.code or 0, grpc.StatusCode.UNKNOWN), reason)


class GatewayApi(GatewayServicer):
    def __init__(self, dispatcher: DispatcherClient, admission: Admission, limits: PumpLimits) -> None:
        self._dispatcher = dispatcher
        self._admission = admission
        self._limits = limits

    async def WhoAmI(self, request: WhoAmIRequest, context: Context) -> WhoAmIResponse:  # noqa: N802
        identity = await self._authenticate(context)
        return WhoAmIResponse(
            identity=identity.name, scopes=sorted(identity.scopes), admin=identity.is_admin, via=identity.via
        )

    async def ListWorkflows(  # noqa: N802
        self, request: ListWorkflowsRequest, context: Context
    ) -> ListWorkflowsResponse:
        await self._authorize(context, SCOPE_WORKFLOWS_READ)
        reply: ListWorkflowsResponse = await self._forward(context, self._dispatcher.stub.ListWorkflows, request)
        return reply

    async def StartRun(self, request: StartRunRequest, context: Context) -> StartRunResponse:  # noqa: N802
        reply: StartRunResponse = await self._relay(context, SCOPE_RUNS_WRITE, request, self._dispatcher.stub.StartRun)
        return reply

    async def GetRun(self, request: GetRunRequest, context: Context) -> Run:  # noqa: N802
        reply: Run = await self._relay(context, SCOPE_RUNS_READ, request, self._dispatcher.stub.GetRun)
        return reply

    async def ListRuns(self, request: ListRunsRequest, context: Context) -> ListRunsResponse:  # noqa: N802
        reply: ListRunsResponse = await self._relay(context, SCOPE_RUNS_READ, request, self._dispatcher.stub.ListRuns)
        return reply

    async def ListEvents(self, request: ListEventsRequest, context: Context) -> ListEventsResponse:  # noqa: N802
        stub = self._dispatcher.stub
        reply: ListEventsResponse = await self._relay(context, SCOPE_RUNS_READ, request, stub.ListEvents)
        return reply

    async def SubmitInput(self, request: SubmitInputRequest, context: Context) -> SubmitInputResponse:  # noqa: N802
        stub = self._dispatcher.stub
        reply: SubmitInputResponse = await self._relay(context, SCOPE_RUNS_WRITE, request, stub.SubmitInput)
        return reply

    async def CancelRun(self, request: CancelRunRequest, context: Context) -> CancelRunResponse:  # noqa: N802
        stub = self._dispatcher.stub
        reply: CancelRunResponse = await self._relay(context, SCOPE_RUNS_WRITE, request, stub.CancelRun)
        return reply

    async def ReplyRun(self, request: ReplyRunRequest, context: Context) -> StartRunResponse:  # noqa: N802
        reply: StartRunResponse = await self._relay(context, SCOPE_RUNS_WRITE, request, self._dispatcher.stub.ReplyRun)
        return reply

    async def ForkRun(self, request: ForkRunRequest, context: Context) -> StartRunResponse:  # noqa: N802
        reply: StartRunResponse = await self._relay(context, SCOPE_RUNS_WRITE, request, self._dispatcher.stub.ForkRun)
        return reply

    async def RetryRun(self, request: RetryRunRequest, context: Context) -> StartRunResponse:  # noqa: N802
        reply: StartRunResponse = await self._relay(context, SCOPE_ADMIN, request, self._dispatcher.stub.RetryRun)
        return reply

    async def ListDeadLetters(  # noqa: N802
        self, request: ListDeadLettersRequest, context: Context
    ) -> ListDeadLettersResponse:
        stub = self._dispatcher.stub
        reply: ListDeadLettersResponse = await self._relay(context, SCOPE_ADMIN, request, stub.ListDeadLetters)
        return reply

    # grpc.aio serves a streaming call from a coroutine that writes its responses with
    # context.write (the pump's transport) as well as from a generator; the stubs know only the latter.
    async def WatchRun(  # type: ignore[override]  # noqa: N802
        self, request: WatchRunRequest, context: Context
    ) -> None:
        identity = await self._authorize(context, SCOPE_RUNS_READ, request)
        slot = contextlib.ExitStack()
        try:
            slot.enter_context(self._admission.stream(identity))
        except FlotillaError as exc:
            await _refuse(context, exc)
        with slot, structlog.contextvars.bound_contextvars(run_id=request.run_id):
            watch = self._dispatcher.watch(
                request.run_id,
                request.after_seq,
                caller(identity),
                include_hidden=request.include_hidden,
                include_deltas=request.include_deltas,
            )
            transport = GrpcTransport(context)
            stream = RunStream(transport, WatchCodec(), self._limits, admission=self._admission, identity=identity)
            await stream.run(watch)

    def _credentials(self, context: Context) -> tuple[str | None, str | None]:
        metadata = {key: value for key, value in context.invocation_metadata() or ()}
        header = str(metadata.get("authorization", ""))
        token = header[7:].strip() if header[:7].lower() == "bearer " else None
        act_as = metadata.get(ACT_AS_METADATA)
        return token, None if act_as is None else str(act_as)

    async def _authenticate(self, context: Context) -> Identity:
        try:
            return self._admission.identify(*self._credentials(context))
        except FlotillaError as exc:
            await _refuse(context, exc)

    async def _authorize(self, context: Context, scope: str, request: Message | None = None) -> Identity:
        token, act_as = self._credentials(context)
        try:
            identity = self._admission.enter(token, scope, act_as)
        except FlotillaError as exc:
            await _refuse(context, exc)
        if request is not None and request.HasField("caller"):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "leave caller empty: the gateway sets it from your credentials"
            )
        return identity

    async def _check_params(self, context: Context, request: StartRunRequest) -> None:
        try:
            request.params_json = self._admission.check_params(request.params_json)
        except FlotillaError as exc:
            await _refuse(context, exc)

    async def _relay(self, context: Context, scope: str, request: Any, method: Any) -> Any:
        """Authorize `scope`, stamp the caller on `request`, and forward it to the dispatcher."""
        identity = await self._authorize(context, scope, request)
        if isinstance(request, StartRunRequest):
            await self._check_params(context, request)
        request.caller.CopyFrom(caller(identity))
        return await self._forward(context, method, request)

    async def _forward(self, context: Context, method: Any, request: Any) -> Any:
        try:
            return await method(request)
        except aio.AioRpcError as exc:
            await _abort_like(context, exc)


async def _abort_like(context: Context, error: aio.AioRpcError) -> NoReturn:
    """Pass the dispatcher's status on; an unreachable dispatcher says so."""
    code, detail = error.code(), error.details() or error.code().name
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        detail = f"the dispatcher could not answer: {detail}"
    elif code not in _PASSED_THROUGH:
        log.warning("dispatcher error", code=code.name, detail=detail)
        code = grpc.StatusCode.INTERNAL
    await context.abort(code, detail)
    raise AssertionError("abort returned")  # for the type checker: abort always raises


_PASSED_THROUGH = {
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.PERMISSION_DENIED,
}


def gateway_grpc_server(
    host: str, port: int, api: GatewayApi, *, credentials: grpc.ServerCredentials | None, reflection: bool
) -> GrpcServer:
    """The gRPC server with health checking, TLS when given credentials, reflection when asked."""
    return GrpcServer(
        host,
        port,
        lambda server: add_GatewayServicer_to_server(api, server),
        [GATEWAY_SERVICE],
        credentials=credentials,
        reflection=reflection,
    )

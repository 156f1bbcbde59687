"""The Dispatcher gRPC service: translates RPCs to RunService calls and domain errors to codes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import nats.errors
import structlog
from grpc import aio

from flotilla.dispatch import RunService
from flotilla.errors import (
    Conflict,
    FlotillaError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    Unavailable,
)
from flotilla.protocol import (
    Caller,
    CancelRunRequest,
    CancelRunResponse,
    DispatcherServicer,
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
)

T = TypeVar("T")
log = structlog.get_logger(__name__)

if TYPE_CHECKING:
    Context = aio.ServicerContext[Any, Any]
else:
    Context = aio.ServicerContext

_CODES: list[tuple[type[FlotillaError], grpc.StatusCode]] = [
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (Conflict, grpc.StatusCode.FAILED_PRECONDITION),
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (QuotaExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
]


def status_code(exc: FlotillaError) -> grpc.StatusCode:
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


async def _call(context: Context, operation: Callable[[], Awaitable[T]]) -> T:
    try:
        return await operation()
    except FlotillaError as exc:
        await context.abort(status_code(exc), str(exc))
    except (nats.errors.Error, TimeoutError) as exc:
        log.warning("nats error", error=repr(exc))  # the details stay in the log, not with the client
        await context.abort(grpc.StatusCode.UNAVAILABLE, "NATS did not answer in time; try again")
    raise AssertionError("unreachable: abort raises")


def _caller(request: Any) -> Caller:
    """The person a run request is made for, which the gateway always names."""
    caller: Caller = request.caller
    if not caller.identity:
        raise PermissionDenied("the dispatcher acts only for a named caller (the gateway sets it)")
    return caller


class DispatcherApi(DispatcherServicer):
    """Only services holding a trusted key reach these methods (ServiceAuthInterceptor)."""

    def __init__(self, service: RunService) -> None:
        self._service = service

    async def StartRun(self, request: StartRunRequest, context: Context) -> StartRunResponse:
        async def start() -> StartRunResponse:
            run, created = await self._service.start_run(
                request.workflow, request.params_json, request.idempotency_key, _caller(request)
            )
            return StartRunResponse(run=run, created=created)

        return await _call(context, start)

    async def GetRun(self, request: GetRunRequest, context: Context) -> Run:
        return await _call(context, lambda: self._service.get_run(request.run_id, _caller(request)))

    async def ListRuns(self, request: ListRunsRequest, context: Context) -> ListRunsResponse:
        async def list_runs() -> ListRunsResponse:
            runs = self._service.list_runs(limit=request.limit, status=request.status, caller=_caller(request))
            return ListRunsResponse(runs=runs)

        return await _call(context, list_runs)

    async def WatchRun(self, request: WatchRunRequest, context: Context) -> AsyncIterator[WatchRunResponse]:
        try:
            watch = self._service.watch(
                request.run_id,
                request.after_seq,
                _caller(request),
                include_hidden=request.include_hidden,
                include_deltas=request.include_deltas,
            )
            async for response in watch:
                yield response
        except FlotillaError as exc:
            await context.abort(status_code(exc), str(exc))
        except (nats.errors.Error, TimeoutError) as exc:  # a restarting cluster: the gateway watches again
            log.warning("nats error", error=repr(exc))
            await context.abort(grpc.StatusCode.UNAVAILABLE, "NATS did not answer in time; try again")

    async def ListEvents(self, request: ListEventsRequest, context: Context) -> ListEventsResponse:
        async def list_events() -> ListEventsResponse:
            page = await self._service.list_events(
                request.run_id,
                request.after_seq,
                _caller(request),
                limit=request.limit,
                include_hidden=request.include_hidden,
            )
            return ListEventsResponse(events=page.events, more=page.more, next_after_seq=page.next_after_seq)

        return await _call(context, list_events)

    async def SubmitInput(self, request: SubmitInputRequest, context: Context) -> SubmitInputResponse:
        async def submit() -> SubmitInputResponse:
            await self._service.submit_input(request.run_id, request.request_id, request.value, _caller(request))
            return SubmitInputResponse()

        return await _call(context, submit)

    async def CancelRun(self, request: CancelRunRequest, context: Context) -> CancelRunResponse:
        async def cancel() -> CancelRunResponse:
            return CancelRunResponse(run=await self._service.cancel(request.run_id, _caller(request)))

        return await _call(context, cancel)

    async def ReplyRun(self, request: ReplyRunRequest, context: Context) -> StartRunResponse:
        async def reply() -> StartRunResponse:
            run, created = await self._service.reply_run(
                request.run_id, request.message, request.idempotency_key, _caller(request)
            )
            return StartRunResponse(run=run, created=created)

        return await _call(context, reply)

    async def ForkRun(self, request: ForkRunRequest, context: Context) -> StartRunResponse:
        async def fork() -> StartRunResponse:
            run, created = await self._service.fork_run(
                request.run_id, request.at_seq, request.idempotency_key, _caller(request)
            )
            return StartRunResponse(run=run, created=created)

        return await _call(context, fork)

    async def RetryRun(self, request: RetryRunRequest, context: Context) -> StartRunResponse:
        async def retry() -> StartRunResponse:
            run, created = await self._service.retry_run(request.run_id, request.idempotency_key, _caller(request))
            return StartRunResponse(run=run, created=created)

        return await _call(context, retry)

    async def ListDeadLetters(self, request: ListDeadLettersRequest, context: Context) -> ListDeadLettersResponse:
        async def list_dead() -> ListDeadLettersResponse:
            letters = await self._service.list_dead_letters(limit=request.limit, caller=_caller(request))
            return ListDeadLettersResponse(dead_letters=letters)

        return await _call(context, list_dead)

    async def ListWorkflows(self, request: ListWorkflowsRequest, context: Context) -> ListWorkflowsResponse:
        async def list_workflows() -> ListWorkflowsResponse:
            return ListWorkflowsResponse(workflows=await self._service.list_workflows())

        return await _call(context, list_workflows)

"""REST routes of API v1."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Response
from fastapi.responses import JSONResponse

from flotilla.events import STATUS_BY_NAME, dead_letter_to_json, event_to_json, run_to_json
from flotilla.auth import SCOPE_ADMIN, SCOPE_RUNS_READ, SCOPE_RUNS_WRITE, SCOPE_WORKFLOWS_READ, Identity
from flotilla.gateway.deps import GatewayDep
from flotilla.errors import FlotillaError
from flotilla.gateway.identity import caller, http_error, require
from flotilla.gateway.schemas import (
    ERROR_RESPONSES,
    EVENT_EXAMPLES,
    QUEUED_RUN_EXAMPLE,
    RUN_EXAMPLE,
    RUN_ID,
    WORKFLOW_EXAMPLES,
    Accepted,
    EventsOut,
    HealthOut,
    InputBody,
    NotReadyOut,
    ReadyOut,
    ReplyBody,
    ForkBody,
    DEAD_LETTER_EXAMPLE,
    DeadLetterOut,
    RetryBody,
    RunOut,
    StartRunBody,
    WorkflowOut,
    json_example,
)
from flotilla.protocol import (
    CancelRunRequest,
    GetRunRequest,
    ListEventsRequest,
    ListRunsRequest,
    ListWorkflowsRequest,
    ReplyRunRequest,
    ForkRunRequest,
    ListDeadLettersRequest,
    RetryRunRequest,
    RunStatus,
    StartRunRequest,
    SubmitInputRequest,
)

router = APIRouter(prefix="/v1", responses=ERROR_RESPONSES)
ACCEPTED_EXAMPLE = {"status": "accepted", "run_id": RUN_ID}
MAX_SEQ = 2**63 - 1
"""Seqs are uint64 on the wire; larger `after` values are refused with 422, not a 500."""


Reader = Annotated[Identity, Depends(require(SCOPE_RUNS_READ))]
Writer = Annotated[Identity, Depends(require(SCOPE_RUNS_WRITE))]
Admin = Annotated[Identity, Depends(require(SCOPE_ADMIN))]
CatalogueReader = Annotated[Identity, Depends(require(SCOPE_WORKFLOWS_READ))]


@router.get(
    "/workflows",
    response_model=list[WorkflowOut],
    summary="Workflows some live worker serves",
    responses={200: {"content": json_example(WORKFLOW_EXAMPLES)}},
)
async def list_workflows(gateway: GatewayDep, identity: CatalogueReader) -> list[dict[str, str]]:
    reply = await gateway.dispatcher.stub.ListWorkflows(ListWorkflowsRequest())
    return [{"name": w.name, "description": w.description} for w in reply.workflows]


@router.post(
    "/runs",
    status_code=201,
    response_model=RunOut,
    summary="Start a run",
    responses={
        201: {"content": json_example(QUEUED_RUN_EXAMPLE)},
        200: {
            "model": RunOut,
            "description": "The idempotency key named an existing run",
            "content": json_example(RUN_EXAMPLE),
        },
    },
)
async def start_run(body: StartRunBody, gateway: GatewayDep, identity: Writer, response: Response) -> dict[str, Any]:
    try:
        params_json = gateway.admission.check_params(body.params)
    except FlotillaError as exc:
        raise http_error(exc) from None
    request = StartRunRequest(
        workflow=body.workflow,
        params_json=params_json,
        idempotency_key=body.idempotency_key or "",
        caller=caller(identity),
    )
    reply = await gateway.dispatcher.stub.StartRun(request)
    if not reply.created:
        response.status_code = 200
    return run_to_json(reply.run)


@router.get(
    "/runs",
    response_model=list[RunOut],
    summary="Runs, newest first",
    responses={
        200: {"content": json_example([RUN_EXAMPLE, QUEUED_RUN_EXAMPLE | {"run_id": "01a20d0f8e2b44c6a9d1e7f3b5"}])}
    },
)
async def list_runs(
    gateway: GatewayDep,
    identity: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    status: Annotated[str | None, Query(pattern="^(queued|running|completed|failed|cancelled)$")] = None,
) -> list[dict[str, Any]]:
    request = ListRunsRequest(
        limit=limit,
        status=STATUS_BY_NAME[status] if status else RunStatus.RUN_STATUS_UNSPECIFIED,
        caller=caller(identity),
    )
    reply = await gateway.dispatcher.stub.ListRuns(request)
    return [run_to_json(run) for run in reply.runs]


@router.get(
    "/runs/{run_id}", response_model=RunOut, summary="One run", responses={200: {"content": json_example(RUN_EXAMPLE)}}
)
async def get_run(run_id: str, gateway: GatewayDep, identity: Reader) -> dict[str, Any]:
    return run_to_json(await gateway.dispatcher.stub.GetRun(GetRunRequest(run_id=run_id, caller=caller(identity))))


@router.get(
    "/runs/{run_id}/events",
    response_model=EventsOut,
    summary="A run's events after a seq",
    responses={200: {"content": json_example({"events": EVENT_EXAMPLES})}},
)
async def list_events(
    run_id: str,
    gateway: GatewayDep,
    identity: Reader,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000, description="Events per page at most")] = 1000,
    include_hidden: Annotated[bool, Query(description="Also the hidden events (llm_completion)")] = False,
) -> dict[str, Any]:
    request = ListEventsRequest(
        run_id=run_id, after_seq=after, caller=caller(identity), limit=limit, include_hidden=include_hidden
    )
    reply = await gateway.dispatcher.stub.ListEvents(request)
    return {
        "events": [event_to_json(event) for event in reply.events],
        "more": reply.more,
        "next_after": reply.next_after_seq or after,
    }


@router.post(
    "/runs/{run_id}/input",
    status_code=202,
    response_model=Accepted,
    summary="Answer a question",
    responses={202: {"content": json_example(ACCEPTED_EXAMPLE)}},
)
async def submit_input(run_id: str, body: InputBody, gateway: GatewayDep, identity: Writer) -> dict[str, str]:
    await gateway.dispatcher.stub.SubmitInput(
        SubmitInputRequest(run_id=run_id, request_id=body.request_id, value=body.value, caller=caller(identity))
    )
    return {"status": "accepted", "run_id": run_id}


@router.post(
    "/runs/{run_id}/cancel",
    status_code=202,
    response_model=Accepted,
    summary="Cancel a run",
    responses={202: {"content": json_example(ACCEPTED_EXAMPLE)}},
)
async def cancel_run(run_id: str, gateway: GatewayDep, identity: Writer) -> dict[str, str]:
    await gateway.dispatcher.stub.CancelRun(CancelRunRequest(run_id=run_id, caller=caller(identity)))
    return {"status": "accepted", "run_id": run_id}


@router.post(
    "/runs/{run_id}/reply",
    status_code=201,
    response_model=RunOut,
    summary="Reply to a run's thread: its next run, with the conversation so far",
    description=(
        "Starts the next run of the thread `run_id` belongs to (same workflow and params), following the "
        "thread's latest run; its workflow receives the conversation so far and `message`. Only the run's "
        "owner may reply. While a run of the thread is still working, the workflow's double-texting policy "
        "applies: `reject` (409, the default), `queue` (the reply's run starts when that run ends) or "
        "`interrupt` (that run is cancelled, then the reply's run starts)."
    ),
    responses={
        201: {"content": json_example(QUEUED_RUN_EXAMPLE)},
        200: {"model": RunOut, "description": "The idempotency key named an earlier reply's run"},
    },
)
async def reply_run(
    run_id: str, body: ReplyBody, gateway: GatewayDep, identity: Writer, response: Response
) -> dict[str, Any]:
    request = ReplyRunRequest(
        run_id=run_id, message=body.message, idempotency_key=body.idempotency_key or "", caller=caller(identity)
    )
    reply = await gateway.dispatcher.stub.ReplyRun(request)
    if not reply.created:
        response.status_code = 200
    return run_to_json(reply.run)


@router.post(
    "/runs/{run_id}/fork",
    status_code=201,
    response_model=RunOut,
    summary="Fork a run: a new run from its log up to a seq, live from there",
    description=(
        "Starts a new run of the same workflow and params whose log begins with `run_id`'s events up to "
        "`at_seq` (identical, hidden ones too). Its workflow replays their LLM completions and the answers "
        "given up to there, then goes on live: a later question is asked again (answer it differently). "
        "The new run records `forked_from` and `fork_at_seq`. Only the run's owner may fork it."
    ),
    responses={
        201: {"content": json_example(QUEUED_RUN_EXAMPLE)},
        200: {"model": RunOut, "description": "The idempotency key named an earlier fork's run"},
    },
)
async def fork_run(
    run_id: str, body: ForkBody, gateway: GatewayDep, identity: Writer, response: Response
) -> dict[str, Any]:
    request = ForkRunRequest(
        run_id=run_id, at_seq=body.at_seq, idempotency_key=body.idempotency_key or "", caller=caller(identity)
    )
    reply = await gateway.dispatcher.stub.ForkRun(request)
    if not reply.created:
        response.status_code = 200
    return run_to_json(reply.run)


@router.post(
    "/runs/{run_id}/retry",
    status_code=201,
    response_model=RunOut,
    summary="Admins: retry a failed run",
    description=(
        "Needs the `admin` scope. Starts a new run, owned by the failed run's owner, forked from the failed "
        "run's whole log up to its failure (the failing attempt's own trailing `error` and `run_retried` events "
        "and the terminal event are left out): what its workflow did is replayed, then it goes on live. The "
        "failed run stays as it was; the new one has `forked_from`. A run that did not fail: 409."
    ),
    responses={
        201: {"content": json_example(QUEUED_RUN_EXAMPLE)},
        200: {"model": RunOut, "description": "The idempotency key named an earlier retry's run"},
    },
)
async def retry_run(
    run_id: str,
    gateway: GatewayDep,
    identity: Admin,
    response: Response,
    body: Annotated[
        RetryBody | None, Body(openapi_examples={"with a key": {"value": {"idempotency_key": "retry-1"}}})
    ] = None,
) -> dict[str, Any]:
    key = body.idempotency_key if body is not None and body.idempotency_key else ""
    reply = await gateway.dispatcher.stub.RetryRun(
        RetryRunRequest(run_id=run_id, idempotency_key=key, caller=caller(identity))
    )
    if not reply.created:
        response.status_code = 200
    return run_to_json(reply.run)


@router.get(
    "/admin/dead-letters",
    response_model=list[DeadLetterOut],
    summary="Admins: jobs no worker could run, newest first",
    description="Needs the `admin` scope. What FLOTILLA_DEAD keeps: each job's run, workflow, reason and when.",
    responses={200: {"content": json_example([DEAD_LETTER_EXAMPLE])}},
)
async def list_dead_letters(
    gateway: GatewayDep, identity: Admin, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[dict[str, Any]]:
    reply = await gateway.dispatcher.stub.ListDeadLetters(ListDeadLettersRequest(limit=limit, caller=caller(identity)))
    return [dead_letter_to_json(letter) for letter in reply.dead_letters]


health = APIRouter()


@health.get(
    "/healthz",
    response_model=HealthOut,
    summary="The gateway process is up",
    responses={200: {"content": json_example({"status": "ok"})}},
)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


NOT_ANSWERING = "the dispatcher or NATS does not answer"


@health.get(
    "/readyz",
    response_model=ReadyOut,
    summary="The dispatcher and NATS answer; how many workflows live workers serve",
    description=(
        "200 while the dispatcher and NATS answer, with the number of workflows live workers serve. "
        "That number may be 0: runs then get 404 until a worker comes. A check that needs workers "
        "(a deploy's smoke test, compose's health check) asks for `?min_workflows=1`."
    ),
    responses={
        200: {"content": json_example({"status": "ready", "workflows": 6})},
        503: {
            "model": NotReadyOut,
            "description": "Not ready: the dispatcher or NATS does not answer, or too few workflows are served",
            "content": json_example({"status": "not ready", "detail": NOT_ANSWERING, "workflows": None}),
        },
    },
)
async def readyz(
    gateway: GatewayDep,
    min_workflows: Annotated[
        int, Query(ge=0, le=100_000, description="Answer 503 unless live workers serve at least this many workflows")
    ] = 0,
) -> JSONResponse:
    served = await gateway.dispatcher.served_workflows()
    if served is None:
        return JSONResponse({"status": "not ready", "detail": NOT_ANSWERING, "workflows": None}, status_code=503)
    if served < min_workflows:
        detail = f"live workers serve {served} workflows; at least {min_workflows} required"
        return JSONResponse({"status": "not ready", "detail": detail, "workflows": served}, status_code=503)
    return JSONResponse({"status": "ready", "workflows": served})

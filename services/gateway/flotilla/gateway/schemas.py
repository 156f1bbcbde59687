"""Request and response bodies of the public API v1, with the examples OpenAPI shows."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

RUN_ID = "01a20d1547174611b14f496cc1"
_AT = "2026-11-24T10:23:38.101000+00:00"
RUN_EXAMPLE: dict[str, Any] = {
    "run_id": RUN_ID,
    "workflow": "load",
    "params": {"n": 1, "asks": 1},
    "status": "completed",
    "created_at": _AT,
    "updated_at": "2026-11-24T10:23:41.360000+00:00",
    "finished_at": "2026-11-24T10:23:41.360000+00:00",
    "attempts": 1,
    "worker_id": "worker-a-4242",
    "result": {"messages": 1, "answers": ["yes"]},
    "error": None,
    "idempotency_key": None,
    "cancel_requested": False,
    "thread_id": RUN_ID,
    "reply_to": None,
    "message": None,
    "waiting_for_input": False,
    "forked_from": None,
    "fork_at_seq": None,
    "usage": [
        {
            "model": "SmolLM2-135M-Instruct.Q4_1",
            "calls": 3,
            "prompt_tokens": 512,
            "completion_tokens": 210,
            "llm_seconds": 4.2,
            "cost": 0.0,
        }
    ],
}
"""A run as every run route answers it."""
QUEUED_RUN_EXAMPLE: dict[str, Any] = {
    **RUN_EXAMPLE,
    "status": "queued",
    "updated_at": _AT,
    "finished_at": None,
    "attempts": 0,
    "worker_id": None,
    "result": None,
    "idempotency_key": "order-1234",
    "usage": [],
}
_EVENT = {"run_id": RUN_ID, "sender": "load", "recipient": "user"}
EVENT_EXAMPLES: list[Any] = [
    {
        "type": "workflow_started",
        **_EVENT,
        "seq": 1,
        "sender": "system",
        "timestamp": _AT,
        "workflow": "load",
        "params": {"n": 1, "asks": 1},
        "attempt": 1,
    },
    {"type": "text_message", **_EVENT, "seq": 2, "timestamp": "2026-11-24T10:23:38.240000+00:00", "body": "x"},
    {
        "type": "text_input",
        **_EVENT,
        "seq": 3,
        "timestamp": "2026-11-24T10:23:38.250000+00:00",
        "request_id": "9f2c51d0a1b2c3d4",
        "prompt": "question 1 of 1",
        "suggestions": [],
        "password": False,
    },
]
"""The first events of a `load` run (each kind has its own fields; see the README)."""
WORKFLOW_EXAMPLES: list[Any] = [
    {
        "name": "learning_chat",
        "description": "A student and a teacher agent talk about a topic you choose (the seed's example).",
    },
    {
        "name": "load",
        "description": "Emits n messages of size bytes and asks asks questions (for tests and benchmarks).",
    },
]


def json_example(example: Any) -> dict[str, Any]:
    """An OpenAPI `content` with one JSON example (for `responses=`)."""
    return {"application/json": {"example": example}}


class StartRunBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"workflow": "load", "params": {"n": 1, "asks": 1}},
                {"workflow": "learning_chat", "params": {"turns": 2}, "idempotency_key": "order-1234"},
            ]
        },
    )

    workflow: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
    params: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)


class ReplyBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"message": "Tell me more about gravity."}]},
    )

    message: str = Field(min_length=1, max_length=64 * 1024, pattern=r"\S", description="Not only white space")
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)


class ForkBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"at_seq": 3}]})

    at_seq: int = Field(
        ge=1,
        le=100_000,  # a run writes at most 100,000 events (README, Exhaustion)
        description="The last event of the source's log the fork begins with",
    )
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)


class RetryBody(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"idempotency_key": "retry-1"}]})

    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)


DEAD_LETTER_EXAMPLE: dict[str, Any] = {
    "seq": 7,
    "reason": "attempts",
    "detail": "gave up after 3 attempts: every worker that took the run stopped",
    "run_id": RUN_ID,
    "workflow": "learning_chat",
    "dead_at": _AT,
}


class DeadLetterOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [DEAD_LETTER_EXAMPLE]})

    seq: int = Field(description="Its sequence in FLOTILLA_DEAD")
    reason: str = Field(description="attempts, orphan or malformed")
    detail: str
    run_id: str | None = Field(description="The job's run (null when the job could not be read)")
    workflow: str | None
    dead_at: str | None


class InputBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"request_id": "9f2c51d0a1b2c3d4", "value": "Math"}]}
    )

    request_id: str = Field(min_length=1, max_length=64)
    value: str = Field(max_length=256 * 1024)


class WorkflowOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": WORKFLOW_EXAMPLES[:1]})

    name: str
    description: str


class UsageOut(BaseModel):
    model: str
    calls: int
    prompt_tokens: int = Field(description="As the model's backend reported them (0 where it reports none)")
    completion_tokens: int
    llm_seconds: float = Field(description="Wall time spent waiting for the model")
    cost: float = Field(description="At the worker's configured prices (FLOTILLA_LLM_PRICES); 0 without prices")


class RunOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [RUN_EXAMPLE]})

    run_id: str
    workflow: str
    params: dict[str, Any] | None
    status: str = Field(description="queued, running, completed, failed or cancelled")
    created_at: str | None
    updated_at: str | None
    finished_at: str | None
    attempts: int = Field(description="Workers that started the run and stopped without finishing it count one each")
    handbacks: int = Field(default=0, description="Times a worker shutting down handed the run back (not attempts)")
    worker_id: str | None
    result: Any = None
    error: str | None
    idempotency_key: str | None
    cancel_requested: bool
    usage: list[UsageOut] = Field(
        default_factory=list, description="What the run's LLM calls used, per model, over every attempt (once it ended)"
    )
    thread_id: str | None = Field(default=None, description="The thread's first run (this run's own id on a first run)")
    reply_to: str | None = Field(default=None, description="The run this reply follows in its thread")
    message: str | None = Field(default=None, description="What the person said to start this reply")
    waiting_for_input: bool = Field(default=False, description="A question of the run waits for the person's answer")
    forked_from: str | None = Field(default=None, description="The run this one was forked from")
    fork_at_seq: int | None = Field(default=None, description="The last event of that run's log this one began with")


class EventsOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"events": EVENT_EXAMPLES, "more": False, "next_after": len(EVENT_EXAMPLES)}]}
    )

    events: list[dict[str, Any]] = Field(
        description="Each event: type, run_id, seq, sender, recipient, timestamp, and the kind's fields"
    )
    more: bool = Field(default=False, description="More events are stored: ask again with after=next_after")
    next_after: int = Field(default=0, description="The seq this page ends at (hidden events included)")


class Accepted(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "accepted", "run_id": RUN_ID}]})

    status: str = "accepted"
    run_id: str


class HealthOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: str = Field(description="`ok`")


class ReadyOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ready", "workflows": 6}]})

    status: str = Field(description="`ready`")
    workflows: int = Field(description="Workflows live workers serve (0: runs get 404 until a worker comes)")


class NotReadyOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"status": "not ready", "detail": "the dispatcher or NATS does not answer", "workflows": None}]
        }
    )

    status: str = Field(description="`not ready`")
    detail: str
    workflows: int | None = Field(description="Workflows live workers serve; null when the dispatcher does not answer")


class ErrorOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"detail": f"run {RUN_ID!r} not found"}]})

    detail: Any = Field(description="What went wrong (validation errors list the bad fields)")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "The body could not be read as the declared content type"},
    401: {"model": ErrorOut, "description": "No token, or not a valid API key or JWT"},
    403: {"model": ErrorOut, "description": "The token lacks the scope this route needs"},
    404: {"model": ErrorOut, "description": "Unknown run, workflow or request (or another identity's run)"},
    409: {
        "model": ErrorOut,
        "description": "Answered already, expired, the run has finished, or a reply while its thread still works",
    },
    413: {"model": ErrorOut, "description": "The request body is too large"},
    422: {"model": ErrorOut, "description": "Malformed body or parameter; the detail names the field"},
    429: {"model": ErrorOut, "description": "Rate limit exceeded; see Retry-After"},
    502: {"model": ErrorOut, "description": "The dispatcher answered with an unexpected error"},
    503: {"model": ErrorOut, "description": "The dispatcher or NATS does not answer"},
    504: {"model": ErrorOut, "description": "The dispatcher did not answer in time"},
}
"""Documented on every v1 route: all of them can answer so."""

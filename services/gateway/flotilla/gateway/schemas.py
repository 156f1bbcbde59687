"""Request and response bodies of the public API v1."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class StartRunBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"workflow": "load", "params": {"n": 3}}]}
    )

    workflow: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
    params: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)


class InputBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"request_id": "9f2c51d0a1b2c3d4", "value": "Math"}]}
    )

    request_id: str = Field(min_length=1, max_length=64)
    value: str = Field(max_length=256 * 1024)


class WorkflowOut(BaseModel):
    name: str
    description: str


class RunOut(BaseModel):
    run_id: str
    workflow: str
    params: dict[str, Any] | None
    status: str = Field(description="queued, running, completed, failed or cancelled")
    created_at: str | None
    updated_at: str | None
    finished_at: str | None
    attempts: int
    worker_id: str | None
    result: Any = None
    error: str | None
    idempotency_key: str | None
    cancel_requested: bool


class EventsOut(BaseModel):
    events: list[dict[str, Any]] = Field(
        description="Each event: type, run_id, seq, sender, recipient, timestamp, and the kind's fields"
    )


class Accepted(BaseModel):
    status: str = "accepted"
    run_id: str


class ErrorOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"detail": "run '01a2...' not found"}]})

    detail: Any = Field(description="What went wrong (validation errors list the bad fields)")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "The body could not be read as the declared content type"},
    401: {"model": ErrorOut, "description": "No token, or not a valid API key or JWT"},
    403: {"model": ErrorOut, "description": "The token lacks the scope this route needs"},
    404: {"model": ErrorOut, "description": "Unknown run, workflow or request (or another identity's run)"},
    409: {"model": ErrorOut, "description": "Answered already, expired, or the run has finished"},
    413: {"model": ErrorOut, "description": "The request body is too large"},
    422: {"model": ErrorOut, "description": "Malformed body or parameter; the detail names the field"},
    429: {"model": ErrorOut, "description": "Rate limit exceeded; see Retry-After"},
    502: {"model": ErrorOut, "description": "The dispatcher answered with an unexpected error"},
    503: {"model": ErrorOut, "description": "The dispatcher or NATS does not answer"},
    504: {"model": ErrorOut, "description": "The dispatcher did not answer in time"},
}
"""Documented on every v1 route: all of them can answer so."""

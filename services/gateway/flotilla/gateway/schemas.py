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

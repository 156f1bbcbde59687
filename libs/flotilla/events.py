"""Run events and run records as JSON: the shape the gateway serves and the UI renders.

An event becomes a flat object: `type` (the kind, FastAgency's word), `run_id`, `seq`, `sender`,
`recipient`, `timestamp`, then the kind's own fields. Fields carried as JSON text on the wire
(`params_json`, `result_json`, ...) are decoded and lose the suffix (`params`, `result`, ...).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from flotilla.protocol import DeadLetter, ReplyDelta, Run, RunEvent, RunStatus, WorkflowCompleted

STATUS_NAMES: dict[RunStatus.ValueType, str] = {
    RunStatus.RUN_STATUS_QUEUED: "queued",
    RunStatus.RUN_STATUS_RUNNING: "running",
    RunStatus.RUN_STATUS_COMPLETED: "completed",
    RunStatus.RUN_STATUS_FAILED: "failed",
    RunStatus.RUN_STATUS_CANCELLED: "cancelled",
}
STATUS_BY_NAME: dict[str, RunStatus.ValueType] = {name: value for value, name in STATUS_NAMES.items()}
TERMINAL_STATUSES = frozenset(
    {RunStatus.RUN_STATUS_COMPLETED, RunStatus.RUN_STATUS_FAILED, RunStatus.RUN_STATUS_CANCELLED}
)
INPUT_REQUEST_KINDS = frozenset({"text_input", "multiple_choice"})
HIDDEN_KINDS = frozenset({"llm_completion"})
"""Recorded for resume and audit, not shown in a person's transcript."""


def now() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


def timestamp_to_iso(ts: Timestamp) -> str | None:
    if not ts.seconds and not ts.nanos:
        return None
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=timezone.utc).isoformat()


def decode_json(text: str) -> Any:
    return json.loads(text) if text else None


def is_terminal(event: RunEvent) -> bool:
    return event.WhichOneof("kind") == "workflow_completed"


def finish_record(run: Run, done: WorkflowCompleted, at: Timestamp | None = None) -> bool:
    """Make the record say what the log's terminal event says (an update for RunStore.update)."""
    run.lease = ""
    run.waiting_for_input = False
    run.status = STATUS_BY_NAME.get(done.status, RunStatus.RUN_STATUS_FAILED)
    run.result_json = done.result_json
    run.error = done.error
    del run.usage[:]
    run.usage.extend(done.usage)
    run.finished_at.CopyFrom(at if at is not None else now())
    return True


def request_id_of(event: RunEvent) -> str | None:
    """The request_id of an input request event, else None."""
    kind = event.WhichOneof("kind")
    if kind in INPUT_REQUEST_KINDS:
        return str(getattr(event, kind).request_id)
    return None


_PLAIN, _JSON, _MESSAGES, _SCALARS = range(4)
"""How a field becomes JSON: as is, decoded from JSON text, a list of objects, a list."""


_FIELDS: dict[type[Message], tuple[tuple[str, str, int], ...]] = {}


def _fields_of(message_type: type[Message]) -> tuple[tuple[str, str, int], ...]:
    """Each field of a message type as (attribute, key, how), worked out once per type rather than
    from its descriptor for every event."""
    known = _FIELDS.get(message_type)
    if known is not None:
        return known
    fields = []
    for field in message_type.DESCRIPTOR.fields:
        if field.name.endswith("_json"):
            fields.append((field.name, field.name[: -len("_json")], _JSON))
        elif field.is_repeated:
            fields.append((field.name, field.name, _MESSAGES if field.message_type is not None else _SCALARS))
        else:
            fields.append((field.name, field.name, _PLAIN))
    known = _FIELDS[message_type] = tuple(fields)
    return known


def _message_fields(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, key, how in _fields_of(type(message)):
        value = getattr(message, name)
        if how == _PLAIN:
            out[key] = value
        elif how == _JSON:
            out[key] = decode_json(value)
        elif how == _MESSAGES:
            out[key] = [_message_fields(item) for item in value]
        else:
            out[key] = list(value)
    return out


def event_to_json(event: RunEvent) -> dict[str, Any]:
    kind = event.WhichOneof("kind") or "unknown"
    out: dict[str, Any] = {
        "type": kind,
        "run_id": event.run_id,
        "seq": event.seq,
        "sender": event.sender,
        "recipient": event.recipient,
        "timestamp": timestamp_to_iso(event.timestamp),
    }
    if kind != "unknown":
        out.update(_message_fields(getattr(event, kind)))
    if kind in HIDDEN_KINDS:
        out["hidden"] = True
    return out


def delta_to_json(delta: ReplyDelta) -> dict[str, Any]:
    """A piece of the reply being written, as the v1 WebSocket sends it (`type: reply_delta`)."""
    return {
        "type": "reply_delta",
        "run_id": delta.run_id,
        "after_seq": delta.after_seq,
        "reply_id": delta.reply_id,
        "sender": delta.sender,
        "first_index": delta.first_index,
        "index": delta.index,
        "text": delta.text,
        "first_token_at": timestamp_to_iso(delta.first_token_at),
    }


def dead_letter_to_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "seq": letter.seq,
        "reason": letter.reason,
        "detail": letter.detail,
        "run_id": letter.run_id or None,
        "workflow": letter.workflow or None,
        "dead_at": timestamp_to_iso(letter.dead_at),
    }


def run_to_json(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "workflow": run.workflow,
        "params": decode_json(run.params_json),
        "status": STATUS_NAMES.get(run.status, "unknown"),
        "created_at": timestamp_to_iso(run.created_at),
        "updated_at": timestamp_to_iso(run.updated_at),
        "finished_at": timestamp_to_iso(run.finished_at),
        "attempts": run.attempts,
        "handbacks": run.handbacks,
        "worker_id": run.worker_id or None,
        "result": decode_json(run.result_json),
        "error": run.error or None,
        "idempotency_key": run.idempotency_key or None,
        "cancel_requested": run.cancel_requested,
        "usage": [_message_fields(usage) for usage in run.usage],
        "thread_id": run.thread_id or run.run_id,
        "reply_to": run.reply_to or None,
        "message": run.reply_message or None,
        "waiting_for_input": run.waiting_for_input,
        "forked_from": run.forked_from or None,
        "fork_at_seq": run.fork_at_seq or None,
    }

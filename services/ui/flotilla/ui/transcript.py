"""A run's events (JSON, as `flotilla.events.event_to_json` makes them) arranged for reading.

Pure data, no Mesop: a function call's result joins its suggestion in one card, an answer joins
its question, hidden kinds are dropped, and the open questions and the final event are picked out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

QUESTION_KINDS = frozenset({"text_input", "multiple_choice"})


@dataclass(frozen=True)
class Item:
    """One thing shown in the transcript: an event, and the event that completes it, if any (the
    execution of a suggested call, the answer to a question)."""

    event: dict[str, Any]
    related: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        return str(self.event.get("type", "unknown"))


@dataclass(frozen=True)
class Transcript:
    items: list[Item] = field(default_factory=list)
    open_questions: list[dict[str, Any]] = field(default_factory=list)
    """Questions with no answer in the log yet, oldest first."""
    completed: dict[str, Any] | None = None
    """The workflow_completed event, once the run has ended."""
    last_message: str | None = None
    """The body of the last text message, if any (a result that repeats it is not shown twice)."""

    @property
    def finished(self) -> bool:
        return self.completed is not None


def build(events: Iterable[Mapping[str, Any]]) -> Transcript:
    ordered = sorted((dict(e) for e in events if not e.get("hidden")), key=lambda e: int(e.get("seq", 0)))
    executions = {e["call_id"]: e for e in ordered if e.get("type") == "function_call_execution" and e.get("call_id")}
    answers = {e["request_id"]: e for e in ordered if e.get("type") == "input_answered"}
    suggested = {e["call_id"] for e in ordered if e.get("type") == "suggested_function_call" and e.get("call_id")}
    asked = {e.get("request_id") for e in ordered if e.get("type") in QUESTION_KINDS}
    items: list[Item] = []
    open_questions: list[dict[str, Any]] = []
    completed: dict[str, Any] | None = None
    last_message: str | None = None
    for event in ordered:
        kind = event.get("type")
        if kind == "input_answered" and event.get("request_id") in asked:
            continue  # shown with its question
        if kind == "function_call_execution" and event.get("call_id") in suggested:
            continue  # shown in its call's card
        if kind == "suggested_function_call":
            items.append(Item(event, executions.get(event.get("call_id", ""))))
        elif kind in QUESTION_KINDS:
            answer = answers.get(event.get("request_id", ""))
            items.append(Item(event, answer))
            if answer is None:
                open_questions.append(event)
        else:
            items.append(Item(event))
        if kind == "workflow_completed":
            completed = event
        if kind == "text_message":
            last_message = str(event.get("body") or "")
    if completed is not None:
        open_questions = []  # a finished run asks nothing more
    return Transcript(items=items, open_questions=open_questions, completed=completed, last_message=last_message)


def clock(timestamp: str | None) -> str:
    """`HH:MM:SS` (UTC) of an ISO timestamp, for the transcript."""
    if not timestamp:
        return ""
    try:
        return datetime.fromisoformat(timestamp).strftime("%H:%M:%S")
    except ValueError:
        return ""


def selected_choices(value: str) -> list[str]:
    """A multiple-select answer or default (comma-separated) as its choices."""
    return [part.strip() for part in value.split(",") if part.strip()]

"""AG2 agents → run events, through AG2's own structured events (its IOStream), not console text.

AG2 sends every agent message, tool call and tool result to the current IOStream (a context
variable), and asks for human input through it. `bridge(session)` makes a run's session that
stream for the code inside the `with`, so runs in other threads never see each other's events.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from autogen.events.base_event import BaseEvent
from autogen.io import IOStream

from flotilla.workflows import SyncSession


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal parts
        return "".join(str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content)
    return str(content)


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


class SessionIOStream:
    """An AG2 IOStream writing to a Flotilla run: `send` maps AG2 events to run events, `input`
    asks the person."""

    def __init__(self, session: SyncSession) -> None:
        self._session = session

    def print(self, *objects: Any, sep: str = " ", end: str = "\n", flush: bool = False) -> None:
        """Free console text (AG2 prints decorations here); not part of the transcript."""

    def input(self, prompt: str = "", *, password: bool = False) -> str:
        return self._session.text_input(prompt, password=password, sender="agent", recipient="user")

    def send(self, message: BaseEvent) -> None:
        kind = getattr(message, "type", "")
        content = getattr(message, "content", None)
        handler = _HANDLERS.get(kind)
        if handler is not None and content is not None:
            handler(self._session, content)


def _on_text(session: SyncSession, event: Any) -> None:
    session.text_message(_text(event.content), sender=event.sender, recipient=event.recipient)


def _on_tool_call(session: SyncSession, event: Any) -> None:
    if event.content:
        session.text_message(_text(event.content), sender=event.sender, recipient=event.recipient)
    for call in event.tool_calls:
        _suggest(session, event, call.function.name, call.id, call.function.arguments)


def _on_function_call(session: SyncSession, event: Any) -> None:
    _suggest(session, event, event.function_call.name, None, event.function_call.arguments)


def _suggest(session: SyncSession, event: Any, name: str | None, call_id: str | None, arguments: Any) -> None:
    session.suggested_function_call(
        name or "", _arguments(arguments), call_id=call_id or "", sender=event.sender, recipient=event.recipient
    )


def _on_executed_function(session: SyncSession, event: Any) -> None:
    session.function_call_execution(event.func_name, event.content, call_id=event.call_id or "", sender=event.recipient)


def _on_termination(session: SyncSession, event: Any) -> None:
    reason = getattr(event, "termination_reason", None) or "the conversation ended"
    session.system_message({"type": "termination", "reason": str(reason)}, sender="ag2")


def _on_error(session: SyncSession, event: Any) -> None:
    session.error(f"AG2 error: {event.error}", sender="ag2")


_HANDLERS = {
    "text": _on_text,
    "tool_call": _on_tool_call,
    "function_call": _on_function_call,
    "executed_function": _on_executed_function,
    "termination": _on_termination,
    "error": _on_error,
}


@contextmanager
def bridge(session: SyncSession) -> Iterator[SessionIOStream]:
    """Inside the `with`, AG2 agents in this thread (and context) talk to `session`."""
    stream = SessionIOStream(session)
    with IOStream.set_default(stream):
        yield stream

"""AG2 agents → run events, through AG2's own structured events (its IOStream), not console text.

AG2 sends every agent message, tool call and tool result to the current IOStream (a context
variable), and asks for human input through it. `bridge(session)` makes a run's session that
stream for the code inside the `with`, so runs in other threads never see each other's events.

Tools go through the session too (`SyncSession.call_tool`): inside a bridge, an agent executing a
tool records its result in the run's log, and a resumed run gets the recorded result back
instead of running the tool again; the tool reads its idempotency key with
`flotilla.workflows.current_tool_call()`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from autogen import ConversableAgent
from autogen.events.base_event import BaseEvent
from autogen.io import IOStream

from flotilla.errors import ToolError
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
        self._in_tool = 0

    def run_tool(
        self, agent: ConversableAgent, func_call: dict[str, Any], call_id: str | None, verbose: bool
    ) -> tuple[bool, dict[str, Any]]:
        """AG2's `execute_function`, once per run: the result comes from the log on resume."""
        name = str(func_call.get("name", ""))

        def execute() -> Any:
            self._in_tool += 1  # AG2 reports the result itself; the session records it instead
            try:
                ok, result = _EXECUTE_FUNCTION(agent, func_call, call_id=call_id, verbose=verbose)
            finally:
                self._in_tool -= 1
            if not ok:
                raise ToolError(str(result.get("content", "")))
            return result.get("content", "")

        try:
            content = self._session.call_tool(name, execute, call_id=call_id or "", sender=agent.name)
            ok = True
        except ToolError as exc:
            content, ok = str(exc), False
        return ok, {"name": name, "role": "function", "content": content}

    def print(self, *objects: Any, sep: str = " ", end: str = "\n", flush: bool = False) -> None:
        """Free console text (AG2 prints decorations here); not part of the transcript."""

    def input(self, prompt: str = "", *, password: bool = False) -> str:
        return self._session.text_input(prompt, password=password, sender="agent", recipient="user")

    def send(self, message: BaseEvent) -> None:
        kind = getattr(message, "type", "")
        content = getattr(message, "content", None)
        if content is None:
            return
        if kind == "executed_function":
            _executed_function(self, content)
            return
        handler = _HANDLERS.get(kind)
        if handler is not None:
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


def _executed_function(stream: SessionIOStream, event: Any) -> None:
    if not stream._in_tool:  # a tool run outside `run_tool` (AG2 internals): report it as is
        _on_executed_function(stream._session, event)


def _on_termination(session: SyncSession, event: Any) -> None:
    reason = getattr(event, "termination_reason", None) or "the conversation ended"
    session.system_message({"type": "termination", "reason": str(reason)}, sender="ag2")


def _on_error(session: SyncSession, event: Any) -> None:
    session.error(f"AG2 error: {event.error}", sender="ag2")


_HANDLERS = {
    "text": _on_text,
    "tool_call": _on_tool_call,
    "function_call": _on_function_call,
    "termination": _on_termination,
    "error": _on_error,
}


_EXECUTE_FUNCTION = ConversableAgent.execute_function
_installed = threading.Lock()


def _execute_function(
    self: ConversableAgent, func_call: dict[str, Any], call_id: str | None = None, verbose: bool = False
) -> tuple[bool, dict[str, Any]]:
    stream = IOStream.get_default()
    if isinstance(stream, SessionIOStream):
        return stream.run_tool(self, func_call, call_id, verbose)
    return _EXECUTE_FUNCTION(self, func_call, call_id=call_id, verbose=verbose)


def _install() -> None:
    """Route every agent's tool execution through the run's session while a bridge is active
    (AG2 has no hook for it); outside a bridge, agents behave as AG2 made them."""
    with _installed:
        if ConversableAgent.execute_function is not _execute_function:
            ConversableAgent.execute_function = _execute_function  # type: ignore[method-assign]


@contextmanager
def bridge(session: SyncSession) -> Iterator[SessionIOStream]:
    """Inside the `with`, AG2 agents in this thread (and context) talk to `session`."""
    _install()
    stream = SessionIOStream(session)
    with IOStream.set_default(stream):
        yield stream

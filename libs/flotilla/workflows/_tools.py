"""Tool calls a run makes through its session: recorded, replayed, and keyed for idempotency.

A tool with side effects (charging a card, sending a mail) must not act twice when a run is
resumed on another worker. The session records each tool call's result in the run's log and,
on resume, returns the recorded result instead of calling the tool again. A worker can still die
after a tool acted and before its result was stored; then the tool does run again, with the same
idempotency key, which the tool reads with `current_tool_call()` and passes on (an
`Idempotency-Key` header, a unique constraint) so the outside world acts once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from flotilla import tracing
from flotilla.errors import ToolError


@dataclass(frozen=True)
class ToolCall:
    """The tool call being executed: the n-th (`step`, from 1) of its run."""

    run_id: str
    step: int
    name: str

    @property
    def idempotency_key(self) -> str:
        """`<run_id>:tool:<step>`: the same for every attempt of the run, unique otherwise."""
        return f"{self.run_id}:tool:{self.step}"


_CURRENT: ContextVar[ToolCall | None] = ContextVar("flotilla_tool_call", default=None)


def current_tool_call() -> ToolCall | None:
    """The tool call the calling code runs in (inside `session.call_tool`, or an AG2 tool of a
    Flotilla run), else None."""
    return _CURRENT.get()


@contextmanager
def tool_call_scope(call: ToolCall) -> Iterator[ToolCall]:
    """Inside the `with`, `current_tool_call()` is `call` (used by the worker's session); with
    tracing on, the tool runs in a span of its own."""
    token = _CURRENT.set(call)
    try:
        if not tracing.enabled():
            yield call
            return
        attributes = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": call.name,
            "flotilla.step": call.step,
        }
        with tracing.span(f"execute_tool {call.name}", attributes=attributes):
            yield call
    finally:
        _CURRENT.reset(token)


@dataclass(frozen=True)
class Recorded:
    """What a tool call gave in an earlier attempt of its run: its value or, `failed`, its error."""

    value: Any
    failed: bool = False

    def result(self) -> Any:
        """The recorded value again, or the recorded failure again (`ToolError`)."""
        if self.failed:
            raise ToolError(str(self.value))
        return self.value


class ToolSteps(Protocol):
    """A tool call in two steps around the tool itself, so the tool can run in the workflow's
    thread while its session lives on the worker's loop (the worker's session implements it)."""

    async def begin_tool(self, name: str) -> tuple[ToolCall, Recorded | None]:
        """The run's next tool call, and what it gave before if an earlier attempt recorded it."""
        ...

    async def end_tool(
        self,
        call: ToolCall,
        value: Any,
        *,
        error: Exception | None = None,
        call_id: str = "",
        sender: str | None = None,
    ) -> None:
        """Record what the tool returned (`value`) or raised (`error`), and wait until it is
        stored: a resumed run must find it. An error saying the run stops (cancelled, diverged,
        lost) is not the tool's failure and is not recorded."""
        ...

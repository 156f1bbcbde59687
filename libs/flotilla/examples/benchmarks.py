"""Workflows for benchmarks and tests: `load` and `load_sync` emit as many events and ask as many
questions as asked. A worker serves them only when its FLOTILLA_WORKER_WORKFLOWS names this
registry (`flotilla.examples.benchmarks:registry`, or `:with_examples` for these and the default
workflows together): never in a default deployment, where anyone allowed to start runs could make
one write gigabytes of events."""

from __future__ import annotations

from typing import Any

from flotilla import examples
from flotilla.errors import InvalidArgument
from flotilla.workflows import Session, SyncSession, WorkflowRegistry

registry = WorkflowRegistry()


def _int_param(params: dict[str, Any], name: str, default: int, *, low: int, high: int) -> int:
    value = params.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidArgument(f"param {name!r} must be an integer from {low} to {high}")
    return value


@registry.register(
    name="load",
    description="Emits n messages of size bytes and asks asks questions (for tests and benchmarks).",
)
async def load(session: Session, params: dict[str, Any]) -> dict[str, Any]:
    n = _int_param(params, "n", 10, low=0, high=100_000)
    size = _int_param(params, "size", 100, low=0, high=1_000_000)
    asks = _int_param(params, "asks", 0, low=0, high=1_000)
    body = "x" * size
    for _ in range(n):
        await session.text_message(body, sender="load", recipient="user")
    answers = []
    for i in range(asks):
        answer = await session.text_input(f"question {i + 1} of {asks}")
        answers.append(answer)
        await session.text_message(f"echo: {answer}", sender="load", recipient="user")
    return {"messages": n, "answers": answers}


@registry.register(
    name="load_sync",
    description="`load` as a plain def workflow (runs in a thread, as AG2 workflows do); for benchmarks.",
)
def load_sync(session: SyncSession, params: dict[str, Any]) -> dict[str, Any]:
    n = _int_param(params, "n", 10, low=0, high=100_000)
    size = _int_param(params, "size", 100, low=0, high=1_000_000)
    asks = _int_param(params, "asks", 0, low=0, high=1_000)
    for _ in range(n):
        session.text_message("x" * size, sender="load", recipient="user")
    answers = []
    for i in range(asks):
        answers.append(session.text_input(f"question {i + 1} of {asks}"))
        session.text_message(f"echo: {answers[-1]}", sender="load", recipient="user")
    return {"messages": n, "answers": answers}


# The container tests' workers: `load` next to learning_chat & co. in one worker pool.
with_examples = WorkflowRegistry()
with_examples.include(examples.registry)
with_examples.include(registry)

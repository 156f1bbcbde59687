"""SyncSession: derived from Session call by call, blocking on the loop, cancellable, tools once."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Iterator
from typing import Any, cast

import pytest

from flotilla.errors import RunCancelled, ToolError
from flotilla.workflows import Recorded, Session, SyncSession, ToolCall, WorkerSession, current_tool_call
from flotilla.workflows._session import blocking


class FakeSession:
    """The calls the tests use, recording what reached the loop."""

    run_id = "run-1"

    def __init__(self, recorded: dict[int, Recorded] | None = None) -> None:
        self.seen: list[tuple[str, Any]] = []
        self.waiting = threading.Event()
        self._recorded = recorded or {}
        self._steps = 0

    async def text_message(self, body: str = "", *, sender: str | None = None, recipient: str | None = None) -> None:
        self.seen.append(("text_message", (body, sender, threading.current_thread().name)))

    async def text_input(self, prompt: str = "", **_: Any) -> str:
        if prompt == "never answered":
            self.waiting.set()
            await asyncio.Future()
        return f"answer to {prompt}"

    async def begin_tool(self, name: str) -> tuple[ToolCall, Recorded | None]:
        self._steps += 1
        return ToolCall(self.run_id, self._steps, name), self._recorded.get(self._steps)

    async def end_tool(
        self,
        call: ToolCall,
        value: Any,
        *,
        error: Exception | None = None,
        call_id: str = "",
        sender: str | None = None,
    ) -> None:
        self.seen.append(("end_tool", (call.step, value, repr(error) if error else None)))


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="worker-loop", daemon=True)
    thread.start()
    yield loop
    asyncio.run_coroutine_threadsafe(_settle(), loop).result()
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()


async def _settle() -> None:
    """Let calls cancelled by a test finish cancelling."""
    await asyncio.gather(*(asyncio.all_tasks() - {asyncio.current_task()}), return_exceptions=True)


def sync_over(fake: FakeSession, loop: asyncio.AbstractEventLoop) -> SyncSession:
    return SyncSession(cast(WorkerSession, fake), loop)


def _calls(cls: type) -> set[str]:
    return {name for name, _ in inspect.getmembers(cls) if not name.startswith("_")}


def test_every_session_call_has_a_blocking_twin_with_its_signature(loop: asyncio.AbstractEventLoop) -> None:
    assert _calls(Session) <= _calls(SyncSession)
    sync = sync_over(FakeSession(), loop)
    assert inspect.signature(sync.text_message) == inspect.signature(FakeSession().text_message)
    assert sync.text_message.__doc__ == Session.text_message.__doc__


def test_a_twin_must_block_on_the_call_of_its_own_name() -> None:
    with pytest.raises(TypeError, match="must block on Session.text_input"):
        blocking(Session.multiple_choice).__set_name__(SyncSession, "text_input")


def test_a_call_runs_on_the_loop_while_the_thread_waits(loop: asyncio.AbstractEventLoop) -> None:
    fake = FakeSession()
    sync = sync_over(fake, loop)
    sync.text_message(body="hello", sender="alice")
    assert fake.seen == [("text_message", ("hello", "alice", "worker-loop"))]
    assert sync.text_input(prompt="topic?") == "answer to topic?"


def test_cancel_stops_a_waiting_call_and_every_later_one(loop: asyncio.AbstractEventLoop) -> None:
    fake = FakeSession()
    sync = sync_over(fake, loop)
    raised: list[BaseException] = []

    def workflow() -> None:
        try:
            sync.text_input(prompt="never answered")
        except RunCancelled as exc:
            raised.append(exc)

    thread = threading.Thread(target=workflow)
    thread.start()
    assert fake.waiting.wait(timeout=30)
    sync.cancel()
    thread.join(timeout=30)
    assert [type(exc) for exc in raised] == [RunCancelled]
    with pytest.raises(RunCancelled):
        sync.text_message(body="too late")
    assert fake.seen == []


def test_a_tool_runs_in_the_workflow_thread_once_and_its_result_or_failure_is_recorded(
    loop: asyncio.AbstractEventLoop,
) -> None:
    fake = FakeSession()
    sync = sync_over(fake, loop)

    def tool() -> str:
        call = current_tool_call()
        assert call is not None
        return f"{call.idempotency_key} in {threading.current_thread().name}"

    def broken() -> str:
        raise ValueError("no")

    assert sync.call_tool("tool", tool) == "run-1:tool:1 in MainThread"
    with pytest.raises(ValueError):
        sync.call_tool("broken", broken)
    assert fake.seen == [
        ("end_tool", (1, "run-1:tool:1 in MainThread", None)),
        ("end_tool", (2, None, "ValueError('no')")),
    ]


def test_a_recorded_tool_is_not_run_again(loop: asyncio.AbstractEventLoop) -> None:
    fake = FakeSession({1: Recorded("from the log"), 2: Recorded("ValueError: no", failed=True)})
    sync = sync_over(fake, loop)

    def never() -> str:
        raise AssertionError("ran again")

    assert sync.call_tool("tool", never) == "from the log"
    with pytest.raises(ToolError, match="ValueError: no"):
        sync.call_tool("broken", never)
    assert fake.seen == []


def _typed(ui: SyncSession) -> None:
    """Never called: mypy checks it. Each ignore is needed only while the blocking calls keep
    their signatures (with --strict an unneeded ignore is an error)."""
    ui.text_message(bodyy="typo")  # type: ignore[call-arg]
    answer: int = ui.text_input(prompt="?")  # type: ignore[assignment]
    ui.multiple_choice("pick", ["a"], single="yes")  # type: ignore[arg-type]
    del answer

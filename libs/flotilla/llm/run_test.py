"""The per-run hooks (recording, replay) and the service's sync bridge."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from flotilla.llm import (
    Completion,
    LlmConfigError,
    LlmService,
    LlmSettings,
    Message,
    Replay,
    ScriptedBackend,
    Tool,
    llm_run,
)

HELLO = [{"role": "user", "content": "hello"}]


class CountingBackend(ScriptedBackend):
    """A scripted backend that counts the calls that reached it and the thread they ran on."""

    def __init__(self, replies: list[str]) -> None:
        super().__init__(replies)
        self.calls = 0
        self.threads: set[str] = set()

    async def complete(self, messages: list[Message], *, tools: list[Tool] | None = None, **params: Any) -> Completion:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        return await super().complete(messages, tools=tools, **params)


def test_every_live_completion_is_recorded_in_order() -> None:
    service = LlmService(ScriptedBackend(["one", "two"]))
    recorded: list[tuple[list[Message], dict[str, Any]]] = []
    with llm_run(recorder=lambda messages, completion: recorded.append((messages, completion.to_dict()))):
        first = service.complete_sync(HELLO)
        second = service.complete_sync([*HELLO, first.message(), {"role": "user", "content": "more"}])
    service.close()
    assert [Completion.from_dict(c).text for _, c in recorded] == ["one", "two"]
    assert recorded[0][0] == HELLO and recorded[1][0][1] == {"role": "assistant", "content": "one"}
    assert Completion.from_dict(recorded[1][1]) == second


def test_replay_comes_first_is_not_recorded_again_then_the_run_goes_live() -> None:
    backend = CountingBackend(["live-1", "live-2", "live-3"])
    service = LlmService(backend)
    earlier: list[Completion | dict[str, Any]] = [
        Completion(content="recorded-1").to_dict(),
        Completion(content="recorded-2"),
    ]
    replay = Replay(earlier)
    recorded: list[str] = []
    with llm_run(recorder=lambda _, completion: recorded.append(completion.text), replay=replay) as run:
        texts = [service.complete_sync(HELLO).text for _ in range(4)]
    service.close()
    # The script goes on where the run is (its third completion), as a model continues a conversation.
    assert texts == ["recorded-1", "recorded-2", "live-3", "live-1"]
    assert recorded == ["live-3", "live-1"]
    assert backend.calls == 2 and replay.exhausted and replay.replayed == 2 and run.completions == 4


def test_a_failing_recorder_fails_the_call() -> None:
    service = LlmService(ScriptedBackend(["one"]))

    def refuse(_: list[Message], __: Completion) -> None:
        raise RuntimeError("run cancelled")

    with llm_run(recorder=refuse), pytest.raises(RuntimeError, match="run cancelled"):
        service.complete_sync(HELLO)
    service.close()


def test_without_a_run_nothing_is_recorded_or_replayed() -> None:
    service = LlmService(ScriptedBackend(["one", "two"]))
    assert [service.complete_sync(HELLO).text for _ in range(3)] == ["one", "two", "one"]
    service.close()


def test_threads_of_many_runs_share_one_backend_on_one_loop() -> None:
    backend = CountingBackend(["a", "b", "c"])
    service = LlmService(backend)

    def run(index: int) -> list[str]:
        recorded: list[str] = []
        with llm_run(recorder=lambda _, completion: recorded.append(completion.text)):
            texts = [service.complete_sync([{"role": "user", "content": f"run {index}"}]).text for _ in range(3)]
        assert recorded == texts
        return texts

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run, range(40)))
    service.close()
    assert results == [["a", "b", "c"]] * 40
    assert backend.calls == 120 and backend.threads == {"flotilla-llm"}


def test_on_a_given_loop_async_and_threaded_callers_share_it() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        backend = CountingBackend(["x", "y"])
        service = LlmService(backend, loop=loop)
        with llm_run() as run:
            assert (await service.complete(HELLO)).text == "x"
            # A workflow thread started with a copy of the run's context, as the worker does.
            context = contextvars.copy_context()
            threaded = await loop.run_in_executor(None, context.run, service.complete_sync, HELLO)
            assert threaded.text == "y"
            assert run.completions == 2
            with pytest.raises(RuntimeError, match="await complete"):
                service.complete_sync(HELLO)
        await service.aclose()
        assert backend.threads == {threading.current_thread().name}

    asyncio.run(scenario())


def test_async_callers_on_another_loop_are_served_by_the_service_loop() -> None:
    service = LlmService(CountingBackend(["x"]))

    async def scenario() -> str:
        recorded: list[str] = []
        with llm_run(recorder=lambda _, completion: recorded.append(completion.text)):
            completion = await service.complete(HELLO)
        assert recorded == ["x"]
        return completion.text

    assert asyncio.run(scenario()) == "x"
    service.close()


def test_a_service_is_built_from_settings_and_refuses_a_misconfiguration() -> None:
    service = LlmService.from_settings(LlmSettings(backend="scripted", scripted_replies='["configured"]'))
    assert service.complete_sync(HELLO).text == "configured"
    service.close()
    with pytest.raises(LlmConfigError, match="FLOTILLA_LLM_SCRIPTED_REPLIES"):
        LlmService.from_settings(LlmSettings(backend="scripted"))


def test_an_async_recorder_is_awaited_on_the_service_loop_for_async_and_threaded_callers() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        service = LlmService(ScriptedBackend(["async", "threaded"]), loop=loop)
        stored: list[tuple[str, str]] = []

        async def store(_: list[Message], completion: Completion) -> None:
            await asyncio.sleep(0.01)  # like publishing an event
            stored.append((completion.text, threading.current_thread().name))

        with llm_run(recorder=store):
            assert (await service.complete(HELLO)).text == "async"
            assert stored == [("async", "MainThread")]
            context = contextvars.copy_context()
            await loop.run_in_executor(None, context.run, service.complete_sync, HELLO)
            assert stored[1] == ("threaded", "MainThread")
        await service.aclose()

    asyncio.run(scenario())

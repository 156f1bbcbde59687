from __future__ import annotations

import asyncio
import json

import pytest

from flotilla.llm import Completion, ScriptedBackend, ScriptExhausted, ToolCall, llm_run

HELLO = [{"role": "user", "content": "hello"}]


def test_replies_in_order_then_cycles() -> None:
    async def scenario() -> None:
        backend = ScriptedBackend(["one", "two"])
        replies = [(await backend.complete(HELLO)).text for _ in range(5)]
        assert replies == ["one", "two", "one", "two", "one"]

    asyncio.run(scenario())


def test_without_cycling_the_end_of_the_script_is_an_error() -> None:
    async def scenario() -> None:
        backend = ScriptedBackend(["one"], cycle=False)
        assert (await backend.complete(HELLO)).text == "one"
        with pytest.raises(ScriptExhausted, match="reply 2"):
            await backend.complete(HELLO)

    asyncio.run(scenario())


def test_scripted_tool_calls_have_openai_shape() -> None:
    async def scenario() -> None:
        backend = ScriptedBackend(
            [{"content": None, "tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}, {"name": "now"}]}]
        )
        completion = await backend.complete(HELLO)
        assert completion.finish_reason == "tool_calls"
        assert completion.tool_calls == (
            ToolCall(id="call_0_0", name="add", arguments='{"a": 2, "b": 3}'),
            ToolCall(id="call_0_1", name="now", arguments="{}"),
        )
        message = completion.message()
        assert message["content"] is None
        assert message["tool_calls"][0] == {
            "id": "call_0_0",
            "type": "function",
            "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'},
        }
        assert Completion.from_dict(json.loads(json.dumps(completion.to_dict()))) == completion

    asyncio.run(scenario())


def test_each_run_walks_the_script_from_its_start() -> None:
    async def scenario() -> None:
        backend = ScriptedBackend(["a", "b", "c"])

        async def run() -> list[str]:
            with llm_run():
                replies = []
                for _ in range(3):
                    replies.append((await backend.complete(HELLO)).text)
                    await asyncio.sleep(0)  # interleave the runs
                return replies

        assert list(await asyncio.gather(run(), run(), run())) == [["a", "b", "c"]] * 3

    asyncio.run(scenario())

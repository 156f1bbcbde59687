"""Live replies: a run's `deltas` get the text as it is written; the completion is unchanged."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from flotilla.llm import Completion, LlmService, Replay, ScriptedBackend, TextDelta, llm_run
from flotilla.llm._stream import ChunkAssembler

HELLO = [{"role": "user", "content": "hello"}]
REPLY = "Start with one small example,  then generalise. "


def test_a_live_reply_streams_word_by_word_and_completes_as_unstreamed() -> None:
    service = LlmService(ScriptedBackend([REPLY], word_delay_s=0.02))
    deltas: list[TextDelta] = []
    with llm_run(deltas=deltas.append):
        streamed = service.complete_sync(HELLO, sender="teacher")
    with llm_run():
        plain = service.complete_sync(HELLO, sender="teacher")
    service.close()
    assert streamed == plain and streamed.text == REPLY
    assert "".join(delta.text for delta in deltas) == REPLY
    assert [delta.text for delta in deltas] == [
        "Start",
        " with",
        " one",
        " small",
        " example,",
        "  then",
        " generalise. ",
    ]
    assert [delta.index for delta in deltas] == list(range(7))
    assert {(delta.reply, delta.sender) for delta in deltas} == {(0, "teacher")}
    first = deltas[0].first_token_at
    assert all(delta.first_token_at == first for delta in deltas) and abs(time.time() - first) < 5


def test_each_reply_of_a_run_is_numbered_and_async_sinks_are_awaited() -> None:
    async def scenario() -> list[TextDelta]:
        service = LlmService(ScriptedBackend(["one two", "three four"]), loop=asyncio.get_running_loop())
        got: list[TextDelta] = []

        async def sink(delta: TextDelta) -> None:
            await asyncio.sleep(0)
            got.append(delta)

        with llm_run(deltas=sink):
            await service.complete(HELLO, sender="a")
            await service.complete(HELLO, sender="b")
        await service.aclose()
        return got

    got = asyncio.run(scenario())
    assert [(d.reply, d.sender, d.index, d.text) for d in got] == [
        (0, "a", 0, "one"),
        (0, "a", 1, " two"),
        (1, "b", 0, "three"),
        (1, "b", 1, " four"),
    ]


def test_replayed_and_unnamed_calls_stream_nothing_and_a_failing_sink_fails_nothing() -> None:
    service = LlmService(ScriptedBackend(["live one", "live two", "live three"]))
    deltas: list[TextDelta] = []
    replay = Replay([Completion(content="recorded reply")])
    with llm_run(deltas=deltas.append, replay=replay):
        assert service.complete_sync(HELLO, sender="teacher").text == "recorded reply"
        assert service.complete_sync(HELLO).text == "live two"  # no sender: not streamed
        assert deltas == []
        assert service.complete_sync(HELLO, sender="teacher").text == "live three"
    assert [(d.reply, d.text) for d in deltas] == [(2, "live"), (2, " three")]

    def broken(delta: TextDelta) -> None:
        raise RuntimeError("NATS is away")

    with llm_run(deltas=broken):
        assert service.complete_sync(HELLO, sender="teacher").text == "live one"
    service.close()


def test_chunks_add_up_to_the_completion_with_tool_calls_and_usage() -> None:
    assembler = ChunkAssembler()
    chunks: list[dict[str, Any]] = [
        {"id": "c1", "model": "m", "created": 5, "choices": [{"delta": {"role": "assistant", "content": None}}]},
        {"choices": [{"delta": {"content": "Let me "}}]},
        {"choices": [{"delta": {"content": "check."}}]},
        {
            "choices": [
                {"delta": {"tool_calls": [{"index": 0, "id": "t1", "function": {"name": "get_", "arguments": ""}}]}}
            ]
        },
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "weather", "arguments": '{"ci'}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Oslo"}'}}]}}]},
        {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4}},
    ]
    texts = [assembler.add(chunk) for chunk in chunks]
    assert "".join(texts) == "Let me check."
    completion = assembler.completion()
    assert completion.content == "Let me check." and completion.finish_reason == "tool_calls"
    (call,) = completion.tool_calls
    assert (call.id, call.name, call.arguments) == ("t1", "get_weather", '{"city": "Oslo"}')
    assert (completion.prompt_tokens, completion.completion_tokens, completion.id, completion.model) == (
        9,
        4,
        "c1",
        "m",
    )

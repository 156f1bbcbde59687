"""Live tokens: the reply an agent's model is writing streams to clients (v1 WebSocket `reply_delta`
frames, gRPC `WatchRun` deltas) before the finished message, which stays the durable event.

The scripted model writes its replies word by word, `WORD_DELAY_S` apart, so the stream is
deterministic and slow enough to join in the middle of a reply."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import websockets

from flotilla.devstack import LocalStack
from flotilla.events import delta_to_json, event_to_json
from flotilla.protocol import GatewayStub, WatchRunRequest
from support import Api, assert_well_formed, local_stack

WORD_DELAY_S = 0.05
REPLIES = [
    "Gravity is the pull every mass has on every other mass, and it keeps the planets on their paths.",
    "Why does the Moon not fall down onto the Earth if gravity pulls it all the time?",
]


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    env = {
        "FLOTILLA_LLM_SCRIPTED_REPLIES": json.dumps(REPLIES),
        "FLOTILLA_LLM_SCRIPTED_WORD_DELAY_S": str(WORD_DELAY_S),
    }
    with local_stack(workers=1, env=env) as running:
        yield running


def _ws_url(stack: LocalStack, run_id: str, query: str = "") -> str:
    return stack.gateway_url.replace("http", "ws", 1) + f"/v1/runs/{run_id}/stream?{query}"


async def _frames(
    stack: LocalStack,
    run_id: str,
    query: str = "",
    *,
    answer: str | None = None,
    received: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Every frame of a v1 stream until the server closes it; answers questions with `answer`."""
    frames = [] if received is None else received
    headers = {"Authorization": f"Bearer {stack.dev_api_key}"}
    async with websockets.connect(_ws_url(stack, run_id, query), additional_headers=headers) as ws:
        async for text in ws:
            frame = json.loads(text)
            frames.append(frame)
            if answer is not None and frame["type"] == "text_input":
                await ws.send(json.dumps({"type": "input", "request_id": frame["request_id"], "value": answer}))
        assert ws.close_code == 1000
    return frames


def replies_of(frames: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per reply id: its text put together from its deltas (checking each continues the last, or
    starts over from 0), how many deltas came, where its first came in the stream, and the index of
    the text message that finished it."""
    replies: dict[str, dict[str, Any]] = {}
    for position, frame in enumerate(frames):
        if frame["type"] == "reply_delta":
            reply = replies.setdefault(
                frame["reply_id"], {"text": "", "index": -1, "deltas": 0, "first": position, "frame": frame}
            )
            if frame["first_index"] == 0:
                reply["text"] = frame["text"]
            else:
                assert frame["first_index"] == reply["index"] + 1, frame
                reply["text"] += frame["text"]
            assert frame["index"] >= frame["first_index"]
            reply["index"], reply["deltas"] = frame["index"], reply["deltas"] + 1
        elif frame["type"] == "text_message":
            for reply in replies.values():
                if "finished_by" not in reply and reply["frame"]["sender"] == frame["sender"]:
                    reply["finished_by"] = position
    return replies


def test_the_v1_stream_shows_each_reply_growing_before_its_message(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("learning_chat", turns=2)
            frames = await _frames(stack, run_id, "include_hidden=true&deltas=true", answer="Physics")
            events = [frame for frame in frames if frame["type"] != "reply_delta"]
            assert_well_formed(run_id, events)
            assert events[-1]["status"] == "completed"
            replies = replies_of(frames)
            messages = [frame for frame in frames if frame["type"] == "text_message" and frame["sender"] != "workflow"]
            # The teacher answers, the student asks, the teacher answers: each written live first.
            assert [m["sender"] for m in messages[1:]] == ["teacher", "student", "teacher"]
            assert len(replies) == 3
            for reply_id, reply in replies.items():
                delta = reply["frame"]
                assert reply_id.startswith(f"{run_id}:") and delta["run_id"] == run_id
                assert reply["deltas"] >= 10  # word by word
                message = frames[reply["finished_by"]]
                assert reply["text"] == message["body"], (reply["text"], message["body"])
                assert reply["first"] < reply["finished_by"]  # the text grew before the message came
                assert delta["after_seq"] < message["seq"] and delta["first_token_at"]
            # Ephemeral: the log holds no deltas, and its messages are those the stream finished with.
            log = await api.events(run_id)
            assert log == events

    asyncio.run(scenario())


def test_deltas_go_only_to_clients_that_ask(stack: LocalStack) -> None:
    """A client written for events only (every frame an event with a seq) never gets a delta."""

    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("learning_chat", turns=1)
            watching = asyncio.create_task(_frames(stack, run_id, "deltas=false"))
            frames = await _frames(stack, run_id, answer="Physics")
            assert frames[-1]["type"] == "workflow_completed"
            assert all(isinstance(frame["seq"], int) for frame in frames)  # events only
            assert [frame for frame in frames if frame["type"] == "text_message"][-1]["sender"] == "teacher"
            assert await watching == frames

    asyncio.run(scenario())


def test_a_client_joining_mid_reply_gets_the_text_so_far_then_the_rest(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("learning_chat", turns=1)
            first: list[dict[str, Any]] = []
            following = asyncio.create_task(_frames(stack, run_id, "deltas=true", answer="Physics", received=first))
            # Join once the first watcher has seen a few words of the teacher's reply.
            for _ in range(400):
                if sum(frame["type"] == "reply_delta" for frame in first) >= 4:
                    break
                await asyncio.sleep(0.01)
            seen = [frame["seq"] for frame in first if "seq" in frame]
            late = await _frames(stack, run_id, f"after={seen[-1]}&deltas=true")
            await following
            (reply,) = replies_of(late).values()
            joined = next(frame for frame in late if frame["type"] == "reply_delta")
            assert joined["first_index"] == 0 and joined["index"] >= 3  # the text so far, in one delta
            assert len(joined["text"].split()) >= 4
            assert reply["deltas"] >= 3  # then the words still to come, one by one
            (message,) = [frame for frame in late if frame["type"] == "text_message"]
            assert reply["text"] == message["body"] == replies_of(first)[joined["reply_id"]]["text"]

    asyncio.run(scenario())


def test_grpc_watch_run_carries_deltas_when_asked(stack: LocalStack) -> None:
    async def watch(run_id: str, include_deltas: bool) -> list[dict[str, Any]]:
        channel = stack.grpc_channel(stack.gateway_grpc_address)
        frames: list[dict[str, Any]] = []
        try:
            stub = GatewayStub(channel)
            metadata = (("authorization", f"Bearer {stack.dev_api_key}"),)
            request = WatchRunRequest(run_id=run_id, include_deltas=include_deltas)
            async for response in stub.WatchRun(request, metadata=metadata):
                frames += [event_to_json(event) for event in response.events]
                frames += [delta_to_json(delta) for delta in response.deltas]
        finally:
            await channel.close()
        return frames

    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("learning_chat", turns=1)
            with_deltas = asyncio.create_task(watch(run_id, True))
            without = asyncio.create_task(watch(run_id, False))
            await _frames(stack, run_id, answer="Physics")
            frames, plain = await with_deltas, await without
            assert not [frame for frame in plain if frame["type"] == "reply_delta"]
            assert [frame for frame in frames if frame["type"] != "reply_delta"] == plain
            (reply,) = replies_of(frames).values()
            (message,) = [f for f in frames if f["type"] == "text_message" and f["sender"] == "teacher"]
            assert reply["deltas"] >= 10 and reply["text"] == message["body"]
            assert reply["first"] < reply["finished_by"]

    asyncio.run(scenario())

"""Threads against the real stack: a reply starts the next run with the conversation so far, over
REST and gRPC; the double-texting policies (reject, queue, interrupt); only the owner replies."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import pytest
from grpc import aio

from flotilla.devstack import LocalStack
from flotilla.protocol import GatewayStub, GetRunRequest, ReplyRunRequest, StartRunRequest
from support import IDENTITIES, SCRIPTED_REPLIES, Api, assert_well_formed, first_question


def _key(name: str) -> str:
    return str(IDENTITIES[name]["key"])


async def _reply(api: Api, run_id: str, message: str, **extra: Any) -> Any:
    return await api.http.post(f"/v1/runs/{run_id}/reply", json={"message": message, **extra})


def test_a_reply_continues_the_thread_with_its_history(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, _key("alice")) as api:
            first = await api.start("thread_reject")
            assert (await api.settled(first))["status"] == "completed"
            response = await _reply(api, first, "one more thing")
            assert response.status_code == 201, response.text
            second = response.json()
            assert second["thread_id"] == first and second["reply_to"] == first
            assert second["message"] == "one more thing" and second["workflow"] == "thread_reject"
            done = await api.settled(second["run_id"])
            assert done["status"] == "completed", done
            assert done["result"]["history"] == [["probe", "first"]]
            assert done["result"]["message"] == "one more thing" and done["result"]["thread_id"] == first
            events = await api.events(second["run_id"])
            assert_well_formed(second["run_id"], events)
            assert events[0]["message"] == "one more thing" and events[0]["reply_to"] == first

            # Replying to any run of the thread follows its latest run; the history grows.
            third = await _reply(api, first, "and another")
            assert third.status_code == 201, third.text
            assert third.json()["reply_to"] == second["run_id"] and third.json()["thread_id"] == first
            result = (await api.settled(third.json()["run_id"]))["result"]
            assert result["history"] == [
                ["probe", "first"],
                ["user", "one more thing"],
                ["probe", "you said: one more thing"],
            ]
            # The first run is the thread's own: its record names itself.
            assert (await api.run(first))["thread_id"] == first

    asyncio.run(scenario())


def test_learning_chat_continues_the_conversation(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, _key("alice")) as api:
            first = await api.start("learning_chat", turns=1)
            events, _ = await api.stream(first, answer=lambda q: "Physics")
            assert events[-1]["status"] == "completed"
            response = await _reply(api, first, "What is gravity?")
            assert response.status_code == 201, response.text
            follow_up = response.json()["run_id"]
            events, _ = await api.stream(follow_up)
            assert events[-1]["status"] == "completed", events[-1]
            assert not [e for e in events if e["type"] == "text_input"]  # the topic is known: not asked again
            messages = [e for e in events if e["type"] == "text_message"]
            assert messages[0]["sender"] == "student"
            assert messages[0]["body"] == "About Physics, the person asks: What is gravity?"
            # The teacher answers through the model, which was asked once per turn (the history is
            # handed to the agents: libs/flotilla/examples/registry_test.py).
            assert messages[1]["sender"] == "teacher" and messages[1]["body"] in SCRIPTED_REPLIES
            assert events[-1]["result"] == messages[-1]["body"]
            # The model read the conversation so far (the scripted model counts words as tokens):
            # the follow-up's one call was asked the first run's lesson besides its own question.
            first_prompt = (await api.settled(first))["usage"][0]["prompt_tokens"]
            follow_prompt = (await api.settled(follow_up))["usage"][0]["prompt_tokens"]
            lesson = len("Teach me about Physics.".split()) + len(SCRIPTED_REPLIES[0].split())
            assert follow_prompt >= first_prompt + lesson, (first_prompt, follow_prompt)

    asyncio.run(scenario())


def test_reject_while_the_thread_works(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, _key("alice")) as api:
            first = await api.start("thread_reject", ask=1)
            events = await api.wait_for(first, lambda es: first_question(es) is not None)
            response = await _reply(api, first, "too soon")
            assert response.status_code == 409, response.text
            assert "still working" in response.json()["detail"]
            question = first_question(events)
            assert question is not None
            assert (await api.answer(first, question["request_id"], "go")).status_code == 202
            assert (await api.settled(first))["status"] == "completed"
            response = await _reply(api, first, "now")
            assert response.status_code == 201, response.text
            result = (await api.settled(response.json()["run_id"]))["result"]
            assert result["history"] == [["probe", "first"], ["probe", "hold on?"], ["user", "go"]]

    asyncio.run(scenario())


def test_queue_starts_the_reply_when_the_active_run_ends(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, _key("alice")) as api:
            first = await api.start("thread_queue", ask=1)
            events = await api.wait_for(first, lambda es: first_question(es) is not None)
            response = await _reply(api, first, "queued message")
            assert response.status_code == 201, response.text
            queued = response.json()["run_id"]
            second = await _reply(api, first, "and a second")
            assert second.status_code == 201 and second.json()["reply_to"] == queued
            await asyncio.sleep(1.0)
            assert (await api.run(queued))["status"] == "queued"  # waits for the run it follows
            question = first_question(events)
            assert question is not None
            assert (await api.answer(first, question["request_id"], "done")).status_code == 202
            assert (await api.settled(first))["status"] == "completed"
            result = (await api.settled(queued))["result"]
            assert result["history"] == [["probe", "first"], ["probe", "hold on?"], ["user", "done"]]
            last = (await api.settled(second.json()["run_id"]))["result"]
            assert last["history"][-2:] == [["user", "queued message"], ["probe", "you said: queued message"]]

    asyncio.run(scenario())


def test_interrupt_cancels_the_active_run_and_starts_the_reply(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, _key("alice")) as api:
            first = await api.start("thread_interrupt", ask=1)
            await api.wait_for(first, lambda es: first_question(es) is not None)
            response = await _reply(api, first, "never mind that")
            assert response.status_code == 201, response.text
            assert (await api.settled(first))["status"] == "cancelled"
            done = await api.settled(response.json()["run_id"])
            assert done["status"] == "completed", done
            # The interrupted run's messages are still part of the conversation.
            assert done["result"]["history"] == [["probe", "first"], ["probe", "hold on?"]]
            assert done["result"]["message"] == "never mind that"

    asyncio.run(scenario())


def test_only_the_owner_replies_and_keys_make_replies_idempotent(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with (
            Api(stack.gateway_url, _key("alice")) as alice,
            Api(stack.gateway_url, _key("bob")) as bob,
            Api(stack.gateway_url, _key("auditor")) as admin,
            Api(stack.gateway_url, _key("reader")) as reader,
        ):
            first = await alice.start("thread_reject")
            await alice.settled(first)
            assert (await _reply(bob, first, "hijack")).status_code == 404
            assert (await _reply(admin, first, "as admin")).status_code == 403
            assert (await _reply(reader, first, "read only")).status_code == 403
            assert (await _reply(alice, "0" * 26, "nobody")).status_code == 404
            assert (await _reply(alice, first, "")).status_code == 422
            one = await _reply(alice, first, "once", idempotency_key="k1")
            two = await _reply(alice, first, "once", idempotency_key="k1")
            assert one.status_code == 201 and two.status_code == 200
            assert one.json()["run_id"] == two.json()["run_id"]
            # Bob's same key is his own: it does not find Alice's reply.
            assert (await _reply(bob, one.json()["run_id"], "once", idempotency_key="k1")).status_code == 404

    asyncio.run(scenario())


def test_reply_over_grpc(stack: LocalStack) -> None:
    async def scenario() -> None:
        alice = (("authorization", f"Bearer {_key('alice')}"),)
        bob = (("authorization", f"Bearer {_key('bob')}"),)
        channel: aio.Channel = stack.grpc_channel(stack.gateway_grpc_address)
        try:
            stub = GatewayStub(channel)
            started = await stub.StartRun(StartRunRequest(workflow="thread_reject", params_json="{}"), metadata=alice)
            first = started.run.run_id
            for _ in range(300):
                run = await stub.GetRun(GetRunRequest(run_id=first), metadata=alice)
                if run.status >= 3:
                    break
                await asyncio.sleep(0.05)
            with pytest.raises(aio.AioRpcError) as raised:
                await stub.ReplyRun(ReplyRunRequest(run_id=first, message="hi"), metadata=bob)
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND
            reply = await stub.ReplyRun(ReplyRunRequest(run_id=first, message="hi"), metadata=alice)
            assert reply.created and reply.run.thread_id == first and reply.run.reply_to == first
            assert reply.run.reply_message == "hi"
            for _ in range(300):
                run = await stub.GetRun(GetRunRequest(run_id=reply.run.run_id), metadata=alice)
                if run.status >= 3:
                    break
                await asyncio.sleep(0.05)
            result = json.loads(run.result_json)
            assert result["message"] == "hi" and result["history"] == [["probe", "first"]]
            with pytest.raises(aio.AioRpcError) as raised:
                busy = await stub.StartRun(
                    StartRunRequest(workflow="thread_reject", params_json='{"ask": 1}'), metadata=alice
                )
                await asyncio.sleep(0.5)
                await stub.ReplyRun(ReplyRunRequest(run_id=busy.run.run_id, message="x"), metadata=alice)
            assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        finally:
            await channel.close()

    asyncio.run(scenario())

"""Forks against the real stack: a new run from another run's log up to a seq, replaying its
recorded completions and answers, then live from there; over REST and gRPC; owner only."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import pytest
from grpc import aio

from flotilla.devstack import LocalStack
from flotilla.protocol import ForkRunRequest, GatewayStub
from support import IDENTITIES, Api, first_question


def _key(name: str) -> str:
    return str(IDENTITIES[name]["key"])


def _same(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != "run_id"}


async def _answered_load(api: Api, *answers: str) -> tuple[str, list[dict[str, Any]]]:
    """A finished `load` run with one message before each of its questions, answered so."""
    run_id = await api.start("load", n=1, size=5, asks=len(answers))
    for answer in answers:
        events = await api.wait_for(run_id, lambda es: first_question(es) is not None)
        question = first_question(events)
        assert question is not None
        assert (await api.answer(run_id, question["request_id"], answer)).status_code == 202
    assert (await api.settled(run_id))["status"] == "completed"
    return run_id, await api.events(run_id)


async def _fork(api: Api, run_id: str, at_seq: int, **extra: Any) -> Any:
    return await api.http.post(f"/v1/runs/{run_id}/fork", json={"at_seq": at_seq, **extra})


def test_fork_before_a_question_and_answer_differently(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, _key("alice")) as api:
            source, events = await _answered_load(api, "yes")
            question = next(e for e in events if e["type"] == "text_input")
            at = question["seq"] - 1
            response = await _fork(api, source, at)
            assert response.status_code == 201, response.text
            fork = response.json()
            assert fork["forked_from"] == source and fork["fork_at_seq"] == at
            assert fork["workflow"] == "load" and fork["params"] == {"n": 1, "size": 5, "asks": 1}
            forked = await api.wait_for(fork["run_id"], lambda es: first_question(es) is not None)
            asked = first_question(forked)
            assert asked is not None and asked["prompt"] == "question 1 of 1"
            assert (await api.answer(fork["run_id"], asked["request_id"], "no")).status_code == 202
            done = await api.settled(fork["run_id"])
            assert done["status"] == "completed" and done["result"]["answers"] == ["no"]
            assert (await api.run(source))["result"]["answers"] == ["yes"]  # the source is untouched
            forked = await api.events(fork["run_id"])
            assert [_same(e) for e in forked[:at]] == [_same(e) for e in events[:at]]  # identical so far
            assert [e["seq"] for e in forked] == list(range(1, len(forked) + 1))
            retried = forked[at]
            assert retried["type"] == "run_retried" and f"forked from run {source} at seq {at}" in retried["reason"]
            assert sum(1 for e in forked if e["type"] == "workflow_completed") == 1
            assert not [e for e in forked if e["type"] == "error"]

    asyncio.run(scenario())


def test_fork_replays_the_answers_given_before_its_point(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, _key("alice")) as api:
            source, events = await _answered_load(api, "first", "second")
            answered = [e for e in events if e["type"] == "input_answered"]
            at = answered[0]["seq"]  # keep the first answer, ask the second again
            response = await _fork(api, source, at)
            assert response.status_code == 201, response.text
            fork = response.json()["run_id"]
            forked = await api.wait_for(fork, lambda es: first_question(es) is not None)
            asked = first_question(forked)
            assert asked is not None and asked["prompt"] == "question 2 of 2"
            # The first question is replayed from the source, not opened again.
            late = await api.answer(fork, "q1", "changed")
            assert late.status_code in (404, 409), late.text
            assert (await api.answer(fork, asked["request_id"], "other")).status_code == 202
            done = await api.settled(fork)
            assert done["result"]["answers"] == ["first", "other"]

    asyncio.run(scenario())


def test_fork_is_the_owners_and_needs_a_point_in_the_log(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with (
            Api(stack.gateway_url, _key("alice")) as alice,
            Api(stack.gateway_url, _key("bob")) as bob,
            Api(stack.gateway_url, _key("auditor")) as admin,
        ):
            source, events = await _answered_load(alice, "yes")
            assert (await _fork(bob, source, 2)).status_code == 404
            assert (await _fork(admin, source, 2)).status_code == 403
            assert (await _fork(alice, source, 0)).status_code == 422  # no event has seq 0
            last = events[-1]["seq"]
            assert events[-1]["type"] == "workflow_completed"
            assert (await _fork(alice, source, last)).status_code == 409  # not its end
            assert (await _fork(alice, source, last + 5)).status_code == 409
            one = await _fork(alice, source, 2, idempotency_key="f1")
            two = await _fork(alice, source, 2, idempotency_key="f1")
            assert one.status_code == 201 and two.status_code == 200
            assert one.json()["run_id"] == two.json()["run_id"]

    asyncio.run(scenario())


def test_fork_over_grpc(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, _key("alice")) as api:
            source, events = await _answered_load(api, "yes")
        at = next(e for e in events if e["type"] == "text_input")["seq"] - 1
        channel: aio.Channel = stack.grpc_channel(stack.gateway_grpc_address)
        try:
            stub = GatewayStub(channel)
            bob = (("authorization", f"Bearer {_key('bob')}"),)
            with pytest.raises(aio.AioRpcError) as raised:
                await stub.ForkRun(ForkRunRequest(run_id=source, at_seq=at), metadata=bob)
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND
            alice = (("authorization", f"Bearer {_key('alice')}"),)
            reply = await stub.ForkRun(ForkRunRequest(run_id=source, at_seq=at), metadata=alice)
            assert reply.created and reply.run.forked_from == source and reply.run.fork_at_seq == at
            assert json.loads(reply.run.params_json) == {"n": 1, "size": 5, "asks": 1}
        finally:
            await channel.close()

    asyncio.run(scenario())

"""A question's lifecycle against a real nats-server: exactly one outcome wins, and an answer is
stored before it is acknowledged."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
import pytest

from flotilla.processes import Child
from flotilla.errors import RequestAlreadyAnswered, RequestExpired, RequestNotFound, RunFinished
from flotilla.ids import new_run_id
from flotilla.jetstream import ANSWER, CLOSED, EXPIRED, OPEN, Layout, Requests, provision, when_ready


@asynccontextmanager
async def requests(server: Child) -> AsyncIterator[Requests]:
    nc = await nats.connect(server.url)
    try:
        await provision(nc.jetstream(), Layout())
        yield Requests(nc.jetstream())
    finally:
        await nc.close()


def test_an_answer_wins_once_and_a_late_timeout_gives_way_to_it(nats_server: Child) -> None:
    async def scenario() -> None:
        async with requests(nats_server) as store:
            run_id = new_run_id()
            with pytest.raises(RequestNotFound):
                await store.answer(run_id, "q1", "too early")
            opened = await store.open(run_id, "q1")
            assert opened.state == OPEN
            await store.answer(run_id, "q1", "42")
            with pytest.raises(RequestAlreadyAnswered):
                await store.answer(run_id, "q1", "again")
            late = await store.expire(run_id, "q1", opened.open_seq)  # the timer fired just after
            assert late.state == ANSWER and late.value == "42"
            again = await store.open(run_id, "q1")  # a resumed attempt asks the same question
            assert again.state == ANSWER and again.value == "42"

    asyncio.run(scenario())


def test_a_timeout_or_the_run_ending_refuses_later_answers(nats_server: Child) -> None:
    async def scenario() -> None:
        async with requests(nats_server) as store:
            run_id = new_run_id()
            q1, q2, q3 = [await store.open(run_id, q) for q in ("q1", "q2", "q3")]
            assert (await store.expire(run_id, "q1", q1.open_seq)).state == EXPIRED
            with pytest.raises(RequestExpired):
                await store.answer(run_id, "q1", "late")
            assert (await store.close(run_id, "q2", q2.open_seq)).state == CLOSED
            with pytest.raises(RunFinished):
                await store.answer(run_id, "q2", "after the end")
            with pytest.raises(RunFinished):  # open, but the record says the run ended
                await store.answer(run_id, "q3", "x", run_ended="cancelled")
            assert (await store.get(run_id, "q3")).state == OPEN  # type: ignore[union-attr]

    asyncio.run(scenario())


def test_concurrent_answers_store_exactly_one(nats_server: Child) -> None:
    async def scenario() -> None:
        async with requests(nats_server) as store:
            run_id = new_run_id()
            await store.open(run_id, "q1")
            results = await asyncio.gather(
                *(store.answer(run_id, "q1", f"answer {i}") for i in range(10)), return_exceptions=True
            )
            accepted = [i for i, r in enumerate(results) if r is None]
            assert len(accepted) == 1
            assert all(isinstance(r, RequestAlreadyAnswered) for r in results if r is not None)
            stored = await store.get(run_id, "q1")
            assert stored is not None and stored.value == f"answer {accepted[0]}"

    asyncio.run(scenario())


def test_on_an_r3_cluster_a_resumed_attempt_reopening_an_answered_question_gets_the_answer(
    nats_cluster: list[Child],
) -> None:
    """An R3 leader answers a publish whose Nats-Msg-Id it has seen (within the duplicate window)
    with a duplicate ack before it checks the publish's condition: the re-open of an answered
    question "succeeds". Taken for a fresh open, the resumed attempt waited for an answer given
    before it subscribed, for good (the compose cluster test's run stuck after a leader kill)."""

    async def scenario() -> None:
        nc = await nats.connect([node.url for node in nats_cluster])
        try:
            await when_ready(lambda: provision(nc.jetstream(), Layout(replicas=3)), waiting_for="the cluster")
            store = Requests(nc.jetstream(), retry_s=30.0)
            run_id = new_run_id()
            opened = await store.open(run_id, "q1")
            assert opened.state == OPEN
            await store.answer(run_id, "q1", "42")
            again = await store.open(run_id, "q1")  # the attempt that took the run over asks again
            assert again.state == ANSWER and again.value == "42", again
            with pytest.raises(RequestAlreadyAnswered):  # a second answer is refused, not dropped
                await store.answer(run_id, "q1", "again")
            late = await store.expire(run_id, "q1", opened.open_seq)
            assert late.state == ANSWER and late.value == "42"
            q2 = await store.open(run_id, "q2")
            assert (await store.close(run_id, "q2", q2.open_seq)).state == CLOSED
            assert (await store.open(run_id, "q2")).state == CLOSED
        finally:
            await nc.close()

    asyncio.run(scenario())

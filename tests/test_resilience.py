"""Workers dying, draining, garbage on the job queue, exhausted retries, restarts."""

from __future__ import annotations

import asyncio
import collections
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
import nats.aio.msg
import pytest

from flotilla.devstack import LocalStack, StackConfig
from flotilla.jetstream import DEAD_STREAM, JOBS_SUBJECT
from support import (
    SCRIPTED_REPLIES,
    TEST_WORKFLOWS,
    Api,
    assert_well_formed,
    first_question,
    local_stack,
    until,
)


async def _dead_letters(stack: LocalStack, subject: str) -> list[nats.aio.msg.Msg]:
    nc = await stack.nats_connect("dispatcher")
    try:
        sub = await nc.jetstream().subscribe(subject, stream=DEAD_STREAM, ordered_consumer=True)
        found = []
        try:
            while True:
                found.append(await sub.next_msg(timeout=1))
        except nats.errors.TimeoutError:
            return found
    finally:
        await nc.close()


def test_garbage_on_the_job_subject_is_dead_lettered_and_workers_go_on(stack: LocalStack) -> None:
    async def scenario() -> None:
        nc = await stack.nats_connect("dispatcher")
        try:
            # The stream keeps one message per subject: each piece of garbage on its own.
            for n, garbage in enumerate((b"\x00\xff\xfe garbage", b"", b'{"json": "but not a job"}')):
                await nc.jetstream().publish(f"{JOBS_SUBJECT}.garbage{n}", garbage)
        finally:
            await nc.close()
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("load", n=3)
            events, _ = await api.stream(run_id)
            assert_well_formed(run_id, events)
            assert events[-1]["status"] == "completed"
        dead = await _dead_letters(stack, "flotilla.dead.malformed")
        assert len(dead) >= 3
        assert all("malformed job" in (m.headers or {}).get("Flotilla-Reason", "") for m in dead)
        assert all(worker.alive() for worker in stack.workers)

    asyncio.run(scenario())


def test_sigkilled_worker_runs_finish_on_another_worker() -> None:
    with local_stack(workers=2, job_ack_wait_s=3.0) as stack:

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                run_ids = [await api.start("load", n=3, asks=1) for _ in range(20)]
                for run_id in run_ids:
                    await api.wait_for(run_id, lambda es: any(e["type"] == "text_input" for e in es))
                holders = {run_id: (await api.run(run_id))["worker_id"] for run_id in run_ids}
                victim_id, held = collections.Counter(holders.values()).most_common(1)[0]
                assert held >= 1
                victim = next(w for w in stack.workers if w.name == victim_id)
                victim.kill()
                results = await asyncio.gather(*(api.stream(r, answer=lambda q: "after the crash") for r in run_ids))
                for run_id, (events, close_code) in zip(run_ids, results, strict=True):
                    assert close_code == 1000
                    assert_well_formed(run_id, events)
                    assert events[-1]["status"] == "completed"
                    run = await api.run(run_id)
                    if holders[run_id] == victim_id:
                        retried = [e for e in events if e["type"] == "run_retried"]
                        assert len(retried) == 1 and retried[0]["attempt"] == 2
                        assert run["attempts"] == 2 and run["worker_id"] != victim_id
                    else:
                        assert run["attempts"] == 1

        asyncio.run(scenario())


def test_sigterm_hands_held_runs_back_at_once() -> None:
    with local_stack(workers=2, job_ack_wait_s=120.0) as stack:

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                run_id = await api.start("load", n=1, asks=1)
                await api.wait_for(run_id, lambda es: any(e["type"] == "text_input" for e in es))
                holder = (await api.run(run_id))["worker_id"]
                draining = next(w for w in stack.workers if w.name == holder)
                draining.stop()  # SIGTERM: drain 3 s, then hand back; well before the 30 s ack wait
                events = await api.wait_for(
                    run_id, lambda es: any(e["type"] == "run_retried" for e in es), timeout_s=15
                )
                assert (await api.run(run_id))["worker_id"] != holder
                events, _ = await api.stream(run_id, answer=lambda q: "handed over")
                assert_well_formed(run_id, events)
                assert events[-1]["status"] == "completed"

        asyncio.run(scenario())


def test_a_draining_worker_hands_back_runs_waiting_on_a_person_at_once_and_finishes_the_rest() -> None:
    """With a 60 s drain, a SIGTERMed worker lets its computing run finish, hands the runs that
    wait for an answer back at once (nothing of theirs is in flight), and exits long before its
    drain would have ended."""
    with local_stack(workers=0, job_ack_wait_s=120.0) as stack:

        async def scenario() -> None:
            old = stack.add_worker("draining", wait=True, env={"FLOTILLA_WORKER_DRAIN_TIMEOUT_S": "60"})
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                waiting = [await api.start("load", n=1, asks=1) for _ in range(3)]
                for run_id in waiting:
                    await api.wait_for(run_id, lambda es: first_question(es) is not None)
                busy = await api.start("slow_messages", n=30, delay_s=0.1)
                await api.wait_for(busy, lambda es: any(e["type"] == "text_message" for e in es))
                assert {(await api.run(r))["worker_id"] for r in [*waiting, busy]} == {"draining"}
                stack.add_worker("successor")
                assert old.process is not None
                began = time.monotonic()
                old.process.send_signal(signal.SIGTERM)
                for run_id in waiting:  # taken over by the successor, well before 60 s
                    await api.wait_for(run_id, lambda es: any(e["type"] == "run_retried" for e in es), timeout_s=20)
                code = await asyncio.to_thread(old.process.wait, 30)
                exited_s = time.monotonic() - began
                assert code == 0 and exited_s < 20, exited_s
                events, _ = await api.stream(busy)  # finished where it ran, untouched
                assert_well_formed(busy, events)
                assert events[-1]["status"] == "completed" and not any(e["type"] == "run_retried" for e in events)
                assert (await api.run(busy))["worker_id"] == "draining"
                for run_id in waiting:
                    assert (await api.answer(run_id, "q1", "later")).status_code == 202
                    events, _ = await api.stream(run_id)
                    assert_well_formed(run_id, events)
                    assert events[-1]["result"]["answers"] == ["later"]
                    assert sum(e["type"] == "text_input" for e in events) == 1
                    run = await api.run(run_id)
                    assert (run["worker_id"], run["attempts"], run["handbacks"]) == ("successor", 1, 1)

        asyncio.run(scenario())


def test_exhausted_attempts_fail_the_run_and_dead_letter_it() -> None:
    with local_stack(workers=2, job_ack_wait_s=1.0, job_max_attempts=2) as stack:

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                run_id = await api.start("crash_worker")
                await api.wait_for(
                    run_id, lambda es: sum(e["type"] == "workflow_started" for e in es) == 2, timeout_s=60
                )
                for _ in range(300):
                    if not any(w.alive() for w in stack.workers):
                        break
                    await asyncio.sleep(0.1)
                assert not any(w.alive() for w in stack.workers), "both attempts should have killed their worker"
                stack.add_worker("worker-3")
                events, _ = await api.stream(run_id, timeout_s=60)
                assert_well_formed(run_id, events)
                assert events[-1]["status"] == "failed" and "gave up after 2 attempts" in events[-1]["error"]
                assert (await api.run(run_id))["status"] == "failed"
            dead = await _dead_letters(stack, "flotilla.dead.attempts")
            assert len(dead) == 1 and "gave up" in (dead[0].headers or {})["Flotilla-Reason"]

        asyncio.run(scenario())


def test_restart_keeps_run_history() -> None:
    with tempfile.TemporaryDirectory() as tmp:

        def config() -> StackConfig:
            return StackConfig(
                data_dir=Path(tmp) / "data",
                log_dir=Path(tmp) / "logs",
                workers=1,
                with_ui=False,
                nats_port=0,
                dispatcher_port=0,
                gateway_port=0,
                gateway_grpc_port=0,
                ui_port=0,
                env={"FLOTILLA_WORKER_WORKFLOWS": TEST_WORKFLOWS},
            )

        async def first(stack: LocalStack) -> tuple[str, list[dict[str, object]]]:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                run_id = await api.start("load", n=2)
                events, _ = await api.stream(run_id)
                return run_id, events

        async def second(stack: LocalStack, run_id: str, events: list[dict[str, object]]) -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                assert (await api.run(run_id))["status"] == "completed"
                assert await api.events(run_id) == events
                listed = (await api.http.get("/v1/runs")).json()
                assert run_id in {r["run_id"] for r in listed}

        with LocalStack(config()) as stack:
            run_id, events = asyncio.run(first(stack))
        with LocalStack(config()) as stack:
            asyncio.run(second(stack, run_id, events))


def test_nats_restart_mid_run_loses_nothing() -> None:
    with local_stack(workers=1) as stack:

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                run_id = await api.start("load", n=2, asks=2)
                events = await api.wait_for(run_id, lambda es: any(e["type"] == "text_input" for e in es))
                assert stack.nats is not None
                stack.nats.stop()  # JetStream keeps its files; every client reconnects
                stack.nats.start()
                stack.nats.wait_ready(30)
                question = next(e for e in events if e["type"] == "text_input")
                for _ in range(100):  # the dispatcher needs a moment to reconnect
                    response = await api.answer(run_id, question["request_id"], "after restart")
                    if response.status_code != 503:
                        break
                    await asyncio.sleep(0.1)
                assert response.status_code == 202, response.text
                first = question["request_id"]
                events, close_code = await api.stream(
                    run_id, answer=lambda q: None if q["request_id"] == first else "second"
                )
                assert close_code == 1000
                assert_well_formed(run_id, events)
                assert events[-1]["result"]["answers"] == ["after restart", "second"]
                fresh = await api.start("load", n=1)  # the worker pulls new jobs again
                events, _ = await api.stream(fresh)
                assert events[-1]["status"] == "completed"

        asyncio.run(scenario())


def test_dispatcher_down_gives_503_and_recovers() -> None:
    with local_stack(workers=1) as stack:

        async def scenario() -> None:
            assert stack.dispatcher is not None
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                run_id = await api.start("load", n=1, asks=1)
                stack.dispatcher.stop()
                ready = await api.http.get("/readyz")
                assert ready.status_code == 503 and "not ready" in ready.json()["status"]
                down = await api.http.get(f"/v1/runs/{run_id}")
                assert down.status_code == 503 and "dispatcher" in down.json()["detail"]
                stack.dispatcher.start()
                stack.dispatcher.wait_ready(30)
                for _ in range(100):
                    if (await api.http.get("/readyz")).status_code == 200:
                        break
                    await asyncio.sleep(0.1)
                events, close_code = await api.stream(run_id, answer=lambda q: "back")
                assert close_code == 1000 and events[-1]["status"] == "completed"

        asyncio.run(scenario())


def test_in_progress_acks_keep_a_long_run_on_its_worker() -> None:
    with local_stack(workers=2, job_ack_wait_s=3.0) as stack:

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                run_id = await api.start("load", n=1, asks=1)
                await api.wait_for(run_id, lambda es: any(e["type"] == "text_input" for e in es))
                await asyncio.sleep(7.0)  # over two ack waits with the question open
                events, _ = await api.stream(run_id, answer=lambda q: "late")
                assert_well_formed(run_id, events)
                assert not [e for e in events if e["type"] == "run_retried"]
                assert (await api.run(run_id))["attempts"] == 1

        asyncio.run(scenario())


def test_catalogue_shows_only_what_live_workers_serve() -> None:
    fast = {"FLOTILLA_DISPATCHER_WORKFLOW_TTL_S": "1.5", "FLOTILLA_WORKER_HEARTBEAT_S": "0.3"}
    with local_stack(workers=1, env=fast) as stack:

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                assert "load" in {w["name"] for w in (await api.http.get("/v1/workflows")).json()}
                stack.workers[0].stop()
                for _ in range(300):
                    if (await api.http.get("/v1/workflows")).json() == []:
                        break
                    await asyncio.sleep(0.1)
                assert (await api.http.get("/v1/workflows")).json() == []
                # Starting agrees within the catalogue's cache time (1 s; more on a loaded machine).
                for _ in range(100):
                    refused = await api.http.post("/v1/runs", json={"workflow": "load"})
                    if refused.status_code == 404:
                        break
                    await asyncio.sleep(0.1)
                assert refused.status_code == 404 and "not served by any worker" in refused.json()["detail"]
                stack.add_worker("worker-2", wait=True)
                assert (await api.http.post("/v1/runs", json={"workflow": "load"})).status_code == 201

        asyncio.run(scenario())


@pytest.mark.parametrize("nats_nodes", [1, 3])
def test_answer_given_while_no_worker_holds_the_run_is_used_on_takeover(nats_nodes: int) -> None:
    # On an R3 cluster too: the worker taking over re-opens the question within the duplicate
    # window, and the leader acks that as a duplicate (flotilla.jetstream.Requests reads the answer).
    with local_stack(workers=1, job_ack_wait_s=1.0, nats_nodes=nats_nodes) as stack:

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                run_id = await api.start("load", n=1, asks=1)
                events = await api.wait_for(run_id, lambda es: any(e["type"] == "text_input" for e in es))
                stack.workers[0].kill()
                question = next(e for e in events if e["type"] == "text_input")
                assert (await api.answer(run_id, question["request_id"], "kept")).status_code == 202
                stack.add_worker("worker-2")
                events, _ = await api.stream(run_id, timeout_s=60)
                assert_well_formed(run_id, events)
                assert sum(e["type"] == "text_input" for e in events) == 1  # never asked twice
                assert any(e["type"] == "run_retried" for e in events)
                assert events[-1]["status"] == "completed" and events[-1]["result"]["answers"] == ["kept"]

        asyncio.run(scenario())


def test_streams_survive_a_dispatcher_restart() -> None:
    with local_stack(workers=1) as stack:

        async def scenario() -> None:
            assert stack.dispatcher is not None
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                run_id = await api.start("load", n=2, asks=1)
                seen: list[dict[str, Any]] = []
                streaming = asyncio.create_task(api.stream(run_id, received=seen))  # watches, does not answer
                await until(lambda: any(e["type"] == "text_input" for e in seen), "the stream shows the question")
                events = list(seen)
                stack.dispatcher.stop()
                stack.dispatcher.start()
                stack.dispatcher.wait_ready(30)
                question = next(e for e in events if e["type"] == "text_input")
                for _ in range(100):
                    response = await api.answer(run_id, question["request_id"], "after the restart")
                    if response.status_code == 202:
                        break
                    await asyncio.sleep(0.1)
                assert response.status_code == 202, response.text
                streamed, close_code = await streaming
                assert close_code == 1000  # the gateway re-watched by itself
                assert_well_formed(run_id, streamed)
                assert streamed == await api.events(run_id)

        asyncio.run(scenario())


def test_a_run_taken_over_resumes_from_its_log_instead_of_starting_again() -> None:
    """The first worker dies after an LLM completion, a message, a question and its answer. The
    next one replays the recorded completion and answer, re-emits nothing, and goes on live."""
    with local_stack(workers=2, job_ack_wait_s=1.0) as stack, tempfile.TemporaryDirectory() as tmp:

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                run_id = await api.start("resumable", marker=str(Path(tmp) / "crashed"))
                events, close_code = await api.stream(run_id, answer=lambda q: "tides", timeout_s=90)
                assert close_code == 1000
                assert_well_formed(run_id, events)
                kinds = [e["type"] for e in events if e["type"] not in ("workflow_started", "run_retried")]
                assert kinds == [
                    "llm_completion", "text_message", "text_input", "input_answered",  # first attempt
                    "llm_completion", "text_message", "workflow_completed",  # the second, live
                ]  # fmt: skip
                assert sum(e["type"] == "run_retried" for e in events) == 1
                # The recorded completion was replayed (the script went on to its second reply),
                # not asked for again (which would have given the first reply twice).
                messages = [e["body"] for e in events if e["type"] == "text_message"]
                assert messages == SCRIPTED_REPLIES
                assert events[-1]["result"] == {"topic": "tides", "first": messages[0], "second": messages[1]}

        asyncio.run(scenario())


def test_a_worker_started_while_jetstream_has_no_quorum_waits_then_serves() -> None:
    """Two of three NATS nodes down: the node left takes connections, but every JetStream call
    times out. A worker (re)started then must wait for JetStream, not exit (found by the chaos
    suite: a killed worker restarted during an election died at start-up and never came back)."""
    with local_stack(workers=1, nats_nodes=3) as stack:
        down = stack.nats_nodes[1:]
        for node in down:
            node.stop()
        late = stack.add_worker("late")
        # Its start-up calls to JetStream time out or are refused while there is no quorum (how
        # the chaos suite's worker died); it must wait them out. Past two request timeouts:
        time.sleep(12.0)
        assert late.alive(), "the worker exited while JetStream had no quorum"
        for node in down:
            node.start()
        for node in down:
            node.wait_ready(60)
        stack.workers[0].kill()  # only the late worker can take the run

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                run_id = await _retrying_start(api)
                events, _ = await api.stream(run_id, timeout_s=120)
                assert_well_formed(run_id, events)
                assert events[-1]["status"] == "completed"
                assert (await api.settled(run_id))["worker_id"] == "late"

        asyncio.run(scenario())


async def _retrying_start(api: Api) -> str:
    """Start a `load` run once the restored cluster has a JetStream leader again."""
    for _ in range(120):
        response = await api.http.post("/v1/runs", json={"workflow": "load", "params": {"n": 2}})
        if response.status_code in (200, 201):
            return str(response.json()["run_id"])
        await asyncio.sleep(0.5)
    raise AssertionError(f"no run could be started: {response.status_code} {response.text}")

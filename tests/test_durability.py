"""One history per run whatever fails (issue 11): a test per hole, each on a real stack."""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
from pathlib import Path
from typing import Any


from flotilla.devstack import LocalStack
from flotilla.jetstream import DEAD_STREAM, JOBS_STREAM, has_job, job_subject
from flotilla.ui.gateway import Credentials, GatewayClient
from support import (
    Api,
    admin,
    assert_well_formed,
    empty_store,
    fill_store,
    first_question,
    local_stack,
    until,
    wait_for_log_line,
)


def _log_of(stack: LocalStack, name: str) -> Path:
    assert stack.config.log_dir is not None
    return stack.config.log_dir / f"{name}.log"


async def _holder(api: Api, run_id: str, not_: str | None = None, timeout_s: float = 30.0) -> str:
    """The worker holding the run (another than `not_`), once the record says it runs there."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        run = await api.run(run_id)
        if run["status"] == "running" and run["worker_id"] and run["worker_id"] != not_:
            return str(run["worker_id"])
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no (new) holder: {run}")
        await asyncio.sleep(0.05)


def _agrees(run: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """The record says what the log's terminal event says."""
    done = events[-1]
    assert done["type"] == "workflow_completed"
    assert (run["status"], run["result"], run["error"] or "") == (done["status"], done["result"], done["error"])


# Hole 1: fencing ---------------------------------------------------------------------------------


def test_a_worker_paused_past_the_duplicate_window_writes_nothing_when_it_wakes() -> None:
    """The issue's reproduction: freeze the worker holding a run that waits for an answer, let
    another worker take it over and finish it, thaw the first long after the dedup window."""
    env = {"FLOTILLA_DISPATCHER_DUPLICATE_WINDOW_S": "1"}
    with local_stack(workers=2, job_ack_wait_s=2.0, env=env) as stack:

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                run_id = await api.start("load", n=2, asks=1)
                await api.wait_for(run_id, lambda es: first_question(es) is not None)
                frozen_id = await _holder(api, run_id)
                frozen = next(w for w in stack.workers if w.name == frozen_id)
                frozen.pause()
                try:
                    await api.wait_for(run_id, lambda es: any(e["type"] == "run_retried" for e in es))
                    assert (await api.answer(run_id, "q1", "to the new holder")).status_code == 202
                    events, _ = await api.stream(run_id)
                    await asyncio.sleep(1.5)  # past the (1 s) duplicate window before the thaw
                finally:
                    frozen.resume()
                # The thawed worker learns it lost the run, and stops it without writing.
                await asyncio.to_thread(wait_for_log_line, _log_of(stack, frozen_id), "took the run over")
                after = await api.events(run_id)
                assert after == events
                assert_well_formed(run_id, after)
                assert sum(e["type"] == "text_input" for e in after) == 1
                run = await api.settled(run_id)
                _agrees(run, after)
                assert run["status"] == "completed" and run["attempts"] == 2 and run["worker_id"] != frozen_id
                assert after[-1]["result"]["answers"] == ["to the new holder"]
                assert frozen.alive()

        asyncio.run(scenario())


def test_a_question_that_cannot_be_stored_fails_the_run_instead_of_waiting_for_an_answer() -> None:
    """A question larger than a run may write (1 MiB an event) is refused before it is sent: the
    run fails at once with that reason instead of waiting a day for an answer nobody can give.
    (Appends the server refuses for other reasons fail the attempt the same way: the writer's
    flush before a question raises, see libs/flotilla/jetstream/events_test.py.)"""
    with local_stack(workers=1, job_ack_wait_s=2.0, job_max_attempts=2) as stack:

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                # Larger than a run may write (1 MiB an event): refused before anything is sent.
                run_id = await api.start("huge_question", bytes=2_000_000)
                events, _ = await api.stream(run_id, timeout_s=60)
                assert not any(e["type"] == "text_input" for e in events)
                assert events[-1]["status"] == "failed" and "larger than a run may write" in events[-1]["error"]
                _agrees(await api.settled(run_id), events)

        asyncio.run(scenario())


# Hole 2: start ------------------------------------------------------------------------------------


def test_a_run_whose_job_was_lost_gets_it_back() -> None:
    """The record is written, the job is not (the dispatcher died, or NATS refused): the run is
    queued again by the dispatcher's upkeep, and by an idempotent retry of the start."""
    with local_stack(workers=1) as stack:

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                stack.workers[0].stop()  # nobody pulls: the jobs stay where we can lose them
                plain = await api.start("load", n=1)
                body = {"workflow": "load", "params": {"n": 1}, "idempotency_key": "lost-job"}
                keyed = (await api.http.post("/v1/runs", json=body)).json()["run_id"]
                nc = await admin(stack)
                try:
                    js = nc.jetstream()
                    for run_id in (plain, keyed):
                        job = await js.get_last_msg(JOBS_STREAM, job_subject(run_id), direct=True)
                        assert job.seq is not None
                        await js.delete_msg(JOBS_STREAM, job.seq)
                        assert not await has_job(js, run_id)
                    again = await api.http.post("/v1/runs", json=body)
                    assert again.status_code == 200 and again.json()["run_id"] == keyed
                    assert await has_job(js, keyed)  # the retry queued it at once
                finally:
                    await nc.close()
                stack.add_worker("worker-2")
                for run_id in (plain, keyed):  # the plain one after the upkeep found it
                    events, _ = await api.stream(run_id, timeout_s=60)
                    assert_well_formed(run_id, events)
                    assert events[-1]["status"] == "completed"

        asyncio.run(scenario())


# Hole 3: answers ----------------------------------------------------------------------------------


def test_an_answer_is_never_invented_or_lost_whenever_the_dispatcher_dies() -> None:
    """SIGKILL the dispatcher while answers are in flight, many times. An answer acknowledged
    (202) is the one the run uses; a retried answer whose first try was stored finds it (409)
    and the run uses it; no run ever gets an answer nobody gave."""
    with local_stack(workers=2) as stack:
        assert stack.dispatcher is not None
        dispatcher = stack.dispatcher

        async def answer_until_stored(api: Api, run_id: str, value: str) -> None:
            for _ in range(400):
                try:
                    response = await api.answer(run_id, "q1", value)
                except Exception:
                    response = None  # the gateway had no dispatcher to ask
                if response is not None and response.status_code in (202, 409):
                    return
                await asyncio.sleep(0.05)
            raise AssertionError("the answer was never taken")

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                for round_ in range(8):
                    run_ids = [await api.start("load", n=1, asks=1) for _ in range(5)]
                    for run_id in run_ids:
                        await api.wait_for(run_id, lambda es: first_question(es) is not None)
                    answering = [
                        asyncio.create_task(answer_until_stored(api, run_id, f"{run_id}/{round_}"))
                        for run_id in run_ids
                    ]
                    await asyncio.sleep(random.uniform(0.0, 0.01))
                    dispatcher.kill()  # mid-answer
                    dispatcher.start()
                    await asyncio.to_thread(dispatcher.wait_ready, 30)
                    await asyncio.gather(*answering)
                    for run_id in run_ids:
                        events, _ = await api.stream(run_id, timeout_s=60)
                        assert_well_formed(run_id, events)
                        assert events[-1]["result"]["answers"] == [f"{run_id}/{round_}"]

        asyncio.run(scenario())


# Hole 4: attempts ---------------------------------------------------------------------------------


def test_hand_backs_are_not_attempts() -> None:
    """Drain the worker holding a run four times with two attempts allowed: each hand-back
    reaches another worker at once, and the run still completes, as its first attempt."""
    with local_stack(workers=2, job_ack_wait_s=60.0, job_max_attempts=2) as stack:

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                run_id = await api.start("load", n=1, asks=1)
                await api.wait_for(run_id, lambda es: first_question(es) is not None)
                holder = await _holder(api, run_id)
                for n in range(4):
                    stack.add_worker(f"extra-{n}")
                    draining = next(w for w in stack.workers if w.name == holder)
                    await asyncio.to_thread(draining.stop)  # SIGTERM: drain 3 s, then hand back
                    holder = await _holder(api, run_id, not_=holder, timeout_s=20)  # far below the ack wait
                assert (await api.answer(run_id, "q1", "finally")).status_code == 202
                events, _ = await api.stream(run_id)
                assert_well_formed(run_id, events)
                retried = [e for e in events if e["type"] == "run_retried"]
                assert len(retried) == 4 and all(e["handed_back"] and e["attempt"] == 1 for e in retried)
                assert sum(e["type"] == "text_input" for e in events) == 1
                run = await api.settled(run_id)
                assert run["status"] == "completed" and run["attempts"] == 1 and run["handbacks"] == 4

        asyncio.run(scenario())


def test_an_error_on_the_last_attempt_still_ends_the_run_failed_with_a_dead_letter() -> None:
    """Both attempts kill their worker; the events' share of the store is full when the next
    worker comes, so it cannot write how the run ended. Once there is room again the run ends
    failed and its job is dead-lettered."""
    with local_stack(workers=1, job_ack_wait_s=1.0, job_max_attempts=2, max_file_store="64MB") as stack:

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                run_id = await api.start("crash_worker")
                await api.wait_for(run_id, lambda es: sum(e["type"] == "workflow_started" for e in es) == 1)
                await asyncio.to_thread(stack.workers[0].process.wait)  # type: ignore[union-attr]
                stack.add_worker("worker-2")
                await api.wait_for(
                    run_id, lambda es: sum(e["type"] == "workflow_started" for e in es) == 2, timeout_s=60
                )
                await asyncio.to_thread(stack.workers[1].process.wait)  # type: ignore[union-attr]
                await fill_store(stack)
                stack.add_worker("worker-3")
                await asyncio.to_thread(wait_for_log_line, _log_of(stack, "worker-3"), "append failed; retrying", 60)
                await empty_store(stack)
                events, _ = await api.stream(run_id, timeout_s=60)
                assert_well_formed(run_id, events)
                assert events[-1]["status"] == "failed" and "gave up after 2 attempts" in events[-1]["error"]
                _agrees(await api.settled(run_id), events)
            nc = await admin(stack)
            try:
                sub = await nc.jetstream().subscribe(
                    "flotilla.dead.attempts", stream=DEAD_STREAM, ordered_consumer=True
                )
                dead = await sub.next_msg(timeout=5)
                assert "gave up" in (dead.headers or {})["Flotilla-Reason"]
            finally:
                await nc.close()

        asyncio.run(scenario())


# Hole 5: input to finished runs -------------------------------------------------------------------


def test_an_answer_to_a_finished_run_is_refused(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("load", n=1, asks=1)
            await api.wait_for(run_id, lambda es: first_question(es) is not None)
            assert (await api.http.post(f"/v1/runs/{run_id}/cancel")).status_code == 202
            events, _ = await api.stream(run_id)
            assert events[-1]["status"] == "cancelled"
            refused = await api.answer(run_id, "q1", "too late")
            assert refused.status_code == 409 and "finished" in refused.json()["detail"]
            assert (await api.events(run_id)) == events  # nothing was added

    asyncio.run(scenario())


# Hole 6: retention --------------------------------------------------------------------------------


def test_a_run_waiting_longer_than_the_retention_keeps_its_record_and_log_until_it_ends() -> None:
    with local_stack(workers=1, env={"FLOTILLA_DISPATCHER_EVENT_MAX_AGE_S": "2"}) as stack:

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                run_id = await api.start("load", n=3, asks=1)
                before = await api.wait_for(run_id, lambda es: first_question(es) is not None)
                await asyncio.sleep(5.0)  # the person takes longer than the retention
                assert (await api.run(run_id))["status"] == "running"
                assert (await api.events(run_id))[: len(before)] == before
                assert (await api.answer(run_id, "q1", "here at last")).status_code == 202
                events, _ = await api.stream(run_id)
                assert_well_formed(run_id, events)
                assert events[: len(before)] == before and events[-1]["status"] == "completed"
                for _ in range(300):  # finished: now the retention applies
                    if (await api.http.get(f"/v1/runs/{run_id}")).status_code == 404:
                        break
                    await asyncio.sleep(0.1)
                assert (await api.http.get(f"/v1/runs/{run_id}")).status_code == 404
                assert (await api.http.get(f"/v1/runs/{run_id}/events")).status_code == 404

        asyncio.run(scenario())


# Hole 7: reads ------------------------------------------------------------------------------------


def test_a_history_larger_than_a_grpc_message_is_paged(stack: LocalStack) -> None:
    """6 MB of history: over the REST API in pages, over the gateway's gRPC API (the UI's client,
    default 4 MB message limit) by ListEvents pages and by WatchRun batches."""

    async def scenario() -> str:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("load", n=60, size=100_000)
            streamed, close_code = await api.stream(run_id, hidden=False)
            assert close_code == 1000 and len(streamed) == 62
            first = (await api.http.get(f"/v1/runs/{run_id}/events", params={"limit": 25})).json()
            assert 1 <= len(first["events"]) < 25 and first["more"]  # a page also stops at ~1 MB
            assert await api.events(run_id) == streamed
            return run_id

    run_id = asyncio.run(scenario())
    client = GatewayClient(stack.gateway_grpc_address, ca_file=stack.ca_file)
    try:
        credentials = Credentials(token=stack.dev_api_key)
        listed = client.list_events(credentials, run_id)
        assert [e.seq for e in listed] == list(range(1, 63))
        watched = client.next_events(credentials, run_id, after_seq=0, wait_s=10)
        assert watched and watched[0].seq == 1
    finally:
        client.close()


# Hole 8: tools ------------------------------------------------------------------------------------

TOOL_SCRIPT = [{"tool_calls": [{"name": "book_table", "arguments": {"city": "Oslo"}}]}, "Booked."]


def test_a_tool_that_ran_before_the_crash_does_not_run_again() -> None:
    env = {"FLOTILLA_LLM_SCRIPTED_REPLIES": json.dumps(TOOL_SCRIPT)}
    with local_stack(workers=2, job_ack_wait_s=1.0, env=env) as stack, tempfile.TemporaryDirectory() as tmp:

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                for workflow in ("side_effect_tool", "async_side_effect"):
                    stack.add_worker(f"spare-for-{workflow}")  # each run kills one worker
                    ledger, marker = Path(tmp) / f"{workflow}.ledger", Path(tmp) / f"{workflow}.crashed"
                    run_id = await api.start(workflow, ledger=str(ledger), marker=str(marker))
                    events, _ = await api.stream(run_id, timeout_s=90)
                    assert_well_formed(run_id, events)
                    assert marker.exists() and any(e["type"] == "run_retried" for e in events)
                    assert events[-1]["status"] == "completed", events[-1]
                    lines = ledger.read_text().splitlines()
                    assert len(lines) == 1 and lines[0].startswith(f"{run_id}:tool:1"), lines  # once, with its key
                    recorded = [e for e in events if e["type"] == "function_call_execution"]
                    assert len(recorded) == 1 and recorded[0]["step"] == 1

        asyncio.run(scenario())


# Hole 9: divergence -------------------------------------------------------------------------------


def _diverging_run(stack: LocalStack, tmp: str) -> list[dict[str, Any]]:
    async def scenario() -> list[dict[str, Any]]:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("diverges", marker=str(Path(tmp) / "crashed"))
            events, _ = await api.stream(run_id, answer=lambda q: "yes", timeout_s=90)
            assert_well_formed(run_id, events)
            _agrees(await api.settled(run_id), events)
            return events

    return asyncio.run(scenario())


def test_a_resumed_run_that_takes_another_path_fails_naming_the_step() -> None:
    with local_stack(workers=2, job_ack_wait_s=1.0) as stack, tempfile.TemporaryDirectory() as tmp:
        events = _diverging_run(stack, tmp)
        assert events[-1]["status"] == "failed"
        assert "Nondeterminism" in events[-1]["error"] and "step 1 (seq 2)" in events[-1]["error"]
        assert "took path A" in events[-1]["error"] and "took path B" in events[-1]["error"]
        bodies = [e["body"] for e in events if e["type"] == "text_message"]
        assert bodies == ["took path A"]  # the other path never reached the log


def test_the_continue_policy_marks_where_the_paths_part_and_goes_on() -> None:
    env = {"FLOTILLA_WORKER_ON_DIVERGENCE": "continue"}
    with local_stack(workers=2, job_ack_wait_s=1.0, env=env) as stack, tempfile.TemporaryDirectory() as tmp:
        events = _diverging_run(stack, tmp)
        assert events[-1]["status"] == "completed"
        kinds = [(e["type"], e.get("body") or e.get("short")) for e in events if e["type"] in ("text_message", "error")]
        assert kinds[:3] == [
            ("text_message", "took path A"),
            ("error", "the resumed run left its history here"),
            ("text_message", "took path B"),
        ]


# Hole 10: log growth ------------------------------------------------------------------------------


def test_completions_are_recorded_without_the_conversation_and_hidden_unless_asked(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("learning_chat", turns=2)
            shown, _ = await api.stream(run_id, answer=lambda q: "Physics", hidden=False)
            full = await api.events(run_id)
            completions = [e for e in full if e["type"] == "llm_completion"]
            assert len(completions) == 3
            assert all(e["request"] is None and len(e["request_sha256"]) == 64 for e in completions)
            assert not any(e["type"] == "llm_completion" for e in shown)
            assert shown == [e for e in full if e["type"] != "llm_completion"]
            assert shown == await api.events(run_id, hidden=False)

    asyncio.run(scenario())


def test_worker_credentials_cannot_answer_questions(stack: LocalStack) -> None:
    async def scenario() -> None:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        nc = await stack.nats_connect("worker", error_cb=on_error)
        try:
            await nc.publish("flotilla.inputs.01a0000000000000000000000.q1.answer", b"forged")
            await nc.flush()
            await until(lambda: any("permissions violation" in e.lower() for e in errors), f"refused ({errors})")
        finally:
            await nc.close()

    asyncio.run(scenario())

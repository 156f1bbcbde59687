"""The v1 API against the real stack: the happy paths."""

from __future__ import annotations

import asyncio
import uuid

from flotilla.devstack import LocalStack
from support import SCRIPTED_REPLIES, Api, assert_well_formed, local_stack


def test_lists_the_served_workflows(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            response = await api.http.get("/v1/workflows")
            assert response.status_code == 200
            names = {w["name"]: w["description"] for w in response.json()}
            assert {"learning_chat", "load"} <= set(names)
            assert all(names.values())

    asyncio.run(scenario())


def test_load_run_streams_every_event_and_completes(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("load", n=5, size=10, asks=2)
            events, close_code = await api.stream(run_id, answer=lambda q: f"answer to {q['prompt']}")
            assert close_code == 1000
            assert_well_formed(run_id, events)
            kinds = [e["type"] for e in events]
            assert kinds[0] == "workflow_started"
            assert kinds.count("text_input") == 2 and kinds.count("input_answered") == 2
            assert [e["body"] for e in events if e["type"] == "text_message"][-1] == "echo: answer to question 2 of 2"
            assert events[-1]["status"] == "completed"
            assert events[-1]["result"]["answers"] == ["answer to question 1 of 2", "answer to question 2 of 2"]
            run = await api.run(run_id)
            assert run["status"] == "completed" and run["attempts"] == 1 and run["worker_id"].startswith("worker-")
            assert await api.events(run_id) == events  # the log and the live stream agree

    asyncio.run(scenario())


def test_learning_chat_over_rest_and_websocket(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("learning_chat", turns=2)
            events, close_code = await api.stream(run_id, answer=lambda q: "Physics")
            assert close_code == 1000
            assert_well_formed(run_id, events)
            question = next(e for e in events if e["type"] == "text_input")
            assert question["request_id"] and question["suggestions"]
            messages = [e for e in events if e["type"] == "text_message"]
            pairs = [(m["sender"], m["recipient"]) for m in messages]
            assert pairs == [("student", "teacher"), ("teacher", "student")] * 2
            assert messages[0]["body"] == "Teach me about Physics."
            assert messages[1]["body"] == SCRIPTED_REPLIES[0]  # the teacher speaks through the model
            completions = [e for e in events if e["type"] == "llm_completion"]
            assert len(completions) == 3 and all(e["hidden"] for e in completions)
            assert completions[0]["completion"]["choices"][0]["message"]["content"] == SCRIPTED_REPLIES[0]
            assert events[-1]["status"] == "completed" and events[-1]["result"] == messages[-1]["body"]

    asyncio.run(scenario())


def test_answer_over_rest_and_stream_resumes_after_seq(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("load", n=2, asks=1)
            events = await api.wait_for(run_id, lambda es: any(e["type"] == "text_input" for e in es))
            question = next(e for e in events if e["type"] == "text_input")
            response = await api.answer(run_id, question["request_id"], "42")
            assert response.status_code == 202, response.text
            rest, close_code = await api.stream(run_id, after=question["seq"])
            assert close_code == 1000
            assert [e["seq"] for e in rest] == list(range(question["seq"] + 1, question["seq"] + 1 + len(rest)))
            assert rest[0]["type"] == "input_answered" and rest[0]["value"] == "42"
            assert_well_formed(run_id, events[: question["seq"]] + rest)
            assert await api.events(run_id, after=question["seq"]) == rest

    asyncio.run(scenario())


def test_multiple_choice_carries_choices_and_default(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("choose")
            events, _ = await api.stream(run_id, answer=lambda q: "yes")
            question = next(e for e in events if e["type"] == "multiple_choice")
            assert question["choices"] == ["yes", "no"] and question["default"] == "no" and question["single"]
            assert events[-1]["result"] == "yes"

    asyncio.run(scenario())


def test_idempotency_key_returns_the_same_run(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            body = {"workflow": "load", "params": {"n": 1}, "idempotency_key": f"key-{uuid.uuid4()}"}
            first = await api.http.post("/v1/runs", json=body)
            second = await api.http.post("/v1/runs", json=body)
            assert first.status_code == 201 and second.status_code == 200
            assert first.json()["run_id"] == second.json()["run_id"]
            other = await api.http.post("/v1/runs", json={**body, "idempotency_key": f"key-{uuid.uuid4()}"})
            assert other.status_code == 201 and other.json()["run_id"] != first.json()["run_id"]

    asyncio.run(scenario())


def test_list_runs_newest_first_with_filters(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            older = await api.start("load", n=1)
            newer = await api.start("load", n=1, asks=1)
            await api.wait_for(older, lambda es: bool(es) and es[-1]["type"] == "workflow_completed")
            await api.wait_for(newer, lambda es: any(e["type"] == "text_input" for e in es))
            runs = (await api.http.get("/v1/runs", params={"limit": 2})).json()
            assert [r["run_id"] for r in runs] == [newer, older]
            running = (await api.http.get("/v1/runs", params={"status": "running", "limit": 1000})).json()
            assert newer in {r["run_id"] for r in running} and older not in {r["run_id"] for r in running}
            completed = (await api.http.get("/v1/runs", params={"status": "completed", "limit": 1000})).json()
            assert older in {r["run_id"] for r in completed}
            await api.http.post(f"/v1/runs/{newer}/cancel")

    asyncio.run(scenario())


def test_cancel_while_waiting_for_input(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("load", n=1, asks=1)
            await api.wait_for(run_id, lambda es: any(e["type"] == "text_input" for e in es))
            response = await api.http.post(f"/v1/runs/{run_id}/cancel")
            assert response.status_code == 202
            events, close_code = await api.stream(run_id)
            assert close_code == 1000
            assert_well_formed(run_id, events)
            assert events[-1]["status"] == "cancelled"
            assert (await api.run(run_id))["status"] == "cancelled"
            again = await api.http.post(f"/v1/runs/{run_id}/cancel")
            assert again.status_code == 409 and "already finished" in again.json()["detail"]

    asyncio.run(scenario())


def test_failing_workflow_ends_failed_with_an_error_event(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("raises")
            events, _ = await api.stream(run_id)
            assert_well_formed(run_id, events)
            error = next(e for e in events if e["type"] == "error")
            assert "boom" in error["short"]
            # The traceback stays in the worker's log (FLOTILLA_WORKER_EXPOSE_TRACEBACKS shows it).
            assert error["long"] == "" and "Traceback" not in str(events)
            assert events[-1]["status"] == "failed" and "boom" in events[-1]["error"]
            assert (await api.run(run_id))["status"] == "failed"

    asyncio.run(scenario())


def test_health_and_openapi(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            assert (await api.http.get("/healthz")).json() == {"status": "ok"}
            served = len((await api.http.get("/v1/workflows")).json())
            assert served > 0
            assert (await api.http.get("/readyz")).json() == {"status": "ready", "workflows": served}
            strict = await api.http.get("/readyz", params={"min_workflows": served})
            assert strict.status_code == 200, strict.text
            too_many = await api.http.get("/readyz", params={"min_workflows": served + 1})
            assert too_many.status_code == 503
            assert too_many.json() == {
                "status": "not ready",
                "detail": f"live workers serve {served} workflows; at least {served + 1} required",
                "workflows": served,
            }
            for bad in ("-1", "many", "1e9"):
                assert (await api.http.get("/readyz", params={"min_workflows": bad})).status_code == 422
            spec = (await api.http.get("/openapi.json")).json()
            assert {"/v1/runs", "/v1/runs/{run_id}/events", "/v1/runs/{run_id}/input", "/v1/workflows"} <= set(
                spec["paths"]
            )

    asyncio.run(scenario())


def test_readyz_says_when_no_worker_serves_anything() -> None:
    """Ready (the dispatcher and NATS answer) is not serving: with no worker, /readyz says 0
    workflows and its strict form refuses, until a worker advertises its catalogue."""
    with local_stack(workers=0) as stack:

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                assert (await api.http.get("/readyz")).json() == {"status": "ready", "workflows": 0}
                strict = await api.http.get("/readyz", params={"min_workflows": 1})
                assert strict.status_code == 503
                assert strict.json()["detail"] == "live workers serve 0 workflows; at least 1 required"
                assert (await api.http.post("/v1/runs", json={"workflow": "load"})).status_code == 404

                await asyncio.to_thread(stack.add_worker, "worker-1", wait=True)
                strict = await api.http.get("/readyz", params={"min_workflows": 1})
                assert strict.status_code == 200 and strict.json()["workflows"] > 0

        asyncio.run(scenario())

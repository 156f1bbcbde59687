"""The workflow runtime against the real stack: every event kind, both input kinds, timeouts,
refused answers, declared params, and AG2 agents bridged to run events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from flotilla.devstack import LocalStack
from support import Api, assert_well_formed, local_stack


def _kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def test_plain_def_workflow_emits_every_kind(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("every_kind")
            answers = {"text_input": "hunter2", "multiple_choice": "a,c"}
            events, _ = await api.stream(run_id, answer=lambda q: answers[q["type"]])
            assert_well_formed(run_id, events)
            by_kind = {e["type"]: e for e in events}
            assert by_kind["text_message"]["body"] == "hello"
            assert (by_kind["text_message"]["sender"], by_kind["text_message"]["recipient"]) == ("alice", "bob")
            assert by_kind["system_message"]["message"] == {"note": "system notice"}
            assert by_kind["error"]["short"] == "a visible error" and by_kind["error"]["long"] == "with details"
            call = by_kind["suggested_function_call"]
            assert (call["function_name"], call["arguments"], call["call_id"]) == ("add", {"a": 1, "b": 2}, "c1")
            assert by_kind["function_call_execution"]["retval"] == 3
            assert by_kind["text_input"]["password"] and by_kind["text_input"]["suggestions"] == ["hunter2"]
            choice = by_kind["multiple_choice"]
            assert choice["choices"] == ["a", "b", "c"] and choice["default"] == "b" and not choice["single"]
            shown = [e["value"] for e in events if e["type"] == "input_answered"]
            assert shown == ["********", "a,c"]  # the password never reaches the log
            assert events[-1]["result"] == {"secret_length": 7, "picked": "a,c"}

    asyncio.run(scenario())


def test_timeout_uses_the_default_or_fails_the_run(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("timeouts", timeout_s=0.3)
            events, _ = await api.stream(run_id)
            answered = next(e for e in events if e["type"] == "input_answered")
            assert answered["timed_out"] and answered["value"] == "the default"
            assert events[-1]["status"] == "completed" and events[-1]["result"] == "the default"
            late = await api.answer(run_id, next(e for e in events if e["type"] == "text_input")["request_id"], "late")
            assert late.status_code == 409 and "expired" in late.json()["detail"]

            failing = await api.start("timeouts", timeout_s=0.3, fail=True)
            events, _ = await api.stream(failing)
            assert_well_formed(failing, events)
            assert events[-1]["status"] == "failed" and "InputTimeout" in events[-1]["error"]
            assert any(e["type"] == "error" and "no answer" in e["short"] for e in events)

    asyncio.run(scenario())


def test_declared_params_are_checked_before_a_run_exists(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            bad = await api.http.post("/v1/runs", json={"workflow": "typed_params", "params": {"times": 9}})
            assert bad.status_code == 422
            detail = bad.json()["detail"]
            assert "name" in detail and "times" in detail and "typed_params" in detail
            wrong_type = await api.http.post("/v1/runs", json={"workflow": "typed_params", "params": {"name": 5}})
            assert wrong_type.status_code == 422 and "name" in wrong_type.json()["detail"]
            run_id = await api.start("typed_params", name="ada")
            events, _ = await api.stream(run_id)
            assert events[-1]["result"] == "hello ada"  # the declared default filled in
            workflows = (await api.http.get("/v1/workflows")).json()
            assert any(w["name"] == "typed_params" for w in workflows)

    asyncio.run(scenario())


def test_ag2_agents_become_run_events(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("ag2_chat")
            events, _ = await api.stream(run_id)
            assert_well_formed(run_id, events)
            messages = [(e["sender"], e["recipient"], e["body"]) for e in events if e["type"] == "text_message"]
            assert messages == [
                ("student", "teacher", "Hi teacher"),
                ("teacher", "student", "It is 4."),
                ("student", "teacher", "What is 2+2?"),
                ("teacher", "student", "You are welcome."),
            ]
            assert events[-1]["status"] == "completed"

    asyncio.run(scenario())


def test_ag2_run_response_input_requests_are_questions(stack: LocalStack) -> None:
    """AG2's `run()` chats in a thread of its own and hands out a RunResponse: its messages reach
    the run from that thread, its InputRequestEvents become questions."""

    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("ag2_run_human")
            replies = iter(["do the thing", "exit"])
            events, _ = await api.stream(run_id, answer=lambda q: next(replies))
            assert_well_formed(run_id, events)
            asked = [e for e in events if e["type"] == "text_input"]
            assert asked and all(q["sender"] == "person" for q in asked)
            assert asked[0]["prompt"].startswith("Replying as person.")
            sent = [(e["sender"], e["recipient"], e["body"]) for e in events if e["type"] == "text_message"]
            assert sent[:3] == [
                ("person", "assistant", "Help me"),
                ("assistant", "person", "What should I do?"),
                ("person", "assistant", "do the thing"),
            ]
            assert events[-1]["status"] == "completed" and events[-1]["result"] == "Done."

    asyncio.run(scenario())


def test_ag2_human_input_mode_always_asks_the_person(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("ag2_human")
            replies = iter(["do the thing", "exit"])
            events, _ = await api.stream(run_id, answer=lambda q: next(replies))
            assert_well_formed(run_id, events)
            asked = [e for e in events if e["type"] == "text_input"]
            assert asked and all(q["sender"] == "person" for q in asked)  # the agent AG2 asks for
            sent = [(e["sender"], e["body"]) for e in events if e["type"] == "text_message"]
            assert ("person", "do the thing") in sent
            assert events[-1]["status"] == "completed"

    asyncio.run(scenario())


def test_ag2_tool_call_approved_and_rejected(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            for decision, expected in (("approve", "sunny in Paris"), ("reject", "the person rejected the call")):
                run_id = await api.start("ag2_tool_approval")
                # The answer is used within this iteration.
                events, _ = await api.stream(run_id, answer=lambda q: decision)  # noqa: B023
                assert_well_formed(run_id, events)
                kinds = _kinds(events)
                order = [
                    kinds.index(k) for k in ("suggested_function_call", "multiple_choice", "function_call_execution")
                ]
                assert order == sorted(order)
                call = next(e for e in events if e["type"] == "suggested_function_call")
                assert call["function_name"] == "get_weather" and call["arguments"] == {"city": "Paris"}
                assert call["sender"] == "assistant"
                executed = next(e for e in events if e["type"] == "function_call_execution")
                assert executed["function_name"] == "get_weather" and executed["retval"] == expected
                assert executed["call_id"] == call["call_id"]
                assert events[-1]["status"] == "completed"

    asyncio.run(scenario())


def test_cancel_while_a_plain_def_workflow_waits(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("ag2_human")
            await api.wait_for(run_id, lambda es: any(e["type"] == "text_input" for e in es))
            assert (await api.http.post(f"/v1/runs/{run_id}/cancel")).status_code == 202
            events, _ = await api.stream(run_id, timeout_s=10)
            assert_well_formed(run_id, events)
            assert events[-1]["status"] == "cancelled"
            await asyncio.sleep(0.3)  # the workflow's thread must not write after the end
            assert await api.events(run_id) == events

    asyncio.run(scenario())


def test_an_auto_pattern_selects_speakers_on_the_runs_llm() -> None:
    """The manager an AG2 pattern builds is put on the run's LLM by the bridge: its speaker
    selection is a recorded completion like the agents' replies."""
    script = ["Plan: bread, cheese, a blanket.", "writer", "Bring bread, cheese and a blanket."]
    with local_stack(workers=1, env={"FLOTILLA_LLM_SCRIPTED_REPLIES": json.dumps(script)}) as stack:

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                run_id = await api.start("ag2_auto_pattern")
                events, _ = await api.stream(run_id)
                assert_well_formed(run_id, events)
                assert events[-1]["status"] == "completed", events[-1]
                said = [(e["sender"], e["body"]) for e in events if e["type"] == "text_message"]
                assert ("planner", script[0]) in said and ("writer", script[2]) in said
                assert sum(e["type"] == "llm_completion" for e in events) == 3

        asyncio.run(scenario())

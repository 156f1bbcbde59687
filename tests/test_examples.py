"""The example workflows the local stack serves, on the scripted model."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

from flotilla.devstack import LocalStack
from support import Api, assert_well_formed, local_stack


def test_group_chat_of_three_agents_in_turn(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("group_chat", rounds=4, question="Plan a picnic.")
            events, _ = await api.stream(run_id)
            assert_well_formed(run_id, events)
            speakers = [e["sender"] for e in events if e["type"] == "text_message"]
            assert speakers[:4] == ["planner", "critic", "writer", "planner"]
            assert events[-1]["status"] == "completed"

    asyncio.run(scenario())


def test_tool_approval_example_approved_and_rejected() -> None:
    script = [
        {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]},
        "Here is the weather you asked for.",
    ]
    with local_stack(workers=1, env={"FLOTILLA_LLM_SCRIPTED_REPLIES": json.dumps(script)}) as stack:

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                for decision, expected in (("approve", "sunny"), ("reject", "rejected")):
                    run_id = await api.start("tool_approval", city="Oslo")
                    # The answer is used within this iteration.
                    events, _ = await api.stream(run_id, answer=lambda q: decision)  # noqa: B023
                    assert_well_formed(run_id, events)
                    call = next(e for e in events if e["type"] == "suggested_function_call")
                    assert call["function_name"] == "get_weather" and call["arguments"] == {"city": "Oslo"}
                    question = next(e for e in events if e["type"] == "multiple_choice")
                    assert question["choices"] == ["approve", "reject"] and question["default"] == "reject"
                    result = next(e for e in events if e["type"] == "function_call_execution")
                    assert expected in result["retval"] and result["call_id"] == call["call_id"]
                    assert events[-1]["status"] == "completed"
                    assert [e["type"] for e in events].index("suggested_function_call") < [
                        e["type"] for e in events
                    ].index("multiple_choice")

        asyncio.run(scenario())


SUPPORT_SCRIPT = [
    {"tool_calls": [{"name": "classify_request", "arguments": {"topic": "technical"}}]},
    "Clear the export cache in Settings, then export again. Did that help?",
    {"tool_calls": [{"name": "mark_resolved", "arguments": {"note": "cache cleared"}}]},
]
PRICES = {"scripted": {"prompt": 1.0, "completion": 2.0}}  # per million tokens


def _system(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "system_message" and e["message"].get("type") == kind]


def _conversation(events: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """The transcript a person sees, minus ids and times."""
    seen: list[tuple[str, ...]] = []
    for e in events:
        if e["type"] == "text_message":
            seen.append(("text", e["sender"], e["body"]))
        elif e["type"] == "system_message":
            seen.append(("system", e["sender"], json.dumps(e["message"], sort_keys=True)))
        elif e["type"] in ("suggested_function_call", "function_call_execution", "text_input"):
            seen.append((e["type"], e["sender"]))
    return seen


def _check_support_desk(events: list[dict[str, Any]], questions: list[dict[str, Any]]) -> None:
    # Each agent's messages under its own name, the customer's request and answer included.
    texts = [(e["sender"], e["body"]) for e in events if e["type"] == "text_message"]
    assert ("customer", "The app crashes when I export a report.") in texts
    assert ("tech", SUPPORT_SCRIPT[1]) in texts and ("customer", "Yes, that fixed it.") in texts
    calls = [(e["sender"], e["function_name"]) for e in events if e["type"] == "suggested_function_call"]
    assert calls == [("triage", "classify_request"), ("tech", "mark_resolved")]
    results = [e for e in events if e["type"] == "function_call_execution"]
    assert [e["sender"] for e in results] == ["triage", "tech"]
    # The handoffs: a context condition (triage -> tech), after work (back to the customer), a
    # tool's ReplyResult (the end).
    handoffs = [(m["from"], m["by"]) for m in (e["message"] for e in _system(events, "handoff"))]
    assert handoffs == [("triage", "context condition"), ("tech", "after work"), ("tech", "tool result")]
    assert _system(events, "handoff")[0]["message"]["to"] == "tech"
    # The context variables: first as they start, then each change, where it happened.
    (start,) = _system(events, "context_variables")
    assert start["message"] == {"type": "context_variables", "topic": "unknown", "resolved": False}
    changes = [e["message"] for e in _system(events, "context_variables_changed")]
    assert changes == [
        {"type": "context_variables_changed", "topic": "technical"},
        {"type": "context_variables_changed", "resolved": True},
    ]
    order = [e["seq"] for e in events]
    topic_set = order[events.index(_system(events, "context_variables_changed")[0])]
    assert topic_set < order[events.index(_system(events, "handoff")[0])]
    # The customer's turn was a question, from the customer, answered through the API.
    (question,) = questions
    assert question["sender"] == "customer" and question["prompt"].startswith("Replying as customer.")
    assert any(e["type"] == "input_answered" for e in events)
    result = events[-1]
    assert result["type"] == "workflow_completed" and result["status"] == "completed", result
    assert result["result"]["context"] == {"topic": "technical", "resolved": True}
    assert result["result"]["summary"] == "Resolved: cache cleared"


def test_support_desk_pattern_with_handoffs_context_and_a_person() -> None:
    env = {"FLOTILLA_LLM_SCRIPTED_REPLIES": json.dumps(SUPPORT_SCRIPT), "FLOTILLA_LLM_PRICES": json.dumps(PRICES)}
    with local_stack(workers=1, env=env) as stack:

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                run_id = await api.start("support_desk")
                questions: list[dict[str, Any]] = []

                def answer(question: dict[str, Any]) -> str:
                    questions.append(question)
                    return "Yes, that fixed it."

                events, _ = await api.stream(run_id, answer=answer)
                assert_well_formed(run_id, events)
                _check_support_desk(events, questions)
                # Every LLM call went through the run's LLM (recorded), and AG2's cost report
                # says what the run's usage says.
                calls = [e for e in events if e["type"] == "llm_completion"]
                assert len(calls) == len(SUPPORT_SCRIPT)
                (usage,) = (await api.settled(run_id))["usage"]
                assert usage["calls"] == 3 and usage["cost"] > 0
                (report,) = [e["message"] for e in _system(events, "ag2_usage")]
                assert report["model"] == "scripted"
                assert report["prompt_tokens"] == usage["prompt_tokens"]
                assert report["completion_tokens"] == usage["completion_tokens"]
                assert report["cost"] == pytest.approx(usage["cost"])

        asyncio.run(scenario())


def test_support_desk_resumed_after_its_worker_died_replays_the_same_transcript() -> None:
    env = {"FLOTILLA_LLM_SCRIPTED_REPLIES": json.dumps(SUPPORT_SCRIPT)}
    with local_stack(workers=2, job_ack_wait_s=1.0, env=env) as stack, tempfile.TemporaryDirectory() as tmp:

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                reference = await api.start("support_desk")
                expected, _ = await api.stream(reference, answer=lambda q: "Yes, that fixed it.")
                run_id = await api.start(
                    "support_desk_resumable",
                    marker=str(Path(tmp) / "died"),
                    request="The app crashes when I export a report.",
                )
                questions: list[dict[str, Any]] = []

                def answer(question: dict[str, Any]) -> str:
                    questions.append(question)
                    return "Yes, that fixed it."

                events, _ = await api.stream(run_id, answer=answer, timeout_s=90)
                assert_well_formed(run_id, events)
                assert (Path(tmp) / "died").exists() and sum(e["type"] == "run_retried" for e in events) == 1
                _check_support_desk(events, questions[:1])
                # One conversation: what the first attempt wrote is not written again, the
                # resumed attempt handed off and saw the context as the first one did, and the
                # transcript is the one an uninterrupted run gives.
                assert _conversation(events) == _conversation(expected)
                # The completions before the crash were replayed, not asked again.
                assert sum(e["type"] == "llm_completion" for e in events) == len(SUPPORT_SCRIPT)

        asyncio.run(scenario())

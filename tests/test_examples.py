"""The example workflows the local stack serves, on the scripted model."""

from __future__ import annotations

import asyncio
import json

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

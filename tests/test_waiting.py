"""A run waiting for the person says so in its record and in lists, and stops saying so once
answered (while it goes on working)."""

from __future__ import annotations

import asyncio

from flotilla.devstack import LocalStack
from support import Api, first_question, until


def test_the_record_says_when_a_run_waits_for_the_person(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            # Asked after its first message; after the answer, 5 more messages 1 s apart.
            run_id = await api.start("paced_chat", n=6, delay_s=1.0, ask_at=1)

            async def record_says(waiting: bool, status: str) -> bool:
                run = await api.run(run_id)
                return bool(run["waiting_for_input"]) is waiting and run["status"] == status

            async def listed_waiting() -> bool:
                runs = (await api.http.get("/v1/runs", params={"limit": 50})).json()
                return any(r["run_id"] == run_id and r["waiting_for_input"] for r in runs)

            events = await api.wait_for(run_id, lambda es: first_question(es) is not None)
            await until(lambda: record_says(True, "running"), "the run waits for the person")
            await until(listed_waiting, "the list shows it waiting")
            question = first_question(events)
            assert question is not None
            assert (await api.answer(run_id, question["request_id"], "yes")).status_code == 202
            await until(lambda: record_says(False, "running"), "the answer clears the wait, the run goes on")
            done = await api.settled(run_id)
            assert done["status"] == "completed" and done["waiting_for_input"] is False

    asyncio.run(scenario())

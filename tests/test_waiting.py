"""A run waiting for the person says so in its record and in lists, and stops saying so once
answered."""

from __future__ import annotations

import asyncio

from flotilla.devstack import LocalStack
from support import Api, first_question, until


def test_the_record_says_when_a_run_waits_for_the_person(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("load", n=1, asks=2)

            async def waiting(expected: bool) -> bool:
                return bool((await api.run(run_id))["waiting_for_input"]) is expected

            async def listed_waiting() -> bool:
                runs = (await api.http.get("/v1/runs", params={"limit": 50})).json()
                return any(r["run_id"] == run_id and r["waiting_for_input"] for r in runs)

            for n in (1, 2):
                events = await api.wait_for(run_id, lambda es: first_question(es) is not None)
                await until(lambda: waiting(True), f"the run waits for answer {n}")
                record = await api.run(run_id)
                assert record["status"] == "running"
                await until(listed_waiting, "the list shows it waiting")
                question = first_question(events)
                assert question is not None
                assert (await api.answer(run_id, question["request_id"], "x")).status_code == 202
                await until(lambda: waiting(False), f"answer {n} clears the wait")
            done = await api.settled(run_id)
            assert done["status"] == "completed" and done["waiting_for_input"] is False

    asyncio.run(scenario())

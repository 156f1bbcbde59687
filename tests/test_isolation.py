"""200 runs on ONE worker, each asking two questions, answered in random order across runs:
every answer reaches its own run and no event lands in the wrong run."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from support import Api, assert_well_formed, local_stack

RUNS = 200


@pytest.mark.parametrize("workflow", ["load", "load_sync"])
def test_answers_in_random_order_reach_their_own_runs(workflow: str) -> None:
    with local_stack(workers=1) as stack:

        async def answer_round(api: Api, run_ids: list[str], round_no: int) -> None:
            pending: list[tuple[str, str]] = []
            for run_id in run_ids:
                events = await api.wait_for(
                    run_id, lambda es: sum(e["type"] == "text_input" for e in es) == round_no, timeout_s=60
                )
                pending.append((run_id, [e for e in events if e["type"] == "text_input"][-1]["request_id"]))
            random.shuffle(pending)
            responses = await asyncio.gather(*(api.answer(r, q, f"{r}:{q}") for r, q in pending))
            assert all(response.status_code == 202 for response in responses)

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                run_ids = list(await asyncio.gather(*(api.start(workflow, n=2, asks=2) for _ in range(RUNS))))
                await answer_round(api, run_ids, 1)
                await answer_round(api, run_ids, 2)
                for run_id in run_ids:
                    events: list[dict[str, Any]] = await api.wait_for(
                        run_id, lambda es: bool(es) and es[-1]["type"] == "workflow_completed"
                    )
                    assert_well_formed(run_id, events)
                    assert events[-1]["result"]["answers"] == [f"{run_id}:q1", f"{run_id}:q2"]
                    assert (await api.run(run_id))["worker_id"] == "worker-1"

        asyncio.run(scenario())

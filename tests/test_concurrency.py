"""Many runs at once on two workers: each gets exactly its own events and its own answers."""

from __future__ import annotations

import asyncio
from typing import Any

from flotilla.devstack import LocalStack
from support import Api, assert_well_formed

RUNS = 150


def test_concurrent_runs_are_isolated(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_ids = await asyncio.gather(*(api.start("load", n=5, size=20, asks=2) for _ in range(RUNS)))
            assert len(set(run_ids)) == RUNS

            async def follow(run_id: str) -> tuple[list[dict[str, Any]], int]:
                # Each run is answered with its own id, so a crossed answer cannot go unnoticed.
                return await api.stream(run_id, answer=lambda question: f"{run_id}/{question['seq']}", timeout_s=120)

            results = await asyncio.gather(*(follow(run_id) for run_id in run_ids))
            workers = set()
            for run_id, (events, close_code) in zip(run_ids, results):
                assert close_code == 1000
                assert_well_formed(run_id, events)
                answers = events[-1]["result"]["answers"]
                assert len(answers) == 2 and all(answer.startswith(f"{run_id}/") for answer in answers)
                echoes = [e["body"] for e in events if e["type"] == "text_message" and e["body"].startswith("echo: ")]
                assert echoes == [f"echo: {answer}" for answer in answers]
                workers.add((await api.run(run_id))["worker_id"])
            assert workers <= {"worker-1", "worker-2"}

    asyncio.run(scenario())

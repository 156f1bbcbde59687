"""Many runs at once on two workers: each gets exactly its own events and its own answers, and a
worker at its capacity leaves the rest to the other."""

from __future__ import annotations

import asyncio
from typing import Any

from support import Api, assert_well_formed, local_stack

RUNS = 150
CAPACITY = 100  # runs in flight per worker: neither worker can take all of them


def test_concurrent_runs_are_isolated() -> None:
    with local_stack(workers=2, env={"FLOTILLA_WORKER_MAX_CONCURRENT_RUNS": str(CAPACITY)}) as stack:
        _run_isolated(stack.gateway_url, stack.dev_api_key)


def _run_isolated(gateway_url: str, api_key: str) -> None:
    async def scenario() -> None:
        async with Api(gateway_url, api_key) as api:
            run_ids = await asyncio.gather(*(api.start("load", n=5, size=20, asks=2) for _ in range(RUNS)))
            assert len(set(run_ids)) == RUNS

            async def follow(run_id: str) -> tuple[list[dict[str, Any]], int]:
                # Each run is answered with its own id, so a crossed answer cannot go unnoticed.
                return await api.stream(run_id, answer=lambda question: f"{run_id}/{question['seq']}", timeout_s=120)

            results = await asyncio.gather(*(follow(run_id) for run_id in run_ids))
            workers: list[str] = []
            for run_id, (events, close_code) in zip(run_ids, results, strict=True):
                assert close_code == 1000
                assert_well_formed(run_id, events)
                answers = events[-1]["result"]["answers"]
                assert len(answers) == 2 and all(answer.startswith(f"{run_id}/") for answer in answers)
                echoes = [e["body"] for e in events if e["type"] == "text_message" and e["body"].startswith("echo: ")]
                assert echoes == [f"echo: {answer}" for answer in answers]
                workers.append((await api.run(run_id))["worker_id"])
            # Every run waits on its first answer until all are started, so one worker cannot hold them all.
            assert set(workers) == {"worker-1", "worker-2"}, {w: workers.count(w) for w in set(workers)}

    asyncio.run(scenario())

"""Capacity: N runs all waiting on a question on ONE worker at once; its memory, then all answered.

    ./pants run bench:capacity -- [--runs 1000] [--workflow load|load_sync]

`load` is an async workflow (one asyncio task per run); `load_sync` is a plain def workflow (one
thread per run, as AG2 workflows use). Starts its own local stack with one worker. Prints numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from measure import BENCHMARKS, rss_mb
from flotilla.devstack import LocalStack, StackConfig


async def wait_all(http: httpx.AsyncClient, run_ids: list[str], predicate: Any) -> list[list[dict[str, Any]]]:
    gate = asyncio.Semaphore(50)

    async def one(run_id: str) -> list[dict[str, Any]]:
        while True:
            async with gate:
                events = (await http.get(f"/v1/runs/{run_id}/events")).json()["events"]
            if predicate(events):
                return list(events)
            await asyncio.sleep(0.2)

    return await asyncio.gather(*(one(r) for r in run_ids))


async def bench(stack: LocalStack, runs: int, workflow: str) -> None:
    worker_pid = stack.workers[0].pid
    assert worker_pid is not None
    idle = rss_mb(worker_pid)
    async with httpx.AsyncClient(
        base_url=stack.gateway_url, timeout=120, limits=httpx.Limits(max_connections=50)
    ) as http:
        gate = asyncio.Semaphore(50)

        async def start() -> str:
            async with gate:
                response = await http.post("/v1/runs", json={"workflow": workflow, "params": {"n": 1, "asks": 1}})
                response.raise_for_status()
                return str(response.json()["run_id"])

        started = time.perf_counter()
        run_ids = await asyncio.gather(*(start() for _ in range(runs)))
        questions = await wait_all(http, run_ids, lambda es: any(e["type"] == "text_input" for e in es))
        waiting = time.perf_counter() - started
        held = rss_mb(worker_pid)
        print(f"{runs} runs of {workflow} waiting on a question on one worker after {waiting:.1f} s")
        print(
            f"worker RSS: idle {idle:.0f} MB, with {runs} runs waiting {held:.0f} MB ({(held - idle) * 1024 / runs:.0f} KB per run)"
        )

        started = time.perf_counter()

        async def answer(run_id: str, events: list[dict[str, Any]]) -> None:
            request_id = next(e for e in events if e["type"] == "text_input")["request_id"]
            async with gate:
                (
                    await http.post(f"/v1/runs/{run_id}/input", json={"request_id": request_id, "value": "ok"})
                ).raise_for_status()

        await asyncio.gather(*(answer(r, q) for r, q in zip(run_ids, questions, strict=True)))
        finals = await wait_all(http, run_ids, lambda es: bool(es) and es[-1]["type"] == "workflow_completed")
        assert all(events[-1]["status"] == "completed" for events in finals)
        print(
            f"all {runs} answered and completed in {time.perf_counter() - started:.1f} s; worker RSS {rss_mb(worker_pid):.0f} MB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--workflow", default="load", choices=["load", "load_sync"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flotilla-capacity-") as tmp:
        config = StackConfig(
            data_dir=Path(tmp) / "data", log_dir=Path(tmp) / "logs", workers=1, with_ui=False,
            nats_port=0, dispatcher_port=0, gateway_port=0, gateway_grpc_port=0, ui_port=0,
            env={"FLOTILLA_LOG_LEVEL": "warning", "FLOTILLA_WORKER_WORKFLOWS": BENCHMARKS, "FLOTILLA_GATEWAY_RATE_LIMIT_PER_S": "1000000", "FLOTILLA_GATEWAY_RATE_LIMIT_BURST": "1000000",
                 "FLOTILLA_GATEWAY_MAX_STREAMS_PER_IDENTITY": "100000", "FLOTILLA_WORKER_MAX_CONCURRENT_RUNS": str(max(1000, args.runs))},
        )  # fmt: skip
        with LocalStack(config) as stack:
            print(f"local stack with one worker; logs in {tmp}/logs", file=sys.stderr)
            asyncio.run(bench(stack, args.runs, args.workflow))


if __name__ == "__main__":
    main()

"""Benchmark: run latency, answer round trip, and many concurrent runs through the whole stack.

    ./pants run bench:runs -- [--runs 500] [--workers 2] [--gateway http://127.0.0.1:8000]

Without --gateway it starts its own local stack (real nats-server, dispatcher, workers, gateway)
on free ports. Every run's events are checked: its own run_id only, seq 1..N once each, in
order, one workflow_completed at the end. Prints numbers; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import websockets

from measure import BENCHMARKS, cpu_seconds, ms_summary, rss_mb
from flotilla.devstack import LocalStack, StackConfig


def check(run_id: str, events: list[dict[str, Any]]) -> None:
    assert all(e["run_id"] == run_id for e in events), f"{run_id}: foreign event"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), f"{run_id}: seq gap or repeat"
    assert [e["type"] for e in events].count("workflow_completed") == 1, f"{run_id}: not exactly one terminal"
    assert events[-1]["type"] == "workflow_completed" and events[-1]["status"] == "completed", f"{run_id}: {events[-1]}"


async def one_run(
    http: httpx.AsyncClient, ws_url: str, params: dict[str, Any]
) -> tuple[float, list[float], str, list[dict[str, Any]]]:
    """POST a load run, stream it, answer its questions over the socket. Returns (POST -> terminal
    seconds, answer round trips, run_id, events)."""
    started = time.perf_counter()
    response = await http.post("/v1/runs", json={"workflow": "load", "params": params})
    response.raise_for_status()
    run_id = response.json()["run_id"]
    events: list[dict[str, Any]] = []
    asked: dict[str, float] = {}
    round_trips: list[float] = []
    headers = {"Authorization": http.headers["Authorization"]}
    async with websockets.connect(f"{ws_url}/v1/runs/{run_id}/stream", max_size=None, additional_headers=headers) as ws:
        async for frame in ws:
            event = json.loads(frame)
            events.append(event)
            if event["type"] == "text_input":
                asked[event["request_id"]] = time.time()
                await ws.send(json.dumps({"type": "input", "request_id": event["request_id"], "value": "ok"}))
            elif event["type"] == "input_answered":
                received = datetime.fromisoformat(event["timestamp"]).timestamp()
                round_trips.append(received - asked[event["request_id"]])
    elapsed = time.perf_counter() - started
    return elapsed, round_trips, run_id, events


async def bench(gateway: str, token: str, runs: int, concurrency: int) -> None:
    ws_url = gateway.replace("http://", "ws://")
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=gateway, timeout=60, limits=limits, headers=auth) as http:
        for _ in range(20):  # warm up connections, caches and both workers
            await one_run(http, ws_url, {"n": 10, "asks": 1})

        latencies = []
        for _ in range(200):
            elapsed, _, run_id, events = await one_run(http, ws_url, {"n": 10, "asks": 0})
            check(run_id, events)
            latencies.append(elapsed)
        print(f"single load run (n=10, asks=0), POST -> workflow_completed, 200 sequential: {ms_summary(latencies)}")

        round_trips: list[float] = []
        for _ in range(10):
            _, trips, run_id, events = await one_run(http, ws_url, {"n": 0, "asks": 20})
            check(run_id, events)
            round_trips.extend(trips)
        print(
            f"answer round trip (question seen -> answer in workflow), {len(round_trips)} answers: {ms_summary(round_trips)}"
        )

        gate = asyncio.Semaphore(concurrency)

        async def gated() -> tuple[float, list[float], str, list[dict[str, Any]]]:
            async with gate:
                return await one_run(http, ws_url, {"n": 10, "asks": 1})

        started = time.perf_counter()
        results = await asyncio.gather(*(gated() for _ in range(runs)))
        wall = time.perf_counter() - started
        for _, _, run_id, events in results:
            check(run_id, events)
        assert len({run_id for _, _, run_id, _ in results}) == runs
        per_run = [elapsed for elapsed, _, _, _ in results]
        events_total = sum(len(events) for _, _, _, events in results)
        print(
            f"{runs} concurrent load runs (n=10, asks=1), {concurrency} in flight: {runs / wall:.0f} runs/s, "
            f"{events_total / wall:.0f} events/s, wall {wall:.2f} s; per run {ms_summary(per_run)}"
        )
        print(f"all {runs} runs: own events only, seq 1..N exactly once in order, one workflow_completed: OK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=500, help="runs in flight at once")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--gateway", help="benchmark a running stack instead of starting one")
    parser.add_argument("--token", default="", help="API key for --gateway (the local stack prints one)")
    args = parser.parse_args()
    with ExitStack() as stack:
        local: LocalStack | None = None
        gateway, token = args.gateway, args.token
        if gateway is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="flotilla-bench-")))
            config = StackConfig(
                data_dir=tmp / "data", log_dir=tmp / "logs", workers=args.workers, with_ui=False,
                nats_port=0, dispatcher_port=0, gateway_port=0, gateway_grpc_port=0, ui_port=0,
                env={"FLOTILLA_LOG_LEVEL": "warning", "FLOTILLA_WORKER_WORKFLOWS": BENCHMARKS, "FLOTILLA_GATEWAY_RATE_LIMIT_PER_S": "1000000", "FLOTILLA_GATEWAY_RATE_LIMIT_BURST": "1000000",
                 "FLOTILLA_GATEWAY_MAX_STREAMS_PER_IDENTITY": "100000",},
            )  # fmt: skip
            local = stack.enter_context(LocalStack(config))
            gateway, token = local.gateway_url, local.dev_api_key
            print(f"local stack: {args.workers} workers, logs in {tmp / 'logs'}", file=sys.stderr)
        cpu_before = {c.name: cpu_seconds(c.pid) for c in local.children() if c.pid} if local else {}
        client_before = time.process_time()
        asyncio.run(bench(gateway, token, args.runs, args.concurrency))
        if local is not None:
            used = {c.name: cpu_seconds(c.pid) - cpu_before[c.name] for c in local.children() if c.pid}
            used["benchmark client"] = time.process_time() - client_before
            print("CPU seconds used during the benchmark: " + ", ".join(f"{n} {s:.1f}" for n, s in used.items()))
            rss = {child.name: rss_mb(child.pid) for child in local.children() if child.pid}
            print("RSS after the benchmark: " + ", ".join(f"{name} {mb:.0f} MB" for name, mb in rss.items()))


if __name__ == "__main__":
    main()

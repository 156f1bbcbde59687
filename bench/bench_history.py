"""Benchmark: a run's history read and watch start stay flat however big the events stream is
(issue 11, hole 7: reads start at the run's own first message).

    ./pants run bench:history -- [--fill 1000000] [--samples 50]

On a local stack: a `load` run of 50 events is measured (its whole history over the REST API,
page by page; the watch start over the WebSocket, connect to first event), then 1,000,000 events
of 10,000 other runs are published straight into the events stream (the operator user,
pipelined), then the same run and a run started after the fill are measured again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import httpx
import websockets

from measure import bench_config, ms_summary
from flotilla.devstack import LocalStack
from flotilla.ids import new_run_id
from flotilla.jetstream import EVENTS_STREAM, events_subject
from flotilla.protocol import RunEvent, TextMessage

WINDOW = 20_000
"""Publishes in flight at once while filling."""


async def fill(stack: LocalStack, total: int, runs: int) -> float:
    """`total` one-event messages spread over `runs` other runs; seconds it took."""
    nc = await stack.nats_connect("operator", pending_size=64 * 1024 * 1024)
    try:
        acked = 0
        done = asyncio.Event()
        room = asyncio.Semaphore(WINDOW)

        async def on_ack(msg: object) -> None:
            nonlocal acked
            acked += 1
            room.release()
            if acked == total:
                done.set()

        inbox = nc.new_inbox()
        await nc.subscribe(f"{inbox}.*", cb=on_ack)
        others = [new_run_id() for _ in range(runs)]
        started = time.perf_counter()
        for i in range(total):
            run_id = others[i % runs]
            event = RunEvent(run_id=run_id, seq=i // runs + 1, text_message=TextMessage(body="x" * 100))
            await room.acquire()
            await nc.publish(events_subject(run_id), event.SerializeToString(), reply=f"{inbox}.a")
        await asyncio.wait_for(done.wait(), 600)
        elapsed = time.perf_counter() - started
        info = await nc.jetstream().stream_info(EVENTS_STREAM)
        print(
            f"filled: {total} events of {runs} other runs in {elapsed:.1f} s; the stream holds {info.state.messages} messages, {info.state.bytes / 1e6:.0f} MB"
        )
        return elapsed
    finally:
        await nc.close()


async def finished_run(http: httpx.AsyncClient) -> str:
    response = await http.post("/v1/runs", json={"workflow": "load", "params": {"n": 48}})
    response.raise_for_status()
    run_id = str(response.json()["run_id"])
    while (await http.get(f"/v1/runs/{run_id}")).json()["status"] != "completed":
        await asyncio.sleep(0.05)
    return run_id


async def measure(
    stack: LocalStack, http: httpx.AsyncClient, run_id: str, samples: int
) -> tuple[list[float], list[float]]:
    headers = {"Authorization": f"Bearer {stack.dev_api_key}"}
    ws_url = stack.gateway_url.replace("http://", "ws://")
    reads, starts = [], []
    for _ in range(samples):
        started = time.perf_counter()
        events, after = [], 0
        while True:
            page = (await http.get(f"/v1/runs/{run_id}/events", params={"after": after})).json()
            events.extend(page["events"])
            if not page["more"]:
                break
            after = page["next_after"]
        reads.append(time.perf_counter() - started)
        assert [e["seq"] for e in events] == list(range(1, 51)), len(events)
        started = time.perf_counter()
        async with websockets.connect(f"{ws_url}/v1/runs/{run_id}/stream", additional_headers=headers) as ws:
            first = json.loads(await ws.recv())
            starts.append(time.perf_counter() - started)
            assert first["seq"] == 1
    return reads, starts


async def bench(stack: LocalStack, total: int, samples: int) -> None:
    headers = {"Authorization": f"Bearer {stack.dev_api_key}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers, timeout=60) as http:
        early = await finished_run(http)
        await measure(stack, http, early, 5)  # warm up
        reads, starts = await measure(stack, http, early, samples)
        print(f"stream with only the measured run:  history read {ms_summary(reads)}")
        print(f"                                    watch start  {ms_summary(starts)}")
        await fill(stack, total, runs=10_000)
        late = await finished_run(http)
        for label, run_id in (("run stored before the fill", early), ("run stored after the fill", late)):
            reads, starts = await measure(stack, http, run_id, samples)
            print(f"{total} other events, {label}:  history read {ms_summary(reads)}")
            print(f"{' ' * len(str(total))}               {' ' * len(label)}   watch start  {ms_summary(starts)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fill", type=int, default=1_000_000, help="events of other runs to publish")
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flotilla-bench-") as tmp, LocalStack(bench_config(Path(tmp))) as stack:
        asyncio.run(bench(stack, args.fill, args.samples))


if __name__ == "__main__":
    main()

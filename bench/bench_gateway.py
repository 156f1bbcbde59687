"""Benchmark: the gateway's added latency per event, and how many WebSockets one gateway holds.

    ./pants run bench:gateway -- [--latency-runs 20] [--asks 25] [--gap-ms 100]
                                 [--streams 1000,2000,5000] [--hold-s 30] [--skip-latency] [--skip-streams]

Latency: each run (`load`, n=0, asks questions) is read at once by two clients in this process: one
on the dispatcher's gRPC WatchRun (as the gateway reads it) and one on the gateway's WebSocket. A
third party answers each question over REST `--gap-ms` after it was asked, so events come in small
bursts spread over time (latency, not throughput). For every event: seconds from its timestamp (set
by the worker as it emits it) to its arrival at each client, and the difference (gateway - direct).

Streams: for each N, a fresh local stack; N WebSockets on runs waiting for a question (several
streams per run); the gateway's RSS and CPU before/after opening them and while they sit idle
(with pings every `--ping-interval-s`), then every run is answered and every stream must get the
rest of its run and close with 1000.

Starts its own local stacks (real nats-server, dispatcher, workers, gateway) on free ports and
prints numbers; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import websockets

from measure import BENCHMARKS, cpu_seconds, ms_summary, rss_mb
from flotilla.devstack import LocalStack, StackConfig
from flotilla.auth import ServiceTokenSigner
from flotilla.protocol import DISPATCHER_SERVICE, Caller, DispatcherStub, WatchRunRequest
from flotilla.rpc import signed

if TYPE_CHECKING:
    from flotilla.v1.dispatcher_pb2_grpc import DispatcherAsyncStub


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@contextmanager
def local_stack(workers: int, env: dict[str, str]) -> Iterator[LocalStack]:
    with tempfile.TemporaryDirectory(prefix="flotilla-bench-") as tmp:
        config = StackConfig(
            data_dir=Path(tmp) / "data", log_dir=Path(tmp) / "logs", workers=workers, with_ui=False,
            nats_port=0, dispatcher_port=0, gateway_port=0, gateway_grpc_port=0, ui_port=0,
            env={
                "FLOTILLA_LOG_LEVEL": "warning",
                "FLOTILLA_WORKER_WORKFLOWS": BENCHMARKS,
                "FLOTILLA_GATEWAY_RATE_LIMIT_PER_S": "1000000",
                "FLOTILLA_GATEWAY_RATE_LIMIT_BURST": "1000000",
                "FLOTILLA_GATEWAY_MAX_STREAMS_PER_IDENTITY": "1000000",
                **env,
            },
        )  # fmt: skip
        with LocalStack(config) as stack:
            yield stack


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


# --- (a) latency ---------------------------------------------------------------------------------


async def one_latency_run(
    http: httpx.AsyncClient, stub: DispatcherAsyncStub, ws_url: str, token: str, asks: int, gap_s: float
) -> tuple[dict[int, float], dict[int, float]]:
    """Latency (arrival - event timestamp) per seq, for the direct gRPC client and the WebSocket."""
    response = await http.post("/v1/runs", json={"workflow": "load", "params": {"n": 0, "asks": asks}})
    response.raise_for_status()
    run_id = response.json()["run_id"]
    direct: dict[int, float] = {}
    gateway: dict[int, float] = {}
    answers: list[asyncio.Task[None]] = []

    async def answer_later(request_id: str) -> None:
        await asyncio.sleep(gap_s)
        reply = await http.post(f"/v1/runs/{run_id}/input", json={"request_id": request_id, "value": "ok"})
        reply.raise_for_status()

    async def read_direct() -> None:
        call = stub.WatchRun(WatchRunRequest(run_id=run_id, after_seq=0, caller=Caller(identity="bench", admin=True)))
        async for batch in call:
            arrived = time.time()
            for event in batch.events:
                direct[event.seq] = arrived - (event.timestamp.seconds + event.timestamp.nanos / 1e9)
                if event.WhichOneof("kind") == "text_input":
                    answers.append(asyncio.create_task(answer_later(event.text_input.request_id)))

    async def read_gateway() -> None:
        async with websockets.connect(f"{ws_url}/v1/runs/{run_id}/stream?token={token}") as ws:
            async for frame in ws:
                arrived = time.time()
                event = json.loads(frame)
                gateway[event["seq"]] = arrived - _seconds(event["timestamp"])
            assert ws.close_code == 1000, ws.close_code

    await asyncio.gather(read_direct(), read_gateway())
    await asyncio.gather(*answers)
    assert sorted(direct) == sorted(gateway) == list(range(1, len(direct) + 1)), run_id
    return direct, gateway


async def latency(stack: LocalStack, runs: int, asks: int, gap_s: float) -> None:
    token = stack.dev_api_key
    headers = {"Authorization": f"Bearer {token}"}
    # The dispatcher directly, as the gateway reaches it: TLS and the gateway's service token.
    signer = ServiceTokenSigner("gateway", stack.credentials.gateway_service_key.read_bytes(), DISPATCHER_SERVICE)
    channel = stack.grpc_channel(stack.dispatcher_address)
    stub = signed(DispatcherStub(channel), signer)
    ws_url = stack.gateway_url.replace("http://", "ws://")
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=60, headers=headers) as http:
        await one_latency_run(http, stub, ws_url, token, 3, gap_s)  # warm up
        started = time.perf_counter()
        results = await asyncio.gather(*(one_latency_run(http, stub, ws_url, token, asks, gap_s) for _ in range(runs)))
        wall = time.perf_counter() - started
    await channel.close()
    direct = [d[seq] for d, _ in results for seq in d]
    gateway = [g[seq] for _, g in results for seq in g]
    added = [g[seq] - d[seq] for d, g in results for seq in d]
    print(
        f"latency: {runs} concurrent runs x {asks} questions answered {gap_s * 1000:.0f} ms after each was asked: "
        f"{len(direct)} events in {wall:.1f} s ({len(direct) / wall:.0f} events/s)"
    )
    print(f"  worker emit -> direct gRPC WatchRun client:  {ms_summary(direct)}")
    print(f"  worker emit -> gateway WebSocket client:     {ms_summary(gateway)}")
    print(f"  added by the gateway (same event, WS - gRPC): {ms_summary(added)}")


# --- (b) concurrent WebSockets -----------------------------------------------------------------


async def hold_streams(stack: LocalStack, streams: int, runs: int, hold_s: float) -> None:
    assert stack.gateway is not None and stack.gateway.pid is not None
    pid = stack.gateway.pid
    token = stack.dev_api_key
    headers = {"Authorization": f"Bearer {token}"}
    ws_url = stack.gateway_url.replace("http://", "ws://")
    runs = min(runs, streams)
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=120, headers=headers, limits=limits) as http:
        gate = asyncio.Semaphore(50)

        async def start() -> str:
            async with gate:
                response = await http.post("/v1/runs", json={"workflow": "load", "params": {"n": 0, "asks": 1}})
                response.raise_for_status()
                return str(response.json()["run_id"])

        run_ids = await asyncio.gather(*(start() for _ in range(runs)))
        await asyncio.sleep(2.0)
        rss_before, cpu_before, fds_before = rss_mb(pid), cpu_seconds(pid), open_fds(pid)

        # Each stream: read until the question (2 events), then sit until the run is answered.
        asked: list[asyncio.Event] = [asyncio.Event() for _ in range(streams)]
        opening = asyncio.Semaphore(100)
        outcomes: list[tuple[int, int, str]] = []  # (events, close code, run_id)

        async def stream(i: int) -> None:
            run_id = run_ids[i % runs]
            events: list[dict[str, Any]] = []
            code = -1  # never opened
            try:
                async with opening:
                    ws = await websockets.connect(
                        f"{ws_url}/v1/runs/{run_id}/stream?token={token}", open_timeout=120, ping_interval=None
                    )
                try:
                    async for frame in ws:
                        events.append(json.loads(frame))
                        if events[-1]["type"] == "text_input":
                            asked[i].set()
                finally:
                    await ws.close()
                    code = ws.close_code or 0
            except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                print(f"  stream {i}: {exc!r}", file=sys.stderr)
            finally:
                asked[i].set()
                outcomes.append((len(events), code, run_id))

        opened_at = time.perf_counter()
        tasks = [asyncio.create_task(stream(i)) for i in range(streams)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in asked)), 600)
        open_s = time.perf_counter() - opened_at
        rss_open, cpu_open = rss_mb(pid), cpu_seconds(pid)
        early = len(outcomes)
        print(
            f"{streams} WebSockets on {runs} runs waiting for input: all opened and got their first 2 events in "
            f"{open_s:.1f} s; gateway fds {fds_before} -> {open_fds(pid)}"
        )
        await asyncio.sleep(hold_s)
        rss_held, cpu_held = rss_mb(pid), cpu_seconds(pid)
        still_open = streams - len(outcomes)
        print(f"  after {hold_s:.0f} s idle: {still_open} of {streams} still open ({early} had closed early)")
        print(
            f"  gateway RSS {rss_before:.0f} MB -> {rss_open:.0f} MB open -> {rss_held:.0f} MB after idling: "
            f"{(rss_held - rss_before) * 1024 / streams:.1f} KB per connection"
        )
        print(
            f"  gateway CPU: {(cpu_open - cpu_before) * 1000 / streams:.2f} ms per connection to open and fill; "
            f"{(cpu_held - cpu_open) * 1000 / streams / hold_s:.4f} ms per connection per second idle "
            f"({(cpu_held - cpu_open) / hold_s * 100:.1f}% of a core for all {streams})"
        )

        async def answer(run_id: str) -> None:
            async with gate:
                events = (await http.get(f"/v1/runs/{run_id}/events")).json()["events"]
                question = next(e for e in events if e["type"] == "text_input")
                for _ in range(10):  # a busy 2-core machine: the dispatcher may time out on NATS (503)
                    reply = await http.post(
                        f"/v1/runs/{run_id}/input", json={"request_id": question["request_id"], "value": "ok"}
                    )
                    if reply.status_code != 503:
                        break
                    await asyncio.sleep(1.0)
                assert reply.status_code in (202, 409), reply.text

        answered_at = time.perf_counter()
        cpu_answer = cpu_seconds(pid)
        await asyncio.gather(*(answer(r) for r in run_ids))
        await asyncio.wait_for(asyncio.gather(*tasks), 600)
        done_s = time.perf_counter() - answered_at
        complete = sum(1 for events, code, _ in outcomes if events == 5 and code == 1000)
        print(
            f"  answered all {runs} runs: {complete} of {streams} streams got all 5 events and closed 1000 "
            f"in {done_s:.1f} s (gateway CPU {cpu_seconds(pid) - cpu_answer:.1f} s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-runs", type=int, default=20, help="runs read concurrently by both clients")
    parser.add_argument("--asks", type=int, default=25, help="questions per latency run (3 events each)")
    parser.add_argument("--gap-ms", type=float, default=100.0, help="delay before each answer")
    parser.add_argument("--streams", default="1000,2000,5000", help="comma-separated stream counts, one stack each")
    parser.add_argument("--runs", type=int, default=500, help="runs the streams share")
    parser.add_argument("--hold-s", type=float, default=30.0, help="idle time with all streams open")
    parser.add_argument("--ping-interval-s", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-streams", action="store_true")
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the stack's processes inherit it
    print(f"open files limit {soft} -> {hard}; {os.cpu_count()} CPUs", file=sys.stderr)
    if not args.skip_latency:
        with local_stack(args.workers, {}) as stack:
            asyncio.run(latency(stack, args.latency_runs, args.asks, args.gap_ms / 1000))
    if not args.skip_streams:
        for streams in (int(n) for n in args.streams.split(",")):
            if streams + 200 > hard:
                print(f"{streams} streams: skipped, the open files limit is {hard}")
                continue
            env = {"FLOTILLA_GATEWAY_WS_PING_INTERVAL_S": str(args.ping_interval_s)}
            with local_stack(args.workers, env) as stack:
                asyncio.run(hold_streams(stack, streams, args.runs, args.hold_s))


if __name__ == "__main__":
    main()

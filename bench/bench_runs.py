"""Benchmark: run latency, answer round trip, and concurrent runs through the whole public API.

    ./pants run bench:runs -- [--runs 300] [--concurrency 10,50,100,300] [--workers 2]
                              [--plots DIR] [--profile DIR] [--json FILE] [--gateway URL --token KEY]

A client as a program would be: POST /v1/runs, then one WebSocket per run that answers the run's
questions. Without --gateway it starts its own local stack (real nats-server, dispatcher, workers,
gateway) on free ports. Every run's events are checked: its own run_id only, seq 1..N once each,
in order, one workflow_completed at the end.

For each concurrency level it prints throughput, latency percentiles, and the CPU each process of
the stack spent per run (from /proc: CPU seconds are steady on a noisy shared machine, wall time
is not). --plots draws throughput against concurrency and the latency CDFs as PNGs; --profile
records each process with py-spy during the last level (flame graphs and the top functions).
Prints numbers; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import websockets

from measure import bench_config, cpu_seconds, ms_summary, percentile, rss_mb
from flotilla.devstack import LocalStack
from flotilla.processes import Child, packaged_executable


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


@dataclass
class Level:
    """One concurrency level's results."""

    concurrency: int
    runs: int
    wall_s: float
    runs_per_s: float
    latencies_s: list[float]
    cpu_ms_per_run: dict[str, float] = field(default_factory=dict)

    @property
    def stack_cpu_ms_per_run(self) -> float:
        return sum(ms for name, ms in self.cpu_ms_per_run.items() if name != "benchmark client")


class CpuMeter:
    """CPU seconds of the stack's processes (and this client) between two points."""

    def __init__(self, children: list[Child]) -> None:
        self._children = [c for c in children if c.pid]

    def snapshot(self) -> dict[str, float]:
        used = {c.name: cpu_seconds(c.pid) for c in self._children if c.pid}
        used["benchmark client"] = time.process_time()
        return used

    @staticmethod
    def per_run_ms(before: dict[str, float], after: dict[str, float], runs: int) -> dict[str, float]:
        return {name: (after[name] - before[name]) * 1000 / runs for name in after}


class NatsMeter:
    """Messages each NATS connection sent and received, from nats-server's /connz (by the
    connection's name: dispatcher, worker-..., ...)."""

    def __init__(self, monitor_url: str | None) -> None:
        self._url = monitor_url

    def snapshot(self) -> dict[str, tuple[int, int]]:
        if self._url is None:
            return {}
        connz = httpx.get(f"{self._url}/connz", params={"limit": 4096}).json()
        counts: Counter[str] = Counter()
        for conn in connz.get("connections", []):
            name = conn.get("name") or "unnamed"
            counts[name + " sent"] += conn.get("in_msgs", 0)
            counts[name + " got"] += conn.get("out_msgs", 0)
        names = {key.rsplit(" ", 1)[0] for key in counts}
        return {name: (counts[name + " sent"], counts[name + " got"]) for name in sorted(names)}

    @staticmethod
    def per_run_line(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], runs: int) -> str:
        parts = []
        for name, (sent, got) in after.items():
            sent0, got0 = before.get(name, (0, 0))
            parts.append(f"{name} {(sent - sent0) / runs:.1f}/{(got - got0) / runs:.1f}")
        return ", ".join(parts)


class Profiler:
    """py-spy recording every process of the stack while a level runs."""

    def __init__(self, out: Path, children: list[Child]) -> None:
        self._out, self._children = out, [c for c in children if c.pid]
        self._recorders: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._spy = packaged_executable("py-spy", "py-spy")
        if self._spy is None:
            sys.exit("--profile needs py-spy (the py-spy package, a dependency of bench:runs)")
        out.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        for child in self._children:
            if child.name == "nats":
                continue  # a Go binary: `perf` profiles it, py-spy does not
            for fmt, suffix in (("flamegraph", "svg"), ("raw", "txt")):
                command = [str(self._spy), "record", "--nonblocking", "--pid", str(child.pid), "--rate", "250",
                           "--format", fmt, "--output", str(self._out / f"{child.name}.{suffix}")]  # fmt: skip
                recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                self._recorders.append((child.name, recorder))

    def stop(self) -> None:
        for _, recorder in self._recorders:
            recorder.send_signal(2)  # py-spy writes its output on SIGINT
        for _, recorder in self._recorders:
            recorder.wait(timeout=60)
        for path in sorted(self._out.glob("*.txt")):
            print(f"profile {path.stem}: top functions by own samples")
            for name, share in top_functions(path)[:12]:
                print(f"  {share:5.1f}%  {name}")

    def __enter__(self) -> Profiler:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def top_functions(collapsed: Path) -> list[tuple[str, float]]:
    """Own time per function from py-spy's collapsed stacks (`frame;frame;frame count` lines, a
    frame being `function (file:line)`). Time in C code (uvloop, grpcio, ssl) counts against the
    Python function that called it."""
    own: Counter[str] = Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            leaf = stack.rsplit(";", 1)[-1]
            own[re.sub(r":\d+\)$", ")", leaf)] += int(count)
    total = sum(own.values()) or 1
    return [(name, 100 * samples / total) for name, samples in own.most_common()]


async def bench_level(http: httpx.AsyncClient, ws_url: str, runs: int, concurrency: int) -> tuple[float, list[float]]:
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
    return wall, [elapsed for elapsed, _, _, _ in results]


async def bench(args: argparse.Namespace, gateway: str, token: str, local: LocalStack | None) -> list[Level]:
    ws_url = gateway.replace("http://", "ws://")
    levels = [int(c) for c in args.concurrency.split(",")]
    limits = httpx.Limits(max_connections=max(levels), max_keepalive_connections=max(levels))
    auth = {"Authorization": f"Bearer {token}"}
    meter = CpuMeter(local.children() if local else [])
    monitor = local.config.nats_monitor_port if local else None
    nats_meter = NatsMeter(f"http://{local.config.nats_host}:{monitor}" if local and monitor else None)
    async with httpx.AsyncClient(base_url=gateway, timeout=120, limits=limits, headers=auth) as http:
        for _ in range(20):  # warm up connections, caches and both workers
            await one_run(http, ws_url, {"n": 10, "asks": 1})

        latencies = []
        before, nats_before = meter.snapshot(), nats_meter.snapshot()
        for _ in range(args.sequential):
            elapsed, _, run_id, events = await one_run(http, ws_url, {"n": 10, "asks": 0})
            check(run_id, events)
            latencies.append(elapsed)
        single = CpuMeter.per_run_ms(before, meter.snapshot(), args.sequential)
        print(
            f"single load run (n=10, asks=0), POST -> workflow_completed, {args.sequential} sequential: {ms_summary(latencies)}"
        )
        print(f"  CPU per run: {cpu_line(single)}")
        if local is not None:
            messages = NatsMeter.per_run_line(nats_before, nats_meter.snapshot(), args.sequential)
            print(f"  NATS messages per run (sent/received by each connection): {messages}")

        round_trips: list[float] = []
        for _ in range(10):
            _, trips, run_id, events = await one_run(http, ws_url, {"n": 0, "asks": 20})
            check(run_id, events)
            round_trips.extend(trips)
        print(
            f"answer round trip (question seen -> answer in workflow), {len(round_trips)} answers: {ms_summary(round_trips)}"
        )

        results: list[Level] = []
        for i, concurrency in enumerate(levels):
            before, nats_before = meter.snapshot(), nats_meter.snapshot()
            profiling = args.profile is not None and local is not None and i == len(levels) - 1
            with Profiler(Path(args.profile), local.children()) if profiling and local else ExitStack():
                wall, per_run = await bench_level(http, ws_url, args.runs, concurrency)
            level = Level(
                concurrency,
                args.runs,
                wall,
                args.runs / wall,
                per_run,
                CpuMeter.per_run_ms(before, meter.snapshot(), args.runs),
            )
            results.append(level)
            print(
                f"{args.runs} load runs (n=10, asks=1), {concurrency} in flight: {level.runs_per_s:.0f} runs/s, "
                f"wall {wall:.2f} s; per run {ms_summary(per_run)}"
            )
            if local is not None:
                print(f"  CPU per run: stack {level.stack_cpu_ms_per_run:.1f} ms = {cpu_line(level.cpu_ms_per_run)}")
                per_run_msgs = NatsMeter.per_run_line(nats_before, nats_meter.snapshot(), args.runs)
                print(f"  NATS messages per run (sent/received by each connection): {per_run_msgs}")
        print("every run: own events only, seq 1..N exactly once in order, one workflow_completed: OK")
        return results


def cpu_line(per_run: dict[str, float]) -> str:
    return ", ".join(f"{name} {ms:.2f} ms" for name, ms in per_run.items())


def draw(levels: list[Level], out: Path) -> None:
    """Throughput against concurrency, and each level's latency CDF, as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([lv.concurrency for lv in levels], [lv.runs_per_s for lv in levels], marker="o")
    ax.set(xlabel="runs in flight", ylabel="runs completed per second", title="Throughput (load n=10, asks=1)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110)
    fig, ax = plt.subplots(figsize=(6, 4))
    for lv in levels:
        ordered = sorted(lv.latencies_s)
        ax.plot(
            [s * 1000 for s in ordered],
            [(i + 1) / len(ordered) for i in range(len(ordered))],
            label=f"{lv.concurrency} in flight",
        )
    ax.set(xlabel="POST -> workflow_completed (ms)", ylabel="share of runs", title="Latency CDF", xscale="log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "latency_cdf.png", dpi=110)
    print(f"plots: {out / 'throughput.png'}, {out / 'latency_cdf.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300, help="runs per concurrency level")
    parser.add_argument("--concurrency", default="10,50,100,300", help="levels: runs in flight at once")
    parser.add_argument("--sequential", type=int, default=100, help="single runs, one after another")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-tls", action="store_true", help="the local stack without TLS (to see what TLS costs)")
    parser.add_argument("--plots", help="directory for throughput.png and latency_cdf.png")
    parser.add_argument("--profile", help="directory for py-spy profiles of the last level")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--gateway", help="benchmark a running stack instead of starting one")
    parser.add_argument("--token", default="", help="API key for --gateway (the local stack prints one)")
    args = parser.parse_args()
    with ExitStack() as stack:
        local: LocalStack | None = None
        gateway, token = args.gateway, args.token
        if gateway is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="flotilla-bench-")))
            config = bench_config(
                tmp, workers=args.workers, tls=not args.no_tls, FLOTILLA_GATEWAY_MAX_STREAMS_PER_IDENTITY="100000"
            )
            local = stack.enter_context(LocalStack(config))
            gateway, token = local.gateway_url, local.dev_api_key
            print(f"local stack: {args.workers} workers, logs in {tmp / 'logs'}", file=sys.stderr)
        levels = asyncio.run(bench(args, gateway, token, local))
        if local is not None:
            rss = {child.name: rss_mb(child.pid) for child in local.children() if child.pid}
            print("RSS after the benchmark: " + ", ".join(f"{name} {mb:.0f} MB" for name, mb in rss.items()))
        if args.plots:
            draw(levels, Path(args.plots))
        if args.json:
            summary = [
                {**asdict(lv), "p50_s": percentile(lv.latencies_s, 0.5), "p95_s": percentile(lv.latencies_s, 0.95)}
                for lv in levels
            ]
            Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

"""Benchmark: one run's latency, FastAgency 0.10.2 over NATS against Flotilla, in the same invocation.

    ./pants run bench:fastagency -- [--runs 20] [--rounds 3] [--workers 1] [--no-tls]

FastAgency side (in an isolated venv, bench/fastagency/requirements.txt, built once and cached
under ~/.cache/flotilla): a bare nats-server with JetStream on a free port; bench/fastagency/app.py
serves a `load` workflow through FastAgency's NatsAdapter (direct NATS, no gateway);
bench/fastagency/client.py starts runs with FastAgency's own NatsProvider and consumes each run's
messages until `workflow_completed`, answering questions at once. Flotilla side: the local stack
(real nats-server, dispatcher, workers, gateway on free ports) serving flotilla.examples.benchmarks
`load`; each run is POST /v1/runs + one WebSocket (bench_runs.one_run), POST -> workflow_completed.

Workloads: `load` n=10 (size 100), asks=0; and n=10, asks=1 with the answer given at once. The two
sides take turns, `--rounds` times, `--runs` runs per workload each turn (after a warm-up), so a
noisy shared machine weighs on both alike. Prints p50/p95 side by side; checks every run's
transcript is complete (every message, in order, one completion); asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from bench_runs import check, one_run
from measure import bench_config, cpu_seconds, percentile
from flotilla.devstack import LocalStack
from flotilla.hermetic_pip import cached_venv
from flotilla.processes import Child, jetstream_server

WORKLOADS: dict[str, dict[str, Any]] = {
    "load n=10, asks=0": {"n": 10, "asks": 0},
    "load n=10, asks=1 (answered at once)": {"n": 10, "asks": 1},
}
WARMUP = 5


def fastagency_dir() -> Path:
    """bench/fastagency in the working directory or a parent (the build root under `./pants run`)."""
    for base in (Path.cwd(), *Path.cwd().parents):
        if (base / "bench" / "fastagency" / "client.py").is_file():
            return base / "bench" / "fastagency"
    sys.exit("bench/fastagency not found: run from the repository (./pants run bench:fastagency)")


def expected_types(params: dict[str, Any]) -> list[str]:
    """FastAgency's transcript of a complete `load` run."""
    asks = ["text_input", "text_message"] * params["asks"]
    return ["workflow_started", *["text_message"] * params["n"], *asks, "workflow_completed"]


def check_flotilla(run_id: str, events: list[dict[str, Any]], params: dict[str, Any]) -> None:
    check(run_id, events)
    types = [e["type"] for e in events]
    assert types.count("text_message") == params["n"] + params["asks"], f"{run_id}: {types}"
    assert types.count("text_input") == params["asks"], f"{run_id}: {types}"


class FastAgencySide:
    """nats-server + FastAgency's NatsAdapter app; runs its NatsProvider client in the venv."""

    def __init__(self, stack: ExitStack, tmp: Path) -> None:
        self.dir = fastagency_dir()
        self.python = cached_venv(self.dir / "requirements.txt", "fastagency-0.10.2-nats")
        self.tmp = tmp
        # Nothing of this (PEX) process's environment: the venv's own packages only.
        self.env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "PYTHONUNBUFFERED": "1"}
        nats = jetstream_server(tmp / "nats", name="fastagency-nats", log_path=tmp / "fastagency-nats.log")
        nats.start()
        stack.callback(nats.stop)
        nats.wait_ready(30)
        self.nats_url = nats.url
        log = tmp / "fastagency-app.log"
        app = Child(
            "fastagency-app",
            [str(self.python), str(self.dir / "app.py"), nats.url],
            self.env,
            lambda: log.exists() and "fastagency app ready" in log.read_text(errors="replace"),
            log,
        )
        app.start()
        stack.callback(app.stop)
        app.wait_ready(60)
        self.children = [nats, app]

    def runs(self, workloads: dict[str, dict[str, Any]], runs: int) -> dict[str, list[float]]:
        out = self.tmp / "client.json"
        done = subprocess.run(
            [str(self.python), str(self.dir / "client.py"), self.nats_url, str(out), json.dumps(workloads), str(runs)],
            capture_output=True,
            text=True,
            timeout=600,
            env=self.env,
        )
        if done.returncode != 0:
            raise RuntimeError(f"FastAgency's client failed:\n{done.stdout}\n{done.stderr[-4000:]}")
        results: dict[str, dict[str, list[Any]]] = json.loads(out.read_text())
        for label, params in workloads.items():
            for types in results[label]["transcripts"]:
                assert types == expected_types(params), f"FastAgency {label}: incomplete transcript {types}"
        return {label: results[label]["latencies_s"] for label in workloads}


async def flotilla_runs(
    gateway: str, token: str, workloads: dict[str, dict[str, Any]], runs: int
) -> dict[str, list[float]]:
    ws_url = gateway.replace("http://", "ws://")
    results: dict[str, list[float]] = {}
    async with httpx.AsyncClient(base_url=gateway, timeout=120, headers={"Authorization": f"Bearer {token}"}) as http:
        for label, params in workloads.items():
            latencies = []
            for _ in range(runs):
                elapsed, _, run_id, events = await one_run(http, ws_url, params)
                check_flotilla(run_id, events, params)
                latencies.append(elapsed)
            results[label] = latencies
    return results


class IdleCpu:
    """CPU that one side's processes use while the other side is measured (share of one core)."""

    def __init__(self, children: list[Child]) -> None:
        self._pids = [c.pid for c in children if c.pid]
        self.cpu_s = self.wall_s = 0.0

    def __enter__(self) -> None:
        self._cpu, self._wall = sum(cpu_seconds(pid) for pid in self._pids), time.perf_counter()

    def __exit__(self, *_: object) -> None:
        self.cpu_s += sum(cpu_seconds(pid) for pid in self._pids) - self._cpu
        self.wall_s += time.perf_counter() - self._wall

    def __str__(self) -> str:
        return f"{100 * self.cpu_s / max(self.wall_s, 1e-9):.1f}% of a core"


def ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:8.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="runs per workload per side per round")
    parser.add_argument("--rounds", type=int, default=3, help="turns each side takes")
    parser.add_argument("--workers", type=int, default=1, help="Flotilla workers (FastAgency has one app process)")
    parser.add_argument(
        "--no-tls", action="store_true", help="Flotilla's stack without TLS (FastAgency's NATS has none)"
    )
    parser.add_argument("--json", help="write every latency to this file")
    args = parser.parse_args()
    fastagency: dict[str, list[float]] = {label: [] for label in WORKLOADS}
    flotilla: dict[str, list[float]] = {label: [] for label in WORKLOADS}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="flotilla-bench-fa-")))
        side = FastAgencySide(stack, tmp)
        side.runs(WORKLOADS, WARMUP)
        alone = side.runs(WORKLOADS, args.runs)  # before Flotilla's stack exists: a reference
        local = stack.enter_context(
            LocalStack(bench_config(tmp / "flotilla", workers=args.workers, tls=not args.no_tls))
        )
        print(
            f"FastAgency 0.10.2 NatsAdapter on {side.nats_url}; Flotilla gateway {local.gateway_url}", file=sys.stderr
        )
        asyncio.run(flotilla_runs(local.gateway_url, local.dev_api_key, WORKLOADS, WARMUP))
        flotilla_idle, fastagency_idle = IdleCpu(local.children()), IdleCpu(side.children)
        for round_ in range(args.rounds):
            with flotilla_idle:
                for label, latencies in side.runs(WORKLOADS, args.runs).items():
                    fastagency[label] += latencies
            with fastagency_idle:
                for label, latencies in asyncio.run(
                    flotilla_runs(local.gateway_url, local.dev_api_key, WORKLOADS, args.runs)
                ).items():
                    flotilla[label] += latencies
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    total = args.runs * args.rounds
    print(f"one run at a time, start -> workflow_completed, {total} runs per cell (ms)")
    print(f"{'workload':<40} {'FastAgency p50':>14} {'p95':>8}   {'Flotilla p50':>12} {'p95':>8}")
    for label in WORKLOADS:
        fa, fl = fastagency[label], flotilla[label]
        print(f"{label:<40} {ms(fa, 0.5):>14} {ms(fa, 0.95)}   {ms(fl, 0.5):>12} {ms(fl, 0.95)}")
    for label in WORKLOADS:
        print(
            f"  FastAgency alone, before Flotilla's stack started, {label}: p50 {ms(alone[label], 0.5)}  p95 {ms(alone[label], 0.95)}"
        )
    for label in WORKLOADS:
        per_round = [
            (percentile(fastagency[label][i : i + args.runs], 0.5), percentile(flotilla[label][i : i + args.runs], 0.5))
            for i in range(0, total, args.runs)
        ]
        at_or_below = sum(fl <= fa for fa, fl in per_round)
        print(f"{label}: Flotilla's p50 at or below FastAgency's in {at_or_below} of {args.rounds} rounds")
    print(f"idle while the other side ran: Flotilla's stack {flotilla_idle}, FastAgency's app + nats {fastagency_idle}")
    print("every run's transcript complete (every message in order, one completion), both sides: OK")
    if args.json:
        Path(args.json).write_text(json.dumps({"fastagency": fastagency, "flotilla": flotilla}, indent=2))


if __name__ == "__main__":
    main()

"""A rolling upgrade of the workers under load, as Kubernetes does it (k8s/base/worker.yaml:
maxSurge 1, maxUnavailable 0): start a new worker, SIGTERM an old one, which drains and hands
back what it still holds, and so on until every worker was replaced, twice over. Runs keep
coming the whole time. No run fails or moves by timeout, and every log stays whole."""

from __future__ import annotations

import asyncio
import collections
import itertools
import signal
import time
from typing import Any

from flotilla.devstack import LocalStack
from flotilla.jetstream import DEAD_STREAM, JOBS_STREAM
from support import Api, admin, assert_well_formed, first_question, local_stack, wait_for_log_line

WORKERS = 3
GENERATIONS = 2
"""Every worker is replaced this many times over."""
START_EVERY_S = 0.2
DRAIN_S = 3.0
"""The stack's FLOTILLA_WORKER_DRAIN_TIMEOUT_S."""
ACK_WAIT_S = 120.0
"""Far longer than the test: a run that moved because its worker went silent (not because it was
handed back) would still be waiting."""

Kind = str
SLOW_MESSAGES = 80
# What the load starts, in turn: short runs, runs that ask mid-way and are answered at once over
# the WebSocket, runs that outlast any drain (80 messages, one every 0.1 s: resumed mid-way), and runs whose question
# is answered only once the upgrade is over (every one of them is handed back at least once).
MIX: list[tuple[Kind, str, dict[str, Any]]] = [
    ("short", "load", {"n": 20}),
    ("asks", "paced_chat", {"n": 6, "delay_s": 0.2, "ask_at": 2}),
    ("short", "load", {"n": 5, "size": 2000}),
    ("slow", "slow_messages", {"n": SLOW_MESSAGES, "delay_s": 0.1}),
]
WAITING_RUNS = 6


async def _replace_workers(stack: LocalStack, report: dict[str, Any]) -> None:
    serial = itertools.count(1)
    for generation in range(GENERATIONS):
        for old in list(stack.workers[-WORKERS:]):
            name = f"v{generation + 2}-{next(serial)}"
            new = await asyncio.to_thread(stack.add_worker, name)
            assert new.log_path is not None
            await asyncio.to_thread(wait_for_log_line, new.log_path, "worker started", 60.0)
            assert old.process is not None
            began = time.monotonic()
            old.process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(old.process.wait, DRAIN_S + 15)
            report["drains"].append(time.monotonic() - began)
            assert code == 0, f"{old.name} exited with {code} after SIGTERM"
            stack.workers.remove(old)
            report["replaced"] += 1


async def _drive(api: Api, kind: Kind, workflow: str, params: dict[str, Any], runs: list[tuple[str, Kind]]) -> None:
    run_id = await api.start(workflow, **params)
    runs.append((run_id, kind))
    await api.stream(run_id, answer=lambda q: "yes", timeout_s=120)


def test_workers_replaced_one_by_one_under_load_lose_and_fail_nothing() -> None:
    began = time.monotonic()
    with local_stack(workers=WORKERS, job_ack_wait_s=ACK_WAIT_S) as stack:

        async def scenario() -> dict[str, Any]:
            report: dict[str, Any] = {"replaced": 0, "drains": []}
            runs: list[tuple[str, Kind]] = []
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                waiting = [await api.start("load", n=3, asks=1) for _ in range(WAITING_RUNS)]
                runs += [(run_id, "waiting") for run_id in waiting]
                for run_id in waiting:
                    await api.wait_for(run_id, lambda es: first_question(es) is not None)
                upgrade = asyncio.create_task(_replace_workers(stack, report))
                drivers = []
                for kind, workflow, params in itertools.cycle(MIX):
                    if upgrade.done():
                        break
                    drivers.append(asyncio.create_task(_drive(api, kind, workflow, params, runs)))
                    await asyncio.sleep(START_EVERY_S)
                await upgrade
                upgrade_s = time.monotonic() - began
                for run_id in waiting:
                    assert (await api.answer(run_id, "q1", f"after the upgrade {run_id}")).status_code == 202
                await asyncio.gather(*drivers)
                report.update(await _check(api, runs, waiting))
                report["upgrade_s"] = upgrade_s
            nc = await admin(stack)
            try:  # every job acked by the worker that finished its run; nothing dead-lettered
                js = nc.jetstream()
                report["queued"] = (await js.stream_info(JOBS_STREAM)).state.messages
                report["dead"] = (await js.stream_info(DEAD_STREAM)).state.messages
            finally:
                await nc.close()
            return report

        report = asyncio.run(scenario())
    took = time.monotonic() - began
    drains = report["drains"]
    print(
        f"rolling upgrade: {report['runs']} runs ({dict(report['kinds'])}), {report['replaced']} workers replaced "
        f"one by one (drain + hand-back {min(drains):.1f}-{max(drains):.1f} s), {report['failed']} failed, "
        f"{report['handbacks']} hand-backs over {report['handed_back_runs']} runs, {report['events']} events checked; "
        f"upgrade {report['upgrade_s']:.0f} s, test {took:.0f} s"
    )
    assert report["replaced"] == WORKERS * GENERATIONS
    assert report["failed"] == 0
    assert report["queued"] == 0 and report["dead"] == 0


async def _check(api: Api, runs: list[tuple[str, Kind]], waiting: list[str]) -> dict[str, Any]:
    failed = handbacks = handed_back_runs = events_seen = 0
    for run_id, kind in runs:
        events = await api.events(run_id)
        assert_well_formed(run_id, events)  # seq 1..N each once, one workflow_completed, last
        events_seen += len(events)
        run = await api.run(run_id)
        if run["status"] != "completed" or events[-1]["status"] != "completed":
            failed += 1
            continue
        # Every move was a hand-back by a draining worker: none was a new attempt.
        retried = [e for e in events if e["type"] == "run_retried"]
        assert all(e["handed_back"] for e in retried), retried
        assert run["attempts"] == 1 and run["handbacks"] == len(retried), run
        handbacks += run["handbacks"]
        handed_back_runs += bool(run["handbacks"])
        texts = [e["body"] for e in events if e["type"] == "text_message"]
        if kind == "slow":  # resumed from its log: each message once, in order
            assert texts == [f"message {i}" for i in range(SLOW_MESSAGES)], texts
        if kind == "waiting":
            assert run_id in waiting and events[-1]["result"]["answers"] == [f"after the upgrade {run_id}"]
            assert sum(e["type"] == "text_input" for e in events) == 1  # never asked twice
            assert run["handbacks"] >= 1
    return {
        "runs": len(runs),
        "kinds": collections.Counter(kind for _, kind in runs),
        "failed": failed,
        "handbacks": handbacks,
        "handed_back_runs": handed_back_runs,
        "events": events_seen,
    }

"""The chaos drill: runs in flight on a real stack while one fault strikes per round, then every
run checked (chaos.checks). The short form (tests/chaos/test_chaos.py) plays each fault once;
the long form (`./pants run bench:chaos -- --rounds 100`) plays many rounds of them, mixed.

The stack: a 3-node JetStream cluster (R3) listening on the root end of a veth pair, the
dispatcher, the gateway, two workers in the root namespace and one in a network namespace (a
host on its own link, flotilla.devstack.NetnsHost); AckWait 2 s, the dedup window 1 s (so a
pause "past the window" takes seconds, not minutes).

Faults (one per round):
  worker_kill       SIGKILL the worker holding a run (it restarts at once)
  worker_pause      SIGSTOP it past AckWait and the dedup window, answer meanwhile, SIGCONT
  dispatcher_kill   SIGKILL the dispatcher while answers are in flight, restart it
  gateway_kill      SIGKILL the gateway while clients stream and answer, restart it
  nats_restart      stop every nats-server, start them again
  leader_kill       SIGKILL the node leading the events stream, restart it after a while
  netns_cut         cut the link of the namespaced worker holding a run, heal it later
  store_full        fill the events' share of the store, answer meanwhile, then make room

Workloads (each round): `load` runs asking two questions (the first one open when the fault
strikes) and a learning chat of AG2 agents on the scripted model (asks for a topic first).
The client streams each run over the gateway's WebSocket (reconnecting from its last seq when
the stream breaks) and answers over REST (retrying until the answer is taken).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import websockets

from chaos.checks import CHECKS, QUESTION_KINDS, check_run
from flotilla.devstack import Child, LocalStack, NetnsHost, netns_unavailable
from flotilla.jetstream import EVENTS_STREAM
from support import Api, admin, empty_store, fill_store, local_stack

ACK_WAIT_S = 2.0
DUPLICATE_WINDOW_S = 1.0
PAST_THE_WINDOW_S = ACK_WAIT_S + DUPLICATE_WINDOW_S + 2.0
"""How long a paused or cut-off worker stays away: its run is taken over and the dedup window
has passed (its stale appends are refused by the log's condition alone)."""
FAULTS = (
    "worker_kill",
    "worker_pause",
    "dispatcher_kill",
    "gateway_kill",
    "nats_restart",
    "leader_kill",
    "netns_cut",
    "store_full",
)
WORKER_FAULTS = ("worker_kill", "worker_pause", "netns_cut")
"""Faults after which another worker takes the held runs over (takeover time measured)."""
NETNS_WORKER = "worker-netns"
LOAD_RUNS = 3
WORKER_RUNS = 4
LOAD_PARAMS = {"n": 3, "asks": 2}
CHAT_PARAMS = {"turns": 2}
RUN_DEADLINE_S = 180.0
"""Generous: on a loaded 2-core machine an R3 cluster's elections take their time. Waiting is
lenient; the checks are not."""


@dataclass
class Report:
    rounds: int = 0
    runs: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    failures: dict[str, list[str]] = field(default_factory=lambda: {name: [] for name in CHECKS})
    takeovers_s: list[float] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def failed(self) -> int:
        return sum(len(found) for found in self.failures.values())

    def text(self) -> str:
        def pct(q: float) -> str:
            ordered = sorted(self.takeovers_s)
            return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))]:.2f} s" if ordered else "n/a"

        lines = [
            f"rounds {self.rounds}, runs {self.runs}, faults: "
            + ", ".join(f"{name} {self.faults[name]}" for name in FAULTS if self.faults[name]),
            *(f"  {name:<13} {len(self.failures[name])} failures  ({CHECKS[name]})" for name in CHECKS),
            f"takeover (fault -> the new holder's run_retried): n={len(self.takeovers_s)} p50 {pct(0.5)}"
            f"  p95 {pct(0.95)}  max {pct(1.0)}  (target AckWait + 1 s = {ACK_WAIT_S + 1:.1f} s)",
        ]
        lines += [f"  skipped: {why}" for why in self.skipped]
        for name, found in self.failures.items():
            lines += [f"  FAILED {name}: {detail}" for detail in found[:10]]
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "runs": self.runs,
            "faults": dict(self.faults),
            "failures": {name: len(found) for name, found in self.failures.items()},
            "takeovers_s": sorted(self.takeovers_s),
        }


@contextmanager
def chaos_stack(*, netns: bool = True) -> Iterator[tuple[LocalStack, NetnsHost | None]]:
    """The drill's stack (see the module's doc); without a namespaced worker when namespaces
    cannot be made here (the netns fault is then skipped)."""
    host = NetnsHost().create() if netns and netns_unavailable() is None else None
    try:
        env = {
            "FLOTILLA_DISPATCHER_DUPLICATE_WINDOW_S": str(DUPLICATE_WINDOW_S),
            "FLOTILLA_LOG_FORMAT": "json",
            # Small pulls, so the round's runs spread over the workers (a worker asks for as many
            # jobs as it has room for, and the first pull request takes the first jobs).
            "FLOTILLA_WORKER_MAX_CONCURRENT_RUNS": str(WORKER_RUNS),
        }
        with local_stack(
            workers=2,
            job_ack_wait_s=ACK_WAIT_S,
            job_max_attempts=10,
            env=env,
            nats_nodes=3,
            nats_host=host.root_address if host else "127.0.0.1",
            max_file_store="96MB",
        ) as stack:
            if host is not None:
                stack.add_worker(NETNS_WORKER, wrap=host.wrap(), wait=True)
            yield stack, host
    finally:
        if host is not None:
            host.delete()


class Client:
    """One run as a client sees it: the WebSocket transcript, the answers it gave."""

    def __init__(self, stack: LocalStack, run_id: str, answers_open: asyncio.Event) -> None:
        self.stack = stack
        self.run_id = run_id
        self.answers_open = answers_open
        self.transcript: list[dict[str, Any]] = []
        self.given: dict[str, str] = {}
        self.asked = asyncio.Event()
        """Set once the first question arrived (the run waits for a person)."""
        self.reconnects = 0
        self._answering: list[asyncio.Task[None]] = []

    async def follow(self) -> None:
        """Stream until the terminal event, reconnecting after the last seq received."""
        deadline = time.monotonic() + RUN_DEADLINE_S
        headers = {"Authorization": f"Bearer {self.stack.dev_api_key}"}
        ws_url = self.stack.gateway_url.replace("http://", "ws://")
        while time.monotonic() < deadline:
            after = self.transcript[-1]["seq"] if self.transcript else 0
            url = f"{ws_url}/v1/runs/{self.run_id}/stream?after={after}&include_hidden=true"
            try:
                async with websockets.connect(url, additional_headers=headers, max_size=None, open_timeout=10) as ws:
                    async for frame in ws:
                        event = json.loads(frame)
                        self.transcript.append(event)
                        if event["type"] in QUESTION_KINDS:
                            self.asked.set()
                            self._answering.append(asyncio.create_task(self._answer(event["request_id"])))
                        if event["type"] == "workflow_completed":
                            await asyncio.gather(*self._answering)
                            return
            except (OSError, websockets.WebSocketException, TimeoutError):
                pass  # the gateway died or restarts: reconnect from the last seq
            self.reconnects += 1
            await asyncio.sleep(0.2)
        raise TimeoutError(f"run {self.run_id} did not end within {RUN_DEADLINE_S:.0f} s")

    async def _answer(self, request_id: str) -> None:
        """Answer once answers are open, retrying through outages until the API takes it
        (202), or says an earlier try of this same answer was taken (409)."""
        await self.answers_open.wait()
        value = f"answer to {request_id} of {self.run_id[-6:]}"
        self.given[request_id] = value
        body = {"request_id": request_id, "value": value}
        headers = {"Authorization": f"Bearer {self.stack.dev_api_key}"}
        async with httpx.AsyncClient(base_url=self.stack.gateway_url, headers=headers, timeout=10) as http:
            while True:
                try:
                    response = await http.post(f"/v1/runs/{self.run_id}/input", json=body)
                    if response.status_code in (202, 409):
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)


async def _retrying(call: Any, *args: Any, timeout_s: float = 60.0, **kwargs: Any) -> Any:
    """`call` until it succeeds (the API may be out for a moment after a fault)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await call(*args, **kwargs)
        except (AssertionError, httpx.HTTPError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.25)


class Drill:
    def __init__(self, stack: LocalStack, host: NetnsHost | None, report: Report, *, seed: int = 0) -> None:
        self.stack = stack
        self.host = host
        self.report = report
        self.random = random.Random(seed)
        self.api = Api(stack.gateway_url, stack.dev_api_key)

    async def close(self) -> None:
        await self.api.http.aclose()

    def faults(self) -> tuple[str, ...]:
        return tuple(f for f in FAULTS if f != "netns_cut" or self.host is not None)

    async def round(self, fault: str) -> None:
        """Start the round's runs, strike with `fault` while they wait on a person, answer,
        wait for every run to end, check each."""
        answers_open = asyncio.Event()
        clients: list[Client] = []
        following: list[asyncio.Task[None]] = []

        async def start(workflow: str, params: dict[str, Any]) -> Client:
            run_id = await _retrying(self.api.start, workflow, **params)
            client = Client(self.stack, run_id, answers_open)
            clients.append(client)
            following.append(asyncio.create_task(client.follow()))
            return client

        try:
            for _ in range(LOAD_RUNS):
                await start("load", LOAD_PARAMS)
            await start("learning_chat", CHAT_PARAMS)
            await self._asked(clients)
            victim = await self._victim(fault, clients, start)
            held = [c.run_id for c in clients if victim and (await self._record(c.run_id))["worker_id"] == victim]
            struck = time.time()
            await self._strike(fault, victim, answers_open)
            answers_open.set()
            await asyncio.wait(following, timeout=RUN_DEADLINE_S + 30)
            unfinished = [client for client, task in zip(clients, following, strict=True) if not task.done()]
        finally:
            answers_open.set()
            for task in following:
                task.cancel()
            await asyncio.gather(*following, return_exceptions=True)
        self.report.rounds += 1
        self.report.faults[fault] += 1
        for client in clients:
            if client in unfinished:  # a stuck run fails the round's check; the drill goes on
                record = await self._record(client.run_id)
                self.report.runs += 1
                self.report.failures["terminal"].append(
                    f"[{fault}] run {client.run_id}: not finished {RUN_DEADLINE_S + 30:.0f} s after the fault: {record}"
                )
            else:
                await self._check(client, fault)
        if fault in WORKER_FAULTS:
            for run_id in held:
                self.report.takeovers_s.append(await self._takeover(run_id, struck))

    async def _asked(self, clients: list[Client]) -> None:
        try:
            await asyncio.wait_for(asyncio.gather(*(c.asked.wait() for c in clients)), RUN_DEADLINE_S)
        except TimeoutError:
            records = [await self._record(c.run_id) for c in clients if not c.asked.is_set()]
            raise AssertionError(f"runs never asked their first question: {records}") from None

    async def _record(self, run_id: str) -> dict[str, Any]:
        record: dict[str, Any] = await _retrying(self.api.run, run_id)
        return record

    async def _victim(self, fault: str, clients: list[Client], start: Any) -> str | None:
        """The worker the fault strikes: one holding a run (the namespaced one for netns_cut,
        with more runs started until it holds one)."""
        if fault not in WORKER_FAULTS:
            return None
        for _ in range(3 * WORKER_RUNS):
            holders = [(await self._record(c.run_id))["worker_id"] for c in clients]
            if fault == "netns_cut":
                if NETNS_WORKER in holders:
                    return NETNS_WORKER
            elif any(h and h != NETNS_WORKER for h in holders):
                return str(self.random.choice([h for h in holders if h and h != NETNS_WORKER]))
            await self._asked([await start("load", LOAD_PARAMS)])
        raise AssertionError(f"no run landed on a worker {fault} can strike")

    def _worker(self, name: str) -> Child:
        return next(w for w in self.stack.workers if w.name == name)

    async def _strike(self, fault: str, victim: str | None, answers_open: asyncio.Event) -> None:
        stack = self.stack
        if fault == "worker_kill":
            worker = self._worker(str(victim))
            worker.kill()
            worker.start()  # a fresh process under the same id; the job comes back after AckWait
        elif fault == "worker_pause":
            worker = self._worker(str(victim))
            worker.pause()
            answers_open.set()  # the answers reach whoever takes the run over
            await asyncio.sleep(PAST_THE_WINDOW_S)
            worker.resume()
        elif fault == "netns_cut":
            assert self.host is not None
            self.host.cut()
            answers_open.set()
            await asyncio.sleep(PAST_THE_WINDOW_S)
            self.host.heal()
        elif fault in ("dispatcher_kill", "gateway_kill"):
            child = stack.dispatcher if fault == "dispatcher_kill" else stack.gateway
            assert child is not None
            answers_open.set()  # answers and streams are in flight when it dies
            await asyncio.sleep(self.random.uniform(0.0, 0.3))
            child.kill()
            child.start()
            await asyncio.to_thread(child.wait_ready, 60)
        elif fault == "nats_restart":
            answers_open.set()
            await asyncio.sleep(self.random.uniform(0.0, 0.3))
            for node in stack.nats_nodes:
                await asyncio.to_thread(node.stop)
            for node in stack.nats_nodes:
                node.start()
            for node in stack.nats_nodes:
                await asyncio.to_thread(node.wait_ready, 60)
        elif fault == "leader_kill":
            leader = await self._leader()
            node = next(n for n in stack.nats_nodes if n.name == leader)
            answers_open.set()
            node.kill()
            await asyncio.sleep(self.random.uniform(2.0, 5.0))  # the others elect a leader meanwhile
            node.start()
            await asyncio.to_thread(node.wait_ready, 60)
        elif fault == "store_full":
            await fill_store(stack)
            answers_open.set()  # answers have their own share: they are taken while the events are full
            await asyncio.sleep(3.0)
            await empty_store(stack)
        else:
            raise ValueError(f"unknown fault {fault}")

    async def _leader(self) -> str:
        deadline = time.monotonic() + 60
        problem: object = None
        while True:
            try:
                nc = await admin(self.stack)
                try:
                    info = await nc.jetstream().stream_info(EVENTS_STREAM)
                    problem = info.cluster
                    if info.cluster is not None and info.cluster.leader:
                        return str(info.cluster.leader)
                finally:
                    await nc.close()
            except Exception as exc:  # the cluster is still electing
                problem = exc
            if time.monotonic() > deadline:
                raise TimeoutError(f"the events stream has no leader: {problem!r}")
            await asyncio.sleep(0.5)

    async def _check(self, client: Client, fault: str) -> None:
        log = await _retrying(self.api.events, client.run_id)
        record = await _retrying(self.api.settled, client.run_id)
        started = [e["workflow"] for e in log if e["type"] == "workflow_started"]
        questions = LOAD_PARAMS["asks"] if started[:1] == ["load"] else 1
        failed = check_run(
            client.run_id,
            transcript=client.transcript,
            log=log,
            record=record,
            given=client.given,
            questions=questions,
        )
        self.report.runs += 1
        for name, why in failed.items():
            self.report.failures[name].append(f"[{fault}] run {client.run_id}: {why}")

    async def _takeover(self, run_id: str, struck: float) -> float:
        """Seconds from the fault to the new holder's `run_retried` event."""
        log = await _retrying(self.api.events, run_id)
        for event in log:
            at = datetime.fromisoformat(event["timestamp"]).timestamp()
            if event["type"] == "run_retried" and at >= struck:
                return at - struck
        return float("inf")  # the run was never taken over (counted against the target)

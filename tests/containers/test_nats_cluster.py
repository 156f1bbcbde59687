"""compose/nats-cluster.yml: three NATS nodes, R3 streams. The events stream's leader is killed
while runs are in flight and a client keeps starting runs: nothing is lost, and the window in which
the gateway could not start runs is measured."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx
import pytest
from docker.models.containers import Container

from containers.runs import answer, assert_well_formed, events, open_question, settled, start, until
from containers.stack import ComposeProject, compose_project, measured

NODES = ("nats", "nats-2", "nats-3")


@pytest.fixture(scope="module")
def cluster(docker_host: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeProject]:
    workdir = tmp_path_factory.mktemp("cluster")
    extra = {"FLOTILLA_WORKER_MAX_CONCURRENT_RUNS": "100"}
    with compose_project(docker_host, workdir, ["docker-compose.yml", "nats-cluster.yml"], extra) as project:
        project.compose("up", "-d", "--no-deps", "--scale", "worker=2", "worker")
        project.wait_healthy("worker", 2)
        yield project


def streams(node: Container) -> dict[str, dict[str, Any]]:
    """Each stream's replica count and leader, as a live node's monitoring endpoint sees them."""
    url = "http://127.0.0.1:8222/jsz?accounts=true&streams=true&config=true"
    code, output = node.exec_run(["wget", "-q", "-O", "-", url])
    assert code == 0, output
    found = {}
    for account in json.loads(output)["account_details"]:
        for stream in account.get("stream_detail", []):
            cluster = stream.get("cluster", {})
            found[stream["name"]] = {"replicas": stream["config"]["num_replicas"], "leader": cluster.get("leader")}
    return found


def node(cluster: ComposeProject, name: str) -> Container:
    [container] = cluster.containers(name)
    return container


class Prober(threading.Thread):
    """Starts a small run every quarter second and notes when each start succeeded or failed."""

    def __init__(self, cluster: ComposeProject) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.stop = threading.Event()
        self.started: list[str] = []
        self.outcomes: list[tuple[float, bool, str]] = []

    def run(self) -> None:
        with self.cluster.api() as api:
            while not self.stop.is_set():
                at = time.monotonic()
                try:
                    response = api.post("/v1/runs", json={"workflow": "load", "params": {"n": 2}}, timeout=10)
                    ok, detail = response.status_code == 201, str(response.status_code)
                    if ok:
                        self.started.append(response.json()["run_id"])
                except Exception as exc:  # a timeout is unavailability too
                    ok, detail = False, type(exc).__name__
                self.outcomes.append((at, ok, detail))
                time.sleep(0.25)

    def longest_gap_after(self, moment: float) -> float:
        """The longest time between two successful starts around and after `moment`."""
        successes = [at for at, ok, _ in self.outcomes if ok]
        before = [at for at in successes if at <= moment][-1:]
        after = [at for at in successes if at > moment]
        points = before + after
        return max((b - a for a, b in zip(points, points[1:], strict=False)), default=float("inf"))


def test_killing_the_stream_leader_loses_nothing(cluster: ComposeProject) -> None:
    first = node(cluster, "nats")
    layout = streams(first)
    assert layout and {s["replicas"] for s in layout.values()} == {3}, layout
    leader = layout["FLOTILLA_EVENTS"]["leader"]
    assert leader in NODES, layout

    with cluster.api() as api:
        in_flight = [start(api, "load", n=5, asks=1) for _ in range(10)]
        asked = {run_id: open_question(api, run_id, 1) for run_id in in_flight}
        prober = Prober(cluster)
        prober.start()
        until(lambda: len(prober.started) >= 5, "the prober starts runs", timeout_s=60)

        victim = node(cluster, leader)
        victim.update(restart_policy={"Name": "no"})
        killed_at = time.monotonic()
        victim.kill()
        for run_id, request_id in asked.items():
            until(partial(_answered, api, run_id, request_id), f"answer to {run_id} taken", timeout_s=180)
        until(
            lambda: any(ok and at > killed_at + 20 for at, ok, _ in prober.outcomes),
            "runs start again after the kill",
            timeout_s=180,
        )
        prober.stop.set()
        prober.join()

        for run_id in in_flight:
            done = settled(api, run_id, timeout_s=300)
            assert done["status"] == "completed" and done["result"] == {"messages": 5, "answers": ["yes"]}, done
            assert_well_formed(run_id, events(api, run_id))
        for run_id in prober.started:
            assert settled(api, run_id, timeout_s=300)["status"] == "completed", run_id
            assert_well_formed(run_id, events(api, run_id))

    survivor = node(cluster, next(n for n in NODES if n != leader))
    after = streams(survivor)
    assert after["FLOTILLA_EVENTS"]["leader"] not in (None, leader), after
    failures = [(round(at - killed_at, 1), detail) for at, ok, detail in prober.outcomes if not ok]
    window = prober.longest_gap_after(killed_at)
    measured(
        f"killed {leader}, leader of FLOTILLA_EVENTS: longest gap between successful starts "
        f"{window:.1f} s; failed starts (s after the kill, status): {failures}; "
        f"{len(prober.started)} runs started by the prober, {len(in_flight)} in flight, all completed"
    )
    assert window < 120, window


def _answered(api: httpx.Client, run_id: str, request_id: str) -> bool:
    """Answer; True once the answer is taken (a retry after a lost reply finds it in the log)."""
    try:
        answer(api, run_id, request_id, "yes")
        return True
    except (AssertionError, httpx.HTTPError):
        pass
    try:
        return any(e["type"] == "input_answered" and e["request_id"] == request_id for e in events(api, run_id))
    except (AssertionError, httpx.HTTPError):
        return False

"""compose/docker-compose.yml, end to end on our own Docker engine: the images as built by
compose/build-images.sh, `compose up` with a generated .env, everything through the published gateway."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from docker.models.containers import Container

from containers.runs import answer, assert_well_formed, events, open_question, run, settled, start, until
from containers.stack import ComposeProject, compose_project, measured


@pytest.fixture(scope="module")
def stack(docker_host: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeProject]:
    workdir = tmp_path_factory.mktemp("compose")
    with compose_project(docker_host, workdir, ["docker-compose.yml"]) as project:
        measured(f"compose up -d returned after {time.monotonic() - project.up_at:.0f} s")
        yield project


def scale_workers(stack: ComposeProject, count: int) -> list[Container]:
    stack.compose("up", "-d", "--no-deps", "--scale", f"worker={count}", "worker")
    return stack.wait_healthy("worker", count)


def holder(stack: ComposeProject, worker_id: str) -> Container:
    """The worker container whose process is `worker_id` (`<container hostname>-<pid>`)."""
    hostname = worker_id.rsplit("-", 1)[0]
    [container] = [c for c in stack.containers("worker") if c.id.startswith(hostname)]
    return container


def test_load_with_a_question_and_learning_chat_on_the_bundled_model(stack: ComposeProject) -> None:
    with stack.api() as api:
        load = start(api, "load", n=3, asks=1)
        answer(api, load, open_question(api, load, 1), "forty-two")
        done = settled(api, load)
        measured(f"compose up -> first completed run: {time.monotonic() - stack.up_at:.0f} s")
        assert done["status"] == "completed", done
        assert done["result"] == {"messages": 3, "answers": ["forty-two"]}
        assert_well_formed(load, events(api, load))

        chat = start(api, "learning_chat", turns=1)
        answer(api, chat, open_question(api, chat, 1), "Math")
        done = settled(api, chat, timeout_s=300)
        assert done["status"] == "completed", done
        log = events(api, chat)
        assert_well_formed(chat, log)
        models = {e["model"] for e in log if e["type"] == "llm_completion"}
        assert models == {"SmolLM2-135M-Instruct.Q4_1"}, models
        assert isinstance(done["result"], str) and done["result"].strip()


def test_workers_scale_up_and_down_mid_run(stack: ComposeProject) -> None:
    scale_workers(stack, 3)
    with stack.api() as api:
        # Two runs per worker at most (.env): six runs waiting on people need all three workers.
        ids = [start(api, "load", n=1, asks=2) for _ in range(6)]
        for run_id in ids:
            answer(api, run_id, open_question(api, run_id, 1), f"first {run_id}")
        for run_id in ids:
            open_question(api, run_id, 2)
        holders = {run_id: run(api, run_id)["worker_id"] for run_id in ids}
        assert len(set(holders.values())) == 3, holders

        scale_workers(stack, 1)  # two workers drain: their runs wait on people, so they go back at once
        for run_id in ids:
            answer(api, run_id, open_question(api, run_id, 2), f"second {run_id}")
        finished = {run_id: settled(api, run_id) for run_id in ids}
    for run_id, done in finished.items():
        assert done["status"] == "completed", done
        assert done["result"]["answers"] == [f"first {run_id}", f"second {run_id}"]
    moved = [run_id for run_id in ids if finished[run_id]["worker_id"] != holders[run_id]]
    assert len(moved) == 4, (holders, {r: d["worker_id"] for r, d in finished.items()})
    with stack.api() as api:
        for run_id in ids:
            assert_well_formed(run_id, events(api, run_id))


def test_runs_of_a_killed_worker_finish_elsewhere(stack: ComposeProject) -> None:
    scale_workers(stack, 2)
    with stack.api() as api:
        ids = [start(api, "load", n=1, asks=1) for _ in range(2)]
        questions = {run_id: open_question(api, run_id, 1) for run_id in ids}
        victim = holder(stack, run(api, ids[0])["worker_id"])
        held = [run_id for run_id in ids if holder(stack, run(api, run_id)["worker_id"]).id == victim.id]
        victim.update(restart_policy={"Name": "no"})  # stays dead: the runs must move
        victim.kill()
        for run_id in ids:
            answer(api, run_id, questions[run_id], f"answer {run_id}")
        finished = {run_id: settled(api, run_id) for run_id in ids}
        for run_id in ids:
            assert_well_formed(run_id, events(api, run_id))
    for run_id in held:
        done = finished[run_id]
        assert done["status"] == "completed" and done["result"]["answers"] == [f"answer {run_id}"], done
        assert not victim.id.startswith(done["worker_id"].rsplit("-", 1)[0]), done
        assert done["attempts"] >= 2, done
    victim.remove(force=True)
    scale_workers(stack, 1)


def test_history_survives_a_nats_restart_and_the_worker_probe_follows_nats(stack: ComposeProject) -> None:
    with stack.api() as api:
        before = {r["run_id"]: r["status"] for r in api.get("/v1/runs", params={"limit": 1000}).json()}
        some_run = next(iter(before))
        log_before = events(api, some_run)
    assert len(before) == 10 and set(before.values()) == {"completed"}, before

    stack.compose("stop", "nats")
    [worker] = stack.containers("worker")
    until(lambda: stack.health(worker) == "unhealthy", "the worker's probe fails without NATS", timeout_s=180)
    stack.compose("start", "nats")
    stack.wait_healthy("nats", 1)
    stack.wait_healthy("worker", 1, timeout_s=240)
    stack.wait_healthy("gateway", 1, timeout_s=240)

    with stack.api() as api:
        after = {r["run_id"]: r["status"] for r in api.get("/v1/runs", params={"limit": 1000}).json()}
        assert after == before
        assert events(api, some_run) == log_before
        new = start(api, "load", n=2)
        assert settled(api, new)["status"] == "completed"


def test_the_ui_answers_on_its_published_port(stack: ComposeProject) -> None:
    response = httpx.get(stack.ui_url + "/", timeout=30)
    assert response.status_code == 200 and "<html" in response.text.lower()


def test_the_gateway_refuses_calls_without_a_token(stack: ComposeProject) -> None:
    assert httpx.get(stack.gateway_url + "/v1/workflows", timeout=30).status_code == 401


_SCRAPE = (
    "import sys, urllib.request, urllib.error\n"
    "request = urllib.request.Request('http://127.0.0.1:9090/metrics')\n"
    "if sys.argv[1]: request.add_header('Authorization', 'Bearer ' + sys.argv[1])\n"
    "try:\n"
    "    body = urllib.request.urlopen(request, timeout=5).read().decode()\n"
    "    print(200, 'python_info' in body)\n"
    "except urllib.error.HTTPError as exc:\n"
    "    print(exc.code, False)\n"
)


def test_every_service_serves_metrics_to_the_metrics_token_only(stack: ComposeProject) -> None:
    token = stack.values["FLOTILLA_METRICS_TOKEN"]
    scrape = httpx.get(stack.gateway_url + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert scrape.status_code == 200 and "flotilla_runs_started_total" in scrape.text
    assert httpx.get(stack.gateway_url + "/metrics", timeout=30).status_code == 401
    api_key = {"Authorization": f"Bearer {stack.values['ADA_KEY']}"}
    assert httpx.get(stack.gateway_url + "/metrics", headers=api_key, timeout=30).status_code == 401
    for service in ("dispatcher", "worker", "ui"):
        container = stack.wait_healthy(service, 1)[0]
        for sent, expected in ((token, "200 True"), ("", "401 False"), ("wrong", "401 False")):
            result = container.exec_run(["/opt/flotilla/venv/bin/python", "-c", _SCRAPE, sent])
            assert result.output.decode().strip() == expected, (service, sent and "a token", result.output)


_CONNECT = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()\n"
    "except OSError as exc:\n"
    "    print(exc); sys.exit(1)\n"
)


def _reaches(container: Container, host: str, port: int) -> bool:
    result = container.exec_run(["/opt/flotilla/venv/bin/python", "-c", _CONNECT, host, str(port)])
    return bool(result.exit_code == 0)


def test_networks_keep_each_service_to_its_peers(stack: ComposeProject) -> None:
    """The trust model's networks: a worker (where workflow code runs) reaches NATS and nothing
    else; the UI reaches the gateway and not the dispatcher or NATS."""
    worker = stack.wait_healthy("worker", 1)[0]
    assert _reaches(worker, "nats", 4222)  # the control: the probe can succeed
    assert not _reaches(worker, "dispatcher", 50051)
    assert not _reaches(worker, "gateway", 8000)
    assert not _reaches(worker, "gateway", 50052)
    (ui,) = stack.containers("ui")
    assert _reaches(ui, "gateway", 50052)
    assert not _reaches(ui, "dispatcher", 50051)
    assert not _reaches(ui, "nats", 4222)

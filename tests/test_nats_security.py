"""nats-server.conf: each service's user can do only what it needs."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
import pytest
from nats.errors import Error as NatsError

from flotilla.devstack import LocalStack, find_nats_conf, find_nats_server
from flotilla.jetstream import JOBS_STREAM, JOBS_SUBJECT, REPLY_DELTAS, delta_subject
from flotilla.jetstream._layout import RUN_HEADERS_BUCKET, RUNS_BUCKET, WORKFLOWS_BUCKET
from flotilla.protocol import Run, RunStatus, WorkflowInfo
from support import IDENTITIES, Api, local_stack, until


async def _connect(stack: LocalStack, user: str, password: str, errors: list[str] | None = None) -> Client:
    async def on_error(exc: Exception) -> None:
        if errors is not None:
            errors.append(str(exc))

    return await stack.nats_connect(user, password, allow_reconnect=False, connect_timeout=2, error_cb=on_error)


def test_worker_credentials_cannot_enqueue_jobs_or_change_the_layout(stack: LocalStack) -> None:
    async def scenario() -> None:
        errors: list[str] = []
        worker = await _connect(stack, "worker", stack.passwords["worker"], errors)
        dispatcher = await _connect(stack, "dispatcher", stack.passwords["dispatcher"])
        try:
            before = (await dispatcher.jetstream().stream_info(JOBS_STREAM)).state.messages
            await worker.publish(JOBS_SUBJECT, b"forged job")
            await worker.flush()
            with pytest.raises(NatsError):
                await worker.jetstream().publish(JOBS_SUBJECT, b"forged job", timeout=1)
            with pytest.raises(NatsError):
                await worker.jetstream().delete_stream(JOBS_STREAM)
            await until(
                lambda: any("permissions violation" in e.lower() and JOBS_SUBJECT in e for e in errors),
                f"the server reports the forged publish as a permissions violation ({errors})",
            )
            assert (await dispatcher.jetstream().stream_info(JOBS_STREAM)).state.messages == before
        finally:
            await worker.close()
            await dispatcher.close()

    asyncio.run(scenario())


def test_wrong_or_missing_password_is_refused(stack: LocalStack) -> None:
    async def scenario() -> None:
        for user, password in (("worker", "wrong"), ("dispatcher", stack.passwords["worker"]), ("nobody", "x")):
            with pytest.raises(Exception) as refused:
                await _connect(stack, user, password)
            assert "authorization" in repr(refused.value).lower() or isinstance(refused.value, NatsError)
        with pytest.raises(NatsError) as anonymous:
            await nats.connect(stack.nats_url, tls=stack.nats_tls(), allow_reconnect=False, connect_timeout=2)
        assert "authorization" in repr(anonymous.value).lower() or "no servers" in repr(anonymous.value).lower()

    asyncio.run(scenario())


def test_config_refuses_to_start_without_passwords() -> None:
    server, conf = find_nats_server(), str(find_nats_conf())
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NATS_PASSWORD")}
    missing = subprocess.run([server, "-c", conf, "-t"], env=env, capture_output=True, text=True)
    assert missing.returncode != 0 and "FLOTILLA_" in missing.stdout + missing.stderr
    env.update(
        FLOTILLA_DISPATCHER_NATS_PASSWORD="a", FLOTILLA_WORKER_NATS_PASSWORD="b", FLOTILLA_OPERATOR_NATS_PASSWORD="c"
    )
    assert subprocess.run([server, "-c", conf, "-t"], env=env, capture_output=True).returncode == 0


def test_the_services_need_nothing_beyond_their_permissions() -> None:
    """The narrow allow-lists are enough: questions, answers, cancels, a takeover after a worker
    dies, retention's purges and provisioning run without one permissions violation."""
    env = {"FLOTILLA_DISPATCHER_EVENT_MAX_AGE_S": "1"}
    with local_stack(workers=2, job_ack_wait_s=2.0, env=env) as stack, tempfile.TemporaryDirectory() as tmp:

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                answered = await api.start("load", n=3, asks=2)
                events, _ = await api.stream(answered, answer=lambda q: "ok")
                assert events[-1]["status"] == "completed"
                cancelled = await api.start("load", n=0, asks=1)
                await api.wait_for(cancelled, lambda es: any(e["type"] == "text_input" for e in es))
                assert (await api.http.post(f"/v1/runs/{cancelled}/cancel")).status_code == 202
                await api.wait_for(cancelled, lambda es: es[-1]["type"] == "workflow_completed")
                resumed = await api.start("resumable", marker=str(Path(tmp) / "crashed"))
                events, _ = await api.stream(resumed, answer=lambda q: "tides", timeout_s=90)
                assert events[-1]["status"] == "completed" and any(e["type"] == "run_retried" for e in events)
                # Retention (1 s) purges the finished runs' logs, answers, records and headers.
                for _ in range(200):
                    if (await api.http.get(f"/v1/runs/{answered}")).status_code == 404:
                        break
                    await asyncio.sleep(0.1)
                assert (await api.http.get(f"/v1/runs/{answered}")).status_code == 404

        asyncio.run(scenario())
        assert stack.config.log_dir is not None
        said = {log.name: log.read_text() for log in stack.config.log_dir.glob("*.log")}
        violations = {name: text.lower().count("permissions violation") for name, text in said.items()}
        assert not any(violations.values()), violations


def test_a_worker_cannot_take_a_run_read_replies_or_purge_history(stack: LocalStack) -> None:
    """With the worker's credentials (what a workflow's tool code could get at): rewriting a run's
    record changes neither its owner nor its params, a made-up record is no run, headers cannot be
    written, buckets cannot be purged, and other users' replies cannot be read."""

    async def scenario() -> None:
        errors: list[str] = []
        worker = await _connect(stack, "worker", stack.passwords["worker"], errors)
        alice_key, bob_key = str(IDENTITIES["alice"]["key"]), str(IDENTITIES["bob"]["key"])
        try:
            async with Api(stack.gateway_url, alice_key) as alice, Api(stack.gateway_url, bob_key) as bob:
                run_id = await alice.start("load", n=1, size=7)
                await alice.stream(run_id)
                js = worker.jetstream()
                runs = await js.key_value(RUNS_BUCKET)
                entry = await runs.get(run_id)
                forged = Run.FromString(entry.value or b"")
                forged.owner, forged.params_json = "key:bob", '{"n": 99999, "size": 1000000}'
                await runs.put(run_id, forged.SerializeToString())  # the worker may update records...
                mine = await alice.run(run_id)  # ...but not whose run it is, or what it was started with
                assert mine["params"] == {"n": 1, "size": 7}
                assert (await bob.http.get(f"/v1/runs/{run_id}")).status_code == 404
                fake = Run(run_id="0" * 25 + "1", workflow="load", owner="key:bob", status=RunStatus.RUN_STATUS_QUEUED)
                await runs.put(fake.run_id, fake.SerializeToString())
                assert (await bob.http.get(f"/v1/runs/{fake.run_id}")).status_code == 404
                assert fake.run_id not in {r["run_id"] for r in (await bob.http.get("/v1/runs")).json()}

                with pytest.raises(NatsError):  # no rollups: a KV purge is refused
                    await runs.purge(run_id)
                with pytest.raises(NatsError):
                    await js.purge_stream(f"KV_{RUNS_BUCKET}")
                with pytest.raises(NatsError):
                    await js.publish(f"$KV.{RUN_HEADERS_BUCKET}.{run_id}", forged.SerializeToString(), timeout=1)
                with pytest.raises(NatsError):
                    await js.delete_consumer("FLOTILLA_JOBS", "workers")
                assert (await alice.run(run_id))["params"] == {"n": 1, "size": 7}
                assert len(await alice.events(run_id)) == 3  # started, the message, completed

            # Other users' replies: the dispatcher's inbox prefix, and the plain one, are out of reach.
            for subject in ("_INBOX_dispatcher.>", "_INBOX.>", ">"):
                await worker.subscribe(subject)
            await worker.flush()
            for subject in ("_INBOX_dispatcher.>", "_INBOX.>"):
                await until(
                    # Awaited within this iteration.
                    lambda: any(
                        "permissions violation" in e.lower() and subject.lower() in e.lower()  # noqa: B023
                        for e in errors
                    ),
                    f"the server refuses the subscription to {subject} ({errors})",
                )
        finally:
            await worker.close()

    asyncio.run(scenario())


def test_a_planted_params_schema_stops_only_its_workflow(stack: LocalStack) -> None:
    """A worker advertises schemas the dispatcher must not trust: too large, not JSON Schema, or
    with a regex that backtracks for ever. Starting that workflow gets a clear 503; nothing else
    waits for it."""

    async def scenario() -> None:
        worker = await _connect(stack, "worker", stack.passwords["worker"])
        evil_regex = {"type": "object", "properties": {"x": {"type": "string", "pattern": "^(a+)+$"}}}
        planted = {
            "planted_huge": json.dumps({"type": "object", "description": "x" * 100_000}),
            "planted_invalid": json.dumps({"type": 12}),
            "planted_regex": json.dumps(evil_regex),
        }
        try:
            catalogue = await worker.jetstream().key_value(WORKFLOWS_BUCKET)
            for name, schema in planted.items():
                info = WorkflowInfo(name=name, description="planted", params_schema_json=schema)
                await catalogue.put(name, info.SerializeToString())
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                for name in planted:
                    params = {"x": "a" * 40 + "!"} if name == "planted_regex" else {}
                    started = asyncio.get_running_loop().time()
                    response = await api.http.post("/v1/runs", json={"workflow": name, "params": params})
                    if name == "planted_regex":  # checked in linear time: a plain answer, at once
                        assert response.status_code == 422 and "does not match" in response.text, response.text
                    else:
                        assert response.status_code == 503, (name, response.text)
                        assert "cannot be checked" in response.json()["detail"]
                    assert asyncio.get_running_loop().time() - started < 2
                    ok = await api.http.post("/v1/runs", json={"workflow": "load", "params": {"n": 0}})
                    assert ok.status_code == 201, ok.text
        finally:
            catalogue = await worker.jetstream().key_value(WORKFLOWS_BUCKET)
            for name in planted:
                await catalogue.delete(name)
            await worker.close()

    asyncio.run(scenario())


def test_only_workers_write_reply_deltas_and_only_dispatchers_read_them(stack: LocalStack) -> None:
    """The reply being written (core NATS, never stored) is the workers' to publish and the
    dispatchers' to read: a dispatcher credential cannot forge one, a worker credential cannot
    listen in on other runs' replies."""

    async def scenario() -> None:
        worker_errors: list[str] = []
        dispatcher_errors: list[str] = []
        worker = await _connect(stack, "worker", stack.passwords["worker"], worker_errors)
        dispatcher = await _connect(stack, "dispatcher", stack.passwords["dispatcher"], dispatcher_errors)
        received: list[bytes] = []

        async def on_delta(msg: Msg) -> None:
            received.append(msg.data)

        try:
            await dispatcher.subscribe(REPLY_DELTAS, cb=on_delta)
            await dispatcher.flush()
            await dispatcher.publish(delta_subject("0" * 26), b"forged by a dispatcher")
            await dispatcher.flush()
            await worker.publish(delta_subject("1" * 26), b"written by a worker")
            await worker.flush()
            await until(lambda: b"written by a worker" in received, "a worker's delta reaches the dispatchers")
            await until(
                lambda: any("permissions violation" in e.lower() and "flotilla.deltas" in e for e in dispatcher_errors),
                f"the server refuses the dispatcher's publish ({dispatcher_errors})",
            )
            await worker.subscribe(REPLY_DELTAS)
            await worker.flush()
            await until(
                lambda: any("permissions violation" in e.lower() and "flotilla.deltas" in e for e in worker_errors),
                f"the server refuses the worker's subscription ({worker_errors})",
            )
            assert received == [b"written by a worker"]
        finally:
            await worker.close()
            await dispatcher.close()

    asyncio.run(scenario())

"""nats-server.conf: each service's user can do only what it needs."""

from __future__ import annotations

import asyncio
import os
import subprocess

import nats
from nats.aio.client import Client
import pytest
from nats.errors import Error as NatsError

from flotilla.devstack import LocalStack, find_nats_conf, find_nats_server
from flotilla.jetstream import JOBS_STREAM, JOBS_SUBJECT


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
            await asyncio.sleep(0.2)
            assert any("permissions violation" in e.lower() and JOBS_SUBJECT in e for e in errors), errors
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
        with pytest.raises(Exception):
            await nats.connect(stack.nats_url, tls=stack.nats_tls(), allow_reconnect=False, connect_timeout=2)

    asyncio.run(scenario())


def test_config_refuses_to_start_without_passwords() -> None:
    server, conf = find_nats_server(), str(find_nats_conf())
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NATS_PASSWORD")}
    missing = subprocess.run([server, "-c", conf, "-t"], env=env, capture_output=True, text=True)
    assert missing.returncode != 0 and "FLOTILLA_" in missing.stdout + missing.stderr
    env.update(FLOTILLA_DISPATCHER_NATS_PASSWORD="a", FLOTILLA_WORKER_NATS_PASSWORD="b")
    assert subprocess.run([server, "-c", conf, "-t"], env=env, capture_output=True).returncode == 0

"""Dead letters and retries against the real stack: admins list what no worker could run and
retry a failed run (a new run forked from its whole log); everyone else is refused."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from grpc import aio

from flotilla.devstack import LocalStack
from flotilla.ids import new_run_id
from flotilla.jetstream import enqueue
from flotilla.protocol import GatewayStub, Job, ListDeadLettersRequest, RetryRunRequest
from support import IDENTITIES, Api, admin, first_question, until


def _key(name: str) -> str:
    return str(IDENTITIES[name]["key"])


async def _dead_letters(api: Api) -> Any:
    return await api.http.get("/v1/admin/dead-letters")


def test_admins_list_dead_letters_and_no_one_else(stack: LocalStack) -> None:
    async def scenario() -> None:
        orphan = new_run_id()  # a job whose run was never created: a worker dead-letters it
        nc = await admin(stack)
        try:
            await enqueue(nc.jetstream(), Job(run_id=orphan, workflow="load"))
        finally:
            await nc.close()
        async with (
            Api(stack.gateway_url, _key("auditor")) as auditor,
            Api(stack.gateway_url, _key("alice")) as alice,
            Api(stack.gateway_url, _key("reader")) as reader,
        ):
            found: list[dict[str, Any]] = []

            async def listed() -> bool:
                response = await _dead_letters(auditor)
                assert response.status_code == 200, response.text
                found[:] = [d for d in response.json() if d["run_id"] == orphan]
                return bool(found)

            await until(listed, "the orphan job is listed as a dead letter")
            assert found[0]["reason"] == "orphan" and found[0]["workflow"] == "load"
            assert orphan in found[0]["detail"] and found[0]["dead_at"] and found[0]["seq"] >= 1
            for user in (alice, reader):
                assert (await _dead_letters(user)).status_code == 403
            assert (await auditor.http.get("/v1/admin/dead-letters", headers={"Authorization": ""})).status_code == 401

    asyncio.run(scenario())


def test_an_admin_retries_a_failed_run_for_its_owner(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with (
            Api(stack.gateway_url, _key("alice")) as alice,
            Api(stack.gateway_url, _key("auditor")) as auditor,
        ):
            failed = await alice.start("ask_briefly", timeout_s=1.0)  # nobody answers: InputTimeout
            record = await alice.settled(failed)
            assert record["status"] == "failed" and "InputTimeout" in record["error"]
            source_events = await alice.events(failed)

            assert (await alice.http.post(f"/v1/runs/{failed}/retry")).status_code == 403  # not an admin
            response = await auditor.http.post(f"/v1/runs/{failed}/retry", json={"idempotency_key": "r1"})
            assert response.status_code == 201, response.text
            retry = response.json()
            again = await auditor.http.post(f"/v1/runs/{failed}/retry", json={"idempotency_key": "r1"})
            assert again.status_code == 200 and again.json()["run_id"] == retry["run_id"]
            assert retry["forked_from"] == failed
            # The owner's: alice sees it (and answers it), nobody else.
            events = await alice.wait_for(retry["run_id"], lambda es: first_question(es) is not None)
            kept = retry["fork_at_seq"]
            assert [e["type"] for e in source_events[:kept]] == ["workflow_started", "text_message", "text_input"]
            assert [{**e, "run_id": ""} for e in events[:kept]] == [{**e, "run_id": ""} for e in source_events[:kept]]
            question = first_question(events)
            assert question is not None
            assert (await alice.answer(retry["run_id"], question["request_id"], "now")).status_code == 202
            done = await alice.settled(retry["run_id"])
            assert done["status"] == "completed" and done["result"] == "now", done
            assert (await alice.run(failed))["status"] == "failed"  # the failed run stays as it was
            # Only failed runs are retried.
            assert (await auditor.http.post(f"/v1/runs/{retry['run_id']}/retry")).status_code == 409

    asyncio.run(scenario())


def test_retry_and_dead_letters_over_grpc_need_admin(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, _key("alice")) as api:
            failed = await api.start("raises")
            assert (await api.settled(failed))["status"] == "failed"
        channel: aio.Channel = stack.grpc_channel(stack.gateway_grpc_address)
        try:
            stub = GatewayStub(channel)
            alice = (("authorization", f"Bearer {_key('alice')}"),)
            auditor = (("authorization", f"Bearer {_key('auditor')}"),)
            for call in (
                stub.RetryRun(RetryRunRequest(run_id=failed), metadata=alice),
                stub.ListDeadLetters(ListDeadLettersRequest(), metadata=alice),
            ):
                with pytest.raises(aio.AioRpcError) as raised:
                    await call
                assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
            retried = await stub.RetryRun(RetryRunRequest(run_id=failed), metadata=auditor)
            assert retried.created and retried.run.forked_from == failed
            assert retried.run.owner == "key:alice"
            await stub.ListDeadLetters(ListDeadLettersRequest(limit=5), metadata=auditor)
        finally:
            await channel.close()

    asyncio.run(scenario())

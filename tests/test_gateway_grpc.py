"""The gateway's gRPC API (flotilla.v1.Gateway) against the real stack: the same operations and
identities as REST, act_as for the UI's service identity, health and reflection."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from flotilla.devstack import LocalStack
from flotilla.events import event_to_json
from flotilla.protocol import (
    GATEWAY_SERVICE,
    Caller,
    CancelRunRequest,
    GatewayStub,
    GetRunRequest,
    ListEventsRequest,
    ListRunsRequest,
    ListWorkflowsRequest,
    RunEvent,
    StartRunRequest,
    SubmitInputRequest,
    WatchRunRequest,
    WhoAmIRequest,
)
from support import IDENTITIES

if TYPE_CHECKING:
    from flotilla.v1.gateway_pb2_grpc import GatewayAsyncStub

Metadata = tuple[tuple[str, str], ...]


def _as(token: str, act_as: str | None = None) -> Metadata:
    pairs = [("authorization", f"Bearer {token}")]
    if act_as is not None:
        pairs.append(("flotilla-act-as", act_as))
    return tuple(pairs)


def _key(name: str) -> Metadata:
    return _as(str(IDENTITIES[name]["key"]))


@asynccontextmanager
async def _gateway(stack: LocalStack) -> AsyncIterator[GatewayAsyncStub]:
    channel: aio.Channel = stack.grpc_channel(stack.gateway_grpc_address)
    try:
        yield GatewayStub(channel)
    finally:
        await channel.close()


async def _code(call: Awaitable[Any]) -> grpc.StatusCode:
    with pytest.raises(aio.AioRpcError) as raised:
        await call
    return raised.value.code()


async def _watch(stub: GatewayAsyncStub, run_id: str, metadata: Metadata, after: int = 0) -> list[RunEvent]:
    events: list[RunEvent] = []
    async for batch in stub.WatchRun(WatchRunRequest(run_id=run_id, after_seq=after), metadata=metadata):
        events.extend(batch.events)
    return events


async def _wait_for(
    stub: GatewayAsyncStub, run_id: str, metadata: Metadata, found: Callable[[list[RunEvent]], bool]
) -> list[RunEvent]:
    for _ in range(300):
        events = list((await stub.ListEvents(ListEventsRequest(run_id=run_id), metadata=metadata)).events)
        if found(events):
            return events
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met; events: {[e.WhichOneof('kind') for e in events]}")


def test_a_run_through_grpc_with_a_question(stack: LocalStack) -> None:
    async def scenario() -> None:
        alice = _key("alice")
        async with _gateway(stack) as stub:
            names = {w.name for w in (await stub.ListWorkflows(ListWorkflowsRequest(), metadata=alice)).workflows}
            assert {"choose", "learning_chat"} <= names
            started = await stub.StartRun(StartRunRequest(workflow="choose"), metadata=alice)
            run_id = started.run.run_id
            assert started.created and started.run.owner == "key:alice"
            events = await _wait_for(
                stub, run_id, alice, lambda es: bool(es) and es[-1].WhichOneof("kind") == "multiple_choice"
            )
            question = events[-1].multiple_choice
            assert list(question.choices) == ["yes", "no"]
            await stub.SubmitInput(
                SubmitInputRequest(run_id=run_id, request_id=question.request_id, value="yes"), metadata=alice
            )
            assert (
                await _code(
                    stub.SubmitInput(
                        SubmitInputRequest(run_id=run_id, request_id=question.request_id, value="no"), metadata=alice
                    )
                )
                == grpc.StatusCode.FAILED_PRECONDITION
            )
            watched = await _watch(stub, run_id, alice)
            assert [e.seq for e in watched] == list(range(1, len(watched) + 1))
            assert event_to_json(watched[-1])["result"] == "yes"
            tail = await _watch(stub, run_id, alice, after=len(watched) - 1)
            assert [e.seq for e in tail] == [len(watched)]
            run = await stub.GetRun(GetRunRequest(run_id=run_id), metadata=alice)
            assert json.loads(run.result_json) == "yes"
            listed = await stub.ListRuns(ListRunsRequest(limit=1000), metadata=alice)
            assert run_id in {r.run_id for r in listed.runs}

    asyncio.run(scenario())


def test_auth_matrix(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with _gateway(stack) as stub:
            mine = await stub.StartRun(StartRunRequest(workflow="choose"), metadata=_key("alice"))
            run_id = mine.run.run_id
            unauthenticated = grpc.StatusCode.UNAUTHENTICATED
            assert await _code(stub.ListWorkflows(ListWorkflowsRequest())) == unauthenticated
            assert await _code(stub.WhoAmI(WhoAmIRequest(), metadata=_as("flk_nope"))) == unauthenticated
            assert await _code(_watch(stub, run_id, _as("a.b.c"))) == unauthenticated
            # A valid token without the scope.
            reader = _key("reader")
            assert await _code(stub.StartRun(StartRunRequest(workflow="load"), metadata=reader)) == (
                grpc.StatusCode.PERMISSION_DENIED
            )
            # Another identity's run does not exist for bob, in every operation and in lists.
            bob = _key("bob")
            for call in (
                stub.GetRun(GetRunRequest(run_id=run_id), metadata=bob),
                stub.ListEvents(ListEventsRequest(run_id=run_id), metadata=bob),
                stub.CancelRun(CancelRunRequest(run_id=run_id), metadata=bob),
                stub.SubmitInput(SubmitInputRequest(run_id=run_id, request_id="q1", value="x"), metadata=bob),
                _watch(stub, run_id, bob),
            ):
                assert await _code(call) == grpc.StatusCode.NOT_FOUND
            assert run_id not in {r.run_id for r in (await stub.ListRuns(ListRunsRequest(), metadata=bob)).runs}
            # Admin sees it; a caller field set by the client is refused, not trusted.
            auditor = _key("auditor")
            assert (await stub.GetRun(GetRunRequest(run_id=run_id), metadata=auditor)).owner == "key:alice"
            forged = GetRunRequest(run_id=run_id, caller=Caller(identity="alice"))
            assert await _code(stub.GetRun(forged, metadata=bob)) == grpc.StatusCode.INVALID_ARGUMENT
            assert (
                await _code(stub.StartRun(StartRunRequest(workflow="load", params_json="[1]"), metadata=_key("alice")))
                == grpc.StatusCode.INVALID_ARGUMENT
            )
            await stub.CancelRun(CancelRunRequest(run_id=run_id), metadata=_key("alice"))

    asyncio.run(scenario())


def test_the_ui_service_identity_acts_for_a_person(stack: LocalStack) -> None:
    async def scenario() -> None:
        as_alice = _as(stack.ui_api_key, act_as="alice")
        async with _gateway(stack) as stub:
            who = await stub.WhoAmI(WhoAmIRequest(), metadata=as_alice)
            # In the UI's own namespace: never the API key `alice`'s, or a JWT subject's.
            assert (who.identity, who.via, who.admin) == ("key:ui/alice", "act_as", False)
            # The service key alone owns nothing and may do nothing but act for someone.
            assert await _code(stub.ListRuns(ListRunsRequest(), metadata=_as(stack.ui_api_key))) == (
                grpc.StatusCode.PERMISSION_DENIED
            )
            started = await stub.StartRun(StartRunRequest(workflow="load", params_json='{"n": 1}'), metadata=as_alice)
            assert started.run.owner == "key:ui/alice"
            assert [e.WhichOneof("kind") for e in await _watch(stub, started.run.run_id, as_alice)][-1] == (
                "workflow_completed"
            )
            assert await _code(stub.GetRun(GetRunRequest(run_id=started.run.run_id), metadata=_key("alice"))) == (
                grpc.StatusCode.NOT_FOUND
            )
            as_bob = _as(stack.ui_api_key, act_as="bob")
            assert await _code(stub.GetRun(GetRunRequest(run_id=started.run.run_id), metadata=as_bob)) == (
                grpc.StatusCode.NOT_FOUND
            )
            # Acting for someone is a service's power only: neither users nor admins have it.
            for name in ("alice", "auditor"):
                assert (
                    await _code(stub.WhoAmI(WhoAmIRequest(), metadata=_as(str(IDENTITIES[name]["key"]), act_as="bob")))
                    == grpc.StatusCode.PERMISSION_DENIED
                )
            for bad in ("", "../bob", "alice bob", "x" * 129):  # (gRPC itself refuses control characters)
                assert await _code(stub.WhoAmI(WhoAmIRequest(), metadata=_as(stack.ui_api_key, act_as=bad))) == (
                    grpc.StatusCode.INVALID_ARGUMENT
                ), bad

    asyncio.run(scenario())


@pytest.mark.parametrize("server", ["gateway", "dispatcher"])
def test_every_grpc_server_answers_health_checks_and_no_reflection(stack: LocalStack, server: str) -> None:
    """Health needs no credentials (probes make it); reflection is off unless configured
    (tests/test_service_auth.py turns it on)."""
    address = stack.gateway_grpc_address if server == "gateway" else stack.dispatcher_address
    service = GATEWAY_SERVICE if server == "gateway" else "flotilla.v1.Dispatcher"

    async def scenario() -> None:
        async with stack.grpc_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for name in ("", service):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            # The status the server gave (iterating could report the client's own failed send instead).
            call = reflection.ServerReflectionInfo(iter([request]))
            assert await call.code() == grpc.StatusCode.UNIMPLEMENTED

    asyncio.run(scenario())


def test_bad_input_gets_a_clear_status_and_the_server_goes_on(stack: LocalStack) -> None:
    async def scenario() -> None:
        alice = _key("alice")
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        async with _gateway(stack) as stub:
            deep: Any = {}
            for _ in range(40):
                deep = {"d": deep}
            for request, code in (
                (StartRunRequest(workflow="no_such_workflow"), grpc.StatusCode.NOT_FOUND),
                (StartRunRequest(workflow="load", params_json="{not json"), invalid),
                (StartRunRequest(workflow="load", params_json=json.dumps(deep)), invalid),
                (StartRunRequest(workflow="load", params_json=json.dumps({"x": "y" * 2_000_000})), invalid),
                # The dispatcher's bound (256 KiB), refused at the gateway like over REST.
                (StartRunRequest(workflow="load", params_json=json.dumps({"x": "y" * 300_000})), invalid),
                (StartRunRequest(workflow="typed_params", params_json='{"name": ""}'), invalid),
            ):
                assert await _code(stub.StartRun(request, metadata=alice)) == code, request.workflow
            assert await _code(stub.GetRun(GetRunRequest(run_id="../../etc"), metadata=alice)) in (
                grpc.StatusCode.NOT_FOUND,
                invalid,
            )
            run_id = (await stub.StartRun(StartRunRequest(workflow="choose"), metadata=alice)).run.run_id
            nobody_asked = SubmitInputRequest(run_id=run_id, request_id="q99", value="x")
            assert await _code(stub.SubmitInput(nobody_asked, metadata=alice)) == grpc.StatusCode.NOT_FOUND
        # Bytes that are not a protobuf message: an error for that call, nothing more.
        channel: aio.Channel = stack.grpc_channel(stack.gateway_grpc_address)
        try:
            raw: aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/flotilla.v1.Gateway/StartRun")
            with pytest.raises(aio.AioRpcError) as raised:
                await raw(b"\xff\xfe garbage \x00\x01", metadata=alice)
            assert raised.value.code() != grpc.StatusCode.OK
            assert (await GatewayStub(channel).WhoAmI(WhoAmIRequest(), metadata=alice)).identity == "key:alice"
        finally:
            await channel.close()

    asyncio.run(scenario())

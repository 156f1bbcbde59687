"""Service-to-service trust against the real stack: the dispatcher answers only calls signed with a
key it trusts, for a named caller; TLS and reflection are switches."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Awaitable
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from flotilla.auth import ServiceTokenSigner
from flotilla.devstack import LocalStack
from flotilla.protocol import (
    DISPATCHER_SERVICE,
    GATEWAY_SERVICE,
    Caller,
    DispatcherStub,
    GetRunRequest,
    ListEventsRequest,
    ListRunsRequest,
    ListWorkflowsRequest,
    StartRunRequest,
    WatchRunRequest,
)
from support import Api, local_stack

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


def _gateway_signer(stack: LocalStack, audience: str = DISPATCHER_SERVICE) -> ServiceTokenSigner:
    return ServiceTokenSigner("gateway", stack.credentials.gateway_service_key.read_bytes(), audience)


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def _code(call: Awaitable[Any]) -> grpc.StatusCode:
    with pytest.raises(aio.AioRpcError) as raised:
        await call
    return raised.value.code()


async def _stream_code(call: Any) -> grpc.StatusCode:
    with pytest.raises(aio.AioRpcError) as raised:
        async for _ in call:
            pass
    return raised.value.code()


def test_the_dispatcher_refuses_anyone_without_a_trusted_service_token(stack: LocalStack) -> None:
    """What a process on the network (a worker's tool code, say) gets from the dispatcher."""

    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            victim = await api.start("load", n=1)  # owned by key:developer
            await api.stream(victim)
            before = (await api.http.get("/v1/runs", params={"limit": 1000})).json()
        forged_key = Ed25519PrivateKey.generate()
        now = int(time.time())
        forged = jwt.encode(
            {"sub": "gateway", "aud": DISPATCHER_SERVICE, "iat": now, "exp": now + 60}, forged_key, "EdDSA"
        )
        tokens = {
            "none": None,
            "garbage": "garbage",
            "a key it does not trust": forged,
            "the gateway's key, for another audience": _gateway_signer(stack, GATEWAY_SERVICE).token(),
            "a user's API key": stack.dev_api_key,
        }
        async with stack.grpc_channel(stack.dispatcher_address) as channel:
            stub = DispatcherStub(channel)
            as_ada = Caller(identity="key:developer", admin=True)
            for case, token in tokens.items():
                metadata = _bearer(token) if token else None
                calls: list[Awaitable[Any]] = [
                    stub.ListRuns(ListRunsRequest(caller=as_ada), metadata=metadata),
                    stub.GetRun(GetRunRequest(run_id=victim, caller=as_ada), metadata=metadata),
                    stub.StartRun(StartRunRequest(workflow="load", caller=as_ada), metadata=metadata),
                    stub.ListWorkflows(ListWorkflowsRequest(), metadata=metadata),
                    stub.ListEvents(ListEventsRequest(run_id=victim, caller=as_ada), metadata=metadata),
                ]
                for call in calls:
                    assert await _code(call) == UNAUTHENTICATED, case
                watch = stub.WatchRun(WatchRunRequest(run_id=victim, caller=as_ada), metadata=metadata)
                assert await _stream_code(watch) == UNAUTHENTICATED, case
            # Health checks need no token: probes make them.
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest(service=DISPATCHER_SERVICE))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        async with Api(stack.gateway_url, stack.dev_api_key) as api:  # admin: sees every run
            after = (await api.http.get("/v1/runs", params={"limit": 1000})).json()
            mine = {run["run_id"] for run in before}
            assert [run for run in after if run["run_id"] not in mine and run["owner"] == "key:developer"] == []

    asyncio.run(scenario())


def test_even_the_gateway_s_token_needs_a_named_caller(stack: LocalStack) -> None:
    async def scenario() -> None:
        signer = _gateway_signer(stack)
        async with stack.grpc_channel(stack.dispatcher_address) as channel:
            stub = DispatcherStub(channel)
            metadata = _bearer(signer.token())
            denied = grpc.StatusCode.PERMISSION_DENIED
            for call in (
                stub.ListRuns(ListRunsRequest(), metadata=metadata),
                stub.ListRuns(ListRunsRequest(caller=Caller(admin=True)), metadata=metadata),
                stub.StartRun(StartRunRequest(workflow="load"), metadata=metadata),
                stub.GetRun(GetRunRequest(run_id="0" * 26), metadata=metadata),
            ):
                assert await _code(call) == denied
            assert await _stream_code(stub.WatchRun(WatchRunRequest(run_id="0" * 26), metadata=metadata)) == denied
            named = await stub.ListRuns(ListRunsRequest(caller=Caller(identity="key:nobody")), metadata=metadata)
            assert list(named.runs) == []

    asyncio.run(scenario())


def test_tls_servers_refuse_plaintext(stack: LocalStack) -> None:
    async def scenario() -> None:
        for address in (stack.dispatcher_address, stack.gateway_grpc_address):
            async with aio.insecure_channel(address) as plain:
                health = health_pb2_grpc.HealthStub(plain)
                code = await _code(health.Check(health_pb2.HealthCheckRequest(), timeout=3))
                assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), address
        # NATS says it requires TLS before anything else, and a client that cannot verify it gets nothing.
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.config.nats_port)
        info = json.loads((await reader.readline()).removeprefix(b"INFO "))
        writer.close()
        assert info["tls_required"] is True
        with pytest.raises(ssl.SSLCertVerificationError):
            await stack.nats_connect("worker", tls=ssl.create_default_context(), allow_reconnect=False)

    asyncio.run(scenario())


def test_plaintext_stack_with_reflection_still_authenticates() -> None:
    """TLS off (a switch) and reflection on (another): runs still go through, the dispatcher still
    wants a token, and reflection maps the API only for whoever holds one."""
    env = {"FLOTILLA_DISPATCHER_GRPC_REFLECTION": "true", "FLOTILLA_GATEWAY_GRPC_REFLECTION": "true"}
    with local_stack(workers=1, env=env, tls=False) as stack:

        async def scenario() -> None:
            assert stack.ca_file is None
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                events, code = await api.stream(await api.start("load", n=2))
                assert code == 1000 and events[-1]["status"] == "completed"
            listing = reflection_pb2.ServerReflectionRequest(list_services="")
            async with aio.insecure_channel(stack.dispatcher_address) as channel:
                reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
                assert await reflection.ServerReflectionInfo(iter([listing])).code() == UNAUTHENTICATED
                token = _bearer(_gateway_signer(stack).token())
                async for reply in reflection.ServerReflectionInfo(iter([listing]), metadata=token):
                    assert DISPATCHER_SERVICE in {s.name for s in reply.list_services_response.service}
                assert await _code(DispatcherStub(channel).ListWorkflows(ListWorkflowsRequest())) == UNAUTHENTICATED
            async with aio.insecure_channel(stack.gateway_grpc_address) as channel:
                reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
                async for reply in reflection.ServerReflectionInfo(iter([listing])):
                    assert GATEWAY_SERVICE in {s.name for s in reply.list_services_response.service}

        asyncio.run(scenario())

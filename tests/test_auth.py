"""The gateway's auth matrix against the real stack: no token, bad token, expired JWT, wrong
scope, another identity's run, admin."""

from __future__ import annotations

import asyncio
import time

import grpc
import jwt
import pytest
import websockets
from grpc import aio

from flotilla.devstack import LocalStack
from flotilla.protocol import GatewayStub, GetRunRequest, StartRunRequest, WhoAmIRequest
from support import IDENTITIES, JWT_AUDIENCE, JWT_ISSUER, JWT_SECRET, Api


def _jwt(sub: str, scopes: str, *, expires_in: float = 300, issuer: str = JWT_ISSUER) -> str:
    now = int(time.time())
    claims = {"sub": sub, "scope": scopes, "iss": issuer, "aud": JWT_AUDIENCE, "iat": now, "exp": now + int(expires_in)}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def _key(name: str) -> str:
    return str(IDENTITIES[name]["key"])


def test_no_or_bad_token_is_401_and_health_stays_open(stack: LocalStack) -> None:
    async def scenario() -> None:
        for token in (
            None,
            "flk_not_a_key",
            "a.b.c",
            _jwt("eve", "runs:read", expires_in=-60),
            _jwt("eve", "runs:read", issuer="https://evil"),
        ):
            async with Api(stack.gateway_url, token) as api:
                for method, path in (("GET", "/v1/workflows"), ("GET", "/v1/runs"), ("POST", "/v1/runs")):
                    response = await api.http.request(method, path, json={"workflow": "load"})
                    assert response.status_code == 401, (token, path, response.text)
                    assert response.headers.get("www-authenticate") == "Bearer"
        async with Api(stack.gateway_url, _jwt("eve", "runs:read", expires_in=-60)) as api:
            assert "expired" in (await api.http.get("/v1/runs")).json()["detail"]
        async with Api(stack.gateway_url) as anonymous:
            assert (await anonymous.http.get("/healthz")).status_code == 200
            assert (await anonymous.http.get("/readyz")).status_code == 200
            async with websockets.connect(f"{anonymous.ws_url}/v1/runs/{'0' * 26}/stream") as ws:
                await asyncio.wait_for(ws.wait_closed(), 10)
                assert ws.close_code == 4401

    asyncio.run(scenario())


def test_wrong_scope_is_403(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, _key("reader")) as reader:
            denied = await reader.http.post("/v1/runs", json={"workflow": "load"})
            assert denied.status_code == 403 and "runs:write" in denied.json()["detail"]
            assert (await reader.http.get("/v1/workflows")).status_code == 403
            assert (await reader.http.get("/v1/runs")).status_code == 200
        async with Api(stack.gateway_url, _jwt("carol", "workflows:read")) as carol:
            assert (await carol.http.get("/v1/workflows")).status_code == 200
            assert (await carol.http.get("/v1/runs")).status_code == 403

    asyncio.run(scenario())


def test_runs_belong_to_who_started_them(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, _key("alice")) as alice, Api(stack.gateway_url, _key("bob")) as bob:
            run_id = await alice.start("load", n=1, asks=1)
            events = await alice.wait_for(run_id, lambda es: any(e["type"] == "text_input" for e in es))
            request_id = next(e for e in events if e["type"] == "text_input")["request_id"]
            for method, path, body in (
                ("GET", f"/v1/runs/{run_id}", None),
                ("GET", f"/v1/runs/{run_id}/events", None),
                ("POST", f"/v1/runs/{run_id}/input", {"request_id": request_id, "value": "bob was here"}),
                ("POST", f"/v1/runs/{run_id}/cancel", None),
            ):
                response = await bob.http.request(method, path, json=body)
                assert response.status_code == 404, (method, path, response.text)
            assert run_id not in {r["run_id"] for r in (await bob.http.get("/v1/runs")).json()}
            async with websockets.connect(f"{bob.ws_url}/v1/runs/{run_id}/stream?token={bob.token}") as ws:
                await asyncio.wait_for(ws.wait_closed(), 10)
                assert ws.close_code == 4404
            # The same idempotency key names different runs for different identities.
            body = {"workflow": "load", "params": {"n": 0}, "idempotency_key": "shared-key"}
            first, second = await alice.http.post("/v1/runs", json=body), await bob.http.post("/v1/runs", json=body)
            assert first.json()["run_id"] != second.json()["run_id"]
            assert run_id in {r["run_id"] for r in (await alice.http.get("/v1/runs")).json()}
            events, _ = await alice.stream(run_id, answer=lambda q: "alice")
            assert events[-1]["result"]["answers"] == ["alice"]
        async with Api(stack.gateway_url, _key("auditor")) as admin:
            assert (await admin.http.get(f"/v1/runs/{run_id}")).status_code == 200
            assert run_id in {r["run_id"] for r in (await admin.http.get("/v1/runs", params={"limit": 1000})).json()}

    asyncio.run(scenario())


def test_identities_from_different_sources_never_share_runs(stack: LocalStack) -> None:
    """An empty JWT subject is refused; a JWT subject named like an API key, and the UI acting for
    a person of that name, are three owners: none sees the others' runs, over REST, the WebSocket,
    the FastAgency routes or gRPC. A JWT's act_as scope is not honoured for an unlisted subject."""

    async def scenario() -> None:
        user_scopes = "runs:read runs:write workflows:read"
        for empty in ("", " ", "ada\n"):
            async with Api(stack.gateway_url, _jwt(empty, user_scopes + " admin")) as nobody:
                assert (await nobody.http.get("/v1/runs")).status_code == 401, repr(empty)
        as_jwt = _jwt("alice", user_scopes)
        async with Api(stack.gateway_url, _key("alice")) as by_key, Api(stack.gateway_url, as_jwt) as by_jwt:
            assert (await by_jwt.http.get("/v1/runs")).status_code == 200
            mine = await by_key.start("load", n=0, asks=1)
            theirs = await by_jwt.start("load", n=0, asks=1)
            for reader, other in ((by_jwt, mine), (by_key, theirs)):
                assert (await reader.http.get(f"/v1/runs/{other}")).status_code == 404
                assert other not in {r["run_id"] for r in (await reader.http.get("/v1/runs")).json()}
                async with websockets.connect(f"{reader.ws_url}/v1/runs/{other}/stream?token={reader.token}") as ws:
                    await asyncio.wait_for(ws.wait_closed(), 10)
                    assert ws.close_code == 4404
                discovered = await reader.http.get(f"/fa/{reader.token}/fastagency/discovery")
                assert discovered.status_code == 200  # the FastAgency routes answer for the same identity
            for api, run_id in ((by_key, mine), (by_jwt, theirs)):
                events, _ = await api.stream(run_id, answer=lambda q: "done")
                assert events[-1]["status"] == "completed"

        # gRPC: the UI acting for "alice" is a third owner; a JWT cannot act for anyone.
        channel = stack.grpc_channel(stack.gateway_grpc_address)
        try:
            stub = GatewayStub(channel)
            acted = (("authorization", f"Bearer {stack.ui_api_key}"), ("flotilla-act-as", "alice"))
            run = (await stub.StartRun(StartRunRequest(workflow="load", params_json='{"n": 0}'), metadata=acted)).run
            for token in (_key("alice"), as_jwt):
                with pytest.raises(aio.AioRpcError) as hidden:
                    await stub.GetRun(
                        GetRunRequest(run_id=run.run_id), metadata=(("authorization", f"Bearer {token}"),)
                    )
                assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
            impersonator = (("authorization", f"Bearer {_jwt('mallory', 'act_as ' + user_scopes)}"),)
            with pytest.raises(aio.AioRpcError) as refused:
                await stub.WhoAmI(WhoAmIRequest(), metadata=(*impersonator, ("flotilla-act-as", "alice")))
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        finally:
            await channel.close()

    asyncio.run(scenario())

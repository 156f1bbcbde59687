"""The gateway's auth matrix against the real stack: no token, bad token, expired JWT, wrong
scope, another identity's run, admin."""

from __future__ import annotations

import asyncio
import time

import jwt
import websockets

from flotilla.devstack import LocalStack
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

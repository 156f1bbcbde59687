"""Per-identity limits: request rate (429 + Retry-After), open streams, params depth."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets

from support import IDENTITIES, Api, empty_store, fill_store, local_stack


def test_rate_stream_and_depth_limits() -> None:
    limits = {
        "FLOTILLA_GATEWAY_RATE_LIMIT_PER_S": "2",
        "FLOTILLA_GATEWAY_RATE_LIMIT_BURST": "5",
        "FLOTILLA_GATEWAY_MAX_STREAMS_PER_IDENTITY": "2",
        "FLOTILLA_GATEWAY_MAX_PARAMS_DEPTH": "3",
    }
    with local_stack(workers=1, env=limits) as stack:

        async def scenario() -> None:
            async with Api(stack.gateway_url, str(IDENTITIES["alice"]["key"])) as alice:
                statuses = [(await alice.http.get("/v1/runs")).status_code for _ in range(8)]
                assert statuses[:5] == [200] * 5 and 429 in statuses[5:]
                limited = await alice.http.get("/v1/runs")
                assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
                assert "rate limit" in limited.json()["detail"]
                async with Api(stack.gateway_url, str(IDENTITIES["bob"]["key"])) as bob:
                    assert (await bob.http.get("/v1/runs")).status_code == 200  # per identity
                    await asyncio.sleep(1.0)
                    deep = await bob.http.post(
                        "/v1/runs", json={"workflow": "load", "params": {"a": {"b": {"c": {"d": 1}}}}}
                    )
                    assert deep.status_code == 422 and "deeper" in deep.json()["detail"]
                    run_id = await bob.start("load", n=0, asks=1)
                    url = f"{bob.ws_url}/v1/runs/{run_id}/stream?token={bob.token}"
                    async with websockets.connect(url), websockets.connect(url):
                        third = await websockets.connect(url)
                        try:
                            await asyncio.wait_for(third.recv(), 10)
                            raise AssertionError("a third stream should have been refused")
                        except websockets.ConnectionClosed as closed:
                            assert closed.rcvd is not None and closed.rcvd.code == 4429
                    # Slots are given back on close (and connecting counts against the rate limit).
                    ws, first = await _admitted(url)
                    await ws.close()
                    assert first["type"] == "workflow_started"

                    # Every input frame counts against the rate limit too: a flood is refused frame by
                    # frame (the stream stays open), and the question is still answered once.
                    ws, first = await _admitted(url)
                    try:
                        question = first if first["type"] == "text_input" else await _question(ws)
                        for _ in range(20):
                            await ws.send(json.dumps({"type": "input", "request_id": "nobody-asked", "value": "x"}))
                        replies = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(20)]
                    finally:
                        await ws.close()
                    refused = [r for r in replies if "rate limit" in r.get("detail", "")]
                    assert refused and all(r["retry_after_s"] > 0 for r in refused), replies
                    events = await _answer_once_admitted(bob, run_id, question["request_id"])
                    assert events[-1]["status"] == "completed" and events[-1]["result"]["answers"] == ["ok"]

        asyncio.run(scenario())


async def _admitted(url: str) -> tuple[websockets.ClientConnection, dict[str, Any]]:
    """An open stream and its first frame, reconnecting while the gateway says 4429 (rate, slots)."""
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        ws = await websockets.connect(url)
        try:
            return ws, json.loads(await asyncio.wait_for(ws.recv(), 10))
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 4429, closed
            assert asyncio.get_running_loop().time() < deadline, "never admitted again"
            await asyncio.sleep(0.1)


async def _question(ws: websockets.ClientConnection) -> dict[str, Any]:
    while True:
        event: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if event.get("type") == "text_input":
            return event


async def _answer_once_admitted(api: Api, run_id: str, request_id: str) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + 20
    while (answered := await api.answer(run_id, request_id, "ok")).status_code == 429:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(float(answered.headers["retry-after"]) / 4)
    assert answered.status_code == 202, answered.text
    while True:
        response = await api.http.get(f"/v1/runs/{run_id}/events")
        if response.status_code == 200 and response.json()["events"][-1]["type"] == "workflow_completed":
            return list(response.json()["events"])
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.2)


def test_an_identity_has_a_quota_of_runs_in_flight() -> None:
    with local_stack(workers=1, env={"FLOTILLA_DISPATCHER_MAX_ACTIVE_RUNS_PER_IDENTITY": "2"}) as stack:

        async def scenario() -> None:
            alice_key, bob_key = str(IDENTITIES["alice"]["key"]), str(IDENTITIES["bob"]["key"])
            async with Api(stack.gateway_url, alice_key) as alice, Api(stack.gateway_url, bob_key) as bob:
                waiting = [await alice.start("load", n=0, asks=1) for _ in range(2)]
                third = await alice.http.post("/v1/runs", json={"workflow": "load", "params": {"n": 0}})
                assert third.status_code == 429, third.text
                assert "already has 2 runs queued or running" in third.json()["detail"]
                assert (
                    await bob.http.post("/v1/runs", json={"workflow": "load", "params": {"n": 0}})
                ).status_code == 201
                events, _ = await alice.stream(waiting[0], answer=lambda q: "done")
                assert events[-1]["status"] == "completed"
                deadline = asyncio.get_running_loop().time() + 10
                while (again := await alice.http.post("/v1/runs", json={"workflow": "load"})).status_code == 429:
                    assert asyncio.get_running_loop().time() < deadline, again.text  # the index hears of the end
                    await asyncio.sleep(0.1)
                assert again.status_code == 201

        asyncio.run(scenario())


def test_a_full_event_store_refuses_new_runs_clearly_and_loses_nothing() -> None:
    """The events' share of a small store filled up: starting a run gets a clear 503, every stored
    run reads as before, a waiting run can still be cancelled, and once room is made runs start."""
    with local_stack(workers=1, max_file_store="64MB") as stack:

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                done = await api.start("load", n=5)
                before, _ = await api.stream(done)
                waiting = await api.start("load", n=0, asks=1)
                await api.wait_for(waiting, lambda es: any(e["type"] == "text_input" for e in es))
                await fill_store(stack)
                deadline = asyncio.get_running_loop().time() + 10
                while (refused := await api.http.post("/v1/runs", json={"workflow": "load"})).status_code == 201:
                    assert asyncio.get_running_loop().time() < deadline  # the fill is seen within a second
                    await asyncio.sleep(0.2)
                assert refused.status_code == 503 and "event store is full" in refused.json()["detail"], refused.text
                assert await api.events(done) == before
                assert (await api.run(done))["status"] == "completed"
                assert (await api.http.post(f"/v1/runs/{waiting}/cancel")).status_code == 202
                await empty_store(stack)
                events, _ = await api.stream(waiting, timeout_s=60)
                assert events[-1]["status"] == "cancelled"
                while (again := await api.http.post("/v1/runs", json={"workflow": "load"})).status_code == 503:
                    assert asyncio.get_running_loop().time() < deadline + 30
                    await asyncio.sleep(0.2)
                assert again.status_code == 201

        asyncio.run(scenario())

"""Per-identity limits: request rate (429 + Retry-After), open streams, params depth."""

from __future__ import annotations

import asyncio

import websockets

from support import IDENTITIES, Api, local_stack


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
                    await asyncio.sleep(0.3)  # the run is quiet (waiting for input): slots free at once
                    async with websockets.connect(url) as again:  # slots are given back on close
                        first = await asyncio.wait_for(again.recv(), 10)
                        assert '"workflow_started"' in str(first)

        asyncio.run(scenario())

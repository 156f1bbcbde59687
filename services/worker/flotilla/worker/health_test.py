from __future__ import annotations

import asyncio

import httpx

from flotilla.worker.health import serve_health


def test_livez_answers_and_readyz_follows_readiness() -> None:
    async def scenario() -> list[int]:
        ready = [False]
        server = await serve_health("127.0.0.1", 0, lambda: ready[0])
        port = server.sockets[0].getsockname()[1]
        codes = []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for path in ("/livez", "/readyz"):
                codes.append((await client.get(path)).status_code)
            ready[0] = True
            codes.append((await client.get("/readyz?verbose=1")).status_code)
            codes.append((await client.get("/other")).status_code)
        server.close()
        await server.wait_closed()
        return codes

    assert asyncio.run(scenario()) == [200, 503, 200, 404]

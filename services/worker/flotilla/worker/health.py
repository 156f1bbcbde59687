"""The worker's probes over HTTP (FLOTILLA_WORKER_HEALTH_PORT): `GET /livez` answers 200 while the
event loop does (the server runs on it: a blocked loop answers nothing), `GET /readyz` 200 while
NATS is connected and the worker pulls jobs, else 503. No auth: they say nothing but that."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

_REASONS = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}


async def serve_health(host: str, port: int, ready: Callable[[], bool]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            request = await asyncio.wait_for(reader.readline(), timeout=5.0)
            parts = request.decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 else ""
            status, body = _answer(path, ready)
            head = f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: application/json\r\n"
            head += f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
            writer.write(head.encode() + body)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, host, port)


def _answer(path: str, ready: Callable[[], bool]) -> tuple[int, bytes]:
    if path == "/livez":
        return 200, b'{"status": "live"}'
    if path == "/readyz":
        return (200, b'{"status": "ready"}') if ready() else (503, b'{"status": "not ready"}')
    return 404, b'{"status": "not found"}'

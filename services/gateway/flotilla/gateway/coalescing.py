"""Fewer writes to each client's socket: what the gateway writes within one turn of the event
loop reaches the socket as one write. A stream catching up sends a run's events back to back,
and uvicorn writes an HTTP response's head and body apart: one syscall and one TCP segment instead
of several, the bytes unchanged. Every connection's transport is one (HttpProtocol here, and
WebSocketProtocol in wsprotocol.py, which keeps the one its HTTP connection had).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

FLUSH_AT_BYTES = 64 * 1024
"""Pending writes reach the socket at once past this size, so flow control still bounds what a
slow client's connection buffers (asyncio's default high-water mark)."""


class CoalescingTransport(asyncio.Transport):
    """A transport whose writes within one turn of the event loop reach the socket as one write,
    in order; everything else is the socket transport's own (closing flushes first, aborting drops)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes | bytearray | memoryview] = []
        self._pending_bytes = 0
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= FLUSH_AT_BYTES:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush_scheduled)

    def _flush_scheduled(self) -> None:
        self._scheduled = False
        self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending, self._pending_bytes = [], 0
        if not self._transport.is_closing():
            self._transport.write(data)  # may pause writing: the protocol's sends then wait

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._pending_bytes

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending, self._pending_bytes = [], 0
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def can_write_eof(self) -> bool:
        return False  # a half-close would overtake the pending writes


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol (httptools) on a coalescing transport. Passed to uvicorn as
    `http=HttpProtocol` (main.py)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(coalescing(transport, self.loop))


def coalescing(transport: asyncio.BaseTransport, loop: asyncio.AbstractEventLoop) -> CoalescingTransport:
    """`transport`, coalescing (once: an upgraded connection keeps its HTTP connection's)."""
    if isinstance(transport, CoalescingTransport):
        return transport
    # uvloop's transports have asyncio.Transport's methods without subclassing it.
    return CoalescingTransport(cast(asyncio.Transport, transport), loop)

"""uvicorn's WebSocket protocol, changed so a client that stops reading cannot hold its connection.

uvicorn (websockets-sansio, its default) waits for room in the connection's write buffer before
every frame it sends, the close frame included, and asyncio's `close()` waits to flush that buffer
before it closes the socket. Against a client that never reads again (its TCP window stays shut)
both wait forever: the stream could not even tell it to go away, and its socket and buffers would
stay open after the stream ended. Here:

- the close frame is queued behind the data already buffered, at once: a slow client that reads
  on finds the close code (and its reason) right after the last event it was sent;
- a connection whose buffer is still not flushed `close_timeout` (10 s) after closing began (by
  the app, the client's close frame, or an unanswered keepalive ping) is reset, and the kernel
  drops what was queued for it.

And it writes less often: the frames sent in one turn of the event loop go to the socket in one
write (a stream catching up sends a run's events back to back: one syscall and one TCP segment
instead of one per event; the frames themselves are unchanged).

Passed to uvicorn as `ws=WebSocketProtocol` (services/gateway main.py).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any, cast

from websockets.frames import Frame
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

FLUSH_AT_BYTES = 64 * 1024
"""Pending writes reach the socket at once past this size, so flow control still bounds what a
slow client's connection buffers (asyncio's default high-water mark)."""


class _CoalescingTransport(asyncio.Transport):
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


class WebSocketProtocol(WebSocketsSansIOProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have asyncio.Transport's methods without subclassing it.
        super().connection_made(_CoalescingTransport(cast(asyncio.Transport, transport), self.loop))

    async def send(self, message: Any) -> None:
        if message["type"] != "websocket.close" or not self.handshake_complete or self.disconnected:
            await super().send(message)
            return
        # Queue the close frame behind what is buffered without waiting for room: `send` does not
        # suspend once `writable` is set, so nothing else runs in between.
        paused = not self.writable.is_set()
        self.writable.set()
        try:
            await super().send(message)
        finally:
            if paused and not self.disconnected:
                self.writable.clear()  # resume_writing() sets it again when the buffer drains
        if self.close_timer is not None:  # the closing handshake's deadline: close, or abort if stuck
            self.close_timer.cancel()
            self.close_timer = self.loop.call_later(self.close_timeout, self._close_or_abort)

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()  # queues a 1011 close frame and closes the transport
        self._abort_later()

    def handle_close(self, event: Frame) -> None:
        super().handle_close(event)  # echoes the client's close frame and closes the transport
        self._abort_later()

    async def run_asgi(self) -> None:
        await super().run_asgi()  # closes the transport unless a closing handshake is under way
        self._abort_later()

    def _abort_later(self) -> None:
        if self.transport.is_closing() and not self.disconnected:
            self.loop.call_later(self.close_timeout, self._abort_unless_closed)

    def _close_or_abort(self) -> None:
        self.transport.close()
        self._abort_unless_closed()

    def _abort_unless_closed(self) -> None:
        if self.disconnected or self.transport.get_write_buffer_size() == 0:
            return
        # close() would wait for a client that does not read. Linger 0: the kernel resets the
        # connection and drops what is queued for it, rather than keep it as an orphan until its
        # zero-window probes give up.
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

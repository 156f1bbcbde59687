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
write (coalescing.py).

Passed to uvicorn as `ws=WebSocketProtocol` (services/gateway main.py).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

from websockets.frames import Frame

from flotilla.gateway.coalescing import coalescing
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class WebSocketProtocol(WebSocketsSansIOProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(coalescing(transport, self.loop))

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

"""Connecting to NATS with a service's credentials."""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats
import structlog
from nats.aio.client import Client

from flotilla.settings import NatsSettings

log = structlog.get_logger(__name__)
T = TypeVar("T")


class Reconnects:
    """Core subscriptions miss what is published while the connection is down: code that
    relies on them waits here and catches up from JetStream after each reconnect."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.count = 0
        """Reconnects so far: a caller notes it when it subscribes and catches up if it moved,
        since a reconnect that completed before the caller began to wait never wakes it."""

    def notify(self) -> None:
        self.count += 1
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self) -> None:
        await self._event.wait()


async def when_ready(call: Callable[[], Awaitable[T]], *, waiting_for: str, interval_s: float = 1.0) -> T:
    """`call()` once JetStream answers it: a service starting while NATS restarts or a cluster
    elects a leader waits (and says so) instead of exiting. Interrupted only by cancellation."""
    while True:
        try:
            return await call()
        except Exception as exc:
            log.info(f"waiting for {waiting_for}", error=repr(exc))
        await asyncio.sleep(interval_s)


async def disconnect(nc: Client, *, timeout_s: float = 5.0) -> None:
    """Drain the connection (what is in flight goes out), but never wait for a server that is
    gone: a service stopping while NATS is unreachable would otherwise never exit."""
    try:
        await asyncio.wait_for(nc.drain(), timeout_s)
    except Exception as exc:
        log.warning("nats drain did not finish; closing", error=repr(exc))
    if not nc.is_closed:
        await nc.close()


def redacted_url(urls: str) -> str:
    """The server URLs with any user:password in them replaced by `***`, for logs."""
    redacted = []
    for url in urls.split(","):
        parsed = urllib.parse.urlsplit(url.strip())
        if parsed.username or parsed.password:
            host = parsed.hostname or ""
            netloc = f"***@{host}" + (f":{parsed.port}" if parsed.port else "")
            url = urllib.parse.urlunsplit(parsed._replace(netloc=netloc))
        redacted.append(url.strip())
    return ",".join(redacted)


def inbox_prefix(user: str) -> str:
    """Where a NATS user's replies arrive: each user has its own prefix, and nats-server.conf lets
    each subscribe to its own only, so no credential can read another's replies."""
    return f"_INBOX_{user}" if user else "_INBOX"


async def connect(settings: NatsSettings, *, name: str, reconnects: Reconnects | None = None) -> Client:
    """Connect (reconnecting forever afterwards); the password is never logged."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats error", error=str(exc))

    async def on_disconnect() -> None:
        log.warning("nats disconnected")

    async def on_reconnect() -> None:
        log.info("nats reconnected")
        if reconnects is not None:
            reconnects.notify()

    tls = ssl.create_default_context(cafile=settings.nats_tls_ca_file) if settings.nats_tls_ca_file else None
    return await nats.connect(
        servers=[url.strip() for url in settings.nats_url.split(",") if url.strip()],
        user=settings.nats_user or None,
        password=settings.nats_password.get_secret_value() or None,
        name=name,
        tls=tls,
        inbox_prefix=inbox_prefix(settings.nats_user),
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        allow_reconnect=True,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        pending_size=64 * 1024 * 1024,
    )

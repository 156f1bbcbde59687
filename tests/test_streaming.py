"""Resilient streaming: server pings drop a peer that stopped answering, and a client that stops
reading is closed (4408, with the seq to resume after) without slowing anyone else down."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import select
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import websockets

from flotilla.devstack import LocalStack
from support import IDENTITIES, Api, assert_well_formed, local_stack, metric_value, scrape_metrics

ALICE = str(IDENTITIES["alice"]["key"])
BOB = str(IDENTITIES["bob"]["key"])
BIG_RUN = {"n": 200, "size": 50_000}
"""About 10 MB of events: more than the kernel's socket buffers between gateway and client hold."""
_GONE = select.POLLRDHUP | select.POLLHUP | select.POLLERR


class RawClient:
    """A WebSocket client that completes the handshake and then never reads again (so it never
    answers a ping and lets its TCP window shut). Blocking; use from a thread."""

    def __init__(self, gateway_url: str, path: str, *, receive_buffer: int | None = None) -> None:
        url = urlsplit(gateway_url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(30)
        self.sock.connect((url.hostname, url.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:  # the handshake answer (and perhaps a first frame): then no more
            chunk = self.sock.recv(1024)
            assert chunk, "the gateway closed during the handshake"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head[:200]
        self.connected_at = time.monotonic()

    def wait_until_dropped(self, timeout_s: float) -> float:
        """Seconds from the handshake until the gateway closed or reset the connection (by poll,
        without reading)."""
        poller = select.poll()
        poller.register(self.sock, _GONE)
        events = poller.poll(timeout_s * 1000)
        assert events and events[0][1] & _GONE, f"still connected after {timeout_s} s"
        return time.monotonic() - self.connected_at

    def close(self) -> None:
        self.sock.close()


async def _first_event(api: Api, run_id: str) -> dict[str, Any] | int:
    """Opens a stream and returns its first event, or its close code if it was refused."""
    url = f"{api.ws_url}/v1/runs/{run_id}/stream?token={api.token}"
    async with websockets.connect(url) as ws:
        try:
            return dict(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None
            return closed.rcvd.code


async def _when_slot_free(api: Api, run_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """The first event of a stream on `run_id`, once the identity's one stream slot is free."""
    deadline = time.monotonic() + timeout_s
    while (first := await _first_event(api, run_id)) == 4429:
        assert time.monotonic() < deadline, f"the identity's stream slot is still taken after {timeout_s} s"
        await asyncio.sleep(0.1)
    assert isinstance(first, dict), first
    return first


PING = {"interval": 2.0, "timeout": 1.0}


@pytest.fixture(scope="module")
def ping_stack() -> Iterator[LocalStack]:
    env = {
        "FLOTILLA_GATEWAY_WS_PING_INTERVAL_S": str(PING["interval"]),
        "FLOTILLA_GATEWAY_WS_PING_TIMEOUT_S": str(PING["timeout"]),
        "FLOTILLA_GATEWAY_MAX_STREAMS_PER_IDENTITY": "1",
    }
    with local_stack(workers=1, env=env) as stack:
        yield stack


def test_a_peer_that_stops_answering_pings_is_dropped_and_its_slot_freed(ping_stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(ping_stack.gateway_url, ALICE) as alice, Api(ping_stack.gateway_url, BOB) as bob:
            quiet = await alice.start("load", n=0, asks=1)  # waits for an answer: sends nothing more
            raw = await asyncio.to_thread(RawClient, ping_stack.gateway_url, f"/v1/runs/{quiet}/stream?token={ALICE}")
            try:
                assert await _first_event(alice, quiet) == 4429  # the raw client holds alice's one slot
                # Meanwhile a client that answers pings keeps its stream through many ping rounds.
                bobs_run = await bob.start("load", n=0, asks=1)

                async def bob_streams() -> tuple[list[dict[str, Any]], int]:
                    url = f"{bob.ws_url}/v1/runs/{bobs_run}/stream?token={BOB}"
                    events: list[dict[str, Any]] = []
                    async with websockets.connect(url) as ws:
                        events.append(json.loads(await ws.recv()))  # workflow_started
                        events.append(json.loads(await ws.recv()))  # text_input
                        await asyncio.sleep(3 * PING["interval"])  # pings come and are answered
                        assert ws.state is websockets.protocol.State.OPEN
                        request_id = events[-1]["request_id"]
                        await ws.send(json.dumps({"type": "input", "request_id": request_id, "value": "ok"}))
                        async for frame in ws:
                            events.append(json.loads(frame))
                        return events, ws.close_code or 0

                bob_task = asyncio.create_task(bob_streams())
                budget = PING["interval"] + PING["timeout"]
                dropped_after = await asyncio.to_thread(raw.wait_until_dropped, budget + 30)
                print(f"dropped {dropped_after:.1f} s after the handshake (interval + timeout = {budget} s)")
                assert dropped_after < budget + 20  # generous: the machine may be busy
                events, code = await asyncio.wait_for(bob_task, 60)
                assert code == 1000
                assert_well_formed(bobs_run, events)
                assert events == await bob.events(bobs_run)
            finally:
                raw.close()
            # The dropped stream gave back alice's slot.
            first = await _when_slot_free(alice, quiet)
            assert first["type"] == "workflow_started", first

    asyncio.run(scenario())


SEND_TIMEOUT_S = 2.0
BUFFER_EVENTS = 50


@pytest.fixture(scope="module")
def slow_stack() -> Iterator[LocalStack]:
    env = {
        "FLOTILLA_GATEWAY_WS_SEND_BUFFER_EVENTS": str(BUFFER_EVENTS),
        "FLOTILLA_GATEWAY_WS_SEND_TIMEOUT_S": str(SEND_TIMEOUT_S),
        # Pings come too late to matter here: what closes a stuck client is the send path.
        "FLOTILLA_GATEWAY_WS_PING_INTERVAL_S": "300",
        "FLOTILLA_GATEWAY_MAX_STREAMS_PER_IDENTITY": "1",
    }
    with local_stack(workers=2, env=env) as stack:
        yield stack


def test_a_stuck_client_is_dropped_while_another_streams_unhindered(slow_stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(slow_stack.gateway_url, ALICE) as alice, Api(slow_stack.gateway_url, BOB) as bob:
            big = await alice.start("load", **BIG_RUN)
            stuck = await asyncio.to_thread(
                RawClient, slow_stack.gateway_url, f"/v1/runs/{big}/stream?token={ALICE}", receive_buffer=8192
            )
            try:
                dropped = asyncio.create_task(asyncio.to_thread(stuck.wait_until_dropped, 120))
                # While the gateway holds a stuck client (and megabytes for it), bob streams a run
                # of his own from start to end.
                other = await bob.start("slow_messages", n=100, delay_s=0.01)
                events, code = await bob.stream(other, timeout_s=60)
                assert code == 1000
                assert_well_formed(other, events)
                assert events == await bob.events(other)
                dropped_after = await dropped
                print(f"the stuck client was dropped {dropped_after:.1f} s after its handshake")
                assert dropped_after < 120
            finally:
                stuck.close()
            # Its stream ended: alice's one slot is free again.
            first = await _when_slot_free(alice, await alice.start("load", n=0))
            assert first["type"] == "workflow_started", first

    asyncio.run(scenario())


def _slow_closes(stack: LocalStack, protocol: str) -> float:
    """Streams of `protocol` the gateway closed as too slow so far, from its real /metrics."""
    samples = scrape_metrics(stack, "gateway")
    return metric_value(samples, "flotilla_gateway_stream_slow_closes_total", protocol=protocol) or 0.0


def test_a_slow_client_gets_4408_with_the_seq_to_resume_after(slow_stack: LocalStack) -> None:
    """A client that stops reading for a while, then reads on, finds 4408 right after the last
    event it was sent; reconnecting with after=<that seq> completes the transcript exactly."""

    async def scenario() -> None:
        async with Api(slow_stack.gateway_url, ALICE) as alice:
            run_id = await alice.start("load", **BIG_RUN)
            probe = await alice.start("load", n=0)  # a short run: its stream ends at once
            url = f"{alice.ws_url}/v1/runs/{run_id}/stream?token={ALICE}"
            slow_closes = _slow_closes(slow_stack, "v1")
            transcript: list[dict[str, Any]] = []
            async with websockets.connect(url, ping_interval=None, max_size=None) as ws:
                ws.transport.pause_reading()
                # Wait until the gateway gave up on this stream: alice's one slot is free again.
                await _when_slot_free(alice, probe, timeout_s=120)
                ws.transport.resume_reading()
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    while True:
                        transcript.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
            assert closed.value.rcvd is not None, "no close frame: the connection was dropped"
            code, reason = closed.value.rcvd.code, closed.value.rcvd.reason
            print(f"closed {code} {reason!r} after {len(transcript)} events")
            last = transcript[-1]["seq"] if transcript else 0
            assert code == 4408 and "too slow" in reason
            assert reason.endswith(f"after={last}")
            assert _slow_closes(slow_stack, "v1") == slow_closes + 1  # counted before the close frame went out
            assert [e["seq"] for e in transcript] == list(range(1, last + 1))
            rest, code = await alice.stream(run_id, after=last, timeout_s=120)
            assert code == 1000
            transcript += rest
            assert_well_formed(run_id, transcript)
            assert transcript == await alice.events(run_id)

    asyncio.run(scenario())


def test_a_slow_fastagency_client_gets_4408_too(slow_stack: LocalStack) -> None:
    """FastAgency's WebSocket sends inline (one frame at a time, the watch waiting meanwhile); a
    client that stops reading is closed with the same 4408 once a send stalls."""

    async def scenario() -> None:
        async with Api(slow_stack.gateway_url, ALICE) as alice:
            probe = await alice.start("load", n=0)
            url = f"{alice.ws_url}/fastagency/ws?token={ALICE}"
            first = {"name": "load", "workflow_uuid": os.urandom(16).hex(), "user_id": None, "params": BIG_RUN}
            received = 0
            slow_closes = _slow_closes(slow_stack, "fastagency")
            async with websockets.connect(url, ping_interval=None, max_size=None) as ws:
                await ws.send(json.dumps(first))
                ws.transport.pause_reading()
                await _when_slot_free(alice, probe, timeout_s=120)  # the gateway gave up on it
                ws.transport.resume_reading()
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    while True:
                        await asyncio.wait_for(ws.recv(), 30)
                        received += 1
            assert closed.value.rcvd is not None, "no close frame: the connection was dropped"
            print(f"closed {closed.value.rcvd.code} {closed.value.rcvd.reason!r} after {received} messages")
            assert closed.value.rcvd.code == 4408 and "too slow" in closed.value.rcvd.reason
            assert 0 < received < BIG_RUN["n"]
            assert _slow_closes(slow_stack, "fastagency") == slow_closes + 1

    asyncio.run(scenario())

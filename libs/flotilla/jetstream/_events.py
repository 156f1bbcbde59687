"""The per-run event log: the source of truth for what happened in a run.

Writers publish with `Nats-Msg-Id = <run_id>:<seq>`, so a re-published event is dropped as a
duplicate, and a second writer that raced for the same seq learns it lost (`LostOwnership`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from google.protobuf.message import Message
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, PubAck
from nats.js.errors import NotFoundError

from flotilla.errors import FlotillaError
from flotilla.events import is_terminal, now
from flotilla.jetstream._layout import EVENTS_STREAM, events_subject
from flotilla.protocol import RunEvent


class LostOwnership(FlotillaError):
    """Another writer already published this seq: this process no longer owns the run."""


def _msg_id(event: RunEvent) -> dict[str, str]:
    return {"Nats-Msg-Id": f"{event.run_id}:{event.seq}"}


class RunEventWriter:
    """Appends one run's events with consecutive seqs, pipelined: `emit` does not wait for the
    server; `flush` waits for every ack so far (call it before anything that must follow them)."""

    def __init__(self, js: JetStreamContext, run_id: str, *, last_seq: int) -> None:
        self._js = js
        self._run_id = run_id
        self._subject = events_subject(run_id)
        self._seq = last_seq
        self._pending: list[asyncio.Future[PubAck]] = []

    @property
    def last_seq(self) -> int:
        return self._seq

    async def emit(self, kind: str, body: Message, *, sender: str = "", recipient: str = "") -> RunEvent:
        self._seq += 1
        event = RunEvent(run_id=self._run_id, seq=self._seq, sender=sender, recipient=recipient)
        event.timestamp.CopyFrom(now())
        getattr(event, kind).CopyFrom(body)
        future = await self._js.publish_async(self._subject, event.SerializeToString(), headers=_msg_id(event))
        self._pending.append(future)
        if len(self._pending) >= 256:
            await self.flush()
        return event

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        for ack in await asyncio.gather(*pending):
            if ack.duplicate:
                raise LostOwnership(f"run {self._run_id}: seq already written by another worker")


class EventLog:
    """Reads run logs; appends single events for writers other than the worker (dead letters)."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def last_event(self, run_id: str) -> RunEvent | None:
        try:
            raw = await self._js.get_last_msg(EVENTS_STREAM, events_subject(run_id), direct=True)
        except NotFoundError:
            return None
        return RunEvent.FromString(raw.data or b"")

    async def append(self, event: RunEvent) -> None:
        ack = await self._js.publish(events_subject(event.run_id), event.SerializeToString(), headers=_msg_id(event))
        if ack.duplicate:
            raise LostOwnership(f"run {event.run_id}: seq {event.seq} already written")

    async def read(self, run_id: str, *, after_seq: int = 0) -> list[RunEvent]:
        """The events stored now with seq > after_seq, in order."""
        try:
            last = await self._js.get_last_msg(EVENTS_STREAM, events_subject(run_id), direct=True)
        except NotFoundError:
            return []
        if RunEvent.FromString(last.data or b"").seq <= after_seq:
            return []
        return [event async for event in self._stream(run_id, after_seq, until_stream_seq=last.seq)]

    async def follow(self, run_id: str, *, after_seq: int = 0) -> AsyncIterator[RunEvent]:
        """Events with seq > after_seq, live, ending after the terminal event."""
        async for event in self._stream(run_id, after_seq, until_stream_seq=None):
            yield event

    async def _stream(self, run_id: str, after_seq: int, *, until_stream_seq: int | None) -> AsyncIterator[RunEvent]:
        sub = await self._js.subscribe(
            events_subject(run_id),
            stream=EVENTS_STREAM,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
            idle_heartbeat=5.0,
        )
        try:
            while True:
                msg = await sub.next_msg(timeout=None)
                event = RunEvent.FromString(msg.data)
                if event.seq > after_seq:
                    after_seq = event.seq
                    yield event
                    if is_terminal(event):
                        return
                if until_stream_seq is not None and msg.metadata.sequence.stream >= until_stream_seq:
                    return
        finally:
            await sub.unsubscribe()

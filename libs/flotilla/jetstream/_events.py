"""The per-run event log: the source of truth for what happened in a run.

Writers publish with `Nats-Msg-Id = <run_id>:<seq>`, so a re-published event is dropped as a
duplicate, and a second writer that raced for the same seq learns it lost (`LostOwnership`).
"""

from __future__ import annotations

import asyncio
import json

from google.protobuf.message import Message
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import NotFoundError

from flotilla.errors import FlotillaError, Unavailable
from flotilla.events import now
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


_DIRECT_GET = f"$JS.API.DIRECT.GET.{EVENTS_STREAM}"
_BATCH = 1000


class EventLog:
    """Reads run logs; appends single events for writers other than the worker (a run cancelled
    while queued)."""

    def __init__(self, nc: Client, *, timeout_s: float = 5.0) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._timeout = timeout_s

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
        """The events stored now with seq > after_seq, in order, by batched direct gets: one
        round trip per `_BATCH` events, no consumer."""
        subject = events_subject(run_id)
        events: list[RunEvent] = []
        inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(inbox)
        try:
            next_stream_seq, more = 1, True
            while more:
                request = {"seq": next_stream_seq, "next_by_subj": subject, "batch": _BATCH}
                await self._nc.publish(_DIRECT_GET, json.dumps(request).encode(), reply=inbox)
                while True:
                    msg = await sub.next_msg(timeout=self._timeout)
                    headers = msg.headers or {}
                    status = headers.get("Status")
                    if status == "404":  # nothing (more) stored
                        more = False
                        break
                    if status == "204":  # end of this batch
                        more = int(headers.get("Nats-Num-Pending", "0")) > 0
                        break
                    if status:
                        raise Unavailable(f"direct get of {subject} failed: {status} {headers}")
                    next_stream_seq = int(headers["Nats-Sequence"]) + 1
                    event = RunEvent.FromString(msg.data)
                    if event.seq > after_seq:
                        events.append(event)
        finally:
            await sub.unsubscribe()
        return events

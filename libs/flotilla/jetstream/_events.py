"""The per-run event log: the source of truth for what happened in a run.

Each message on `flotilla.runs.<run>.events` holds one or more consecutive events of the run (a
`RunEventBatch`). Every append is conditional on the log's state on the server: it carries
`Nats-Expected-Last-Subject-Sequence` = the stream sequence of the run's last message, so it is
stored only if nothing was appended since the writer last looked, whatever the time. A writer
whose condition fails learns that another writer appended (`LostOwnership`) and writes nothing
more. That fence holds on one server and on an R3 cluster (where the leader refuses a second
conditional proposal on a subject while one is in flight): a writer keeps one append in flight
and groups the events emitted meanwhile into the next one, so appends stay pipelined in effect.

A retried append (its ack was lost) is recognised as the writer's own by its `Nats-Msg-Id`
(`<run>:<first seq>:<writer token>`): deduplicated within the window, found as the log's last
message after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import nats.errors
import structlog
from google.protobuf.message import DecodeError, Message
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError

from flotilla.errors import FlotillaError, InvalidArgument, Unavailable
from flotilla.events import now
from flotilla.jetstream._layout import EVENTS_STREAM, events_subject
from flotilla.protocol import RunEvent, RunEventBatch

log = structlog.get_logger(__name__)

SEQS_HEADER = "Flotilla-Seqs"
"""`<first>-<last>`: the event seqs a message holds (absent on old single-event messages)."""
WRONG_LAST_SEQUENCE = 10071
LAST_SEQUENCE_IN_FLIGHT = 10164
"""An R3 leader's "wrong last sequence" while a conditional proposal on the subject is still in
flight (ours, retried after a lost ack, or another writer's): retried, it then either lands, is
found to be our own, or fails with WRONG_LAST_SEQUENCE."""
MAX_BATCH_EVENTS = 256
MAX_BATCH_BYTES = 512 * 1024
RETRY_MAX_S = 2.0
MAX_EVENT_BYTES = 1024 * 1024
"""Largest event a run may write (a message's body, a question's prompt, a tool's result)."""
MAX_EVENTS_PER_RUN = 100_000
"""Events a run may write; beyond, its workflow's next call fails (the run ends `failed`)."""
_ALWAYS_WRITTEN = frozenset({"workflow_completed", "error", "run_retried"})
"""Kinds written past the per-run cap: how a run that hit it ends is recorded (a few at most)."""


class LostOwnership(FlotillaError):
    """Another writer appended to the run's log: this process no longer owns the run."""


class StoreError(FlotillaError):
    """The server refused an append for good (e.g. an event larger than the server allows)."""


class EventLimit(InvalidArgument):
    """An event larger than MAX_EVENT_BYTES, or one more than MAX_EVENTS_PER_RUN: not written."""


@dataclass(frozen=True)
class LogPosition:
    """Where a run's log ends: its last event's seq and the stream sequence of its message."""

    seq: int = 0
    stream_seq: int = 0


@dataclass(frozen=True)
class LogPage:
    events: list[RunEvent]
    next_stream_seq: int
    """Where the next page's read starts (pass it as `from_stream_seq`)."""
    more: bool
    """More events are stored after this page."""
    end: LogPosition
    """The log's position after the last event read (its last seq and that message's stream seq)."""


def decode(data: bytes, headers: dict[str, str] | None) -> list[RunEvent]:
    """The events one stored (or live) message holds."""
    if headers and SEQS_HEADER in headers:
        return list(RunEventBatch.FromString(data).events)
    try:
        return [RunEvent.FromString(data)]  # written before batches (one event per message)
    except DecodeError:
        return []


def last_seq_of(headers: dict[str, str] | None) -> int:
    """The last event seq a message holds, from its headers alone (0 if unknown)."""
    headers = headers or {}
    _, _, last = headers.get(SEQS_HEADER, "").partition("-")
    if last.isdigit():
        return int(last)
    _, _, seq = headers.get("Nats-Msg-Id", "").rpartition(":")  # an old single-event message
    return int(seq) if seq.isdigit() else 0


def _headers(events: Sequence[RunEvent], token: str, expected_stream_seq: int) -> dict[str, str]:
    first, last = events[0].seq, events[-1].seq
    return {
        "Nats-Msg-Id": f"{events[0].run_id}:{first}:{token}",
        "Nats-Expected-Last-Subject-Sequence": str(expected_stream_seq),
        SEQS_HEADER: f"{first}-{last}",
    }


def _transient(exc: BaseException) -> bool:
    """Worth retrying: the server is restarting, electing a leader, full for now, or slow."""
    if isinstance(exc, APIError):
        return (exc.code or 0) >= 500 or exc.err_code in (10002, 10028, 10047, 10158, LAST_SEQUENCE_IN_FLIGHT)
    return isinstance(
        exc,
        (
            nats.errors.TimeoutError,
            nats.errors.NoRespondersError,
            NoStreamResponseError,  # JetStream not answering yet (a restarted cluster, no leader)
            asyncio.TimeoutError,
            ConnectionError,
        ),
    )


class _Replies:
    """One inbox subscription for the replies to every direct get a connection sends (a batch
    answers with many messages, so nats-py's request cannot take them): no subscribe and
    unsubscribe per read, each a round of protocol work for the client and the server."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = ""
        self._sub: Subscription | None = None
        self._queues: dict[str, asyncio.Queue[Msg]] = {}

    @contextlib.asynccontextmanager
    async def inbox(self) -> AsyncIterator[tuple[str, asyncio.Queue[Msg]]]:
        """A reply subject of its own and the queue its messages arrive on, while in use."""
        if self._sub is None:
            prefix = self._nc.new_inbox()
            sub = await self._nc.subscribe(f"{prefix}.*", cb=self._route, pending_msgs_limit=1_000_000)
            if self._sub is None:
                self._prefix, self._sub = prefix, sub
            else:
                await sub.unsubscribe()  # another read subscribed meanwhile
        token = secrets.token_hex(8)
        queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._queues[token] = queue
        try:
            yield f"{self._prefix}.{token}", queue
        finally:
            del self._queues[token]

    async def _route(self, msg: Msg) -> None:
        queue = self._queues.get(msg.subject.rpartition(".")[2])
        if queue is not None:  # else: the rest of a read that gave up (timed out)
            queue.put_nowait(msg)


async def _next_reply(queue: asyncio.Queue[Msg], timeout_s: float) -> Msg:
    try:
        return await asyncio.wait_for(queue.get(), timeout_s)
    except TimeoutError:
        raise nats.errors.TimeoutError from None


class EventLog:
    """Reads run logs and makes conditional appends (the worker's writer and the dispatcher)."""

    def __init__(self, nc: Client, *, timeout_s: float = 5.0) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._timeout = timeout_s
        self._end, self._end_read_at = 0, float("-inf")
        self._replies = _Replies(nc)

    @property
    def js(self) -> JetStreamContext:
        return self._js

    async def stream_end(self, max_age_s: float = 1.0) -> int:
        """The events stream's last sequence, as read at most `max_age_s` ago: a lower bound for
        the sequence of anything appended from now on (where a new run's log will start). One
        stream-info request a second, not one per run."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._end_read_at > max_age_s:
            info = await self._js.stream_info(EVENTS_STREAM)
            self._end, self._end_read_at = info.state.last_seq or 0, loop.time()
        return self._end

    async def tail(self, run_id: str) -> tuple[LogPosition, RunEvent | None, str]:
        """The log's end, its last event, and the Nats-Msg-Id of its last message."""
        try:
            # From the leader: a lagging replica's direct get would show an older end, and a
            # writer would take its own landed append for another writer's.
            raw = await self._js.get_last_msg(EVENTS_STREAM, events_subject(run_id))
        except NotFoundError:
            return LogPosition(), None, ""
        events = decode(raw.data or b"", raw.headers)
        last = events[-1] if events else None
        msg_id = (raw.headers or {}).get("Nats-Msg-Id", "")
        return LogPosition(last.seq if last else 0, raw.seq or 0), last, msg_id

    async def last_event(self, run_id: str) -> RunEvent | None:
        _, last, _ = await self.tail(run_id)
        return last

    async def append(
        self, events: Sequence[RunEvent], *, after: LogPosition, token: str, retry: bool = False
    ) -> LogPosition:
        """Store `events` as one message if the log still ends at `after`; LostOwnership if
        another writer appended since. With `retry`, transient failures are retried (forever,
        backing off); the caller cancels when it gives up."""
        data = RunEventBatch(events=list(events)).SerializeToString()
        headers = _headers(events, token, after.stream_seq)
        subject = events_subject(events[0].run_id)
        delay = 0.05
        while True:
            try:
                ack = await self._js.publish(subject, data, headers=headers, timeout=self._timeout)
                return LogPosition(events[-1].seq, ack.seq)  # a duplicate is our own retry: same seq
            except Exception as exc:
                if isinstance(exc, APIError) and exc.err_code == WRONG_LAST_SEQUENCE:
                    return await self._ours_or_lost(events, headers["Nats-Msg-Id"])
                if not (retry and _transient(exc)):
                    if isinstance(exc, APIError):
                        raise StoreError(f"run {events[0].run_id}: the log refused an append: {exc}") from exc
                    raise
                log.info("append failed; retrying", error=repr(exc), delay_s=delay)
            await asyncio.sleep(delay)
            delay = min(RETRY_MAX_S, delay * 2)

    async def _ours_or_lost(self, events: Sequence[RunEvent], msg_id: str) -> LogPosition:
        """The condition failed: either our own earlier try landed (its ack was lost), or
        someone else appended."""
        position, _, last_id = await self.tail(events[0].run_id)
        if last_id == msg_id:
            return position
        raise LostOwnership(f"run {events[0].run_id}: another writer appended to its log")

    async def read_page(
        self,
        run_id: str,
        *,
        after_seq: int = 0,
        from_stream_seq: int = 1,
        limit: int = 1000,
        max_bytes: int = 1024 * 1024,
    ) -> LogPage:
        """Up to `limit` events (and about `max_bytes`) with seq > after_seq, reading the run's
        messages from stream sequence `from_stream_seq` on (a run's own first message, when the
        caller knows it), by batched direct gets: no consumer, one round trip per batch."""
        subject = events_subject(run_id)
        events: list[RunEvent] = []
        size = 0
        position = LogPosition(after_seq, 0)
        next_stream_seq = max(1, from_stream_seq)
        async with self._replies.inbox() as (inbox, replies):
            while True:
                request = {"seq": next_stream_seq, "next_by_subj": subject, "batch": min(limit, 256) + 1}
                await self._nc.publish(f"$JS.API.DIRECT.GET.{EVENTS_STREAM}", json.dumps(request).encode(), reply=inbox)
                full, pending = False, 0
                while True:
                    msg = await _next_reply(replies, self._timeout)
                    headers = msg.headers or {}
                    status = headers.get("Status")
                    if status == "404":  # nothing (more) stored
                        break
                    if status == "204":  # end of this batch
                        pending = int(headers.get("Nats-Num-Pending", "0") or 0)
                        break
                    if status:
                        raise Unavailable(f"direct get of {subject} failed: {status} {headers}")
                    if full:
                        continue  # the rest of a batch we no longer need
                    stream_seq = int(headers["Nats-Sequence"])
                    fresh = [event for event in decode(msg.data, headers) if event.seq > position.seq]
                    if fresh and (len(events) + len(fresh) > limit or size + len(msg.data) > max_bytes) and events:
                        full = True  # this message starts the next page
                        next_stream_seq = stream_seq
                        continue
                    events.extend(fresh)
                    size += len(msg.data)
                    if fresh:
                        position = LogPosition(fresh[-1].seq, stream_seq)
                    next_stream_seq = stream_seq + 1
                if full:
                    return LogPage(events, next_stream_seq, True, position)
                if pending == 0:
                    return LogPage(events, next_stream_seq, False, position)

    async def history(self, run_id: str, *, from_stream_seq: int = 1) -> tuple[list[RunEvent], LogPosition]:
        """The whole log as stored now, and where it ends (for a writer to continue it)."""
        events: list[RunEvent] = []
        position = LogPosition()
        while True:
            page = await self.read_page(run_id, after_seq=position.seq, from_stream_seq=from_stream_seq)
            events.extend(page.events)
            if page.events:
                position = page.end
            if not page.more:
                return events, position
            from_stream_seq = page.next_stream_seq

    async def read(self, run_id: str, *, after_seq: int = 0, from_stream_seq: int = 1) -> list[RunEvent]:
        """Every event stored now with seq > after_seq, in order (all pages)."""
        events: list[RunEvent] = []
        while True:
            page = await self.read_page(run_id, after_seq=after_seq, from_stream_seq=from_stream_seq)
            events.extend(page.events)
            if not page.more:
                return events
            after_seq, from_stream_seq = page.end.seq, page.next_stream_seq


class RunEventWriter:
    """Appends one attempt's events to a run's log with consecutive seqs.

    `emit` does not wait for the server: one append is in flight at a time and the events
    emitted meanwhile go together in the next, each append conditional on the one before.
    `flush` waits until everything emitted is stored; call it before anything that must follow
    (a question a person will answer, the job's ack). Transient failures (a restarting server,
    a leader election, a full store) are retried until the caller gives up; once another writer
    appended, every call raises LostOwnership and nothing more is written.
    """

    def __init__(self, log: EventLog, run_id: str, *, after: LogPosition, token: str | None = None) -> None:
        self._log = log
        self._run_id = run_id
        self._token = token or secrets.token_hex(6)
        self._seq = after.seq
        self._stored = after
        self._queued: list[RunEvent] = []
        self._sending: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._failure: BaseException | None = None

    @property
    def last_seq(self) -> int:
        """The seq of the last event emitted (stored or not yet)."""
        return self._seq

    @property
    def stored(self) -> LogPosition:
        return self._stored

    @property
    def failure(self) -> BaseException | None:
        """Why this writer stopped (LostOwnership, StoreError, ...), or None."""
        return self._failure

    async def emit(self, kind: str, body: Message, *, sender: str = "", recipient: str = "") -> RunEvent:
        self._check()
        if kind not in _ALWAYS_WRITTEN and self._seq >= MAX_EVENTS_PER_RUN:
            raise EventLimit(f"run {self._run_id} has written the most events a run may ({MAX_EVENTS_PER_RUN})")
        event = RunEvent(run_id=self._run_id, seq=self._seq + 1, sender=sender, recipient=recipient)
        event.timestamp.CopyFrom(now())
        getattr(event, kind).CopyFrom(body)
        if event.ByteSize() > MAX_EVENT_BYTES:
            raise EventLimit(
                f"a {kind} event of {event.ByteSize()} bytes is larger than a run may write ({MAX_EVENT_BYTES})"
            )
        self._seq += 1
        self._queued.append(event)
        if self._sending is None or self._sending.done():
            self._sending = asyncio.create_task(self._send())
        if len(self._queued) >= 4 * MAX_BATCH_EVENTS:
            await self.flush()  # a workflow emitting faster than the server stores waits here
        return event

    async def flush(self) -> None:
        """Wait until every event emitted so far is stored (or raise why it cannot be)."""
        while True:
            self._check()
            if self._stored.seq >= self._seq:
                return
            self._changed.clear()
            await self._changed.wait()

    async def close(self) -> None:
        """Stop sending (what is not stored yet stays unwritten)."""
        if self._sending is not None and not self._sending.done():
            self._sending.cancel()
            await asyncio.gather(self._sending, return_exceptions=True)

    def _check(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def _send(self) -> None:
        try:
            while self._queued:
                batch: list[RunEvent] = []
                size = 0
                for event in self._queued:
                    size += event.ByteSize()
                    if batch and (len(batch) >= MAX_BATCH_EVENTS or size > MAX_BATCH_BYTES):
                        break
                    batch.append(event)
                self._stored = await self._log.append(batch, after=self._stored, token=self._token, retry=True)
                del self._queued[: len(batch)]
                self._changed.set()
        except asyncio.CancelledError:
            self._failure = self._failure or LostOwnership(f"run {self._run_id}: the writer was closed")
            raise
        except BaseException as exc:
            self._failure = exc
            if isinstance(exc, LostOwnership):
                log.warning("another writer appended to the run's log; this attempt stops", run_id=self._run_id)
        finally:
            self._changed.set()

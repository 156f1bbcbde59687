"""Live events for every watcher from one subscription per dispatcher.

A watch reads the run's stored history (paged direct gets, from the run's own first message on),
then takes live events from a single wildcard subscription, so watching costs no JetStream
consumer. That subscription is on what the events stream republishes (`STORED_EVENTS`), never on
the subject writers publish to: a watcher hears only appends the server accepted, so a fenced
writer's refused append (a worker that lost its run, a forged event) never reaches a client. Live
delivery is core NATS and can miss messages (a reconnect): seqs are checked, and a gap, or a
quiet spell, is filled from the stored log, which stays the source of truth. Each watcher
remembers where in the stream its last read ended, so a refill reads only what came after.

Memory per watcher is bounded: its live queue holds at most `WATCHER_QUEUE` events; one that
falls behind drops its queue and catches up from the log, a page at a time.

An event republished just before a watcher registers can still be missing from the history a
direct get reads after (a replica that serves reads may lag the leader). The last seq seen live
per run is remembered (a bounded LRU) so the watch re-reads until the log has caught up with it.

Replies being written (`ReplyDelta`, published by workers on core NATS, never stored) come from a
second wildcard subscription. Per run the dispatcher keeps the text of the reply in progress since
the last durable event (at most `PARTIAL_MAX_CHARS`, for at most `PARTIAL_RUNS` runs, only for runs
watched now or within `WATCH_GRACE_S`), so a watcher that joins mid-reply first gets the text so
far, then each further delta. A watcher gets a reply's deltas only once it has every event the
reply follows, and what is left of it before the next durable event of the run (the reply's own
`llm_completion`, any other event, the terminal one), which ends the reply in progress: it takes
no more pieces, and is dropped when the run's next reply starts or shortly after the run ends.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

import structlog
from google.protobuf.message import DecodeError

from flotilla.events import is_terminal
from flotilla.jetstream import REPLY_DELTAS, STORED_EVENTS, EventLog, LogPage, LogPosition, decode, last_seq_of
from flotilla.protocol import ReplyDelta, RunEvent

log = structlog.get_logger(__name__)

QUIET_RESYNC_S = 5.0
"""A watcher that hears nothing for this long re-reads the log (catches missed live events)."""
LAST_SEEN_RUNS = 100_000
CATCH_UP_TRIES = 50
WATCHER_QUEUE = 1000
"""Live events queued per watcher at most; beyond, it catches up from the log instead."""
BATCH_EVENTS = 500
BATCH_BYTES = 1024 * 1024
"""Largest batch a watch yields (a gRPC message stays far below the 4 MB default)."""
PARTIAL_MAX_CHARS = 64 * 1024
"""Text of a reply in progress kept per run; past it, the rest of that reply is not streamed (the
finished message still comes)."""
PARTIAL_RUNS = 1000
"""Runs whose reply in progress is kept at once (the least recently written to goes first)."""
ENDED_KEEP_S = 5.0
"""A finished run's last reply is dropped this long after its terminal event."""
WATCH_GRACE_S = 30.0
"""A run's deltas are kept this long after its last watcher left (the UI watches in short spells)."""


class _Partial:
    """The reply in progress of one run: its chunks so far, in order."""

    def __init__(self, delta: ReplyDelta) -> None:
        self.after_seq = delta.after_seq
        self.reply_id = delta.reply_id
        self.sender = delta.sender
        self.first_token_at = delta.first_token_at
        self.chunks: list[str] = []
        self.size = 0
        self.stopped = False
        """A chunk was missed or the text grew past the cap: nothing more of this reply streams."""
        self.ended = False
        """A durable event came after it: it takes no more chunks, but a watcher that has not yet
        reached that event still gets its last pieces first."""

    @property
    def last_index(self) -> int:
        return len(self.chunks) - 1

    def add(self, delta: ReplyDelta) -> bool:
        """Take in the next chunk; False for a repeat, a gap or past the cap."""
        if self.ended or self.stopped or delta.first_index != len(self.chunks):
            self.stopped = self.stopped or delta.first_index > len(self.chunks)
            return False
        if self.size + len(delta.text) > PARTIAL_MAX_CHARS:
            self.stopped = True
            return False
        self.chunks.extend([""] * (delta.index - delta.first_index) + [delta.text])
        self.size += len(delta.text)
        return True

    def since(self, run_id: str, index: int) -> ReplyDelta:
        """One delta with the chunks after `index` (-1: the whole text so far)."""
        return ReplyDelta(
            run_id=run_id,
            after_seq=self.after_seq,
            reply_id=self.reply_id,
            sender=self.sender,
            first_index=index + 1,
            index=self.last_index,
            text="".join(self.chunks[index + 1 :]),
            first_token_at=self.first_token_at,
        )


class _Watcher:
    def __init__(self, *, deltas: bool = False) -> None:
        self.deltas = deltas
        """It takes the reply in progress (others are not woken for it)."""
        self.queue: asyncio.Queue[RunEvent | None] = asyncio.Queue(maxsize=WATCHER_QUEUE)
        """Live events; None: the run's reply in progress grew."""
        self.overflowed = False
        self.nudged = False
        self.reply_id = ""
        self.reply_index = -1
        """The reply in progress this watcher has been sent, up to which chunk."""

    def nudge(self) -> None:
        """Wake the watcher for new delta text (once until it looks)."""
        if not self.deltas or self.nudged or self.overflowed:
            return
        try:
            self.queue.put_nowait(None)
            self.nudged = True
        except asyncio.QueueFull:
            pass  # it is busy with events; it looks at the reply after them

    def offer(self, event: RunEvent) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True  # drop what is queued; the next round reads the log
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(event)  # wakes the reader


def chunks(events: list[RunEvent]) -> Iterator[list[RunEvent]]:
    """`events` in batches of at most BATCH_EVENTS events and about BATCH_BYTES."""
    batch: list[RunEvent] = []
    size = 0
    for event in events:
        if batch and (len(batch) >= BATCH_EVENTS or size + event.ByteSize() > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(event)
        size += event.ByteSize()
    if batch:
        yield batch


class EventFanout:
    def __init__(self, nc: Client, log: EventLog) -> None:
        self._nc = nc
        self._log = log
        self._watchers: dict[str, set[_Watcher]] = {}
        self._last_seen: OrderedDict[str, int] = OrderedDict()
        self._sub: Subscription | None = None
        self._deltas_sub: Subscription | None = None
        self._partials: OrderedDict[str, _Partial] = OrderedDict()
        self._left: dict[str, float] = {}
        """Runs whose last watcher left, and when (kept for WATCH_GRACE_S)."""

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(STORED_EVENTS, cb=self._on_event, pending_msgs_limit=1_000_000)
        self._deltas_sub = await self._nc.subscribe(REPLY_DELTAS, cb=self._on_delta, pending_msgs_limit=100_000)

    async def stop(self) -> None:
        for sub in (self._sub, self._deltas_sub):
            if sub is not None:
                await sub.unsubscribe()

    async def _on_delta(self, msg: Msg) -> None:
        run_id = msg.subject.rsplit(".", 1)[-1]  # flotilla.deltas.<run>
        if not self._wanted(run_id):
            self._partials.pop(run_id, None)
            return
        try:
            delta = ReplyDelta.FromString(msg.data)
        except DecodeError:
            log.warning("a reply delta that does not decode", run_id=run_id)
            return
        if delta.run_id != run_id or delta.after_seq < self._last_seen.get(run_id, 0):
            return  # another run's, or a reply the log has moved past already
        partial = self._partials.get(run_id)
        if partial is None or partial.reply_id != delta.reply_id or partial.after_seq != delta.after_seq:
            if delta.first_index != 0:
                return  # joined a reply midway: only its finished message shows
            partial = self._partials[run_id] = _Partial(delta)
        self._partials.move_to_end(run_id)
        while len(self._partials) > PARTIAL_RUNS:
            self._partials.popitem(last=False)
        if partial.add(delta):
            for watcher in self._watchers.get(run_id, ()):
                watcher.nudge()

    def _drop(self, run_id: str, partial: _Partial) -> None:
        if self._partials.get(run_id) is partial:
            del self._partials[run_id]

    def _wanted(self, run_id: str) -> bool:
        """Someone watches the run, or did a moment ago."""
        if run_id in self._watchers:
            return True
        left = self._left.get(run_id)
        if left is None:
            return False
        if asyncio.get_running_loop().time() - left <= WATCH_GRACE_S:
            return True
        del self._left[run_id]
        return False

    def _reply_for(self, watcher: _Watcher, run_id: str, last_seq: int) -> ReplyDelta | None:
        """What the watcher, holding the events up to `last_seq`, has not yet been sent of the
        run's reply in progress."""
        partial = self._partials.get(run_id)
        if partial is None or partial.after_seq != last_seq or not partial.chunks:
            return None
        if watcher.reply_id != partial.reply_id:
            watcher.reply_id, watcher.reply_index = partial.reply_id, -1
        if watcher.reply_index >= partial.last_index:
            return None
        delta = partial.since(run_id, watcher.reply_index)
        watcher.reply_index = partial.last_index
        return delta

    async def _on_event(self, msg: Msg) -> None:
        run_id = msg.subject.split(".", 4)[3]  # flotilla.stored.runs.<run>.events
        self._remember(run_id, msg)
        partial = self._partials.get(run_id)
        if partial is not None and last_seq_of(msg.headers) > partial.after_seq:
            partial.ended = True  # a durable event supersedes the reply in progress
            if any(is_terminal(event) for event in decode(msg.data, msg.headers)):
                # Kept a moment for watchers still before it, then dropped: the run is over.
                asyncio.get_running_loop().call_later(ENDED_KEEP_S, self._drop, run_id, partial)
        watchers = self._watchers.get(run_id)
        if not watchers:
            return
        for event in decode(msg.data, msg.headers):
            for watcher in watchers:
                watcher.offer(event)

    async def follow(
        self,
        run_id: str,
        *,
        after_seq: int,
        from_stream_seq: int = 1,
        exists: Callable[[], Awaitable[object]],
    ) -> AsyncIterator[list[RunEvent]]:
        """Events with seq > after_seq, each once, in order, in batches of what is ready at
        once; ends after the batch holding the terminal event. `from_stream_seq`: where the
        run's messages start in the stream (its record's `log_from`). `exists` raises for an
        unknown run; it is called only when the log has nothing to show yet."""
        following = self.follow_live(
            run_id, after_seq=after_seq, from_stream_seq=from_stream_seq, exists=exists, deltas=False
        )
        async for events, _ in following:
            yield events

    async def follow_live(
        self,
        run_id: str,
        *,
        after_seq: int,
        from_stream_seq: int = 1,
        exists: Callable[[], Awaitable[object]] | None = None,
        deltas: bool = True,
    ) -> AsyncGenerator[tuple[list[RunEvent], list[ReplyDelta]], None]:
        """`follow`, with the run's reply in progress (when `deltas`): each item is a batch of
        events or, once the watcher has every event the reply follows, what is new of the reply
        (first the text so far, then each further piece). `exists`: as for `follow`; None when
        the caller has just checked."""
        watcher = _Watcher(deltas=deltas)
        self._left.pop(run_id, None)
        self._watchers.setdefault(run_id, set()).add(watcher)
        next_seq = after_seq + 1
        try:
            page = await self._read_caught_up(run_id, after_seq, from_stream_seq)
            cursor = page.next_stream_seq
            if not page.events and after_seq == 0 and exists is not None:
                await exists()
            pending, more = page.events, page.more
            while True:
                # What is new of the reply in progress goes before the events that follow it.
                reply = self._reply_for(watcher, run_id, next_seq - 1) if deltas else None
                if reply is not None:
                    yield [], [reply]
                ready: list[RunEvent] = []
                for event in pending:
                    if event.seq != next_seq:
                        continue  # already sent, or past a gap the log fills next round
                    ready.append(event)
                    next_seq += 1
                    if is_terminal(event):
                        break
                for batch in chunks(ready):
                    yield batch, []
                if ready and is_terminal(ready[-1]):
                    return
                reply = self._reply_for(watcher, run_id, next_seq - 1) if deltas and ready else None
                if reply is not None:
                    yield [], [reply]  # a watcher that just caught up: the reply so far
                if more:
                    page = await self._log.read_page(run_id, after_seq=next_seq - 1, from_stream_seq=cursor)
                else:
                    page = await self._next(watcher, run_id, next_seq, cursor)
                pending, more, cursor = page.events, page.more, max(cursor, page.next_stream_seq)
        finally:
            watchers = self._watchers.get(run_id)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    del self._watchers[run_id]
                    self._left[run_id] = asyncio.get_running_loop().time()
                    while len(self._left) > PARTIAL_RUNS:
                        del self._left[next(iter(self._left))]

    def _remember(self, run_id: str, msg: Msg) -> None:
        seq = last_seq_of(msg.headers)
        if seq:
            self._last_seen[run_id] = seq
            self._last_seen.move_to_end(run_id)
            if len(self._last_seen) > LAST_SEEN_RUNS:
                self._last_seen.popitem(last=False)

    async def _read_caught_up(self, run_id: str, after_seq: int, from_stream_seq: int) -> LogPage:
        """The first page of stored events after after_seq, including every one already seen live."""
        for _ in range(CATCH_UP_TRIES):
            page = await self._log.read_page(run_id, after_seq=after_seq, from_stream_seq=from_stream_seq)
            stored = page.events[-1].seq if page.events else after_seq
            if page.more or stored >= self._last_seen.get(run_id, 0):
                return page
            await asyncio.sleep(0.002)
        return page

    async def _next(self, watcher: _Watcher, run_id: str, next_seq: int, cursor: int) -> LogPage:
        """The live events ready now if they continue the sequence; else a page of the log."""
        try:
            ready = [await asyncio.wait_for(watcher.queue.get(), QUIET_RESYNC_S)]
        except TimeoutError:
            return await self._log.read_page(run_id, after_seq=next_seq - 1, from_stream_seq=cursor)
        while not watcher.queue.empty():
            ready.append(watcher.queue.get_nowait())
        watcher.nudged = False
        events = [event for event in ready if event is not None]
        if not events and not watcher.overflowed:  # only the reply in progress grew
            return LogPage([], cursor, False, LogPosition(next_seq - 1, 0))
        if watcher.overflowed:
            watcher.overflowed = False
            return await self._log.read_page(run_id, after_seq=next_seq - 1, from_stream_seq=cursor)
        fresh = sorted(event.seq for event in events if event.seq >= next_seq)
        if fresh == list(range(next_seq, next_seq + len(fresh))):
            live = sorted(events, key=lambda event: event.seq)
            return LogPage(live, cursor, False, LogPosition(live[-1].seq, 0))
        return await self._log.read_page(run_id, after_seq=next_seq - 1, from_stream_seq=cursor)

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
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from flotilla.events import is_terminal
from flotilla.jetstream import STORED_EVENTS, EventLog, LogPage, LogPosition, decode, last_seq_of
from flotilla.protocol import RunEvent

QUIET_RESYNC_S = 5.0
"""A watcher that hears nothing for this long re-reads the log (catches missed live events)."""
LAST_SEEN_RUNS = 100_000
CATCH_UP_TRIES = 50
WATCHER_QUEUE = 1000
"""Live events queued per watcher at most; beyond, it catches up from the log instead."""
BATCH_EVENTS = 500
BATCH_BYTES = 1024 * 1024
"""Largest batch a watch yields (a gRPC message stays far below the 4 MB default)."""


class _Watcher:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[RunEvent] = asyncio.Queue(maxsize=WATCHER_QUEUE)
        self.overflowed = False

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

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(STORED_EVENTS, cb=self._on_event, pending_msgs_limit=1_000_000)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()

    async def _on_event(self, msg: Msg) -> None:
        run_id = msg.subject.split(".", 4)[3]  # flotilla.stored.runs.<run>.events
        self._remember(run_id, msg)
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
        watcher = _Watcher()
        self._watchers.setdefault(run_id, set()).add(watcher)
        next_seq = after_seq + 1
        try:
            page = await self._read_caught_up(run_id, after_seq, from_stream_seq)
            cursor = page.next_stream_seq
            if not page.events and after_seq == 0:
                await exists()
            pending, more = page.events, page.more
            while True:
                ready: list[RunEvent] = []
                for event in pending:
                    if event.seq != next_seq:
                        continue  # already sent, or past a gap the log fills next round
                    ready.append(event)
                    next_seq += 1
                    if is_terminal(event):
                        break
                for batch in chunks(ready):
                    yield batch
                if ready and is_terminal(ready[-1]):
                    return
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
        if watcher.overflowed:
            watcher.overflowed = False
            return await self._log.read_page(run_id, after_seq=next_seq - 1, from_stream_seq=cursor)
        fresh = sorted(event.seq for event in ready if event.seq >= next_seq)
        if fresh == list(range(next_seq, next_seq + len(fresh))):
            live = sorted(ready, key=lambda event: event.seq)
            return LogPage(live, cursor, False, LogPosition(live[-1].seq, 0))
        return await self._log.read_page(run_id, after_seq=next_seq - 1, from_stream_seq=cursor)

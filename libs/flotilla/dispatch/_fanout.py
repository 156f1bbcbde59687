"""Live events for every watcher from one subscription per dispatcher.

A watch reads the run's stored history (batched direct gets), then takes live events from a
single wildcard subscription on every run's event subject, so watching costs no JetStream
consumer. Live delivery is core NATS and can miss messages (a reconnect): seqs are checked,
and a gap, or a quiet spell, is filled from the stored log, which stays the source of truth.

The server may deliver an event live a moment before its stream has stored it, so an event can
pass by just before a watcher registers and still be missing from the history read after. The
last seq seen live per run is remembered (a bounded LRU) so the watch re-reads until the log
has caught up with it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from flotilla.events import is_terminal
from flotilla.jetstream import EventLog
from flotilla.protocol import RunEvent

ALL_EVENTS = "flotilla.runs.*.events"
QUIET_RESYNC_S = 5.0
"""A watcher that hears nothing for this long re-reads the log (catches missed live events)."""
LAST_SEEN_RUNS = 100_000
CATCH_UP_TRIES = 50


class EventFanout:
    def __init__(self, nc: Client, log: EventLog) -> None:
        self._nc = nc
        self._log = log
        self._watchers: dict[str, set[asyncio.Queue[RunEvent]]] = {}
        self._last_seen: OrderedDict[str, int] = OrderedDict()
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(ALL_EVENTS, cb=self._on_event, pending_msgs_limit=1_000_000)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()

    async def _on_event(self, msg: Msg) -> None:
        run_id = msg.subject.split(".", 3)[2]
        self._remember(run_id, msg)
        queues = self._watchers.get(run_id)
        if not queues:
            return
        event = RunEvent.FromString(msg.data)
        for queue in queues:
            queue.put_nowait(event)

    async def follow(
        self, run_id: str, *, after_seq: int, exists: Callable[[], Awaitable[object]]
    ) -> AsyncIterator[list[RunEvent]]:
        """Events with seq > after_seq, each once, in order, in batches of what is ready at
        once; ends after the batch holding the terminal event. `exists` raises for an unknown
        run; it is called only when the log has nothing to show yet."""
        queue: asyncio.Queue[RunEvent] = asyncio.Queue()
        self._watchers.setdefault(run_id, set()).add(queue)
        next_seq = after_seq + 1
        try:
            pending = await self._read_caught_up(run_id, after_seq)
            if not pending and after_seq == 0:
                await exists()
            while True:
                batch: list[RunEvent] = []
                for event in pending:
                    if event.seq != next_seq:
                        continue  # already sent, or past a gap the log fills next round
                    batch.append(event)
                    next_seq += 1
                    if is_terminal(event):
                        break
                if batch:
                    yield batch
                    if is_terminal(batch[-1]):
                        return
                pending = await self._next(queue, run_id, next_seq)
        finally:
            queues = self._watchers.get(run_id)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._watchers[run_id]

    def _remember(self, run_id: str, msg: Msg) -> None:
        msg_id = (msg.headers or {}).get("Nats-Msg-Id", "")
        _, _, seq = msg_id.rpartition(":")
        if seq.isdigit():
            self._last_seen[run_id] = int(seq)
            self._last_seen.move_to_end(run_id)
            if len(self._last_seen) > LAST_SEEN_RUNS:
                self._last_seen.popitem(last=False)

    async def _read_caught_up(self, run_id: str, after_seq: int) -> list[RunEvent]:
        """The stored events after after_seq, including every one already seen live."""
        for _ in range(CATCH_UP_TRIES):
            events = await self._log.read(run_id, after_seq=after_seq)
            stored = events[-1].seq if events else after_seq
            if stored >= self._last_seen.get(run_id, 0):
                return events
            await asyncio.sleep(0.002)
        return events

    async def _next(self, queue: asyncio.Queue[RunEvent], run_id: str, next_seq: int) -> list[RunEvent]:
        """The live events ready now if they continue the sequence; else what the log has."""
        try:
            ready = [await asyncio.wait_for(queue.get(), QUIET_RESYNC_S)]
        except TimeoutError:
            return await self._log.read(run_id, after_seq=next_seq - 1)
        while not queue.empty():
            ready.append(queue.get_nowait())
        fresh = sorted(event.seq for event in ready if event.seq >= next_seq)
        if fresh == list(range(next_seq, next_seq + len(fresh))):
            return sorted(ready, key=lambda event: event.seq)
        return await self._log.read(run_id, after_seq=next_seq - 1)

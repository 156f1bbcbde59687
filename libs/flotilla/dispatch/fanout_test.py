"""The fanout against a real nats-server: a watcher that stops reading holds a bounded queue,
and catches up from the log, in order, when it reads again."""

from __future__ import annotations

import asyncio

import nats

from flotilla.devstack import Child
from flotilla.dispatch._fanout import BATCH_EVENTS, WATCHER_QUEUE, EventFanout
from flotilla.ids import new_run_id
from flotilla.jetstream import EventLog, Layout, LogPosition, RunEventWriter, provision
from flotilla.protocol import TextMessage, WorkflowCompleted


def test_a_watcher_that_stops_reading_holds_a_bounded_queue_and_misses_nothing(nats_server: Child) -> None:
    async def scenario() -> None:
        nc = await nats.connect(nats_server.url)
        try:
            await provision(nc.jetstream(), Layout())
            log = EventLog(nc)
            fanout = EventFanout(nc, log)
            await fanout.start()
            run_id = new_run_id()
            writer = RunEventWriter(log, run_id, after=LogPosition())
            await writer.emit("text_message", TextMessage(body="first"))
            await writer.flush()

            async def exists() -> None:
                return None

            follow = fanout.follow(run_id, after_seq=0, exists=exists)
            first = await anext(follow)
            assert [e.seq for e in first] == [1]
            # The watcher's reader stalls (a slow client) while the run emits a lot.
            total = 3 * WATCHER_QUEUE
            for i in range(total):
                await writer.emit("text_message", TextMessage(body=f"m{i}"))
            await writer.emit("workflow_completed", WorkflowCompleted(status="completed"))
            await writer.flush()
            await asyncio.sleep(0.5)  # let every live message reach the (stalled) watcher
            (watcher,) = fanout._watchers[run_id]
            assert watcher.queue.qsize() <= WATCHER_QUEUE
            seqs = [e.seq for e in first]
            async for batch in follow:
                assert len(batch) <= BATCH_EVENTS
                seqs.extend(e.seq for e in batch)
            assert seqs == list(range(1, total + 3))
            await fanout.stop()
        finally:
            await nc.close()

    asyncio.run(scenario())

"""The fanout against a real nats-server: a watcher that stops reading holds a bounded queue,
and catches up from the log, in order, when it reads again; a watcher never sees an append the
server refused."""

from __future__ import annotations

import asyncio
from typing import Any

import nats
import pytest

from flotilla.processes import Child
from flotilla.dispatch._fanout import BATCH_EVENTS, WATCHER_QUEUE, EventFanout
from flotilla.ids import new_run_id
from flotilla.jetstream import (
    EventLog,
    Layout,
    LogPosition,
    LostOwnership,
    RunEventWriter,
    delta_subject,
    events_subject,
    provision,
)
from flotilla.protocol import ReplyDelta, RunEvent, RunRetried, TextMessage, WorkflowCompleted


async def _exists() -> None:
    return None


def test_a_refused_append_never_reaches_a_watcher(nats_server: Child) -> None:
    """A worker that lost its run (paused past the takeover) appends what it thinks comes next:
    the server refuses it (the log moved on), but the publish still crosses core NATS. A watcher
    waiting for exactly that seq must get the new holder's event, never the refused one."""

    async def scenario() -> None:
        nc = await nats.connect(nats_server.url)
        try:
            await provision(nc.jetstream(), Layout())
            log = EventLog(nc)
            fanout = EventFanout(nc, log)
            await fanout.start()
            run_id = new_run_id()
            on_the_wire: list[bytes] = []

            async def heard(msg: object) -> None:
                on_the_wire.append(getattr(msg, "data", b""))

            wire = await nc.subscribe(events_subject(run_id), cb=heard)
            stale = RunEventWriter(log, run_id, after=LogPosition())
            await stale.emit("text_message", TextMessage(body="first"))
            await stale.flush()
            follow = fanout.follow(run_id, after_seq=0, exists=_exists)
            assert [e.seq for e in await anext(follow)] == [1]
            # Another worker takes the run over and appends seq 2.
            position, _, _ = await log.tail(run_id)
            holder = RunEventWriter(log, run_id, after=position)
            await holder.emit("run_retried", RunRetried(attempt=2))
            await holder.flush()
            assert [e.seq for e in await anext(follow)] == [2]
            seen: list[RunEvent] = []

            async def watch() -> None:  # waits for seq 3 while the stale worker thaws
                async for batch in follow:
                    seen.extend(batch)

            watching = asyncio.create_task(watch())
            await asyncio.sleep(0.2)
            # The old worker thaws and appends its seq 3 after the log it knew: refused.
            forged = RunEvent(run_id=run_id, seq=3, text_message=TextMessage(body="from the stale worker"))
            with pytest.raises(LostOwnership):
                await log.append([forged], after=stale.stored, token="stale")
            await nc.flush()
            await asyncio.sleep(0.3)  # the refused publish has reached every core subscriber by now
            assert any(b"from the stale worker" in data for data in on_the_wire)  # it was on the wire
            assert seen == []
            await holder.emit("text_message", TextMessage(body="from the holder"))
            await holder.emit("workflow_completed", WorkflowCompleted(status="completed"))
            await holder.flush()
            await asyncio.wait_for(watching, 30)
            assert [(e.seq, e.text_message.body) for e in seen[:1]] == [(3, "from the holder")]
            assert [e.seq for e in seen] == [3, 4] and seen[-1].HasField("workflow_completed")
            await wire.unsubscribe()
            await fanout.stop()
        finally:
            await nc.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


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

            follow = fanout.follow(run_id, after_seq=0, exists=_exists)
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


def _delta(run_id: str, after_seq: int, index: int, text: str, reply: str = "r0") -> bytes:
    delta = ReplyDelta(
        run_id=run_id,
        after_seq=after_seq,
        reply_id=f"{run_id}:{reply}",
        sender="teacher",
        first_index=index,
        index=index,
        text=text,
    )
    return delta.SerializeToString()


def test_the_reply_in_progress_reaches_watchers_after_its_events_and_ends_at_the_next_event(
    nats_server: Child,
) -> None:
    """A watcher gets each delta once it has the event the reply follows; one that joins
    mid-reply gets the text so far in one delta, then the rest; repeats and gaps stop nothing but
    themselves; the next durable event ends the reply (its last pieces still go first), and a late
    delta of it is ignored; a run nobody watches keeps nothing."""

    async def next_item(follow: Any) -> tuple[list[RunEvent], list[ReplyDelta]]:
        item: tuple[list[RunEvent], list[ReplyDelta]] = await asyncio.wait_for(anext(follow), 5)
        return item

    async def scenario() -> None:
        nc = await nats.connect(nats_server.url)
        try:
            await provision(nc.jetstream(), Layout())
            log = EventLog(nc)
            fanout = EventFanout(nc, log)
            await fanout.start()
            run_id = new_run_id()
            writer = RunEventWriter(log, run_id, after=LogPosition())
            await writer.emit("text_message", TextMessage(body="Teach me."))
            await writer.flush()
            first = fanout.follow_live(run_id, after_seq=0, exists=_exists)
            events, deltas = await next_item(first)
            assert [e.seq for e in events] == [1] and deltas == []

            for index, word in enumerate(["Gravity", " pulls", " masses"]):
                await nc.publish(delta_subject(run_id), _delta(run_id, 1, index, word))
            await nc.publish(delta_subject(run_id), _delta(run_id, 1, 1, " pulls"))  # a repeat
            await nc.flush()
            text, index = "", -1
            while index < 2:
                events, deltas = await next_item(first)
                assert events == []
                for delta in deltas:
                    assert delta.first_index == index + 1
                    text, index = text + delta.text, delta.index
            assert text == "Gravity pulls masses"

            # A watcher joining now: the event first, then the text so far in one delta.
            second = fanout.follow_live(run_id, after_seq=0, exists=_exists)
            assert [e.seq for e in (await next_item(second))[0]] == [1]
            _, (joined,) = await next_item(second)
            assert (joined.first_index, joined.index, joined.text) == (0, 2, "Gravity pulls masses")
            assert joined.sender == "teacher" and joined.after_seq == 1
            await nc.publish(delta_subject(run_id), _delta(run_id, 1, 3, " together."))
            await nc.flush()
            for follow in (first, second):
                _, (more,) = await next_item(follow)
                assert (more.first_index, more.index, more.text) == (3, 3, " together.")

            # The finished reply is stored: the reply in progress is gone; a late delta of it too.
            await writer.emit("text_message", TextMessage(body="Gravity pulls masses together."))
            await writer.flush()
            for follow in (first, second):
                events, deltas = await next_item(follow)
                assert [e.seq for e in events] == [2] and deltas == []
            await nc.publish(delta_subject(run_id), _delta(run_id, 1, 4, " Late."))
            await nc.flush()
            third = fanout.follow_live(run_id, after_seq=0, exists=_exists)
            assert [e.seq for e in (await next_item(third))[0]] == [1, 2]
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(third), 0.5)
            await third.aclose()

            # The next reply; a chunk missed on the way stops it streaming (its message still comes).
            await nc.publish(delta_subject(run_id), _delta(run_id, 2, 0, "Why?", reply="r1"))
            await nc.publish(delta_subject(run_id), _delta(run_id, 2, 2, " lost one", reply="r1"))
            await nc.publish(delta_subject(run_id), _delta(run_id, 2, 3, " and after", reply="r1"))
            await nc.flush()
            _, (why,) = await next_item(first)
            assert (why.reply_id, why.first_index, why.text) == (f"{run_id}:r1", 0, "Why?")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(first), 0.5)
            await first.aclose()
            await second.aclose()

            # A reply's last piece and the event after it come together: the piece goes first.
            fourth = fanout.follow_live(run_id, after_seq=2, exists=_exists)
            _, (so_far,) = await next_item(fourth)
            assert (so_far.reply_id, so_far.text) == (f"{run_id}:r1", "Why?")
            await nc.publish(delta_subject(run_id), _delta(run_id, 2, 0, "Because", reply="r2"))
            await nc.flush()
            _, (because,) = await next_item(fourth)
            assert (because.first_index, because.text) == (0, "Because")
            await nc.publish(delta_subject(run_id), _delta(run_id, 2, 1, " it orbits.", reply="r2"))
            await writer.emit("text_message", TextMessage(body="Because it orbits."))
            await writer.flush()
            _, (last,) = await next_item(fourth)
            assert (last.first_index, last.text) == (1, " it orbits.")
            events, _ = await next_item(fourth)
            assert [e.seq for e in events] == [3]
            await fourth.aclose()

            # Nobody watches (past the grace period): nothing is kept.
            quiet = new_run_id()
            fanout._left.pop(quiet, None)
            await nc.publish(delta_subject(quiet), _delta(quiet, 0, 0, "unheard"))
            await nc.flush()
            await asyncio.sleep(0.2)
            assert quiet not in fanout._partials
            await fanout.stop()
        finally:
            await nc.close()

    asyncio.run(scenario())

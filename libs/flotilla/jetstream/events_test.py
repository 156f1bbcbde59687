"""The event log against a real nats-server: conditional appends fence a writer that lost the
log, a retried append is recognised, events group while an append is in flight, reads page."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
import pytest

from flotilla.processes import Child
from flotilla.ids import new_run_id
from flotilla.jetstream import (
    EVENTS_STREAM,
    EventLog,
    Layout,
    LogPosition,
    LostOwnership,
    RunEventWriter,
    events_subject,
    provision,
)
from flotilla.protocol import RunEvent, RunRetried, TextMessage


@asynccontextmanager
async def event_log(server: Child) -> AsyncIterator[EventLog]:
    nc = await nats.connect(server.url)
    try:
        await provision(nc.jetstream(), Layout())
        yield EventLog(nc)
    finally:
        await nc.close()


async def _messages(log: EventLog, run_id: str) -> int:
    info = await log.js.stream_info(EVENTS_STREAM, subjects_filter=events_subject(run_id))
    return sum((info.state.subjects or {}).values())


def test_a_writer_that_lost_the_log_writes_nothing_more(nats_server: Child) -> None:
    async def scenario() -> None:
        async with event_log(nats_server) as log:
            run_id = new_run_id()
            first = RunEventWriter(log, run_id, after=LogPosition())
            for i in range(3):
                await first.emit("text_message", TextMessage(body=f"first {i}"))
            await first.flush()
            # A second worker takes the run over: it reads where the log ends and appends there.
            position, _, _ = await log.tail(run_id)
            second = RunEventWriter(log, run_id, after=position)
            await second.emit("run_retried", RunRetried(attempt=2))
            await second.flush()
            # The first writer comes back (it was paused): its appends are refused by the server.
            await first.emit("text_message", TextMessage(body="from a stale writer"))
            with pytest.raises(LostOwnership):
                await first.flush()
            with pytest.raises(LostOwnership):
                await first.emit("text_message", TextMessage(body="and nothing after"))
            await second.emit("text_message", TextMessage(body="second goes on"))
            await second.flush()
            events = await log.read(run_id)
            assert [e.seq for e in events] == [1, 2, 3, 4, 5]
            assert [e.WhichOneof("kind") for e in events][3] == "run_retried"
            assert "stale" not in "".join(e.text_message.body for e in events)

    asyncio.run(scenario())


def test_a_retried_append_whose_ack_was_lost_is_recognised_as_its_own(nats_server: Child) -> None:
    async def scenario() -> None:
        async with event_log(nats_server) as log:
            run_id = new_run_id()
            event = RunEvent(run_id=run_id, seq=1, text_message=TextMessage(body="once"))
            stored = await log.append([event], after=LogPosition(), token="tok")
            again = await log.append([event], after=LogPosition(), token="tok")  # the same try, repeated
            assert again == stored and await _messages(log, run_id) == 1
            with pytest.raises(LostOwnership):  # another writer with the same expectation lost
                await log.append([event], after=LogPosition(), token="other")

    asyncio.run(scenario())


def test_events_emitted_while_an_append_is_in_flight_go_together(nats_server: Child) -> None:
    async def scenario() -> None:
        async with event_log(nats_server) as log:
            run_id = new_run_id()
            writer = RunEventWriter(log, run_id, after=LogPosition())
            for i in range(600):
                await writer.emit("text_message", TextMessage(body=f"m{i}"))
            await writer.flush()
            assert [e.seq for e in await log.read(run_id)] == list(range(1, 601))
            assert await _messages(log, run_id) < 60  # grouped: one conditional append per batch

    asyncio.run(scenario())


def test_reads_page_and_start_at_the_runs_own_first_message(nats_server: Child) -> None:
    async def scenario() -> None:
        async with event_log(nats_server) as log:
            other = RunEventWriter(log, new_run_id(), after=LogPosition())
            for i in range(50):
                await other.emit("text_message", TextMessage(body=f"other {i}"))
            await other.flush()
            run_id = new_run_id()
            start = (await log.js.stream_info(EVENTS_STREAM)).state.last_seq + 1
            writer = RunEventWriter(log, run_id, after=LogPosition())
            for i in range(25):
                await writer.emit("text_message", TextMessage(body=f"mine {i}"))
                await writer.flush()  # one message each
            pages, after, cursor = [], 0, start
            while True:
                page = await log.read_page(run_id, after_seq=after, from_stream_seq=cursor, limit=10)
                pages.append([e.seq for e in page.events])
                if not page.more:
                    break
                after, cursor = page.end.seq, page.next_stream_seq
            assert pages == [list(range(1, 11)), list(range(11, 21)), list(range(21, 26))]
            assert [e.seq for e in await log.read(run_id, after_seq=20)] == list(range(21, 26))

    asyncio.run(scenario())


def test_single_event_messages_written_before_batches_still_read(nats_server: Child) -> None:
    async def scenario() -> None:
        async with event_log(nats_server) as log:
            run_id = new_run_id()
            for seq in (1, 2):
                old = RunEvent(run_id=run_id, seq=seq, text_message=TextMessage(body=f"old {seq}"))
                await log.js.publish(
                    events_subject(run_id), old.SerializeToString(), headers={"Nats-Msg-Id": f"{run_id}:{seq}"}
                )
            position, last, _ = await log.tail(run_id)
            assert position.seq == 2 and last is not None and last.text_message.body == "old 2"
            writer = RunEventWriter(log, run_id, after=position)
            await writer.emit("text_message", TextMessage(body="new"))
            await writer.flush()
            assert [e.seq for e in await log.read(run_id)] == [1, 2, 3]

    asyncio.run(scenario())


def test_a_run_writes_no_event_too_large_and_no_more_than_its_cap(
    nats_server: Child, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flotilla.jetstream import _events
    from flotilla.protocol import WorkflowCompleted

    monkeypatch.setattr(_events, "MAX_EVENTS_PER_RUN", 3)

    async def scenario() -> None:
        async with event_log(nats_server) as log:
            run_id = new_run_id()
            writer = RunEventWriter(log, run_id, after=LogPosition())
            with pytest.raises(_events.EventLimit, match="larger than a run may write"):
                await writer.emit("text_message", TextMessage(body="x" * (_events.MAX_EVENT_BYTES + 1)))
            for i in range(3):
                await writer.emit("text_message", TextMessage(body=f"m{i}"))
            with pytest.raises(_events.EventLimit, match="most events a run may"):
                await writer.emit("text_message", TextMessage(body="one too many"))
            await writer.emit("workflow_completed", WorkflowCompleted(status="failed", error="too many events"))
            await writer.flush()
            events = await log.read(run_id)
            assert [e.seq for e in events] == [1, 2, 3, 4]
            assert events[-1].WhichOneof("kind") == "workflow_completed"

    asyncio.run(scenario())

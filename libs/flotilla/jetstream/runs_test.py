"""Run records against a real nats-server: a change that starts from a known revision is refused
when the record moved on since, and headers are read once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
import pytest

from flotilla.errors import RunNotFound
from flotilla.ids import new_run_id
from flotilla.jetstream import Layout, RunStore, provision
from flotilla.processes import Child
from flotilla.protocol import Run, RunStatus


@asynccontextmanager
async def stores(server: Child) -> AsyncIterator[tuple[RunStore, RunStore]]:
    """The dispatcher's store (with headers) and a worker's (without)."""
    nc = await nats.connect(server.url)
    try:
        await provision(nc.jetstream(), Layout())
        yield await RunStore.open(nc.jetstream(), with_headers=True), await RunStore.open(nc.jetstream())
    finally:
        await nc.close()


def _claim(run: Run) -> bool:
    if run.status != RunStatus.RUN_STATUS_QUEUED:
        return False
    run.status = RunStatus.RUN_STATUS_RUNNING
    run.attempts += 1
    return True


def test_a_change_from_an_old_revision_is_refused_and_made_on_the_stored_record(nats_server: Child) -> None:
    async def scenario() -> None:
        async with stores(nats_server) as (dispatcher, worker):
            run = Run(run_id=new_run_id(), workflow="w", owner="alice", status=RunStatus.RUN_STATUS_QUEUED)
            created = await dispatcher.create(run)
            known = (run, created)

            def cancel(current: Run) -> bool:
                current.cancel_requested = True
                return True

            await dispatcher.update(run.run_id, cancel)  # the record moves on behind the worker's back
            claimed, revision = await worker.modify(run.run_id, _claim, known=known)
            assert claimed.cancel_requested and claimed.attempts == 1  # made on the stored record
            stored, stored_revision = await worker.get(run.run_id)
            assert stored_revision == revision and stored.cancel_requested and stored.attempts == 1

            # From the revision it just wrote: one compare-and-set, which wins.
            def finish(current: Run) -> bool:
                current.status = RunStatus.RUN_STATUS_COMPLETED
                return True

            finished, _ = await worker.modify(run.run_id, finish, known=(claimed, revision))
            assert finished.status == RunStatus.RUN_STATUS_COMPLETED and finished.cancel_requested

            # A copy that says "nothing to do" never decides: the stored record does.
            stale = Run()
            stale.CopyFrom(finished)
            stale.status = RunStatus.RUN_STATUS_QUEUED
            again, _ = await worker.modify(run.run_id, _claim, known=(stale, revision))
            assert again.status == RunStatus.RUN_STATUS_COMPLETED and again.attempts == 1

    asyncio.run(scenario())


def test_headers_are_read_once_and_laid_over_what_a_worker_writes(nats_server: Child) -> None:
    async def scenario() -> None:
        async with stores(nats_server) as (dispatcher, worker):
            run = Run(run_id=new_run_id(), workflow="w", owner="alice", status=RunStatus.RUN_STATUS_QUEUED)
            await dispatcher.create(run)

            def steal(current: Run) -> bool:
                current.owner, current.workflow = "mallory", "other"
                return True

            await worker.update(run.run_id, steal)
            seen, _ = await dispatcher.get(run.run_id)
            assert (seen.owner, seen.workflow) == ("alice", "w")
            # A second dispatcher (no cache yet) reads the stored header the same.
            fresh = RunStore(dispatcher._kv, dispatcher._headers)
            seen, _ = await fresh.get(run.run_id)
            assert (seen.owner, seen.workflow) == ("alice", "w")
            with pytest.raises(RunNotFound):
                await dispatcher.get(new_run_id())

    asyncio.run(scenario())

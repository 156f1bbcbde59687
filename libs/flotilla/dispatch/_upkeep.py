"""What each dispatcher does in the background to keep runs whole: no run without a job, and no
finished run kept past its retention. Every step is idempotent, so any number of dispatcher
replicas may run it at once.

- **Jobs.** `StartRun` writes the record, then queues the job. If the dispatcher dies, or NATS
  fails, in between, the run would wait forever: the keeper finds queued runs without a job and
  queues it (the jobs stream holds one job per run at most, so a race queues one), in the trace
  the run was started in (flotilla.tracing).
- **Retention.** Nothing of a live run ages out (a run may wait days for a person). Once a run
  has been finished for `retention_s`, the janitor deletes its log, its answers, its record and
  its idempotency key.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from nats.js import JetStreamContext

from flotilla.dispatch._index import RunIndex
from flotilla.errors import RunNotFound
from flotilla.jetstream import (
    EVENTS_STREAM,
    INPUTS_STREAM,
    IdempotencyKeys,
    Layout,
    RunStore,
    enqueue,
    events_subject,
    has_job,
)
from flotilla.protocol import Job, Run, RunStatus

log = structlog.get_logger(__name__)

QUEUE_GRACE_S = 5.0
"""A run queued this long without a job is repaired (StartRun queues within milliseconds)."""


def idempotency_scope(run: Run) -> str:
    """The key a run's idempotency key is stored under (keys are per identity)."""
    return f"{run.owner}\n{run.idempotency_key}"


class Upkeep:
    def __init__(
        self,
        js: JetStreamContext,
        index: RunIndex,
        runs: RunStore,
        idempotency: IdempotencyKeys,
        layout: Layout,
    ) -> None:
        self._js = js
        self._index = index
        self._runs = runs
        self._idempotency = idempotency
        self._retention_s = layout.retention_s
        self.interval_s = max(0.2, min(5.0, layout.retention_s / 4))
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            for step in (self.requeue_orphans, self.expire_finished):
                try:
                    await step()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # NATS away for a moment: next round
                    log.warning("upkeep step failed", step=step.__name__, error=repr(exc))

    async def requeue_orphans(self) -> int:
        """Queue the job of every queued run that has none; how many were queued."""
        now = time.time()
        requeued = 0
        for run in self._index.where(RunStatus.RUN_STATUS_QUEUED):
            if now - run.created_at.seconds < QUEUE_GRACE_S or await has_job(self._js, run.run_id):
                continue
            try:
                current, _ = await self._runs.get(run.run_id)
            except RunNotFound:
                continue
            if current.status != RunStatus.RUN_STATUS_QUEUED:
                self._index.put(current)
                continue
            job = Job(run_id=current.run_id, workflow=current.workflow, params_json=current.params_json)
            if await enqueue(self._js, job, traceparent=current.traceparent):  # the run's trace
                requeued += 1
                log.warning("queued run had no job; queued it again", run_id=current.run_id)
        return requeued

    async def expire_finished(self) -> int:
        """Delete every run finished more than `retention_s` ago; how many were deleted."""
        cutoff = time.time() - self._retention_s
        expired = 0
        for run_id, _ in self._index.finished(before_s=cutoff):
            try:
                run, _ = await self._runs.get(run_id)
            except RunNotFound:
                run = None  # half deleted by an earlier round: finish the job
            await self._js.purge_stream(EVENTS_STREAM, subject=events_subject(run_id))
            await self._js.purge_stream(INPUTS_STREAM, subject=f"flotilla.inputs.{run_id}.>")
            if run is not None and run.idempotency_key:
                await self._idempotency.forget(idempotency_scope(run))
            await self._runs.delete(self._js, run_id)
            self._index.remove(run_id)
            expired += 1
        if expired:
            log.info("finished runs past their retention deleted", runs=expired)
        return expired

"""The worker: pulls jobs from the shared durable consumer and runs many runs at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

import structlog
from nats.aio.msg import Msg

from flotilla import tracing
from flotilla.execution._attempt import RunAttempt, WorkerContext
from flotilla.ids import is_run_id
from flotilla.jetstream import Catalogue, JobConsumer, dead_letter, when_ready
from flotilla.events import TERMINAL_STATUSES
from flotilla.metrics import JOB_REDELIVERIES, WORKER_RUNS_IN_FLIGHT
from flotilla.protocol import Job, Run

log = structlog.get_logger(__name__)


class Worker:
    """`await worker.run()` until `stop()`; then held runs get `drain_timeout_s` to finish and
    the rest are handed back to the queue (a run waiting on a person at once)."""

    def __init__(
        self,
        ctx: WorkerContext,
        *,
        max_concurrent_runs: int = 1000,
        drain_timeout_s: float = 20.0,
        heartbeat_s: float = 5.0,
    ) -> None:
        self._ctx = ctx
        self._max = max_concurrent_runs
        self._drain_timeout = drain_timeout_s
        self._heartbeat = heartbeat_s
        self._held: dict[asyncio.Task[None], Msg] = {}
        self._attempts: dict[asyncio.Task[None], RunAttempt] = {}
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._consumer: JobConsumer
        # Read when scraped: nothing on the hot path (the last Worker of a process wins).
        WORKER_RUNS_IN_FLIGHT.set_function(lambda: len(self._held))

    def stop(self) -> None:
        self._stopping.set()

    @property
    def held_runs(self) -> int:
        return len(self._held)

    @property
    def ready(self) -> bool:
        """Connected to NATS and pulling jobs (the readiness probe)."""
        consumer = getattr(self, "_consumer", None)
        return self._ctx.nc.is_connected and consumer is not None and consumer.pulling and not self._stopping.is_set()

    async def run(self) -> None:
        catalogue = await when_ready(lambda: Catalogue.open(self._ctx.js), waiting_for="JetStream (the catalogue)")
        self._consumer = JobConsumer(self._ctx.nc, self._take, self._credit, expires_s=10.0)
        await self._consumer.start()
        background = [
            asyncio.create_task(self._advertise(catalogue)),
            asyncio.create_task(self._keep_jobs_alive()),
            asyncio.create_task(self._keep_requesting()),
        ]
        workflows = [w.name for w in self._ctx.registry.infos()]
        log.info("worker started", worker_id=self._ctx.worker_id, workflows=workflows)
        try:
            await self._stopping.wait()
        finally:
            await self._drain()
            await self._consumer.stop()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            log.info("worker stopped")

    def _credit(self) -> int:
        return 0 if self._stopping.is_set() else self._max - len(self._held)

    def _take(self, msg: Msg) -> None:
        if self._stopping.is_set():
            self._background(msg.nak())  # arrived while draining: straight back to the queue
            return
        task = asyncio.create_task(self._handle(msg))
        self._held[task] = msg
        task.add_done_callback(self._finished)

    def _background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._held.pop(task, None)
        self._attempts.pop(task, None)
        self._background(self._consumer.refill())

    async def _handle(self, msg: Msg) -> None:
        try:
            job = Job.FromString(msg.data)
            if not is_run_id(job.run_id) or not job.workflow:
                raise ValueError("job lacks a valid run_id or workflow")
        except Exception as exc:  # garbage on the job subject: keep it, say why, move on
            log.error("malformed job dead-lettered", error=str(exc), size=len(msg.data))
            await dead_letter(self._ctx.js, "malformed", msg.data, detail=f"malformed job: {exc}")
            await msg.term()
            return
        if msg.metadata.num_delivered > 1:
            JOB_REDELIVERIES.inc()
        attempt = RunAttempt(self._ctx, job, msg)
        task = asyncio.current_task()
        if task is not None:
            self._attempts[task] = attempt
        # The attempt's span is a child of the span that queued the job (its headers): a takeover
        # by another worker gets the same job again, so every attempt of a run is in one trace.
        attempt_span = tracing.span(
            "run attempt",
            kind=tracing.SpanKind.CONSUMER,
            parent=tracing.context_from(msg.headers),
            attributes={
                "flotilla.run_id": job.run_id,
                "flotilla.workflow": job.workflow,
                "flotilla.worker_id": self._ctx.worker_id,
                "flotilla.delivery": msg.metadata.num_delivered,
            },
        )
        with structlog.contextvars.bound_contextvars(run_id=job.run_id, workflow=job.workflow), attempt_span:
            try:
                await attempt.execute()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("run attempt failed; the job will be retried")
                failure = f"{type(exc).__name__}: {exc}"
                with contextlib.suppress(Exception):
                    await self._ctx.runs.update(job.run_id, lambda run: _note_failure(run, failure))
                with contextlib.suppress(Exception):
                    await msg.nak(delay=1.0)

    async def _keep_jobs_alive(self) -> None:
        """In-progress acks for every held job, so only a dead worker's jobs time out; but first
        each attempt checks it still holds its run: one that was paused or cut off while another
        worker took the run over stops, and must not keep that worker's job alive."""
        interval = max(0.2, self._ctx.layout.job_ack_wait_s / 3)
        while True:
            await asyncio.sleep(interval)
            await asyncio.gather(*(self._keep_alive(task, msg) for task, msg in list(self._held.items())))

    async def _keep_alive(self, task: asyncio.Task[None], msg: Msg) -> None:
        attempt = self._attempts.get(task)
        with contextlib.suppress(Exception):
            if attempt is not None and not await attempt.still_holds():
                log.warning("another worker took the run over; stopping this attempt", run_id=attempt.run_id)
                attempt.abandon()
                task.cancel()
                return
            await msg.in_progress()

    async def _keep_requesting(self) -> None:
        """Re-issue pull requests after a reconnect (the server forgot ours), and now and then in
        case a request's expiry notice was lost."""
        while True:
            try:
                await asyncio.wait_for(self._ctx.reconnects.wait(), timeout=5.0)
                self._consumer.forget_requests()
            except TimeoutError:
                pass
            with contextlib.suppress(Exception):
                await self._consumer.refill()

    async def _advertise(self, catalogue: Catalogue) -> None:
        while True:
            try:
                await catalogue.advertise(self._ctx.registry.infos())
            except Exception as exc:
                log.warning("advertising workflows failed", error=repr(exc))
            await asyncio.sleep(self._heartbeat)

    async def _drain(self) -> None:
        # Pull requests go first: a job handed back below must reach another worker, not come
        # back here (each round trip would be a delivery, and the run would wait).
        await self._consumer.stop()
        if not self._held:
            return
        log.info("draining", held=len(self._held), timeout_s=self._drain_timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._drain_timeout
        pending = set(self._held)
        handed_back: set[asyncio.Task[None]] = set()
        while pending:
            # A run waiting on a person has nothing to finish here: it goes back at once (its
            # question and any answer are stored; the next worker waits for it instead).
            for task in pending - handed_back:
                attempt = self._attempts.get(task)
                if attempt is not None and attempt.waiting_on_person:
                    task.cancel()  # RunAttempt hands the run back and naks the job
                    handed_back.add(task)
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            _, pending = await asyncio.wait(pending, timeout=min(remaining, 0.1))
        for task in pending:
            task.cancel()  # out of time: hand back what is still running
        await asyncio.gather(*self._held, return_exceptions=True)


def _note_failure(run: Run, failure: str) -> bool:
    """Keep why the attempt failed in the record (the dead letter says it, if it comes to that)."""
    if run.status in TERMINAL_STATUSES:
        return False
    run.error = f"attempt {run.attempts} failed: {failure}"[:1000]
    return True

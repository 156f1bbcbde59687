"""The worker: pulls jobs from the shared durable consumer and runs many runs at once."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from nats.aio.msg import Msg

from flotilla.execution._attempt import RunAttempt, WorkerContext
from flotilla.ids import is_run_id
from flotilla.jetstream import Catalogue, JobPuller, dead_letter
from flotilla.protocol import Job

log = structlog.get_logger(__name__)


class Worker:
    """`await worker.run()` until `stop()`; then held runs get `drain_timeout_s` to finish and
    the rest are handed back to the queue."""

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
        self._stopping = asyncio.Event()
        self._room = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    @property
    def held_runs(self) -> int:
        return len(self._held)

    async def run(self) -> None:
        catalogue = await Catalogue.open(self._ctx.js)
        puller = JobPuller(self._ctx.js)
        background = [
            asyncio.create_task(self._advertise(catalogue)),
            asyncio.create_task(self._keep_jobs_alive()),
        ]
        log.info("worker started", worker_id=self._ctx.worker_id, workflows=[w.name for w in self._ctx.registry.infos()])
        try:
            await self._pull(puller)
        finally:
            await puller.close()
            await self._drain()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            log.info("worker stopped")

    async def _pull(self, puller: JobPuller) -> None:
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                free = self._max - len(self._held)
                if free <= 0:
                    self._room.clear()
                    await _first(asyncio.create_task(self._room.wait()), stopping)
                    continue
                fetch = asyncio.create_task(puller.fetch(min(free, 256), timeout=5.0))
                if not await _first(fetch, stopping):
                    continue
                try:
                    msgs = fetch.result()
                except Exception as exc:
                    log.warning("fetching jobs failed", error=repr(exc))
                    await asyncio.sleep(0.5)
                    continue
                for msg in msgs:
                    self._start(msg)
        finally:
            stopping.cancel()

    def _start(self, msg: Msg) -> None:
        task = asyncio.create_task(self._handle(msg))
        self._held[task] = msg
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._held.pop(task, None)
        self._room.set()

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
        with structlog.contextvars.bound_contextvars(run_id=job.run_id, workflow=job.workflow):
            try:
                await RunAttempt(self._ctx, job, msg).execute()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("run attempt failed; the job will be retried")
                with contextlib.suppress(Exception):
                    await msg.nak(delay=1.0)

    async def _keep_jobs_alive(self) -> None:
        """In-progress acks for every held job, so only a dead worker's jobs time out."""
        interval = max(0.2, self._ctx.layout.job_ack_wait_s / 3)
        while True:
            await asyncio.sleep(interval)
            for msg in list(self._held.values()):
                with contextlib.suppress(Exception):
                    await msg.in_progress()

    async def _advertise(self, catalogue: Catalogue) -> None:
        while True:
            try:
                await catalogue.advertise(self._ctx.registry.infos())
            except Exception as exc:
                log.warning("advertising workflows failed", error=repr(exc))
            await asyncio.sleep(self._heartbeat)

    async def _drain(self) -> None:
        if not self._held:
            return
        log.info("draining", held=len(self._held), timeout_s=self._drain_timeout)
        _, pending = await asyncio.wait(set(self._held), timeout=self._drain_timeout)
        for task in pending:
            task.cancel()  # RunAttempt naks the job: another worker takes it over
        await asyncio.gather(*pending, return_exceptions=True)


async def _first(task: asyncio.Task[object], stopping: asyncio.Task[object]) -> bool:
    """Wait for `task` or `stopping`; True if `task` finished (else it is cancelled)."""
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        return True
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return False

"""The job queue (work-queue stream + the workers' durable pull consumer) and dead letters."""

from __future__ import annotations

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from flotilla.jetstream._layout import (
    JOBS_STREAM,
    JOBS_SUBJECT,
    WORKERS_CONSUMER,
    dead_subject,
)
from flotilla.protocol import Job


async def enqueue(js: JetStreamContext, job: Job) -> None:
    """Publish a job once: a repeat with the same run_id inside the dedup window is dropped."""
    await js.publish(JOBS_SUBJECT, job.SerializeToString(), headers={"Nats-Msg-Id": job.run_id})


async def dead_letter(js: JetStreamContext, reason: str, data: bytes, *, detail: str) -> None:
    """Keep a job no worker could run, with why, in FLOTILLA_DEAD."""
    await js.publish(dead_subject(reason), data, headers={"Flotilla-Reason": detail[:1000]})


class JobPuller:
    """A worker's handle on the shared durable consumer."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._sub: JetStreamContext.PullSubscription | None = None

    async def fetch(self, batch: int, *, timeout: float) -> list[Msg]:
        """Up to `batch` jobs; returns as soon as any are available, or [] after `timeout`."""
        if self._sub is None:
            self._sub = await self._js.pull_subscribe_bind(WORKERS_CONSUMER, JOBS_STREAM)
        try:
            return await self._sub.fetch(batch, timeout=timeout)
        except TimeoutError:
            return []

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

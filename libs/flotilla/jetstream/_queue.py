"""The job queue (work-queue stream + the workers' durable pull consumer) and dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from flotilla import tracing
from flotilla.jetstream._layout import (
    DEAD_STREAM,
    JOBS_STREAM,
    WORKERS_CONSUMER,
    dead_subject,
    job_subject,
)
from flotilla.metrics import DEAD_LETTERS, JOBS_PENDING
from flotilla.protocol import DeadLetter, Job


async def enqueue(js: JetStreamContext, job: Job, *, traceparent: str = "") -> bool:
    """Queue the run's job unless it has one (queued, or held by a worker): True if this call
    queued it. The stream keeps at most one job per run, so repeating this is always safe. With
    tracing on, the job carries the current span's `traceparent`, or with none current the one
    the run was started in (`traceparent`, the run's): the worker's attempt joins the trace."""
    try:
        # No Nats-Msg-Id: the per-subject limit dedups, and a job lost after it was stored must
        # be queued again at once, not dropped as a duplicate of itself.
        headers = tracing.inject_headers(traceparent)
        await js.publish(job_subject(job.run_id), job.SerializeToString(), headers=headers)
    except APIError as exc:
        if "maximum messages per subject" in (exc.description or ""):
            return False
        raise
    return True


async def has_job(js: JetStreamContext, run_id: str) -> bool:
    """Whether the run's job is in the queue (waiting, or held by a worker)."""
    try:
        await js.get_last_msg(JOBS_STREAM, job_subject(run_id), direct=True)
    except NotFoundError:
        return False
    return True


async def dead_letter(js: JetStreamContext, reason: str, data: bytes, *, detail: str) -> None:
    """Keep a job no worker could run, with why, in FLOTILLA_DEAD."""
    await js.publish(dead_subject(reason), data, headers={REASON_HEADER: detail[:1000]})
    DEAD_LETTERS.labels(reason).inc()  # reasons are the callers' fixed words


REASON_HEADER = "Flotilla-Reason"


async def read_dead_letters(js: JetStreamContext, *, limit: int) -> list[DeadLetter]:
    """The newest `limit` dead letters, newest first (a job that cannot be read keeps its reason)."""
    info = await js.stream_info(DEAD_STREAM)
    first, last = info.state.first_seq or 0, info.state.last_seq or 0
    found: list[DeadLetter] = []
    seq = last
    while seq >= max(first, 1) and len(found) < limit:
        try:
            raw = await js.get_msg(DEAD_STREAM, seq=seq)
        except NotFoundError:
            seq -= 1  # removed (retention)
            continue
        letter = DeadLetter(
            seq=seq,
            reason=(raw.subject or "").rsplit(".", 1)[-1],
            detail=(raw.headers or {}).get(REASON_HEADER, ""),
        )
        with contextlib.suppress(Exception):  # a malformed job is still listed
            job = Job.FromString(raw.data or b"")
            letter.run_id, letter.workflow = job.run_id, job.workflow
        if raw.time is not None:
            letter.dead_at.FromDatetime(raw.time)
        found.append(letter)
        seq -= 1
    return found


async def report_queue(js: JetStreamContext, every_s: float = 5.0) -> None:
    """Keep the pending-jobs gauges at what the workers' consumer says, until cancelled."""
    pending, ack_pending = JOBS_PENDING.labels("pending"), JOBS_PENDING.labels("ack_pending")
    while True:
        with contextlib.suppress(Exception):  # an outage: the gauges keep their last values
            info = await js.consumer_info(JOBS_STREAM, WORKERS_CONSUMER)
            pending.set(info.num_pending or 0)
            ack_pending.set(info.num_ack_pending or 0)
        await asyncio.sleep(every_s)


class JobConsumer:
    """A worker's continuous pull on the shared durable consumer.

    It keeps pull requests open for up to `credit()` jobs, so each job is handed to `on_job`
    the moment the server delivers it (no fetch-and-wait loop, no polling). The worker calls
    `refill()` whenever its capacity changes.
    """

    def __init__(
        self, nc: Client, on_job: Callable[[Msg], None], credit: Callable[[], int], *, expires_s: float = 30.0
    ) -> None:
        self._nc = nc
        self._on_job = on_job
        self._credit = credit
        self._expires_ns = int(expires_s * 1e9)
        self._outstanding = 0
        self._requested_at = 0.0
        self._inbox = ""
        self._sub: Subscription | None = None
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{JOBS_STREAM}.{WORKERS_CONSUMER}"

    async def start(self) -> None:
        self._inbox = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_msg, pending_msgs_limit=1_000_000)
        await self.refill()

    async def stop(self) -> None:
        """Withdraw every pull request (the server stops delivering to us at once); jobs already
        on their way are still handed to `on_job`."""
        sub, self._sub = self._sub, None
        if sub is not None:
            await sub.drain()  # type: ignore[no-untyped-call]

    @property
    def pulling(self) -> bool:
        """Started and not stopped: pull requests are kept open."""
        return self._sub is not None

    def forget_requests(self) -> None:
        """After a reconnect the server has dropped our pull requests: ask again from zero."""
        self._outstanding = 0

    async def refill(self) -> None:
        """Request more jobs when fewer than half of what we could take are requested."""
        if self._sub is None:
            return
        target = min(_MAX_BATCH, self._credit())
        if self._outstanding and time.monotonic() - self._requested_at > self._expires_ns / 1e9 + _GRACE_S:
            # Past their expiry with no word from the server: it lost them (a cluster restarted
            # or elected a consumer leader while they were on their way). Ask again.
            self._outstanding = 0
        if target <= 0 or self._outstanding > target // 2:
            return
        batch = target - self._outstanding
        request = {"batch": batch, "expires": self._expires_ns}
        self._outstanding += batch
        self._requested_at = time.monotonic()
        await self._nc.publish(self._next_subject, json.dumps(request).encode(), reply=self._inbox)

    async def _on_msg(self, msg: Msg) -> None:
        status = (msg.headers or {}).get("Status")
        if status is None:
            self._outstanding = max(0, self._outstanding - 1)
            self._on_job(msg)
        elif status in ("408", "409"):  # a request expired or was cut short: its rest is void
            unfilled = int((msg.headers or {}).get("Nats-Pending-Messages", "0") or 0)
            self._outstanding = max(0, self._outstanding - unfilled)
        elif status == "100":  # idle heartbeat
            return
        elif status == "503":  # no consumer leader yet (a restarting cluster): nothing was requested
            self._outstanding = 0
            await asyncio.sleep(0.5)
        await self.refill()


_MAX_BATCH = 64
_GRACE_S = 2.0

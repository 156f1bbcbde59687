"""One attempt of one run on a worker: from the pulled job to the terminal event and the ack."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import contextvars
import json
import secrets
import sys
import traceback
from dataclasses import dataclass
from typing import Any

import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from flotilla.errors import FlotillaError, InvalidArgument, RunNotFound
from flotilla.events import STATUS_NAMES, TERMINAL_STATUSES, finish_record, is_terminal, now
from flotilla.execution._session import RunSession
from flotilla.execution._replay import DivergencePolicy, PriorAttempts
from flotilla.execution._thread import read_thread, thread_of, wait_for_predecessor
from flotilla.execution._usage import UsageTally
from flotilla.jetstream import (
    EventLog,
    Layout,
    LogPosition,
    LostOwnership,
    Mutation,
    Reconnects,
    Requests,
    RunEventWriter,
    RunStore,
    Versioned,
    control_subject,
    dead_letter,
)
from flotilla.protocol import (
    Error,
    Job,
    Run,
    RunEvent,
    RunRetried,
    RunStatus,
    WorkflowCompleted,
    WorkflowStarted,
)
from flotilla.llm import Completion, LlmService, Replay, llm_run
from flotilla.metrics import RUN_FIRST_EVENT_SECONDS, RUNS_FINISHED, bounded
from flotilla.workflows import SyncSession, Workflow, WorkflowRegistry

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class WorkerContext:
    """What every attempt on one worker shares."""

    worker_id: str
    nc: Client
    js: JetStreamContext
    layout: Layout
    registry: WorkflowRegistry
    runs: RunStore
    events: EventLog
    requests: Requests
    reconnects: Reconnects
    executor: concurrent.futures.Executor
    """Threads for plain `def` workflows (one per run while it runs)."""
    llm: LlmService
    """The model behind every run's agents (one per worker, built by its main)."""
    input_timeout_s: float = 86400.0
    on_divergence: DivergencePolicy = "fail"
    """What a resumed run does when its workflow leaves its log (see flotilla.execution._replay)."""
    expose_tracebacks: bool = False
    """Put a failed workflow's traceback in its `error` event (clients see it); else only the log has it."""


@dataclass(frozen=True)
class Outcome:
    status: str
    result_json: str = ""
    error: str = ""


TAKEOVER_TRIES = 20


class RunAttempt:
    """Runs `job` once.

    The attempt claims the run record (compare-and-set: status RUNNING, its own lease token,
    the attempt count), reads the log, and, when it takes a run over, appends `run_retried`
    conditionally on the log it read: from then on the previous holder cannot append (if it
    is only paused, it learns so at its next write, or when the worker sees the lease moved,
    and stops without writing anything). The job is acked only after the terminal event and the
    record are stored. Cancelled while draining, the attempt hands the run back: what it wrote
    is flushed, the record says QUEUED without a lease (the next claim is not a new attempt),
    and the job is nak'ed for another worker at once.
    """

    def __init__(self, ctx: WorkerContext, job: Job, msg: Msg) -> None:
        self._ctx = ctx
        self._job = job
        self._msg = msg
        self._token = secrets.token_hex(8)
        self._cancel = asyncio.Event()
        self._claimed = False
        self._finishing = False
        self._lost = False
        self._writer: RunEventWriter | None = None
        self._session: RunSession | None = None
        self._record: Versioned | None = None
        """The run's record as this attempt last read or wrote it: its next change starts there
        (one round trip, not a read and a write; a compare-and-set refuses it if it is old)."""

    @property
    def run_id(self) -> str:
        return self._job.run_id

    @property
    def _workflow_label(self) -> str:
        """The job's workflow when this worker's registry has it (a bounded set), else `other`."""
        return bounded(self._job.workflow, self._ctx.registry)

    @property
    def waiting_on_person(self) -> bool:
        """Its workflow waits for an answer to a stored question (see RunSession)."""
        return self._session is not None and self._session.waiting_on_person

    async def still_holds(self) -> bool:
        """False once another attempt claimed the run (this one was paused or cut off): the
        worker then stops it and sends no more in-progress acks for its job."""
        if not self._claimed or self._finishing:
            return True
        self._record = await self._ctx.runs.get(self._job.run_id)
        return self._record[0].lease == self._token

    async def _update_record(self, mutate: Mutation) -> Run:
        self._record = await self._ctx.runs.modify(self._job.run_id, mutate, known=self._record)
        return self._record[0]

    def abandon(self) -> None:
        """The run is another attempt's now: stop without writing, acking or handing back."""
        self._lost = True

    async def execute(self) -> None:
        sub = await self._ctx.nc.subscribe(control_subject(self._job.run_id), cb=self._on_control)
        catch_up = asyncio.create_task(self._check_cancel_after_reconnects(self._ctx.reconnects.count))
        try:
            await self._execute()
        except LostOwnership:
            log.warning("another worker took the run over; this attempt stops without writing more")
        except asyncio.CancelledError:
            if not self._lost:
                await self._hand_back()
            raise
        finally:
            catch_up.cancel()
            if self._writer is not None:
                await self._writer.close()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _hand_back(self) -> None:
        """Draining: keep what the run did so far, release the record, give the job back."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5.0):
                    await self._writer.flush()

        def release(run: Run) -> bool:
            if run.lease != self._token or run.status in TERMINAL_STATUSES:
                return False
            run.status = RunStatus.RUN_STATUS_QUEUED
            run.lease = ""
            run.waiting_for_input = False
            run.handbacks += 1
            return True

        if self._claimed:
            try:
                await self._update_record(release)
            except Exception as exc:  # the next claim then counts an attempt: no harm beyond that
                log.warning("could not release the run record", error=repr(exc))
        with contextlib.suppress(Exception):
            await self._msg.nak()
        log.info("run handed back")

    async def _check_cancel_after_reconnects(self, reconnects_seen: int) -> None:
        """A cancel sent while we were disconnected missed the control subscription; the run
        record still says it."""
        while True:
            if self._ctx.reconnects.count == reconnects_seen:
                await self._ctx.reconnects.wait()
            reconnects_seen = self._ctx.reconnects.count
            with contextlib.suppress(Exception):
                run, _ = await self._ctx.runs.get(self._job.run_id)
                if run.cancel_requested:
                    self._cancel.set()

    async def _on_control(self, msg: Msg) -> None:
        if msg.data == b"cancel":
            self._cancel.set()

    async def _execute(self) -> None:
        run_id = self._job.run_id
        try:
            await self._wait_for_predecessor()
            record, claimed, handed_back = await self._claim()
        except RunNotFound:  # a job whose run is gone (deleted past its retention): nothing to run
            await dead_letter(self._ctx.js, "orphan", self._msg.data, detail=f"run {run_id} has no record")
            await self._msg.term()
            return
        if not claimed:
            await self._end_log_like(record)
            await self._msg.ack()
            return
        taken = await self._take_over(record, handed_back)
        if taken is None:  # the log already ends the run; its record says so now
            await self._msg.ack()
            return
        writer, prior = taken
        log.info("run started", attempt=record.attempts, replaying=len(prior.events))
        if record.attempts > self._ctx.layout.job_max_attempts:
            outcome = await self._dead_letter(writer, record.error)
        else:
            thread = thread_of(record)
            started = WorkflowStarted(
                workflow=self._job.workflow,
                params_json=self._job.params_json,
                attempt=record.attempts,
                message=thread.message,
                reply_to=thread.reply_to,
                thread_id=thread.thread_id if thread.is_reply else "",
            )
            await writer.emit("workflow_started", started, sender="system")
            if record.attempts == 1 and record.HasField("created_at"):
                waited = now().ToNanoseconds() - record.created_at.ToNanoseconds()
                RUN_FIRST_EVENT_SECONDS.labels(self._workflow_label).observe(max(0.0, waited / 1e9))
            outcome = (
                await self._run_workflow(writer, prior, record)
                if not record.cancel_requested
                else Outcome("cancelled", error="cancelled")
            )
        live = self._session.usage if self._session is not None else UsageTally()
        usage = prior.usage.merged(live).as_list()
        completed = WorkflowCompleted(
            status=outcome.status, result_json=outcome.result_json, error=outcome.error, usage=usage
        )
        await writer.emit("workflow_completed", completed, sender="system")
        await writer.flush()
        self._finishing = True
        await self._update_record(functools.partial(finish_record, done=completed))
        await self._msg.ack()
        RUNS_FINISHED.labels(self._workflow_label, outcome.status).inc()
        log.info("run finished", status=outcome.status, attempt=record.attempts, events=writer.last_seq)

    async def _take_over(self, record: Run, handed_back: bool) -> tuple[RunEventWriter, PriorAttempts] | None:
        """Read the log and, if earlier attempts wrote to it, append `run_retried` conditionally
        on what was read, so the previous holder is fenced off. None when the log ends with the
        terminal event (the record is finished from it)."""
        run_id = self._job.run_id
        if record.attempts == 1 and not handed_back and not record.forked_from:
            # The first claim of a run that is no fork: nobody has written its log (only a
            # claim lets a worker write, and a dispatcher appends only to a queued run it
            # cancels, which cannot be claimed). The first append is conditional on an empty
            # log all the same, so if that were wrong this attempt would stop, never fork it.
            self._writer = RunEventWriter(self._ctx.events, run_id, after=LogPosition(), token=self._token)
            return self._writer, PriorAttempts(policy=self._ctx.on_divergence)
        for _ in range(TAKEOVER_TRIES):
            position, last, _ = await self._ctx.events.tail(run_id)
            if last is not None and is_terminal(last):
                # The previous attempt finished the log but died before the record: finish that.
                self._finishing = True
                finish = functools.partial(finish_record, done=last.workflow_completed, at=last.timestamp)
                await self._update_record(finish)
                return None
            history: list[RunEvent] = []
            end = position  # the leader's: the history (read by direct gets) must reach it
            for _ in range(100):
                if not end.seq:
                    break
                history, position = await self._ctx.events.history(run_id, from_stream_seq=record.log_from or 1)
                if position.seq >= end.seq:
                    break
                await asyncio.sleep(0.05)  # a lagging replica answered: read again
            if self._writer is not None:
                await self._writer.close()
            self._writer = writer = RunEventWriter(self._ctx.events, run_id, after=position, token=self._token)
            if not position.seq:
                return writer, PriorAttempts(policy=self._ctx.on_divergence)
            if handed_back:
                reason = "the previous worker handed the run back (it was shutting down)"
            elif record.forked_from and record.attempts == 1:
                reason = (
                    f"forked from run {record.forked_from} at seq {record.fork_at_seq}: "
                    "its events so far are replayed, then the run goes on live"
                )
            else:
                reason = "the previous attempt stopped (its worker died, stalled or was cut off)"
            retried = RunRetried(attempt=record.attempts, reason=reason, handed_back=handed_back)
            await writer.emit("run_retried", retried, sender="system")
            try:
                await writer.flush()
            except LostOwnership:
                continue  # the previous holder appended meanwhile: read again
            prior = PriorAttempts.from_log(history, policy=self._ctx.on_divergence)
            if record.forked_from:
                prior.forked(record.forked_from, record.fork_at_seq, history)
            return writer, prior
        raise LostOwnership(f"run {run_id}: the log kept changing; another worker holds it")

    async def _end_log_like(self, record: Run) -> None:
        """The record is final (the run was cancelled while queued): make sure its log ends
        too, in case the dispatcher that cancelled it could not append the terminal event."""
        position, last, _ = await self._ctx.events.tail(self._job.run_id)
        if last is not None and is_terminal(last):
            return
        writer = RunEventWriter(self._ctx.events, self._job.run_id, after=position, token=self._token)
        status = STATUS_NAMES.get(record.status, "failed")
        await writer.emit("workflow_completed", WorkflowCompleted(status=status, error=record.error), sender="system")
        with contextlib.suppress(LostOwnership):  # the dispatcher's own append landed meanwhile
            await writer.flush()

    async def _claim(self) -> tuple[Run, bool, bool]:
        """Mark the run RUNNING under this attempt's lease. Returns the record, whether it was
        claimed (not when finished, or cancelled while queued), and whether the previous holder
        handed the run back (then this is not a new attempt)."""
        if self._record is None:
            self._record = await self._ctx.runs.get(self._job.run_id)
        current = self._record[0]
        log_from = current.log_from
        if not log_from and current.status not in TERMINAL_STATUSES:
            # Where the run's log will start: reads of it begin there, not at the stream's start.
            log_from = await self._ctx.events.stream_end() + 1
        claimed = handed_back = False

        def start(run: Run) -> bool:
            nonlocal claimed, handed_back
            claimed = handed_back = False
            if run.status in TERMINAL_STATUSES:
                return False
            handed_back = run.status == RunStatus.RUN_STATUS_QUEUED and run.attempts > 0
            if not handed_back:
                run.attempts += 1  # a first start, or the previous holder stopped without a word
            run.status = RunStatus.RUN_STATUS_RUNNING
            run.lease = self._token
            run.waiting_for_input = False  # the new attempt asks again (or finds the answer)
            run.worker_id = self._ctx.worker_id
            run.log_from = run.log_from or log_from
            claimed = True
            return True

        record = await self._update_record(start)
        self._claimed = claimed
        if record.cancel_requested:
            self._cancel.set()
        return record, claimed, handed_back

    async def _mark_waiting(self, waiting: bool) -> None:
        """The record says whether the run waits for the person (lists show it); under this
        attempt's lease only. A failure here costs the badge, never the run."""

        def mark(run: Run) -> bool:
            if run.lease != self._token or run.status in TERMINAL_STATUSES or run.waiting_for_input == waiting:
                return False
            run.waiting_for_input = waiting
            return True

        try:
            async with asyncio.timeout(5.0):
                await self._update_record(mark)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("could not mark the run as waiting", waiting=waiting, error=repr(exc))

    async def _wait_for_predecessor(self) -> None:
        """A reply's run starts once the run it follows has ended (its log is then complete)."""
        if self._job.record_revision:  # the record as created: the claim's compare-and-set checks it
            self._record = (self._job.record, self._job.record_revision)
        else:
            self._record = await self._ctx.runs.get(self._job.run_id)
        record = self._record[0]
        if record.reply_to and record.status == RunStatus.RUN_STATUS_QUEUED and not record.cancel_requested:
            await wait_for_predecessor(self._ctx.runs, record, self._cancel)

    async def _run_workflow(self, writer: RunEventWriter, prior: PriorAttempts, claimed: Run) -> Outcome:
        try:
            workflow = self._ctx.registry.get(self._job.workflow)
            params = json.loads(self._job.params_json or "{}")
            if not isinstance(params, dict):
                raise InvalidArgument("params must be a JSON object")
            params = workflow.validate_params(params)
            thread = await read_thread(self._ctx.runs, self._ctx.events, claimed) if claimed.reply_to else None
        except (FlotillaError, ValueError) as exc:
            await writer.emit("error", Error(short=str(exc)), sender="system")
            return Outcome("failed", error=str(exc))
        session = RunSession(
            self._ctx.nc,
            writer,
            self._ctx.requests,
            self._job.run_id,
            self._ctx.reconnects,
            llm=self._ctx.llm,
            input_timeout_s=self._ctx.input_timeout_s,
            prior=None if prior.live else prior,
            thread=thread,
            on_waiting=self._mark_waiting,
        )
        self._session = session
        loop = asyncio.get_running_loop()
        sync_session = None if workflow.is_async else SyncSession(session, loop)

        async def record(messages: Any, completion: Completion) -> None:
            await session.llm_completion(messages, completion, cost=self._ctx.llm.cost(completion))

        # Every LLM completion the run's agents use is recorded in its log, in order; a resumed
        # run gets the recorded ones back first, each checked against the request it answered.
        replay = (
            Replay(prior.completions, digests=prior.digests, strict=prior.policy == "fail")
            if prior.completions
            else None
        )
        # Live replies stream to watchers as they are written (ephemeral, never replayed).
        with llm_run(recorder=record, replay=replay, deltas=session.reply_delta):
            if sync_session is None:
                task: asyncio.Future[Any] = asyncio.ensure_future(workflow.function(session, params))
            else:
                # A plain `def` workflow (AG2's initiate_chat is synchronous) gets a thread of its
                # own; the copied context carries the run's log bindings and LLM recorder.
                context = contextvars.copy_context()
                task = loop.run_in_executor(self._ctx.executor, context.run, _run_sync, workflow, sync_session, params)
        cancel = asyncio.create_task(self._cancel.wait())
        try:
            await asyncio.wait({task, cancel}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cancel.cancel()
            if not task.done():
                session.close()
                if sync_session is not None:
                    sync_session.cancel()  # the thread stops at its next call on the session
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if writer.failure is not None:
            raise writer.failure  # lost the run (LostOwnership), or the log refused an append
        outcome = await self._outcome(task, session, writer)
        await session.close_questions()
        return outcome

    async def _outcome(self, task: asyncio.Future[Any], session: RunSession, writer: RunEventWriter) -> Outcome:
        if task.cancelled():
            return Outcome("cancelled", error="cancelled by request")
        raised = task.exception()
        if raised is None and session.divergence is not None and self._ctx.on_divergence == "fail":
            raised = session.divergence  # the workflow swallowed it; the run still cannot go on
        if isinstance(raised, nats.errors.Error):
            # NATS failed under the workflow (an outage longer than its calls retry): not the
            # workflow's failure, so nothing is recorded; this attempt fails and the run resumes.
            raise raised
        if raised is not None:
            trace = "" if isinstance(raised, FlotillaError) else "".join(traceback.format_exception(raised))
            log.warning("workflow raised", error=repr(raised), traceback=trace or None)
            long = trace if self._ctx.expose_tracebacks else ""
            short = f"{type(raised).__name__}: {raised}"
            await writer.emit("error", Error(short=short, long=long), sender="system")
            return Outcome("failed", error=short)
        return Outcome("completed", result_json=_to_json(task.result()))

    async def _dead_letter(self, writer: RunEventWriter, last_error: str) -> Outcome:
        reason = f"gave up after {self._ctx.layout.job_max_attempts} attempts: every worker that took the run stopped"
        if last_error:
            reason += f" (the last: {last_error})"
        log.error("run dead-lettered", reason=reason)
        await writer.emit("error", Error(short=reason), sender="system")
        await writer.flush()  # only the attempt holding the log may dead-letter the job
        await dead_letter(self._ctx.js, "attempts", self._msg.data, detail=reason)
        return Outcome("failed", error=reason)


def _run_sync(workflow: Workflow, session: SyncSession, params: dict[str, Any]) -> Any:
    """In the workflow's thread: AG2 agents created here report to the run's session."""
    if "autogen" in sys.modules:
        from flotilla.ag2 import bridge

        with bridge(session):
            return workflow.function(session, params)
    return workflow.function(session, params)


def _to_json(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return json.dumps(repr(value))

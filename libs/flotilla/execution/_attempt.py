"""One attempt of one run on a worker: from the pulled job to the terminal event and the ack."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import json
import sys
import traceback
from dataclasses import dataclass
from typing import Any

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from flotilla.errors import FlotillaError, InvalidArgument
from flotilla.events import TERMINAL_STATUSES, is_terminal, now
from flotilla.execution._session import RunSession, SyncRunSession
from flotilla.jetstream import (
    EventLog,
    Layout,
    Reconnects,
    Requests,
    RunEventWriter,
    RunStore,
    control_subject,
    dead_letter,
)
from flotilla.protocol import (
    Error,
    Job,
    Run,
    RunRetried,
    RunStatus,
    WorkflowCompleted,
    WorkflowStarted,
)
from flotilla.execution._replay import PriorAttempts
from flotilla.llm import Completion, Replay, llm_run
from flotilla.workflows import Workflow, WorkflowRegistry

log = structlog.get_logger(__name__)

_STATUS = {
    "completed": RunStatus.RUN_STATUS_COMPLETED,
    "failed": RunStatus.RUN_STATUS_FAILED,
    "cancelled": RunStatus.RUN_STATUS_CANCELLED,
}


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
    input_timeout_s: float = 86400.0


@dataclass(frozen=True)
class Outcome:
    status: str
    result_json: str = ""
    error: str = ""


class RunAttempt:
    """Runs `job` once. The job is acked only after the run's terminal event and record are
    stored; if this task is cancelled (worker draining) the job is handed back with a nak."""

    def __init__(self, ctx: WorkerContext, job: Job, msg: Msg) -> None:
        self._ctx = ctx
        self._job = job
        self._msg = msg
        self._attempt = msg.metadata.num_delivered or 1
        self._cancel = asyncio.Event()

    async def execute(self) -> None:
        sub = await self._ctx.nc.subscribe(control_subject(self._job.run_id), cb=self._on_control)
        catch_up = asyncio.create_task(self._check_cancel_after_reconnects())
        try:
            await self._execute()
        except asyncio.CancelledError:
            await self._msg.nak()  # draining: another worker takes the run over
            log.info("run handed back")
            raise
        finally:
            catch_up.cancel()
            await sub.unsubscribe()

    async def _check_cancel_after_reconnects(self) -> None:
        """A cancel sent while we were disconnected missed the control subscription; the run
        record still says it."""
        while True:
            await self._ctx.reconnects.wait()
            with contextlib.suppress(Exception):
                run, _ = await self._ctx.runs.get(self._job.run_id)
                if run.cancel_requested:
                    self._cancel.set()

    async def _on_control(self, msg: Msg) -> None:
        if msg.data == b"cancel":
            self._cancel.set()

    async def _execute(self) -> None:
        run_id = self._job.run_id
        record = await self._claim()
        if record is None:
            await self._msg.ack()
            return
        # A run taken over resumes: earlier attempts' events say what already happened.
        log_so_far = await self._ctx.events.read(run_id) if self._attempt > 1 else []
        last = log_so_far[-1] if log_so_far else None
        if last is not None and is_terminal(last):
            # The previous attempt finished the log but died before the record: finish that.
            done = last.workflow_completed
            outcome = Outcome(done.status, result_json=done.result_json, error=done.error)
            await self._ctx.runs.update(run_id, lambda run: _finish(run, outcome))
            await self._msg.ack()
            return
        writer = RunEventWriter(self._ctx.js, run_id, last_seq=last.seq if last else 0)
        if self._attempt > self._ctx.layout.job_max_attempts:
            outcome = await self._dead_letter(writer)
        else:
            if self._attempt > 1:
                reason = "the previous attempt stopped (its worker died or handed the run back)"
                await writer.emit("run_retried", RunRetried(attempt=self._attempt, reason=reason), sender="system")
            started = WorkflowStarted(
                workflow=self._job.workflow, params_json=self._job.params_json, attempt=self._attempt
            )
            await writer.emit("workflow_started", started, sender="system")
            outcome = (
                await self._run_workflow(writer, PriorAttempts.from_log(log_so_far))
                if not record.cancel_requested
                else Outcome("cancelled", error="cancelled")
            )
        completed = WorkflowCompleted(status=outcome.status, result_json=outcome.result_json, error=outcome.error)
        await writer.emit("workflow_completed", completed, sender="system")
        await writer.flush()
        await self._ctx.runs.update(run_id, lambda run: _finish(run, outcome))
        await self._msg.ack()
        log.info("run finished", status=outcome.status, attempt=self._attempt, events=writer.last_seq)

    async def _claim(self) -> Run | None:
        """Mark the run RUNNING on this worker; None if it must not run (finished, or cancelled
        while queued)."""
        claimed = False

        def start(run: Run) -> bool:
            nonlocal claimed
            if run.status in TERMINAL_STATUSES:
                return False
            run.status = RunStatus.RUN_STATUS_RUNNING
            run.attempts = self._attempt
            run.worker_id = self._ctx.worker_id
            claimed = True
            return True

        record = await self._ctx.runs.update(self._job.run_id, start)
        if record.cancel_requested:
            self._cancel.set()
        return record if claimed else None

    async def _run_workflow(self, writer: RunEventWriter, prior: PriorAttempts) -> Outcome:
        try:
            workflow = self._ctx.registry.get(self._job.workflow)
            params = json.loads(self._job.params_json or "{}")
            if not isinstance(params, dict):
                raise InvalidArgument("params must be a JSON object")
            params = workflow.validate_params(params)
        except (FlotillaError, ValueError) as exc:
            await writer.emit("error", Error(short=str(exc)), sender="system")
            return Outcome("failed", error=str(exc))
        session = RunSession(
            self._ctx.nc,
            writer,
            self._ctx.requests,
            self._job.run_id,
            self._ctx.reconnects,
            input_timeout_s=self._ctx.input_timeout_s,
            prior=prior if prior.emitted or prior.completions else None,
        )
        loop = asyncio.get_running_loop()
        sync_session = None if workflow.is_async else SyncRunSession(session, loop)

        async def record(messages: Any, completion: Completion) -> None:
            await session.llm_completion(completion.model, messages, completion.to_dict())

        # Every LLM completion the run's agents use is recorded in its log, in order; a resumed
        # run gets the recorded ones back first.
        with llm_run(recorder=record, replay=Replay(prior.completions) if prior.completions else None):
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
        if task.cancelled():
            return Outcome("cancelled", error="cancelled by request")
        raised = task.exception()
        if raised is not None:
            log.warning("workflow raised", error=repr(raised))
            long = "" if isinstance(raised, FlotillaError) else "".join(traceback.format_exception(raised))
            short = f"{type(raised).__name__}: {raised}"
            await writer.emit("error", Error(short=short, long=long), sender="system")
            return Outcome("failed", error=short)
        return Outcome("completed", result_json=_to_json(task.result()))

    async def _dead_letter(self, writer: RunEventWriter) -> Outcome:
        reason = f"gave up after {self._ctx.layout.job_max_attempts} attempts: every worker that took the run stopped"
        log.error("run dead-lettered", reason=reason)
        await dead_letter(self._ctx.js, "attempts", self._msg.data, detail=reason)
        await writer.emit("error", Error(short=reason), sender="system")
        return Outcome("failed", error=reason)


def _run_sync(workflow: Workflow, session: SyncRunSession, params: dict[str, Any]) -> Any:
    """In the workflow's thread: AG2 agents created here report to the run's session."""
    if "autogen" in sys.modules:
        from flotilla.ag2 import bridge

        with bridge(session):
            return workflow.function(session, params)
    return workflow.function(session, params)


def _finish(run: Run, outcome: Outcome) -> bool:
    run.status = _STATUS[outcome.status]
    run.result_json = outcome.result_json
    run.error = outcome.error
    run.finished_at.CopyFrom(now())
    return True


def _to_json(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return json.dumps(repr(value))

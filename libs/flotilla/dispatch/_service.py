"""The run lifecycle, as the dispatcher serves it: create, read, list, watch, answer, cancel."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog
import jsonschema_rs
from nats.aio.client import Client

from flotilla import tracing
from flotilla.admission import MAX_PARAMS_BYTES, depth
from flotilla.dispatch._fanout import EventFanout
from flotilla.dispatch._index import RunIndex
from flotilla.dispatch._upkeep import Upkeep
from flotilla.errors import (
    Conflict,
    PermissionDenied,
    QuotaExceeded,
    InvalidArgument,
    ThreadBusy,
    RequestNotFound,
    RunFinished,
    RunNotFound,
    Unavailable,
    WorkflowNotFound,
)
from flotilla.events import HIDDEN_KINDS, STATUS_NAMES, TERMINAL_STATUSES, finish_record, is_terminal, now
from flotilla.ids import is_run_id, is_subject_token, new_run_id
from flotilla.jetstream import (
    EVENTS_STREAM,
    Catalogue,
    EventLog,
    IdempotencyKeys,
    Layout,
    LostOwnership,
    Requests,
    RunStore,
    control_subject,
    enqueue,
    read_dead_letters,
    when_ready,
)
from flotilla.metrics import RUNS_FINISHED, RUNS_STARTED
from flotilla.protocol import (
    Caller,
    DeadLetter,
    Job,
    Run,
    RunEvent,
    RunStatus,
    WatchRunResponse,
    WorkflowCompleted,
    WorkflowInfo,
)

log = structlog.get_logger(__name__)

MAX_LIST_LIMIT = 1000
DEFAULT_PAGE = 1000
MAX_PAGE = 10_000
ENQUEUE_TRIES = 5
MAX_REPLY_BYTES = 64 * 1024
"""A reply's message at most (it travels in the run's record and header)."""
THREAD_TRIES = 20
COPY_BATCH_EVENTS = 256
COPY_BATCH_BYTES = 512 * 1024
ROOM_FOR_A_START = 4 * 1024 * 1024
"""Room a new run needs in the events stream to be worth starting."""
SYSTEM = Caller(admin=True)
"""The dispatcher itself (checks of its own): sees every run. Callers from outside always carry an
identity; the servicer refuses any that does not."""


@dataclass(frozen=True)
class EventsPage:
    events: list[RunEvent]
    more: bool
    next_after_seq: int


def _settle(run: Run, last: RunEvent | None) -> None:
    """The worker ends the log first and the record just after: between the two, a caller who
    has seen the terminal event must not read "running". The log (its `last` event) is the truth."""
    if last is not None and is_terminal(last):
        finish_record(run, last.workflow_completed, at=last.timestamp)


async def _nothing() -> None:
    return None


def _hidden(event: RunEvent) -> bool:
    return event.WhichOneof("kind") in HIDDEN_KINDS


@dataclass(frozen=True, kw_only=True)
class RunLimits:
    max_active_runs_per_identity: int = 1000
    """Runs one identity may have queued or running at once (per dispatcher's view; a burst of
    concurrent starts may pass it by a few)."""
    index_max_runs: int = 100_000
    """Runs listed (newest first); older finished ones stay readable by id."""


class RunService:
    def __init__(self, nc: Client, layout: Layout | None = None, limits: RunLimits | None = None) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._layout = layout or Layout()
        self._limits = limits or RunLimits()
        self._room, self._room_checked_at = True, float("-inf")
        self._events = EventLog(nc)
        self._fanout = EventFanout(nc, self._events)

    async def open(self) -> None:
        """Open the stores (after provisioning), start the list index and the upkeep."""
        # Waits out a NATS restart or a leader election instead of exiting (nothing started yet).
        self._runs, self._catalogue, self._idempotency = await when_ready(
            self._open_stores, waiting_for="JetStream (the dispatcher's buckets)"
        )
        self._requests = Requests(self._js)
        self._index = RunIndex(self._runs, max_runs=self._limits.index_max_runs)
        self._index.start()
        self.upkeep = Upkeep(self._js, self._index, self._runs, self._idempotency, self._layout)
        self.upkeep.start()
        await self._fanout.start()

    async def _open_stores(self) -> tuple[RunStore, Catalogue, IdempotencyKeys]:
        runs = await RunStore.open(self._js, with_headers=True)
        return runs, await Catalogue.open(self._js), await IdempotencyKeys.open(self._js)

    async def close(self) -> None:
        await self._fanout.stop()
        await self.upkeep.stop()
        await self._index.stop()

    async def _enqueue(self, run: Run, revision: int = 0) -> None:
        """Queue the run's job (a no-op when it has one), retrying a NATS hiccup a few times;
        if that fails, the upkeep queues it later (the caller learns the start is uncertain).
        `revision`: of `run` as just created; the job then carries the record for the claim."""
        job = Job(run_id=run.run_id, workflow=run.workflow, params_json=run.params_json)
        if revision:
            job.record.CopyFrom(run)
            job.record_revision = revision
        for attempt in range(ENQUEUE_TRIES):
            try:
                await enqueue(self._js, job, traceparent=run.traceparent)
                return
            except Exception as exc:
                if attempt == ENQUEUE_TRIES - 1:
                    raise Unavailable(f"run {run.run_id} was created but could not be queued yet: {exc!r}") from exc
                await asyncio.sleep(0.1 * 2**attempt)

    async def start_run(
        self, workflow: str, params_json: str, idempotency_key: str = "", caller: Caller = SYSTEM
    ) -> tuple[Run, bool]:
        """Create the run (owned by the caller) and queue its job; with an idempotency key the
        caller used before, return that run."""
        params_json = _valid_params(params_json)
        if len(idempotency_key) > 256:
            raise InvalidArgument("idempotency_key is longer than 256 characters")
        if not is_subject_token(workflow):
            raise WorkflowNotFound(workflow)
        info = await self._catalogue.get(workflow)  # WorkflowNotFound when no live worker serves it
        if info.params_schema_json:
            check_params(workflow, info.params_schema_json, json.loads(params_json))
        # Keys are per identity: one caller can neither collide with nor discover another's run.
        claim = f"{caller.identity}\n{idempotency_key}" if idempotency_key else ""
        run_id, existing = await self._admit(claim, caller)
        if existing is not None:
            return existing, False
        run = Run(
            run_id=run_id,
            workflow=workflow,
            params_json=params_json,
            status=RunStatus.RUN_STATUS_QUEUED,
            traceparent=tracing.traceparent(),
            idempotency_key=idempotency_key,
            owner=caller.identity,
        )
        revision = await self._runs.create(run)
        self._index.put(run)
        await self._enqueue(run, revision)
        RUNS_STARTED.labels(workflow).inc()  # bounded: the catalogue knows the workflow
        with structlog.contextvars.bound_contextvars(run_id=run_id):
            log.info("run queued", workflow=workflow)
        return run, True

    async def reply_run(
        self, run_id: str, message: str, idempotency_key: str = "", caller: Caller = SYSTEM
    ) -> tuple[Run, bool]:
        """Start the next run of `run_id`'s thread: the same workflow and params, following the
        thread's latest run, with what the person says now. Only the owner may reply. While the
        thread's latest run still works, the workflow's double-texting policy decides: reject
        (ThreadBusy), queue (the new run starts when it ends) or interrupt (it is cancelled and
        the new run starts when it has ended). Replies are ordered by a compare-and-set of the
        thread's head on its first run's record, so two at once cannot both find the thread idle."""
        _check_run_id(run_id)
        if not message.strip():
            raise InvalidArgument("message is empty")
        if len(message.encode()) > MAX_REPLY_BYTES:
            raise InvalidArgument(f"message is larger than {MAX_REPLY_BYTES} bytes")
        if len(idempotency_key) > 256:
            raise InvalidArgument("idempotency_key is longer than 256 characters")
        replied = await self._visible_record(run_id, caller)
        if replied.owner != caller.identity:
            raise PermissionDenied("only the identity that owns a thread may reply to it")
        thread_id = replied.thread_id or replied.run_id
        root = replied if thread_id == replied.run_id else await self._visible_record(thread_id, caller)
        info = await self._catalogue.get(root.workflow)  # WorkflowNotFound when no live worker serves it
        policy = info.double_texting or "reject"
        claim = f"{caller.identity}\nreply\n{idempotency_key}" if idempotency_key else ""
        new_id, existing = await self._admit(claim, caller)
        if existing is not None:
            return existing, False
        head = await self._place_reply(thread_id, new_id, policy, caller)
        if head.status not in TERMINAL_STATUSES and policy == "interrupt":
            with contextlib.suppress(RunFinished):
                await self.cancel(head.run_id)
        run = Run(
            run_id=new_id,
            workflow=root.workflow,
            params_json=root.params_json,
            status=RunStatus.RUN_STATUS_QUEUED,
            traceparent=tracing.traceparent(),
            idempotency_key=idempotency_key,
            owner=caller.identity,
            thread_id=thread_id,
            reply_to=head.run_id,
            reply_message=message,
        )
        revision = await self._runs.create(run)
        self._index.put(run)
        await self._enqueue(run, revision)
        RUNS_STARTED.labels(run.workflow).inc()
        with structlog.contextvars.bound_contextvars(run_id=new_id):
            log.info("reply queued", thread_id=thread_id, reply_to=head.run_id, policy=policy)
        return run, True

    async def fork_run(
        self, run_id: str, at_seq: int, idempotency_key: str = "", caller: Caller = SYSTEM
    ) -> tuple[Run, bool]:
        """A new run of `run_id`'s workflow and params whose log starts with the source's events
        up to `at_seq` (hidden ones too: the recorded completions), so its workflow replays them
        (and the answers given up to there) and goes on live from that point. Only the owner may
        fork; the source may still be running."""
        _check_run_id(run_id)
        if len(idempotency_key) > 256:
            raise InvalidArgument("idempotency_key is longer than 256 characters")
        source = await self._visible_record(run_id, caller)
        if source.owner != caller.identity:
            raise PermissionDenied("only the identity that owns a run may fork it")
        history, end = await self._events.history(run_id, from_stream_seq=source.log_from or 1)
        kept = [event for event in history if event.seq <= at_seq and event.WhichOneof("kind") != "workflow_completed"]
        if at_seq < 1 or at_seq > end.seq or not kept or kept[-1].seq != at_seq:
            last = max((e.seq for e in history if e.WhichOneof("kind") != "workflow_completed"), default=0)
            # The log decides, not the request's shape: a conflict with the run's state.
            raise Conflict(f"at_seq must name an event of run {run_id} before its end (1..{last})")
        return await self._fork(source, kept, f"{caller.identity}\nfork\n{idempotency_key}" if idempotency_key else "")

    async def retry_run(self, run_id: str, idempotency_key: str = "", caller: Caller = SYSTEM) -> tuple[Run, bool]:
        """Admins: a failed run again, as a new run of its owner's forked from its whole log up to
        the failure (the attempts' own trailing events, errors and the terminal event, are left
        out), so what its workflow did is replayed and it goes on live from there."""
        _check_run_id(run_id)
        if not caller.admin:
            raise PermissionDenied("retrying a run needs the admin scope")
        if len(idempotency_key) > 256:
            raise InvalidArgument("idempotency_key is longer than 256 characters")
        source = await self.get_run(run_id, caller)
        if source.status != RunStatus.RUN_STATUS_FAILED:
            raise RunFinished(run_id, STATUS_NAMES.get(source.status, "unknown") + ", not failed: nothing to retry")
        history, _ = await self._events.history(run_id, from_stream_seq=source.log_from or 1)
        while history and (
            history[-1].WhichOneof("kind") in ("workflow_completed", "run_retried")
            or (history[-1].WhichOneof("kind") == "error" and history[-1].sender == "system")
        ):
            history.pop()
        key = f"{caller.identity}\nretry\n{idempotency_key}" if idempotency_key else ""
        return await self._fork(source, history, key)

    async def list_dead_letters(self, *, limit: int, caller: Caller = SYSTEM) -> list[DeadLetter]:
        """Admins: the jobs no worker could run, newest first."""
        if not caller.admin:
            raise PermissionDenied("dead letters need the admin scope")
        return await read_dead_letters(self._js, limit=min(limit or 100, MAX_LIST_LIMIT))

    async def _fork(self, source: Run, kept: list[RunEvent], idempotency_key: str) -> tuple[Run, bool]:
        """A new run of `source`'s owner, workflow and params whose log starts with `kept`
        (source's events, in order); `idempotency_key` already namespaced (empty: none)."""
        owner = Caller(identity=source.owner)
        await self._catalogue.get(source.workflow)  # WorkflowNotFound when no live worker serves it
        new_id, existing = await self._admit(idempotency_key, owner)
        if existing is not None:
            return existing, False
        at_seq = kept[-1].seq if kept else 0
        info = await self._js.stream_info(EVENTS_STREAM)
        run = Run(
            run_id=new_id,
            workflow=source.workflow,
            params_json=source.params_json,
            status=RunStatus.RUN_STATUS_QUEUED,
            traceparent=tracing.traceparent(),
            idempotency_key=idempotency_key.rpartition("\n")[2],
            owner=owner.identity,
            forked_from=source.run_id if kept else "",
            fork_at_seq=at_seq,
            log_from=(info.state.last_seq or 0) + 1,  # the copied events are the log's first
        )
        await self._runs.create(run)
        if kept:
            await self._copy_log(new_id, kept)
        self._index.put(run)
        await self._enqueue(run)
        RUNS_STARTED.labels(run.workflow).inc()
        with structlog.contextvars.bound_contextvars(run_id=new_id):
            log.info("fork queued", forked_from=source.run_id, at_seq=at_seq, events=len(kept))
        return run, True

    async def _copy_log(self, run_id: str, events: list[RunEvent]) -> None:
        """Start `run_id`'s log with `events` (another run's, the same seqs and timestamps), in
        batches, each conditional on the log as the last one left it (a retried fork whose copy
        landed already keeps it)."""
        position, _, _ = await self._events.tail(run_id)
        token = secrets.token_hex(6)
        pending = [event for event in events if event.seq > position.seq]
        while pending:
            batch: list[RunEvent] = []
            size = 0
            for event in pending:
                size += event.ByteSize()
                if batch and (len(batch) >= COPY_BATCH_EVENTS or size > COPY_BATCH_BYTES):
                    break
                copy = RunEvent()
                copy.CopyFrom(event)
                copy.run_id = run_id
                batch.append(copy)
            position = await self._events.append(batch, after=position, token=token, retry=True)
            del pending[: len(batch)]

    async def _place_reply(self, thread_id: str, new_id: str, policy: str, caller: Caller) -> Run:
        """Make `new_id` the thread's head (compare-and-set on the first run's record); return
        the run it follows. ThreadBusy when that run still works and the policy is reject."""
        for _ in range(THREAD_TRIES):
            root, _ = await self._runs.get(thread_id)
            head_id = root.thread_head or root.run_id
            head = await self._thread_run(thread_id, head_id, new_id, caller)
            if head.status not in TERMINAL_STATUSES and policy == "reject":
                raise ThreadBusy(thread_id, head.run_id)
            moved: list[bool] = []
            placed = await self._runs.update(thread_id, functools.partial(_place, head_id, new_id, moved))
            self._index.put(placed)
            if not moved:
                return head
        raise Unavailable(f"thread {thread_id} kept changing; try again")

    async def _thread_run(self, thread_id: str, head_id: str, new_id: str, caller: Caller) -> Run:
        """The thread's head as a run; when its record is missing (a reply that died between
        placing itself and creating its run), the thread's latest run that exists."""
        if head_id != new_id:
            with contextlib.suppress(RunNotFound):
                return await self.get_run(head_id)
        known = [
            run
            for run in self._index.list(limit=self._limits.index_max_runs, owner=caller.identity)
            if (run.thread_id or run.run_id) == thread_id and run.run_id not in (head_id, new_id)
        ]
        latest = max(known, key=lambda run: run.run_id, default=None)
        return await self.get_run(latest.run_id if latest is not None else thread_id)

    async def _admit(self, claim: str, caller: Caller) -> tuple[str, Run | None]:
        """The id of a new run for `caller`, within its quota and the store's room; or, when
        `claim` (an idempotency key, namespaced by the caller) was used before, the run that
        created (queued again if its first start died before queueing) or, if that start died
        before creating it, its id, to finish the work."""
        run_id = new_run_id()
        if claim:
            bound = await self._idempotency.claim(claim, run_id)
            if bound != run_id:
                try:
                    existing = await self.get_run(bound, caller)
                except RunNotFound:
                    run_id = bound
                else:
                    if existing.status == RunStatus.RUN_STATUS_QUEUED:
                        await self._enqueue(existing)
                    return bound, existing
        await self._check_room()
        active = self._index.active(caller.identity)
        if active >= self._limits.max_active_runs_per_identity:
            raise QuotaExceeded(
                f"{caller.identity!r} already has {active} runs queued or running (the limit is "
                f"{self._limits.max_active_runs_per_identity}); wait for some to finish"
            )
        return run_id, None

    async def _check_room(self) -> None:
        """Unavailable while the events' share of the store is (nearly) full: a new run could not
        write its first event. Runs already going keep theirs; asked at most once a second."""
        now = asyncio.get_running_loop().time()
        if now - self._room_checked_at > 1.0:
            info = await self._js.stream_info(EVENTS_STREAM)
            limit = info.config.max_bytes or -1
            self._room = limit < 0 or info.state.bytes + ROOM_FOR_A_START <= limit
            self._room_checked_at = now
        if not self._room:
            raise Unavailable("the event store is full: no new run can start until finished runs are deleted")

    async def get_run(self, run_id: str, caller: Caller = SYSTEM) -> Run:
        """The run, if the caller may see it (another identity's run is "not found")."""
        run = await self._visible_record(run_id, caller)
        if run.status == RunStatus.RUN_STATUS_RUNNING:
            await self._settle_from_log(run)
        return run

    async def _visible_record(self, run_id: str, caller: Caller) -> Run:
        """The stored record, if the caller may see it; it may lag the log's end (get_run doesn't)."""
        _check_run_id(run_id)
        run, _ = await self._runs.get(run_id)
        if not _visible(run, caller):
            raise RunNotFound(run_id)
        return run

    async def _settle_from_log(self, run: Run) -> None:
        _, last, _ = await self._events.tail(run.run_id)
        _settle(run, last)

    def list_runs(self, *, limit: int, status: int, caller: Caller = SYSTEM) -> list[Run]:
        if limit <= 0:
            limit = 50
        owner = None if _sees_all(caller) else caller.identity
        return self._index.list(limit=min(limit, MAX_LIST_LIMIT), status=status, owner=owner)

    async def watch(
        self,
        run_id: str,
        after_seq: int,
        caller: Caller = SYSTEM,
        *,
        include_hidden: bool = False,
        include_deltas: bool = False,
    ) -> AsyncIterator[WatchRunResponse]:
        """The run's events after `after_seq`, live, until the terminal event; hidden ones only
        when asked for; the reply being written too (`deltas`) when asked for."""
        _check_run_id(run_id)
        run = await self._visible_record(run_id, caller)
        follow = self._fanout.follow_live(
            run_id,
            after_seq=after_seq,
            from_stream_seq=run.log_from or 1,
            deltas=include_deltas,
        )
        async for batch, deltas in follow:
            shown = batch if include_hidden else [event for event in batch if not _hidden(event)]
            if shown or deltas:
                yield WatchRunResponse(events=shown, deltas=deltas)

    async def list_events(
        self,
        run_id: str,
        after_seq: int,
        caller: Caller = SYSTEM,
        *,
        limit: int = 0,
        include_hidden: bool = False,
    ) -> EventsPage:
        """One page of the stored events after `after_seq` (hidden ones only when asked for)."""
        run = await self._visible_record(run_id, caller)
        limit = min(limit or DEFAULT_PAGE, MAX_PAGE)
        page = await self._events.read_page(run_id, after_seq=after_seq, from_stream_seq=run.log_from or 1, limit=limit)
        events = page.events if include_hidden else [event for event in page.events if not _hidden(event)]
        return EventsPage(events, page.more, page.end.seq)

    async def submit_input(self, run_id: str, request_id: str, value: str, caller: Caller = SYSTEM) -> None:
        """Store the person's answer to an open question of a run the caller sees. The record,
        the question and the log's end are read at once (one wait, not three); nothing read is
        told to a caller who does not see the run."""
        _check_run_id(run_id)
        valid = is_subject_token(request_id) and len(value.encode()) <= MAX_PARAMS_BYTES
        record, question, tail = await asyncio.gather(
            self._visible_record(run_id, caller),
            self._requests.get(run_id, request_id) if valid else _nothing(),
            self._events.tail(run_id) if valid else _nothing(),
            return_exceptions=True,
        )
        if isinstance(record, BaseException) and not _sees_all(caller):
            raise record
        if not is_subject_token(request_id):
            raise RequestNotFound(run_id, request_id)
        if len(value.encode()) > MAX_PARAMS_BYTES:
            raise InvalidArgument(f"the answer is larger than {MAX_PARAMS_BYTES} bytes")
        if isinstance(record, BaseException):
            raise record
        if isinstance(question, BaseException):
            raise question
        if isinstance(tail, BaseException):
            raise tail
        if record.status == RunStatus.RUN_STATUS_RUNNING and tail is not None:
            _settle(record, tail[1])
        ended = STATUS_NAMES[record.status] if record.status in TERMINAL_STATUSES else None
        # Stored conditionally on the question being open: once it is, the worker has it.
        await self._requests.answer_as_read(question, run_id, request_id, value, run_ended=ended)
        with structlog.contextvars.bound_contextvars(run_id=run_id):
            log.info("answer submitted", request_id=request_id)

    async def cancel(self, run_id: str, caller: Caller = SYSTEM) -> Run:
        """A queued run is cancelled here at once; a running one by its worker, told now."""
        _check_run_id(run_id)
        cancelled_here = False

        def request_cancel(run: Run) -> bool:
            nonlocal cancelled_here
            if not _visible(run, caller):
                raise RunNotFound(run_id)
            if run.status in TERMINAL_STATUSES:
                raise RunFinished(run_id, STATUS_NAMES[run.status])
            if run.status == RunStatus.RUN_STATUS_QUEUED:
                run.status = RunStatus.RUN_STATUS_CANCELLED
                run.error = "cancelled before it started"
                run.finished_at.CopyFrom(now())
                cancelled_here = True
            run.cancel_requested = True
            return True

        run = await self._runs.update(run_id, request_cancel)
        self._index.put(run)
        if cancelled_here:
            await self._append_cancelled(run)
        else:
            await self._nc.publish(control_subject(run_id), b"cancel")
        with structlog.contextvars.bound_contextvars(run_id=run_id):
            log.info("cancel requested", queued=cancelled_here)
        return run

    async def _append_cancelled(self, run: Run) -> None:
        """End the log of a run cancelled while no worker held it. The record's compare-and-set
        made this the run's only writer; the append is conditional on the log as read anyway (a
        handed-back run's log has events; a worker that lost its lease cannot slip one in)."""
        token = secrets.token_hex(6)
        for _ in range(10):
            position, last, _ = await self._events.tail(run.run_id)
            if last is not None and last.WhichOneof("kind") == "workflow_completed":
                return
            event = RunEvent(run_id=run.run_id, seq=position.seq + 1, sender="system")
            event.timestamp.CopyFrom(now())
            event.workflow_completed.CopyFrom(WorkflowCompleted(status="cancelled", error=run.error))
            try:
                async with asyncio.timeout(10.0):
                    await self._events.append([event], after=position, token=token, retry=True)
                RUNS_FINISHED.labels(run.workflow, "cancelled").inc()
                return
            except LostOwnership:
                continue  # a stale writer slipped an event in before the record changed: read again
            except TimeoutError:
                break  # the worker that takes the job ends the log from the record (RunAttempt)
        raise Unavailable(f"run {run.run_id} is cancelled, but its log could not be ended yet")

    async def list_workflows(self) -> list[WorkflowInfo]:
        return await self._catalogue.list()


MAX_SCHEMA_BYTES = 64 * 1024
MAX_SCHEMA_DEPTH = 32
UNUSABLE = "declares params that cannot be checked; no run can start"


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> jsonschema_rs.Validator:
    """A validator for a schema a worker advertised (its word, not ours): small, shallow, valid
    JSON Schema, checked offline (no $ref is ever fetched) with linear-time regexes (no pattern
    can backtrack for ever on the dispatcher's event loop)."""
    if len(schema_json.encode()) > MAX_SCHEMA_BYTES:
        raise ValueError(f"larger than {MAX_SCHEMA_BYTES} bytes")
    schema = json.loads(schema_json)
    if depth(schema) > MAX_SCHEMA_DEPTH:
        raise ValueError(f"nested deeper than {MAX_SCHEMA_DEPTH} levels")
    jsonschema_rs.meta.validate(schema)
    return jsonschema_rs.Draft202012Validator(schema, pattern_options=jsonschema_rs.RegexOptions(), offline=True)


def check_params(workflow: str, schema_json: str, params: Any) -> None:
    """InvalidArgument naming every field that does not fit the workflow's declared params;
    Unavailable when the workflow's schema cannot be used."""
    try:
        validator = _validator(schema_json)
        errors = sorted(validator.iter_errors(params), key=lambda e: [str(p) for p in e.instance_path])
    except ValueError as exc:  # also jsonschema_rs's schema and referencing errors
        log.error("a workflow advertised an unusable params schema", workflow=workflow, error=str(exc)[:200])
        raise Unavailable(f"workflow {workflow!r} {UNUSABLE}") from None
    if errors:
        problems = "; ".join(f"{'.'.join(map(str, e.instance_path)) or '(params)'}: {e.message}" for e in errors[:10])
        raise InvalidArgument(f"params of {workflow!r} do not fit its declaration: {problems}")


def _place(head_id: str, new_id: str, moved: list[bool], run: Run) -> bool:
    """Make `new_id` the head of the thread whose first run is `run`, if `head_id` still is."""
    current = run.thread_head or run.run_id
    if current == new_id:
        return False  # an earlier try of this very reply placed it
    if current != head_id:
        moved.append(True)  # another reply came first: decide again
        return False
    run.thread_head = new_id
    return True


def _sees_all(caller: Caller) -> bool:
    return caller.admin


def _visible(run: Run, caller: Caller) -> bool:
    return _sees_all(caller) or run.owner == caller.identity


def _check_run_id(run_id: str) -> None:
    if not is_run_id(run_id):
        raise RunNotFound(run_id)


def _valid_params(params_json: str) -> str:
    if len(params_json.encode()) > MAX_PARAMS_BYTES:
        raise InvalidArgument(f"params are larger than {MAX_PARAMS_BYTES} bytes")
    try:
        params = json.loads(params_json or "{}")
    except ValueError as exc:
        raise InvalidArgument(f"params are not valid JSON: {exc}") from None
    if not isinstance(params, dict):
        raise InvalidArgument("params must be a JSON object")
    return json.dumps(params, separators=(",", ":"))

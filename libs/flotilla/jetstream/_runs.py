"""Run records in the `flotilla_runs` bucket, updated with compare-and-set, and their headers.

A record holds a run's lifecycle (status, attempts, worker, result), which workers update. What
the run was started as (owner, workflow, params, idempotency key, creation time, its thread or fork) is also written,
once and by the dispatcher only, to `flotilla_run_headers`, which workers cannot write: a store
opened with headers lays them over every record it reads, so a record rewritten by a worker can
change neither whose run it is nor what it was started with, and a record without a header is no
run at all.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from flotilla.errors import RunNotFound
from flotilla.events import now
from flotilla.jetstream._layout import RUN_HEADERS_BUCKET, RUNS_BUCKET
from flotilla.protocol import Run

Mutation = Callable[[Run], bool]
"""Changes a run in place; returns False to leave the stored record as it is."""
Versioned = tuple[Run, int]
"""A record and the revision it was read or written at."""
HEADER_CACHE_RUNS = 10_000
"""Headers a store remembers (they never change: a remembered one is never stale)."""


def header_of(run: Run) -> Run:
    """The fields of `run` its header keeps."""
    header = Run(
        run_id=run.run_id,
        workflow=run.workflow,
        params_json=run.params_json,
        owner=run.owner,
        idempotency_key=run.idempotency_key,
        thread_id=run.thread_id,
        reply_to=run.reply_to,
        reply_message=run.reply_message,
        forked_from=run.forked_from,
        fork_at_seq=run.fork_at_seq,
        traceparent=run.traceparent,
    )
    header.created_at.CopyFrom(run.created_at)
    return header


def with_header(record: Run, header: Run) -> Run:
    """`record` with the header's fields in place of its own copies."""
    record.workflow, record.params_json = header.workflow, header.params_json
    record.owner, record.idempotency_key = header.owner, header.idempotency_key
    record.thread_id, record.reply_to, record.reply_message = header.thread_id, header.reply_to, header.reply_message
    record.forked_from, record.fork_at_seq = header.forked_from, header.fork_at_seq
    record.traceparent = header.traceparent
    record.created_at.CopyFrom(header.created_at)
    return record


class RunStore:
    """Create, read, update (CAS) and watch run records; with `headers` (the dispatcher's store),
    every record read is laid over with its header."""

    def __init__(self, kv: KeyValue, headers: KeyValue | None = None) -> None:
        # Records are read from the stream's leader, never by direct get: on an R3 cluster any
        # replica answers a direct get, and one that lags (a node catching up after a restart)
        # returns an older record. A worker reading an older lease would stop a run it holds
        # (found by the chaos suite); a compare-and-set from a stale revision only retries.
        kv._direct = False
        self._kv = kv
        self._headers = headers
        self._header_cache: OrderedDict[str, Run] = OrderedDict()

    @classmethod
    async def open(cls, js: JetStreamContext, *, with_headers: bool = False) -> RunStore:
        headers = await js.key_value(RUN_HEADERS_BUCKET) if with_headers else None
        return cls(await js.key_value(RUNS_BUCKET), headers)

    async def create(self, run: Run) -> int:
        """The header (dispatcher only) and the record, sent together; returns the record's
        revision. Until both are stored the run does not exist for anyone: a record without a
        header is no run (never listed, never read, never queued)."""
        run.created_at.CopyFrom(now())
        run.updated_at.CopyFrom(run.created_at)
        record = self._kv.create(run.run_id, run.SerializeToString())
        if self._headers is None:
            return await record
        _, revision = await asyncio.gather(self._create_header(run), record)
        return revision

    async def _create_header(self, run: Run) -> None:
        header = header_of(run)
        try:
            await self._header_bucket().create(run.run_id, header.SerializeToString())
            self._remember_header(run.run_id, header)
        except KeyWrongLastSequenceError:
            pass  # a retried start: the header is already there, and never changes

    def _header_bucket(self) -> KeyValue:
        if self._headers is None:
            raise RuntimeError("this run store was opened without the headers bucket (the dispatcher's)")
        return self._headers

    async def header(self, run_id: str) -> Run:
        """What the run was started as; RunNotFound when the dispatcher never started it. A
        header is written once and never changes, so the last HEADER_CACHE_RUNS read are kept."""
        cached = self._header_cache.get(run_id)
        if cached is not None:
            self._header_cache.move_to_end(run_id)
            return cached
        try:
            entry = await self._header_bucket().get(run_id)
        except KeyNotFoundError:
            raise RunNotFound(run_id) from None
        if entry.value is None:
            raise RunNotFound(run_id)
        header = Run.FromString(entry.value)
        self._remember_header(run_id, header)
        return header

    def _remember_header(self, run_id: str, header: Run) -> None:
        self._header_cache[run_id] = header
        while len(self._header_cache) > HEADER_CACHE_RUNS:
            self._header_cache.popitem(last=False)

    async def get(self, run_id: str) -> tuple[Run, int]:
        """The record (laid over with its header) and its revision; RunNotFound when there is none."""
        try:
            entry = await self._kv.get(run_id)
        except KeyNotFoundError:
            raise RunNotFound(run_id) from None
        if entry.value is None or entry.revision is None:
            raise RunNotFound(run_id)
        record = Run.FromString(entry.value)
        if self._headers is not None:
            record = with_header(record, await self.header(run_id))
        return record, entry.revision

    async def update(self, run_id: str, mutate: Mutation) -> Run:
        """Apply `mutate` to the current record until the compare-and-set wins; return the result."""
        run, _ = await self.modify(run_id, mutate)
        return run

    async def modify(self, run_id: str, mutate: Mutation, *, known: Versioned | None = None) -> Versioned:
        """`update`, returning the record's new revision too. With `known` (a record and the
        revision this process last read or wrote it at), the first try changes that copy
        instead of reading: the compare-and-set refuses it if the record changed since, and it
        is read again. Only a change is tried on a copy that may be old: when `mutate` leaves
        the copy as it is, the stored record decides."""
        while True:
            if known is not None:
                run, revision = Run(), known[1]
                run.CopyFrom(known[0])
            else:
                run, revision = await self.get(run_id)
            if not mutate(run):
                if known is None:
                    return run, revision
                known = None
                continue
            known = None
            run.updated_at.CopyFrom(now())
            try:
                revision = await self._kv.update(run_id, run.SerializeToString(), last=revision)
                return run, revision
            except KeyWrongLastSequenceError:
                continue

    async def delete(self, js: JetStreamContext, run_id: str) -> None:
        """Remove the record and its header for good (retention), by the JetStream API: the
        buckets refuse clients' purge messages (rollups are off)."""
        await js.purge_stream(f"KV_{RUNS_BUCKET}", subject=f"$KV.{RUNS_BUCKET}.{run_id}")
        self._header_cache.pop(run_id, None)
        if self._headers is not None:
            await js.purge_stream(f"KV_{RUN_HEADERS_BUCKET}", subject=f"$KV.{RUN_HEADERS_BUCKET}.{run_id}")

    async def watch(self) -> AsyncIterator[tuple[str, Run | None]]:
        """Every current record, then every change, for as long as the caller iterates: the run
        id and its record (None: the record was deleted)."""
        watcher = await self._kv.watchall()
        try:
            async for entry in watcher:
                if entry is None:
                    continue  # the marker after the initial values
                yield entry.key, Run.FromString(entry.value) if entry.value else None
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]

    async def watch_headers(self) -> AsyncIterator[tuple[str, Run | None]]:
        """Every header, then every new one (None: purged by retention)."""
        watcher = await self._header_bucket().watchall()
        try:
            async for entry in watcher:
                if entry is None:
                    continue
                yield entry.key, Run.FromString(entry.value) if entry.value else None
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]

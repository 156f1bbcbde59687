"""An in-memory index of run summaries for listing, fed by watches on the runs and headers buckets.

The buckets stay the source of truth (GetRun reads them); the index serves lists and the
dispatcher's upkeep, and every dispatcher replica keeps its own. It is bounded: a summary drops
params and results larger than SUMMARY_FIELD_BYTES (GetRun has them whole), and beyond `max_runs`
the oldest finished runs leave the lists (they stay readable by id; the janitor still expires them,
from a small note of when each finished). A run is listed only once its header is known: a record
a worker wrote for a run the dispatcher never started is no run.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import AsyncIterator, Callable

import structlog

from flotilla.events import TERMINAL_STATUSES
from flotilla.jetstream import RunStore, with_header
from flotilla.protocol import Run, RunStatus

log = structlog.get_logger(__name__)

SUMMARY_FIELD_BYTES = 512
"""Params, results and errors up to this size are kept in summaries."""


def summary_of(run: Run) -> Run:
    """`run` without its large fields."""
    summary = Run()
    summary.CopyFrom(run)
    if len(summary.params_json) > SUMMARY_FIELD_BYTES:
        summary.params_json = ""
    if len(summary.result_json) > SUMMARY_FIELD_BYTES:
        summary.result_json = ""
    summary.error = summary.error[:SUMMARY_FIELD_BYTES]
    summary.reply_message = summary.reply_message[:SUMMARY_FIELD_BYTES]
    return summary


class RunIndex:
    def __init__(self, store: RunStore, *, max_runs: int = 100_000) -> None:
        self._store = store
        self._max_runs = max_runs
        self._headers: dict[str, Run] = {}
        self._records: dict[str, Run] = {}
        self._order: list[str] = []
        """Ids of the runs with a header, ascending (run ids sort by creation time)."""
        self._finished_at: dict[str, int] = {}
        """Finished runs (listed or not), for the janitor: run id -> when they finished."""
        self._active: dict[str, set[str]] = {}
        """Owner -> its runs not finished yet (for the per-identity quota)."""
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._follow("records", self._store.watch, self._on_record)),
            asyncio.create_task(self._follow("headers", self._store.watch_headers, self._on_header)),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._order)

    def put(self, run: Run) -> None:
        """Record a run this process created or changed (it carries its header), before the
        watches echo it back."""
        self._on_header(run.run_id, run)
        self._on_record(run.run_id, run)

    def active(self, owner: str) -> int:
        """How many of `owner`'s runs have not finished."""
        return len(self._active.get(owner, ()))

    def remove(self, run_id: str) -> None:
        self._records.pop(run_id, None)
        self._finished_at.pop(run_id, None)
        header = self._headers.get(run_id)
        if header is not None:
            self._not_active(header.owner, run_id)
        if self._headers.pop(run_id, None) is not None:
            at = bisect.bisect_left(self._order, run_id)
            if at < len(self._order) and self._order[at] == run_id:
                del self._order[at]

    def where(self, status: int) -> list[Run]:
        """Every listed run in `status` (for the dispatcher's upkeep)."""
        return [run for run in map(self._summary, self._order) if run is not None and run.status == status]

    def finished(self, before_s: float | None = None) -> list[tuple[str, int]]:
        """(run id, finished at) of every finished run, listed or not; those before `before_s` only."""
        return [(run_id, at) for run_id, at in self._finished_at.items() if before_s is None or at <= before_s]

    def list(
        self, *, limit: int, status: int = RunStatus.RUN_STATUS_UNSPECIFIED, owner: str | None = None
    ) -> list[Run]:
        """Newest first; only `owner`'s runs when given."""
        found: list[Run] = []
        for run_id in reversed(self._order):
            run = self._summary(run_id)
            if run is None or (status and run.status != status) or (owner is not None and run.owner != owner):
                continue
            found.append(run)
            if len(found) >= limit:
                break
        return found

    def _summary(self, run_id: str) -> Run | None:
        header, record = self._headers.get(run_id), self._records.get(run_id)
        if header is None or record is None:
            return None
        return with_header(record, header)

    def _on_header(self, run_id: str, header: Run | None) -> None:
        if header is None:
            self.remove(run_id)
            return
        if run_id not in self._headers:
            bisect.insort(self._order, run_id)
        self._headers[run_id] = summary_of(header)
        self._count(run_id)
        self._bound()

    def _on_record(self, run_id: str, record: Run | None) -> None:
        if record is None:
            self._records.pop(run_id, None)
            return
        current = self._records.get(run_id)
        if current is None or _newer_or_same(record, current):
            self._records[run_id] = summary_of(record)
            if record.status in TERMINAL_STATUSES:
                self._finished_at[run_id] = record.finished_at.seconds or record.updated_at.seconds
            self._count(run_id)

    def _count(self, run_id: str) -> None:
        run = self._summary(run_id)
        if run is None:
            return
        if run.status in TERMINAL_STATUSES:
            self._not_active(run.owner, run_id)
        else:
            self._active.setdefault(run.owner, set()).add(run_id)

    def _not_active(self, owner: str, run_id: str) -> None:
        runs = self._active.get(owner)
        if runs is not None:
            runs.discard(run_id)
            if not runs:
                del self._active[owner]

    def _bound(self) -> None:
        """Beyond `max_runs` listed runs, the oldest finished ones leave the lists (not the buckets)."""
        excess = len(self._order) - self._max_runs
        if excess <= 0:
            return
        dropped: list[str] = []
        for run_id in self._order:
            if len(dropped) >= excess:
                break
            if run_id in self._finished_at:
                dropped.append(run_id)
        for run_id in dropped:
            finished = self._finished_at.get(run_id)
            self.remove(run_id)
            if finished is not None:
                self._finished_at[run_id] = finished  # the janitor still expires it

    async def _follow(
        self,
        what: str,
        watch: Callable[[], AsyncIterator[tuple[str, Run | None]]],
        apply: Callable[[str, Run | None], None],
    ) -> None:
        while True:
            try:
                async for run_id, run in watch():
                    apply(run_id, run)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS reconnecting: watch again from the start
                log.warning("run index watch restarting", watch=what, error=repr(exc))
                await asyncio.sleep(1.0)


def _newer_or_same(candidate: Run, current: Run) -> bool:
    a, b = candidate.updated_at, current.updated_at
    return (a.seconds, a.nanos) >= (b.seconds, b.nanos)

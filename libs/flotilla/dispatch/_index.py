"""An in-memory index of run records for listing, fed by a watch on the runs bucket.

The bucket stays the source of truth (GetRun reads it); the index only serves lists, and every
dispatcher replica keeps its own.
"""

from __future__ import annotations

import asyncio

import structlog

from flotilla.events import TERMINAL_STATUSES
from flotilla.jetstream import RunStore
from flotilla.protocol import Run, RunStatus

log = structlog.get_logger(__name__)


class RunIndex:
    def __init__(self, store: RunStore) -> None:
        self._store = store
        self._runs: dict[str, Run] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def put(self, run: Run) -> None:
        """Record a change this process made, before the watch echoes it back."""
        current = self._runs.get(run.run_id)
        if current is None or _newer_or_same(run, current):
            self._runs[run.run_id] = run

    def remove(self, run_id: str) -> None:
        self._runs.pop(run_id, None)

    def where(self, status: int) -> list[Run]:
        """Every known run in `status` (for the dispatcher's upkeep)."""
        return [run for run in self._runs.values() if run.status == status]

    def finished(self) -> list[Run]:
        return [run for run in self._runs.values() if run.status in TERMINAL_STATUSES]

    def list(
        self, *, limit: int, status: int = RunStatus.RUN_STATUS_UNSPECIFIED, owner: str | None = None
    ) -> list[Run]:
        """Newest first (run ids sort by creation time); only `owner`'s runs when given."""
        found: list[Run] = []
        for run_id in sorted(self._runs, reverse=True):
            run = self._runs[run_id]
            if (status and run.status != status) or (owner is not None and run.owner != owner):
                continue
            found.append(run)
            if len(found) >= limit:
                break
        return found

    async def _follow(self) -> None:
        while True:
            try:
                async for run_id, run in self._store.watch():
                    if run is None:
                        self.remove(run_id)
                    else:
                        self.put(run)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS reconnecting: watch again from the start
                log.warning("run index watch restarting", error=repr(exc))
                await asyncio.sleep(1.0)


def _newer_or_same(candidate: Run, current: Run) -> bool:
    a, b = candidate.updated_at, current.updated_at
    return (a.seconds, a.nanos) >= (b.seconds, b.nanos)

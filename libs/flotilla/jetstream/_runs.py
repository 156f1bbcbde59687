"""Run records in the `flotilla_runs` bucket, updated with compare-and-set."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from flotilla.errors import RunNotFound
from flotilla.events import now
from flotilla.jetstream._layout import RUNS_BUCKET
from flotilla.protocol import Run

Mutation = Callable[[Run], bool]
"""Changes a run in place; returns False to leave the stored record as it is."""


class RunStore:
    """Create, read, update (CAS) and watch run records."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> RunStore:
        return cls(await js.key_value(RUNS_BUCKET))

    async def create(self, run: Run) -> None:
        run.created_at.CopyFrom(now())
        run.updated_at.CopyFrom(run.created_at)
        await self._kv.create(run.run_id, run.SerializeToString())

    async def get(self, run_id: str) -> tuple[Run, int]:
        """The record and its revision; RunNotFound when there is none."""
        try:
            entry = await self._kv.get(run_id)
        except KeyNotFoundError:
            raise RunNotFound(run_id) from None
        if entry.value is None or entry.revision is None:
            raise RunNotFound(run_id)
        return Run.FromString(entry.value), entry.revision

    async def update(self, run_id: str, mutate: Mutation) -> Run:
        """Apply `mutate` to the current record until the compare-and-set wins; return the result."""
        while True:
            run, revision = await self.get(run_id)
            if not mutate(run):
                return run
            run.updated_at.CopyFrom(now())
            try:
                await self._kv.update(run_id, run.SerializeToString(), last=revision)
                return run
            except KeyWrongLastSequenceError:
                continue

    async def delete(self, run_id: str) -> None:
        """Remove the record for good (retention); its history in the bucket goes with it."""
        await self._kv.purge(run_id)

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

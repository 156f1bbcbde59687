"""The workflow catalogue: workers advertise what they serve; entries expire without heartbeats."""

from __future__ import annotations

import time

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from flotilla.errors import WorkflowNotFound
from flotilla.jetstream._layout import WORKFLOWS_BUCKET
from flotilla.protocol import WorkflowInfo


class Catalogue:
    """`get` answers from a cache for `cache_s` (StartRun asks on every run); entries themselves
    expire in the bucket when no worker refreshes them."""

    def __init__(self, kv: KeyValue, *, cache_s: float = 1.0) -> None:
        self._kv = kv
        self._cache_s = cache_s
        self._cache: dict[str, tuple[float, WorkflowInfo]] = {}
        self._listed: tuple[float, list[WorkflowInfo]] | None = None

    @classmethod
    async def open(cls, js: JetStreamContext) -> Catalogue:
        return cls(await js.key_value(WORKFLOWS_BUCKET))

    async def advertise(self, workflows: list[WorkflowInfo]) -> None:
        for info in workflows:
            await self._kv.put(info.name, info.SerializeToString())

    async def get(self, name: str) -> WorkflowInfo:
        cached = self._cache.get(name)
        if cached is not None and time.monotonic() - cached[0] < self._cache_s:
            return cached[1]
        info = await self._read(name)
        if info is None:
            self._cache.pop(name, None)
            raise WorkflowNotFound(name)
        self._cache[name] = (time.monotonic(), info)
        return info

    async def list(self) -> list[WorkflowInfo]:
        """What live workers serve (at most `cache_s` old); refreshes the cache for `get`."""
        if self._listed is not None and time.monotonic() - self._listed[0] < self._cache_s:
            return self._listed[1]
        try:
            names = await self._kv.keys()
        except NoKeysError:
            names = []
        found = [info for info in [await self._read(name) for name in sorted(names)] if info is not None]
        now = time.monotonic()
        self._cache = {info.name: (now, info) for info in found}
        self._listed = (now, found)
        return found

    async def _read(self, name: str) -> WorkflowInfo | None:
        try:
            entry = await self._kv.get(name)
        except KeyNotFoundError:
            return None  # never advertised, or expired between listing and reading
        return WorkflowInfo.FromString(entry.value) if entry.value else None

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
        try:
            entry = await self._kv.get(name)
        except KeyNotFoundError:
            raise WorkflowNotFound(name) from None
        if not entry.value:
            raise WorkflowNotFound(name)
        info = WorkflowInfo.FromString(entry.value)
        self._cache[name] = (time.monotonic(), info)
        return info

    async def list(self) -> list[WorkflowInfo]:
        try:
            names = await self._kv.keys()
        except NoKeysError:
            return []
        found = []
        for name in sorted(names):
            try:
                found.append(await self.get(name))
            except WorkflowNotFound:
                continue  # expired between listing and reading
        return found

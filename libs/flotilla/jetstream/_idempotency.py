"""Idempotency keys: the first StartRun with a key wins; later ones get the same run_id."""

from __future__ import annotations

import hashlib

from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from flotilla.jetstream._layout import IDEMPOTENCY_BUCKET


class IdempotencyKeys:
    def __init__(self, js: JetStreamContext, kv: KeyValue) -> None:
        self._js = js
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> IdempotencyKeys:
        return cls(js, await js.key_value(IDEMPOTENCY_BUCKET))

    async def claim(self, key: str, run_id: str) -> str:
        """Bind `key` to `run_id` if it is new; return the run_id the key is bound to."""
        digest = _digest(key)
        try:
            await self._kv.create(digest, run_id.encode())
            return run_id
        except KeyWrongLastSequenceError:
            entry = await self._kv.get(digest)
            return (entry.value or b"").decode()

    async def forget(self, key: str) -> None:
        """Drop the key (its run is gone), by the JetStream API: the bucket refuses purge messages."""
        subject = f"$KV.{IDEMPOTENCY_BUCKET}.{_digest(key)}"
        await self._js.purge_stream(f"KV_{IDEMPOTENCY_BUCKET}", subject=subject)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()

"""Questions and answers: open requests (KV `flotilla_requests`) and answers (FLOTILLA_INPUTS).

The worker opens a request before it publishes the question; the dispatcher claims it with a
compare-and-set before it publishes the answer, so a request is answered at most once.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from flotilla.errors import RequestAlreadyAnswered, RequestExpired, RequestNotFound
from flotilla.jetstream._layout import INPUTS_STREAM, REQUESTS_BUCKET, input_subject

_OPEN = b"open"
_ANSWERED = b"answered"
_EXPIRED = b"expired"


def _key(run_id: str, request_id: str) -> str:
    return f"{run_id}.{request_id}"


class Requests:
    def __init__(self, js: JetStreamContext, kv: KeyValue) -> None:
        self._js = js
        self._kv = kv

    @classmethod
    async def open_store(cls, js: JetStreamContext) -> Requests:
        return cls(js, await js.key_value(REQUESTS_BUCKET))

    async def open(self, run_id: str, request_id: str) -> bool:
        """Record that the run waits for an answer to `request_id`. False when the request was
        answered already (a retried run asking again: use `stored_answer`)."""
        key = _key(run_id, request_id)
        try:
            await self._kv.create(key, _OPEN)
            return True
        except KeyWrongLastSequenceError:
            entry = await self._kv.get(key)
        if entry.value == _ANSWERED:
            return False
        if entry.value == _EXPIRED and entry.revision is not None:
            await self._kv.update(key, _OPEN, last=entry.revision)
        return True

    async def expire(self, run_id: str, request_id: str) -> bool:
        """Close an unanswered request; False if an answer claimed it first."""
        key = _key(run_id, request_id)
        entry = await self._kv.get(key)
        if entry.value != _OPEN or entry.revision is None:
            return False
        try:
            await self._kv.update(key, _EXPIRED, last=entry.revision)
            return True
        except KeyWrongLastSequenceError:
            return False

    async def stored_answer(self, run_id: str, request_id: str) -> bytes | None:
        """The answer already published for the request, if any (for catching up)."""
        try:
            raw = await self._js.get_last_msg(INPUTS_STREAM, input_subject(run_id, request_id), direct=True)
        except NotFoundError:
            return None
        return raw.data or b""

    async def answer(self, run_id: str, request_id: str, value: str) -> None:
        """Claim the request, then publish the answer durably for the worker to pick up."""
        key = _key(run_id, request_id)
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            raise RequestNotFound(run_id, request_id) from None
        if entry.value == _EXPIRED:
            raise RequestExpired(run_id, request_id)
        if entry.value != _OPEN or entry.revision is None:
            raise RequestAlreadyAnswered(run_id, request_id)
        try:
            revision = await self._kv.update(key, _ANSWERED, last=entry.revision)
        except KeyWrongLastSequenceError:
            raise RequestAlreadyAnswered(run_id, request_id) from None
        try:
            await self._js.publish(
                input_subject(run_id, request_id),
                value.encode(),
                headers={"Nats-Msg-Id": key},
            )
        except BaseException:
            await self._kv.update(key, _OPEN, last=revision)  # let the person answer again
            raise

"""Questions and answers: each question's lifecycle on its own subjects of FLOTILLA_INPUTS.

    flotilla.inputs.<run>.<request>.open      the worker: the run waits for an answer
    flotilla.inputs.<run>.<request>.answer    the dispatcher: the person's answer
    flotilla.inputs.<run>.<request>.expired   the worker: nobody answered in time
    flotilla.inputs.<run>.<request>.closed    the worker: the run ended while it waited

`open` comes first; then exactly one of the others, because each is published conditionally on
`open` being the question's last message (`Nats-Expected-Last-Subject-Sequence` over the
question's subjects). So an answer and a timeout cannot both win, an answer is stored before it
is acknowledged (never claimed first and lost), and a question of a run that ended refuses
answers. The worker cannot publish answers (nats-server.conf). Each message carries a
`Nats-Msg-Id` (`<run>.<request>.<state>`); a publish acked as a duplicate stored nothing, and the
question's state is read instead (an R3 leader acks a duplicate before it checks the condition).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from flotilla.errors import RequestAlreadyAnswered, RequestExpired, RequestNotFound, RunFinished
from flotilla.jetstream._events import RETRY_MAX_S, WRONG_LAST_SEQUENCE, _transient
from flotilla.jetstream._layout import INPUTS_STREAM, input_filter, input_subject

OPEN = "open"
ANSWER = "answer"
EXPIRED = "expired"
CLOSED = "closed"

log = structlog.get_logger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Question:
    """Where one question stands: `state` is its last message's (open, answer, expired, closed)."""

    state: str
    value: str = ""
    """The answer, when state is `answer`."""
    open_seq: int = 0
    """Stream sequence of its `open` message (what the outcome is conditional on)."""


def _state_of(subject: str) -> str:
    return subject.rsplit(".", 1)[-1]


class Requests:
    def __init__(self, js: JetStreamContext, *, retry_s: float = 0.0) -> None:
        """`retry_s`: how long a call retries what may pass (a restarting server, a leader
        election) before it raises (the worker's, so a run waits out an outage instead of failing;
        every call is safe to repeat: publishes are conditional and carry a Nats-Msg-Id)."""
        self._js = js
        self._retry_s = retry_s

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        deadline = asyncio.get_running_loop().time() + self._retry_s
        delay = 0.05
        while True:
            try:
                return await call()
            except Exception as exc:
                if not _transient(exc) or asyncio.get_running_loop().time() + delay > deadline:
                    raise
                log.info("question state call failed; retrying", error=repr(exc), delay_s=delay)
            await asyncio.sleep(delay)
            delay = min(RETRY_MAX_S, delay * 2)

    async def get(self, run_id: str, request_id: str) -> Question | None:
        """The question's state now, or None when it was never opened."""
        return await self._retrying(lambda: self._get(run_id, request_id))

    async def _get(self, run_id: str, request_id: str) -> Question | None:
        try:
            # From the leader, never by direct get: on an R3 cluster a lagging replica can show a
            # question still open after its answer was stored, and a run that took over would
            # wait for an answer already given (found by the chaos suite).
            raw = await self._js.get_last_msg(INPUTS_STREAM, input_filter(run_id, request_id))
        except NotFoundError:
            return None
        state = _state_of(raw.subject or "")
        value = (raw.data or b"").decode(errors="replace") if state == ANSWER else ""
        open_seq = int((raw.headers or {}).get("Flotilla-Open-Seq", raw.seq or 0)) if state != OPEN else raw.seq or 0
        return Question(state, value, open_seq)

    async def _publish(self, run_id: str, request_id: str, state: str, value: str, after_seq: int) -> int | None:
        """Publish `state` if the question's last message is still the one at `after_seq`
        (0: no message yet); the new message's sequence, or None when something came first."""
        headers = {
            "Nats-Expected-Last-Subject-Sequence": str(after_seq),
            "Nats-Expected-Last-Subject-Sequence-Subject": input_filter(run_id, request_id),
            "Nats-Msg-Id": f"{run_id}.{request_id}.{state}",
        }
        if after_seq:
            headers["Flotilla-Open-Seq"] = str(after_seq)
        subject = input_subject(run_id, request_id, state)
        try:
            ack = await self._retrying(lambda: self._js.publish(subject, value.encode(), headers=headers))
        except APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                return None
            raise
        if ack.duplicate:
            # A message with this Nats-Msg-Id is stored already (ours, retried after a lost ack,
            # or another attempt's: a resumed run re-opens its questions), and nothing was
            # stored now. An R3 leader answers a duplicate before it checks the condition, so
            # this says nothing of where the question stands: the caller reads that.
            return None
        return ack.seq

    async def _existing(self, run_id: str, request_id: str) -> Question:
        """A question whose conditional publish was refused: something is stored for it."""
        question = await self.get(run_id, request_id)
        if question is None:
            raise RuntimeError(f"question {request_id} of run {run_id} refused a publish but has no messages")
        return question

    async def open(self, run_id: str, request_id: str) -> Question:
        """Record that the run waits for an answer to `request_id` (before anyone sees the
        question); if an earlier attempt of the run asked it already, where it stands."""
        seq = await self._publish(run_id, request_id, OPEN, "", 0)
        if seq is not None:
            return Question(OPEN, open_seq=seq)
        return await self._existing(run_id, request_id)

    async def expire(self, run_id: str, request_id: str, open_seq: int) -> Question:
        """Nobody answered in time: close the question unless an answer came first (which wins)."""
        return await self._finish(run_id, request_id, EXPIRED, open_seq)

    async def close(self, run_id: str, request_id: str, open_seq: int) -> Question:
        """The run ended while the question was open: later answers are refused."""
        return await self._finish(run_id, request_id, CLOSED, open_seq)

    async def _finish(self, run_id: str, request_id: str, state: str, open_seq: int) -> Question:
        if await self._publish(run_id, request_id, state, "", open_seq) is not None:
            return Question(state, open_seq=open_seq)
        return await self._existing(run_id, request_id)

    async def answer(self, run_id: str, request_id: str, value: str, *, run_ended: str | None = None) -> None:
        """Store the answer if the question is open; the worker picks it up from the stream.
        `run_ended`: the run's terminal status, if it has one (then an open question refuses)."""
        question = await self.get(run_id, request_id)
        await self.answer_as_read(question, run_id, request_id, value, run_ended=run_ended)

    async def answer_as_read(
        self, question: Question | None, run_id: str, request_id: str, value: str, *, run_ended: str | None = None
    ) -> None:
        """`answer`, with the question's state as the caller just read it (`get`): the answer is
        stored conditionally on that very `open`, so a state read a moment ago cannot let a
        second answer in."""
        if question is None:
            raise RequestNotFound(run_id, request_id)
        if question.state == OPEN and run_ended is not None:
            raise RunFinished(run_id, run_ended)
        if question.state == OPEN and await self._publish(run_id, request_id, ANSWER, value, question.open_seq):
            return
        current = await self.get(run_id, request_id) if question.state == OPEN else question
        state = current.state if current is not None else ANSWER
        if state == EXPIRED:
            raise RequestExpired(run_id, request_id)
        if state == CLOSED:
            raise RunFinished(run_id, "it ended while the question was open")
        raise RequestAlreadyAnswered(run_id, request_id)

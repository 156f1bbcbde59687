"""The session a workflow runs in on a worker: its events go to the run's log, its questions
wait for answers published by the dispatcher.

`RunSession` serves `async def` workflows; `SyncRunSession` wraps it for plain `def` workflows
running in a thread, forwarding each call to the worker's event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from google.protobuf.message import Message
from nats.aio.client import Client
from nats.aio.msg import Msg

import structlog

from flotilla.errors import InputTimeout, RunCancelled
from flotilla.execution._replay import PriorAttempts
from flotilla.jetstream import Reconnects, Requests, RunEventWriter, input_subject
from flotilla.protocol import (
    Error,
    FunctionCallExecution,
    InputAnswered,
    LlmCompletion,
    MultipleChoice,
    SuggestedFunctionCall,
    SystemMessage,
    TextInput,
    TextMessage,
)

T = TypeVar("T")
log = structlog.get_logger(__name__)

DEFAULT_SENDER = "workflow"
DEFAULT_RECIPIENT = "user"


class RunSession:
    """Implements `flotilla.workflows.Session` for one attempt of one run."""

    def __init__(
        self,
        nc: Client,
        writer: RunEventWriter,
        requests: Requests,
        run_id: str,
        reconnects: Reconnects,
        *,
        input_timeout_s: float,
        prior: PriorAttempts | None = None,
    ) -> None:
        """`prior`: what earlier attempts of the run emitted (a resumed run skips re-emitting it)."""
        self._prior = prior
        self._nc = nc
        self._writer = writer
        self._requests = requests
        self._run_id = run_id
        self._reconnects = reconnects
        self._input_timeout_s = input_timeout_s
        self._questions = 0
        self._closed = False

    @property
    def run_id(self) -> str:
        return self._run_id

    def close(self) -> None:
        """After this, every call raises RunCancelled: nothing follows the terminal event."""
        self._closed = True

    async def _emit(self, kind: str, body: Message, *, sender: str, recipient: str = "") -> None:
        if self._closed:
            raise RunCancelled(f"run {self._run_id} is no longer running here")
        if self._prior is not None:
            seen = self._prior.already_emitted(kind)
            if seen:
                return
            if seen is None:
                log.warning("the resumed workflow took another path than before; going live", kind=kind)
            if not seen:
                self._prior = None  # the log ran out: live from here on
        await self._writer.emit(kind, body, sender=sender, recipient=recipient)

    async def text_message(self, body: str = "", *, sender: str | None = None, recipient: str | None = None) -> None:
        await self._emit(
            "text_message",
            TextMessage(body=body),
            sender=sender or DEFAULT_SENDER,
            recipient=recipient or DEFAULT_RECIPIENT,
        )

    async def system_message(self, message: dict[str, Any], *, sender: str | None = None) -> None:
        await self._emit("system_message", SystemMessage(message_json=json.dumps(message)), sender=sender or "system")

    async def error(self, short: str, long: str = "", *, sender: str | None = None) -> None:
        await self._emit("error", Error(short=short, long=long), sender=sender or "system")

    async def suggested_function_call(
        self,
        function_name: str,
        arguments: Any,
        *,
        call_id: str = "",
        sender: str | None = None,
        recipient: str | None = None,
    ) -> None:
        body = SuggestedFunctionCall(
            function_name=function_name, call_id=call_id, arguments_json=json.dumps(arguments, default=str)
        )
        await self._emit("suggested_function_call", body, sender=sender or DEFAULT_SENDER, recipient=recipient or "")

    async def function_call_execution(
        self, function_name: str, retval: Any, *, call_id: str = "", sender: str | None = None
    ) -> None:
        body = FunctionCallExecution(
            function_name=function_name, call_id=call_id, retval_json=json.dumps(retval, default=str)
        )
        await self._emit("function_call_execution", body, sender=sender or DEFAULT_SENDER)

    async def llm_completion(self, model: str, request: Any, completion: Any) -> None:
        """Record a completion an agent used (hidden from the transcript)."""
        recorded = LlmCompletion(model=model, request_json=json.dumps(request), completion_json=json.dumps(completion))
        await self._emit("llm_completion", recorded, sender="llm")

    async def text_input(
        self,
        prompt: str = "",
        *,
        suggestions: Sequence[str] = (),
        password: bool = False,
        sender: str | None = None,
        recipient: str | None = None,
        timeout_s: float | None = None,
        default: str | None = None,
    ) -> str:
        question = TextInput(prompt=prompt, suggestions=list(suggestions), password=password)
        return await self._ask(
            "text_input", question, sender, recipient, timeout_s=timeout_s, default=default, mask=password
        )

    async def multiple_choice(
        self,
        prompt: str = "",
        choices: Sequence[str] = (),
        *,
        default: str | None = None,
        single: bool = True,
        sender: str | None = None,
        recipient: str | None = None,
        timeout_s: float | None = None,
    ) -> str:
        question = MultipleChoice(prompt=prompt, choices=list(choices), default=default or "", single=single)
        return await self._ask(
            "multiple_choice", question, sender, recipient, timeout_s=timeout_s, default=default, mask=False
        )

    async def _ask(
        self,
        kind: str,
        question: TextInput | MultipleChoice,
        sender: str | None,
        recipient: str | None,
        *,
        timeout_s: float | None,
        default: str | None,
        mask: bool,
    ) -> str:
        # The n-th question of a run always has the same id, so a retried run finds the answer
        # given to its earlier attempt (or while no worker held it) instead of asking again.
        self._questions += 1
        request_id = f"q{self._questions}"
        question.request_id = request_id
        asker, person = sender or DEFAULT_SENDER, recipient or DEFAULT_RECIPIENT
        if self._prior is not None and request_id in self._prior.timed_out:
            # An earlier attempt waited its time out and took the default: so does this one.
            await self._emit(kind, question, sender=asker, recipient=person)
            if default is None:
                raise InputTimeout(f"no answer to {question.prompt!r} in an earlier attempt")
            await self._answered(request_id, default, person, asker, mask=mask, timed_out=True)
            return default
        if not await self._requests.open(self._run_id, request_id):
            # Answered already (to an earlier attempt): the question and answer are in the log
            # unless that attempt stopped before writing them.
            stored = await self._requests.stored_answer(self._run_id, request_id)
            value = (stored or b"").decode(errors="replace")
            await self._emit(kind, question, sender=asker, recipient=person)
            await self._answered(request_id, value, person, asker, mask=mask, timed_out=False)
            return value
        # The request is open and we are subscribed before anyone can see the question, so an
        # answer can neither be refused nor missed.
        answered: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def on_answer(msg: Msg) -> None:
            if not answered.done():
                answered.set_result(msg.data)

        sub = await self._nc.subscribe(input_subject(self._run_id, request_id), cb=on_answer)
        try:
            await self._emit(kind, question, sender=asker, recipient=person)
            limit = self._input_timeout_s if timeout_s is None else timeout_s
            try:
                raw = await asyncio.wait_for(self._answer(answered, request_id), limit)
                value, timed_out = raw.decode(errors="replace"), False
            except TimeoutError:
                value, timed_out = await self._expire(request_id, question.prompt, limit, default)
        finally:
            await sub.unsubscribe()
        await self._answered(request_id, value, person, asker, mask=mask, timed_out=timed_out)
        return value

    async def _answered(
        self, request_id: str, value: str, person: str, asker: str, *, mask: bool, timed_out: bool
    ) -> None:
        shown = "*" * 8 if mask else value
        answer = InputAnswered(request_id=request_id, value=shown, timed_out=timed_out)
        await self._emit("input_answered", answer, sender=person, recipient=asker)

    async def _expire(self, request_id: str, prompt: str, limit: float, default: str | None) -> tuple[str, bool]:
        if not await self._requests.expire(self._run_id, request_id):
            # An answer claimed the request just as time ran out: it wins.
            for _ in range(50):
                stored = await self._requests.stored_answer(self._run_id, request_id)
                if stored is not None:
                    return stored.decode(errors="replace"), False
                await asyncio.sleep(0.05)
        if default is None:
            raise InputTimeout(f"no answer to {prompt!r} within {limit:g} s")
        return default, True

    async def _answer(self, answered: asyncio.Future[bytes], request_id: str) -> bytes:
        """The answer from the live subscription; after a reconnect, also look in the stream
        (an answer published while we were disconnected never reached the subscription)."""
        while not answered.done():
            reconnected: asyncio.Future[None] = asyncio.ensure_future(self._reconnects.wait())
            waiting: set[asyncio.Future[Any]] = {answered, reconnected}
            try:
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            finally:
                reconnected.cancel()
            if not answered.done():
                stored = await self._requests.stored_answer(self._run_id, request_id)
                if stored is not None:
                    return stored
        return answered.result()


class SyncRunSession:
    """Implements `flotilla.workflows.SyncSession`: each call runs on the worker's event loop
    and blocks the workflow's thread until it is done."""

    def __init__(self, session: RunSession, loop: asyncio.AbstractEventLoop) -> None:
        self._session = session
        self._loop = loop
        self._pending: set[concurrent.futures.Future[Any]] = set()

    @property
    def run_id(self) -> str:
        return self._session.run_id

    @property
    def session(self) -> RunSession:
        return self._session

    def cancel(self) -> None:
        """Stop the workflow thread at its next call (or now, if it waits for an answer)."""
        self._session.close()
        for future in list(self._pending):
            future.cancel()

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the worker's loop and wait for it (from the workflow's thread)."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        self._pending.add(future)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise RunCancelled(f"run {self.run_id} was cancelled") from None
        finally:
            self._pending.discard(future)

    def text_message(self, body: str = "", *, sender: str | None = None, recipient: str | None = None) -> None:
        self.call(self._session.text_message(body, sender=sender, recipient=recipient))

    def system_message(self, message: dict[str, Any], *, sender: str | None = None) -> None:
        self.call(self._session.system_message(message, sender=sender))

    def error(self, short: str, long: str = "", *, sender: str | None = None) -> None:
        self.call(self._session.error(short, long, sender=sender))

    def suggested_function_call(
        self,
        function_name: str,
        arguments: Any,
        *,
        call_id: str = "",
        sender: str | None = None,
        recipient: str | None = None,
    ) -> None:
        self.call(
            self._session.suggested_function_call(
                function_name, arguments, call_id=call_id, sender=sender, recipient=recipient
            )
        )

    def function_call_execution(
        self, function_name: str, retval: Any, *, call_id: str = "", sender: str | None = None
    ) -> None:
        self.call(self._session.function_call_execution(function_name, retval, call_id=call_id, sender=sender))

    def text_input(
        self,
        prompt: str = "",
        *,
        suggestions: Sequence[str] = (),
        password: bool = False,
        sender: str | None = None,
        recipient: str | None = None,
        timeout_s: float | None = None,
        default: str | None = None,
    ) -> str:
        return self.call(
            self._session.text_input(
                prompt,
                suggestions=suggestions,
                password=password,
                sender=sender,
                recipient=recipient,
                timeout_s=timeout_s,
                default=default,
            )
        )

    def multiple_choice(
        self,
        prompt: str = "",
        choices: Sequence[str] = (),
        *,
        default: str | None = None,
        single: bool = True,
        sender: str | None = None,
        recipient: str | None = None,
        timeout_s: float | None = None,
    ) -> str:
        return self.call(
            self._session.multiple_choice(
                prompt, choices, default=default, single=single, sender=sender, recipient=recipient, timeout_s=timeout_s
            )
        )

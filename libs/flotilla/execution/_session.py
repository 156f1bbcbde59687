"""The session a workflow runs in on a worker: its events go to the run's log, its questions
wait for answers published by the dispatcher."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from nats.aio.client import Client

from flotilla.ids import new_request_id
from flotilla.jetstream import Reconnects, Requests, RunEventWriter, input_subject
from flotilla.protocol import (
    Error,
    InputAnswered,
    MultipleChoice,
    SystemMessage,
    TextInput,
    TextMessage,
)


class RunSession:
    """Implements `flotilla.workflows.Session` for one attempt of one run."""

    def __init__(
        self, nc: Client, writer: RunEventWriter, requests: Requests, run_id: str, reconnects: Reconnects
    ) -> None:
        self._nc = nc
        self._writer = writer
        self._requests = requests
        self._run_id = run_id
        self._reconnects = reconnects

    @property
    def run_id(self) -> str:
        return self._run_id

    async def text_message(self, body: str, *, sender: str = "workflow", recipient: str = "user") -> None:
        await self._writer.emit("text_message", TextMessage(body=body), sender=sender, recipient=recipient)

    async def system_message(self, message: dict[str, Any]) -> None:
        await self._writer.emit("system_message", SystemMessage(message_json=json.dumps(message)), sender="system")

    async def error(self, short: str, long: str = "") -> None:
        await self._writer.emit("error", Error(short=short, long=long), sender="system")

    async def text_input(
        self,
        prompt: str,
        *,
        suggestions: Sequence[str] = (),
        password: bool = False,
        sender: str = "workflow",
        recipient: str = "user",
    ) -> str:
        request_id = new_request_id()
        question = TextInput(request_id=request_id, prompt=prompt, suggestions=list(suggestions), password=password)
        return await self._ask("text_input", question, request_id, sender, recipient, mask=password)

    async def multiple_choice(
        self,
        prompt: str,
        choices: Sequence[str],
        *,
        default: str | None = None,
        single: bool = True,
        sender: str = "workflow",
        recipient: str = "user",
    ) -> str:
        request_id = new_request_id()
        question = MultipleChoice(
            request_id=request_id, prompt=prompt, choices=list(choices), default=default or "", single=single
        )
        return await self._ask("multiple_choice", question, request_id, sender, recipient, mask=False)

    async def _ask(
        self,
        kind: str,
        question: TextInput | MultipleChoice,
        request_id: str,
        sender: str,
        recipient: str,
        *,
        mask: bool,
    ) -> str:
        # Order matters: the request is open and we are subscribed before anyone can see the
        # question, so an answer can neither be refused nor be missed.
        await self._requests.open(self._run_id, request_id)
        answered: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def on_answer(msg: Any) -> None:
            if not answered.done():
                answered.set_result(msg.data)

        sub = await self._nc.subscribe(input_subject(self._run_id, request_id), cb=on_answer)
        try:
            await self._writer.emit(kind, question, sender=sender, recipient=recipient)
            value = (await self._answer(answered, request_id)).decode(errors="replace")
        finally:
            await sub.unsubscribe()
        shown = "*" * 8 if mask else value
        await self._writer.emit(
            "input_answered", InputAnswered(request_id=request_id, value=shown), sender=recipient, recipient=sender
        )
        return value

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

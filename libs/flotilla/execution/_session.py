"""The session a workflow runs in on a worker: its events go to the run's log, its questions
wait for answers published by the dispatcher.

`RunSession` implements `flotilla.workflows.Session` for `async def` workflows; plain `def`
workflows get `flotilla.workflows.SyncSession` over it, which runs each call on the worker's loop.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import structlog
from google.protobuf.message import Message
from nats.aio.client import Client
from nats.aio.msg import Msg

from flotilla.errors import InputTimeout, Nondeterminism, RunCancelled
from flotilla.execution._replay import PriorAttempts
from flotilla.execution._usage import UsageTally
from flotilla.jetstream import (
    ANSWER,
    CLOSED,
    EXPIRED,
    OPEN,
    LostOwnership,
    Question,
    Reconnects,
    Requests,
    RunEventWriter,
    delta_subject,
    input_filter,
)
from flotilla.llm import Completion, LlmService, TextDelta, request_digest
from flotilla.metrics import RUN_INPUT_WAIT_SECONDS
from flotilla.protocol import (
    Error,
    FunctionCallExecution,
    InputAnswered,
    LlmCompletion,
    MultipleChoice,
    ReplyDelta,
    SuggestedFunctionCall,
    SystemMessage,
    TextInput,
    TextMessage,
)
from flotilla.workflows import Recorded, Thread, ToolCall, WorkerSession, tool_call_scope

T = TypeVar("T")
log = structlog.get_logger(__name__)

DEFAULT_SENDER = "workflow"
DEFAULT_RECIPIENT = "user"
WAITING_MARK_AFTER_S = 0.5
"""How long a question waits before the run's record says it waits for the person."""
_NOT_RECORDED = (RunCancelled, Nondeterminism, LostOwnership)
"""Exceptions from inside a tool that say the run stops, not that the tool failed."""


class RunSession(WorkerSession):
    """`flotilla.workflows.Session`, and the tool steps `SyncSession` drives, for one attempt of
    one run (mypy checks each call against the declaration it implements)."""

    def __init__(
        self,
        nc: Client,
        writer: RunEventWriter,
        requests: Requests,
        run_id: str,
        reconnects: Reconnects,
        *,
        llm: LlmService,
        input_timeout_s: float,
        prior: PriorAttempts | None = None,
        thread: Thread | None = None,
        on_waiting: Callable[[bool], Awaitable[None]] | None = None,
    ) -> None:
        """`llm`: the worker's; `prior`: what earlier attempts of the run did (a resumed run
        retraces it)."""
        self._llm = llm
        self._prior = prior
        self._thread = thread or Thread(thread_id=run_id)
        self._on_waiting = on_waiting
        """Told when the run starts and stops waiting for the person (its record says so)."""
        self._nc = nc
        self._writer = writer
        self._requests = requests
        self._run_id = run_id
        self._reconnects = reconnects
        self._input_timeout_s = input_timeout_s
        self._questions = 0
        self._tools = 0
        self.usage = UsageTally()
        """What this attempt's live LLM calls used (replayed ones are the earlier attempts')."""
        self._open: dict[str, int] = {}
        self._closed = False
        self._reply_after = (-1, 0)
        """(the reply being streamed, the seq it follows)"""
        self._waiting = 0
        self._marking: asyncio.Task[None] | None = None
        self._marked = False
        """The record is being told, or was told, that the run waits for the person."""

    @property
    def run_id(self) -> str:
        return self._run_id

    @property
    def llm(self) -> LlmService:
        return self._llm

    @property
    def thread(self) -> Thread:
        return self._thread

    @property
    def divergence(self) -> Nondeterminism | None:
        """Where the resumed workflow left its log, if it did."""
        return self._prior.diverged if self._prior is not None else None

    @property
    def waiting_on_person(self) -> bool:
        """The run is waiting for an answer, its question stored: nothing of it is in flight here
        (a draining worker hands such a run back at once)."""
        return self._waiting > 0

    def close(self) -> None:
        """After this, every call raises RunCancelled: nothing follows the terminal event."""
        self._closed = True

    async def close_questions(self) -> None:
        """The run ends: questions still open refuse answers from now on."""
        for request_id, open_seq in list(self._open.items()):
            await self._requests.close(self._run_id, request_id, open_seq)
            self._open.pop(request_id, None)

    def _check(self) -> None:
        if self._closed:
            raise RunCancelled(f"run {self._run_id} is no longer running here")
        if self._writer.failure is not None:
            raise self._writer.failure

    async def _emit(self, kind: str, body: Message, *, sender: str, recipient: str = "") -> None:
        self._check()
        prior = self._prior
        if prior is not None:
            if prior.diverged is not None and prior.policy == "fail":
                raise prior.diverged  # the workflow went on after its first divergence error
            if prior.already_emitted(kind, body, sender=sender, recipient=recipient):
                return
            if prior.diverged is not None:
                log.warning("the resumed workflow left its log; going on live", error=str(prior.diverged))
                marker = Error(short="the resumed run left its history here", long=str(prior.diverged))
                await self._writer.emit("error", marker, sender="system")
            self._prior = None  # the log ran out (or was left): live from here on
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

    async def flush(self) -> None:
        self._check()
        await self._writer.flush()

    async def llm_completion(self, request: Sequence[Any], completion: Completion, *, cost: float = 0.0) -> None:
        """Record a completion an agent used (hidden from the transcript): the completion, a
        digest of the request (the whole conversation so far would make the log grow with the
        square of its length), and what the call used."""
        recorded = LlmCompletion(
            model=completion.model,
            request_sha256=request_digest(list(request)),
            completion_json=json.dumps(completion.to_dict()),
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            latency_s=completion.latency_s,
            cost=cost,
        )
        await self._emit("llm_completion", recorded, sender="llm")
        self.usage.add(recorded)

    async def reply_delta(self, delta: TextDelta) -> None:
        """Publish a piece of the reply an agent's model is writing (core NATS: ephemeral, for
        watchers only; the finished reply is recorded as events). It belongs after the last event
        emitted when the reply began."""
        if self._closed:
            return
        if delta.index == 0 or self._reply_after[0] != delta.reply:
            self._reply_after = (delta.reply, self._writer.last_seq)
        message = ReplyDelta(
            run_id=self._run_id,
            after_seq=self._reply_after[1],
            reply_id=f"{self._run_id}:{delta.reply}",
            sender=delta.sender,
            first_index=delta.index,
            index=delta.index,
            text=delta.text,
        )
        message.first_token_at.FromNanoseconds(int(delta.first_token_at * 1e9))
        await self._nc.publish(delta_subject(self._run_id), message.SerializeToString())

    async def begin_tool(self, name: str) -> tuple[ToolCall, Recorded | None]:
        self._check()
        self._tools += 1
        call = ToolCall(run_id=self._run_id, step=self._tools, name=name)
        stored = self._prior.tool_result(call.step) if self._prior is not None else None
        if stored is None:
            return call, None
        return call, Recorded(json.loads(stored.retval_json or "null"), failed=stored.failed)

    async def end_tool(
        self,
        call: ToolCall,
        value: Any,
        *,
        error: Exception | None = None,
        call_id: str = "",
        sender: str | None = None,
    ) -> None:
        if isinstance(error, _NOT_RECORDED):
            return
        if error is not None:
            value = f"{type(error).__name__}: {error}"
        body = FunctionCallExecution(
            function_name=call.name,
            call_id=call_id,
            retval_json=json.dumps(value, default=str),
            step=call.step,
            failed=error is not None,
        )
        await self._emit("function_call_execution", body, sender=sender or DEFAULT_SENDER)
        await self._writer.flush()

    async def call_tool(
        self,
        name: str,
        function: Callable[[], T | Awaitable[T]],
        *,
        call_id: str = "",
        sender: str | None = None,
    ) -> T:
        call, recorded = await self.begin_tool(name)
        if recorded is not None:
            replayed: T = recorded.result()
            return replayed
        with tool_call_scope(call):
            try:
                result = function()
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                await self.end_tool(call, None, error=exc, call_id=call_id, sender=sender)
                raise
        await self.end_tool(call, result, call_id=call_id, sender=sender)
        return result

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
        self._check()
        self._questions += 1
        request_id = f"q{self._questions}"
        question.request_id = request_id
        asker, person = sender or DEFAULT_SENDER, recipient or DEFAULT_RECIPIENT
        asked_at = self._prior.asked_at.get(request_id, time.time()) if self._prior is not None else time.time()
        outcome: asyncio.Future[Question] = asyncio.get_running_loop().create_future()

        async def on_state(msg: Msg) -> None:
            state = msg.subject.rsplit(".", 1)[-1]
            if state != OPEN and not outcome.done():
                value = msg.data.decode(errors="replace") if state == ANSWER else ""
                outcome.set_result(Question(state, value))

        # Subscribed before the question is open, so no outcome can slip by unseen.
        sub = await self._nc.subscribe(input_filter(self._run_id, request_id), cb=on_state)
        reconnects_seen = self._reconnects.count
        try:
            state = await self._forked_answer(request_id) or await self._requests.open(self._run_id, request_id)
            await self._emit(kind, question, sender=asker, recipient=person)
            if state.state == OPEN:
                self._open[request_id] = state.open_seq
                # The question is stored before anyone waits for its answer: one whose append
                # failed raises here instead of waiting a day for an answer nobody can give.
                await self._writer.flush()
                limit = self._input_timeout_s if timeout_s is None else timeout_s
                remaining = max(0.0, limit - (time.time() - asked_at))
                self._waiting += 1
                if self._waiting == 1 and self._on_waiting is not None:
                    self._marking = asyncio.create_task(self._mark_waiting_soon())
                waiting_since = time.monotonic()
                try:
                    state = await asyncio.wait_for(self._outcome(outcome, request_id, reconnects_seen), remaining)
                except TimeoutError:
                    state = await self._requests.expire(self._run_id, request_id, state.open_seq)
                finally:
                    self._waiting -= 1
                    if self._waiting == 0:
                        await self._unmark_waiting()
                    RUN_INPUT_WAIT_SECONDS.observe(time.monotonic() - waiting_since)
                self._open.pop(request_id, None)
        finally:
            await sub.unsubscribe()
        if state.state == ANSWER:
            value, timed_out = state.value, False
        elif state.state == EXPIRED:
            if default is None:
                raise InputTimeout(f"no answer to {question.prompt!r} in time")
            value, timed_out = default, True
        elif state.state == CLOSED:
            raise RunCancelled(f"run {self._run_id} ended while question {request_id} was open")
        else:
            raise RuntimeError(f"question {request_id} of run {self._run_id} is {state.state!r}")
        shown = "*" * 8 if mask else value
        answer = InputAnswered(request_id=request_id, value=shown, timed_out=timed_out)
        await self._emit("input_answered", answer, sender=person, recipient=asker)
        return value

    async def _mark_waiting_soon(self) -> None:
        """Tell the record once a question has waited WAITING_MARK_AFTER_S: a person takes longer
        than that, and an answer a program gives at once costs no record writes."""
        await asyncio.sleep(WAITING_MARK_AFTER_S)
        if self._on_waiting is not None:
            self._marked = True
            await self._on_waiting(True)

    async def _unmark_waiting(self) -> None:
        marking, self._marking = self._marking, None
        if marking is not None:
            if not self._marked:
                marking.cancel()
            await asyncio.gather(marking, return_exceptions=True)
        if self._marked and self._on_waiting is not None:
            self._marked = False
            await self._on_waiting(False)

    async def _forked_answer(self, request_id: str) -> Question | None:
        """A fork replaying a question its source answered before the fork point: that answer
        (or expiry), as the source's stored it; None when the question is the fork's own."""
        prior = self._prior
        if prior is None or not prior.fork_source or request_id not in prior.forked_answers:
            return None
        stored = await self._requests.get(prior.fork_source, request_id)
        return stored if stored is not None and stored.state in (ANSWER, EXPIRED) else None

    async def _outcome(self, outcome: asyncio.Future[Question], request_id: str, reconnects_seen: int) -> Question:
        """The answer (or expiry) from the live subscription; after each reconnect since the
        subscription was made, also from the stream (what was published while we were
        disconnected never reached the subscription)."""
        while not outcome.done():
            if self._reconnects.count != reconnects_seen:
                reconnects_seen = self._reconnects.count
                stored = await self._requests.get(self._run_id, request_id)
                if stored is not None and stored.state != OPEN:
                    return stored
                continue
            reconnected: asyncio.Future[None] = asyncio.ensure_future(self._reconnects.wait())
            waiting: set[asyncio.Future[Any]] = {outcome, reconnected}
            try:
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            finally:
                reconnected.cancel()
        return outcome.result()

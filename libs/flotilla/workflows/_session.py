"""What a workflow can do while it runs: post messages, ask the person, call tools, use the LLM.

The calls are declared once, in `Session`, for `async def` workflows (method and argument names
are FastAgency's `UI` names). `SyncSession`, for plain `def` workflows (which run in a thread, as
AG2's synchronous `initiate_chat` needs), is derived from it: each of its calls is
`blocking(Session.<call>)`, the async call run on the worker's event loop while the workflow's
thread waits, with the async call's parameters (mypy reads them through a ParamSpec). Only
`call_tool` is its own: a plain `def` workflow's tool runs in the workflow's thread. Pass
arguments by keyword: FastAgency puts `sender` and `recipient` first, Flotilla puts the content
first.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, Self, TypeVar, overload

from flotilla.errors import RunCancelled
from flotilla.llm import LlmService
from flotilla.workflows._thread import Thread
from flotilla.workflows._tools import ToolSteps, tool_call_scope

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")


class Session(Protocol):
    """The run an `async def` workflow is executing in."""

    @property
    def run_id(self) -> str: ...

    @property
    def llm(self) -> LlmService:
        """The worker's LLM, for the run's agents (`register_llm(agent, session.llm)`) and direct
        completions; what it answers is recorded in the run's log and replayed on resume."""
        ...

    @property
    def thread(self) -> Thread:
        """The thread this run belongs to: on a reply's run, the conversation so far
        (`thread.history`) and what the person said now (`thread.message`)."""
        ...

    async def text_message(self, body: str = "", *, sender: str | None = None, recipient: str | None = None) -> None:
        """Post a message to the transcript."""

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
        """Ask the person for free text and wait for the answer. After `timeout_s` (default:
        the worker's FLOTILLA_WORKER_INPUT_TIMEOUT_S) `default` is the answer, or, without one,
        the run fails with InputTimeout."""

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
        """Ask the person to pick among `choices` (several, comma-separated, when not `single`);
        on timeout `default` is the answer, or the run fails."""

    async def system_message(self, message: dict[str, Any], *, sender: str | None = None) -> None:
        """Post a structured system notice."""

    async def error(self, short: str, long: str = "", *, sender: str | None = None) -> None:
        """Post an error the person should see (the run goes on)."""

    async def suggested_function_call(
        self,
        function_name: str,
        arguments: Any,
        *,
        call_id: str = "",
        sender: str | None = None,
        recipient: str | None = None,
    ) -> None:
        """Show that an agent proposes calling `function_name(**arguments)`."""

    async def function_call_execution(
        self, function_name: str, retval: Any, *, call_id: str = "", sender: str | None = None
    ) -> None:
        """Show what a function call returned."""

    async def flush(self) -> None:
        """Wait until everything this run emitted so far is stored in its log (events are
        otherwise stored in batches, in the background): before a step whose effect the log must
        already show. Questions and tool results are stored before the run goes on, unasked."""

    async def call_tool(
        self,
        name: str,
        function: Callable[[], T | Awaitable[T]],
        *,
        call_id: str = "",
        sender: str | None = None,
    ) -> T:
        """Run a tool with side effects once per run: its result (a JSON value) is recorded in
        the log as a `function_call_execution` and, when the run is resumed elsewhere, returned
        again without calling `function`. Inside `function`, `current_tool_call()` gives the
        call's idempotency key (`<run_id>:tool:<step>`) to pass to the outside world. A tool
        that raises fails the same way on resume (`ToolError`)."""
        ...


class WorkerSession(Session, ToolSteps, Protocol):
    """The async session a `SyncSession` runs over (the worker's `RunSession`)."""


class _Blocking(Generic[P, R]):
    """A call of `SyncSession`: the `Session` call of the same name, blocking (see the module)."""

    def __init__(self, call: Callable[Concatenate[Session, P], Coroutine[Any, Any, R]]) -> None:
        self._name = call.__name__
        self.__doc__ = call.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        if name != self._name:
            raise TypeError(f"{owner.__name__}.{name} must block on Session.{name}, not Session.{self._name}")

    @overload
    def __get__(self, session: None, owner: type) -> Self: ...

    @overload
    def __get__(self, session: SyncSession, owner: type) -> Callable[P, R]: ...

    def __get__(self, session: SyncSession | None, owner: type) -> Self | Callable[P, R]:
        if session is None:
            return self
        call: Callable[P, Coroutine[Any, Any, R]] = getattr(session.session, self._name)

        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            return session.call(call(*args, **kwargs))

        wrapped = functools.update_wrapper(run, call)  # inspect and help() show the call's signature
        wrapped.__doc__ = self.__doc__
        return wrapped


def blocking(call: Callable[Concatenate[Session, P], Coroutine[Any, Any, R]]) -> _Blocking[P, R]:
    """`call` (an async `Session` call) as a blocking `SyncSession` call with its parameters."""
    return _Blocking(call)


class SyncSession:
    """The run a plain `def` workflow is executing in: `Session`'s calls, blocking. Each runs on
    the worker's event loop while the workflow's thread waits for it."""

    def __init__(self, session: WorkerSession, loop: asyncio.AbstractEventLoop) -> None:
        """`loop`: the worker's, where `session` lives (the workflow runs in another thread)."""
        self._session = session
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._cancelled = False

    @property
    def run_id(self) -> str:
        return self._session.run_id

    @property
    def llm(self) -> LlmService:
        """The worker's LLM (see `Session.llm`); call `complete_sync` from the workflow's thread."""
        return self._session.llm

    @property
    def thread(self) -> Thread:
        """The run's thread (see `Session.thread`)."""
        return self._session.thread

    @property
    def session(self) -> WorkerSession:
        """The async session the calls run on."""
        return self._session

    text_message = blocking(Session.text_message)
    text_input = blocking(Session.text_input)
    multiple_choice = blocking(Session.multiple_choice)
    system_message = blocking(Session.system_message)
    error = blocking(Session.error)
    suggested_function_call = blocking(Session.suggested_function_call)
    function_call_execution = blocking(Session.function_call_execution)
    flush = blocking(Session.flush)

    def call_tool(self, name: str, function: Callable[[], T], *, call_id: str = "", sender: str | None = None) -> T:
        """`Session.call_tool` for a plain `def` workflow: `function` runs in the workflow's
        thread (AG2 agents' tools go through it by themselves)."""
        call, recorded = self.call(self._session.begin_tool(name))
        if recorded is not None:
            replayed: T = recorded.result()
            return replayed
        with tool_call_scope(call):
            try:
                result = function()
            except Exception as exc:
                self.call(self._session.end_tool(call, None, error=exc, call_id=call_id, sender=sender))
                raise
        self.call(self._session.end_tool(call, result, call_id=call_id, sender=sender))
        return result

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the worker's loop and wait for it (from the workflow's thread)."""
        with self._lock:
            if self._cancelled:
                coroutine.close()
                raise RunCancelled(f"run {self.run_id} was cancelled")
            future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
            self._pending.add(future)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise RunCancelled(f"run {self.run_id} was cancelled") from None
        finally:
            with self._lock:
                self._pending.discard(future)

    def cancel(self) -> None:
        """Stop the workflow's thread at its next call (or now, if it waits in one)."""
        with self._lock:
            self._cancelled = True
            pending = list(self._pending)
        for future in pending:
            future.cancel()

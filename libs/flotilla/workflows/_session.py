"""What a workflow can do while it runs: post messages and ask the person.

Two forms with the same method and argument names (FastAgency's `UI` names): `Session` for
`async def` workflows and `SyncSession` for plain `def` workflows (which run in a thread, as
AG2's synchronous `initiate_chat` needs). Pass arguments by keyword: FastAgency puts `sender` and
`recipient` first, Flotilla puts the content first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Session(Protocol):
    """The run an `async def` workflow is executing in."""

    @property
    def run_id(self) -> str: ...

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


class SyncSession(Protocol):
    """The run a plain `def` workflow is executing in (the same calls, blocking)."""

    @property
    def run_id(self) -> str: ...

    def text_message(self, body: str = "", *, sender: str | None = None, recipient: str | None = None) -> None:
        """Post a message to the transcript."""

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
        """Ask the person for free text and wait for the answer."""

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
        """Ask the person to pick among `choices`."""

    def system_message(self, message: dict[str, Any], *, sender: str | None = None) -> None:
        """Post a structured system notice."""

    def error(self, short: str, long: str = "", *, sender: str | None = None) -> None:
        """Post an error the person should see (the run goes on)."""

    def suggested_function_call(
        self,
        function_name: str,
        arguments: Any,
        *,
        call_id: str = "",
        sender: str | None = None,
        recipient: str | None = None,
    ) -> None:
        """Show that an agent proposes calling `function_name(**arguments)`."""

    def function_call_execution(
        self, function_name: str, retval: Any, *, call_id: str = "", sender: str | None = None
    ) -> None:
        """Show what a function call returned."""

    def call_tool(self, name: str, function: Callable[[], T], *, call_id: str = "", sender: str | None = None) -> T:
        """`Session.call_tool` for a plain `def` workflow (AG2 agents' tools go through it by
        themselves)."""
        ...

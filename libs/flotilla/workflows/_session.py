"""What a workflow can do while it runs: post messages and ask the person."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Session(Protocol):
    """The run a workflow function is executing in. Names follow FastAgency's UI methods."""

    @property
    def run_id(self) -> str: ...

    async def text_message(self, body: str, *, sender: str = "workflow", recipient: str = "user") -> None:
        """Post a message to the transcript."""

    async def text_input(
        self,
        prompt: str,
        *,
        suggestions: Sequence[str] = (),
        password: bool = False,
        sender: str = "workflow",
        recipient: str = "user",
    ) -> str:
        """Ask the person for free text and wait for the answer."""

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
        """Ask the person to pick among `choices` and wait for the answer."""

    async def system_message(self, message: dict[str, Any]) -> None:
        """Post a structured system notice."""

    async def error(self, short: str, long: str = "") -> None:
        """Post an error the person should see (the run goes on)."""

"""Workflows only the tests serve: the examples plus ones that misbehave on purpose."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from flotilla.examples import registry as examples
from flotilla.workflows import Session, WorkflowRegistry

registry = WorkflowRegistry()
registry.include(examples)


@registry.register(name="crash_worker", description="Kills the worker process running it.")
async def crash_worker(session: Session, params: dict[str, Any]) -> None:
    await session.text_message("about to crash")
    await asyncio.sleep(0.2)  # let the message reach NATS
    os._exit(17)


@registry.register(name="raises", description="Raises an exception.")
async def raises(session: Session, params: dict[str, Any]) -> None:
    await session.text_message("about to raise")
    raise RuntimeError("boom")


@registry.register(name="choose", description="Asks a multiple-choice question.")
async def choose(session: Session, params: dict[str, Any]) -> str:
    return await session.multiple_choice("Approve?", ["yes", "no"], default="no")

from __future__ import annotations

from typing import Any

import pytest

from flotilla.errors import WorkflowNotFound
from flotilla.workflows import Session, WorkflowRegistry


def test_register_get_and_describe() -> None:
    registry = WorkflowRegistry()

    @registry.register(name="hello", description="Says hello.")
    async def hello(session: Session, params: dict[str, Any]) -> str:
        return "hi"

    assert registry.get("hello").function is hello
    assert [(i.name, i.description) for i in registry.infos()] == [("hello", "Says hello.")]
    with pytest.raises(WorkflowNotFound):
        registry.get("nope")


def test_names_must_be_unique_and_subject_safe() -> None:
    registry = WorkflowRegistry()
    registry.register(name="a", description="")(_noop)
    with pytest.raises(ValueError):
        registry.register(name="a", description="")(_noop)
    for bad in ("", "a.b", "a b", "a>"):
        with pytest.raises(ValueError):
            registry.register(name=bad, description="")


def test_include_serves_another_registrys_workflows() -> None:
    base, extended = WorkflowRegistry(), WorkflowRegistry()
    base.register(name="a", description="A")(_noop)
    extended.include(base)
    assert "a" in extended and extended.get("a").description == "A"


async def _noop(session: Session, params: dict[str, Any]) -> None:
    return None

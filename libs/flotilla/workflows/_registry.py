"""The registry of workflows a worker serves."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from flotilla.errors import WorkflowNotFound
from flotilla.protocol import WorkflowInfo
from flotilla.workflows._session import Session

WorkflowFunction = Callable[[Session, dict[str, Any]], Coroutine[Any, Any, Any]]
"""`async def workflow(session, params) -> result` (the result must be JSON-serialisable)."""


@dataclass(frozen=True)
class Workflow:
    name: str
    description: str
    function: WorkflowFunction


class WorkflowRegistry:
    """Maps workflow names to functions: `@registry.register(name=..., description=...)`."""

    def __init__(self) -> None:
        self._workflows: dict[str, Workflow] = {}

    def register(self, *, name: str, description: str) -> Callable[[WorkflowFunction], WorkflowFunction]:
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"workflow name {name!r}: use letters, digits, '_' and '-'")

        def decorator(function: WorkflowFunction) -> WorkflowFunction:
            if name in self._workflows:
                raise ValueError(f"workflow {name!r} is registered twice")
            self._workflows[name] = Workflow(name, description, function)
            return function

        return decorator

    def include(self, other: WorkflowRegistry) -> None:
        """Serve `other`'s workflows too."""
        for workflow in other._workflows.values():
            self.register(name=workflow.name, description=workflow.description)(workflow.function)

    def get(self, name: str) -> Workflow:
        try:
            return self._workflows[name]
        except KeyError:
            raise WorkflowNotFound(name) from None

    def infos(self) -> list[WorkflowInfo]:
        return [WorkflowInfo(name=w.name, description=w.description) for w in self._workflows.values()]

    def __contains__(self, name: object) -> bool:
        return name in self._workflows

"""The registry of workflows a worker serves."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel, ValidationError

from flotilla.errors import InvalidArgument, WorkflowNotFound
from flotilla.protocol import WorkflowInfo

DoubleTexting = Literal["reject", "queue", "interrupt"]
"""What a reply to a thread does while a run of that thread still works (LangGraph's
double-texting strategies): `reject` it (409), `queue` it (its run starts when the active one
ends), or `interrupt` (cancel the active run, then start the reply's run)."""
DOUBLE_TEXTING: tuple[str, ...] = get_args(DoubleTexting)

WorkflowFunction = Callable[[Any, dict[str, Any]], Any]
"""`async def workflow(session: Session, params) -> result`, or a plain `def workflow(session:
SyncSession, params) -> result` (run in a thread). The result must be JSON-serialisable."""


@dataclass(frozen=True)
class Workflow:
    name: str
    description: str
    function: WorkflowFunction
    params: type[BaseModel] | None = None
    """Declared params: validated before a run is created; None accepts any JSON object."""
    double_texting: DoubleTexting = "reject"
    """A reply while a run of the thread still works: see DoubleTexting."""

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.function)

    def params_schema(self) -> dict[str, Any] | None:
        return self.params.model_json_schema() if self.params is not None else None

    def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """The params as the workflow will see them (defaults filled in); InvalidArgument if wrong."""
        if self.params is None:
            return params
        try:
            return self.params.model_validate(params).model_dump(mode="json")
        except ValidationError as exc:
            raise InvalidArgument(f"params of {self.name!r}: {exc.errors(include_url=False)}") from None


class WorkflowRegistry:
    """Maps workflow names to functions: `@registry.register(name=..., description=...)`."""

    def __init__(self) -> None:
        self._workflows: dict[str, Workflow] = {}

    def register(
        self,
        *,
        name: str,
        description: str,
        params: type[BaseModel] | None = None,
        double_texting: DoubleTexting = "reject",
    ) -> Callable[[WorkflowFunction], WorkflowFunction]:
        if double_texting not in DOUBLE_TEXTING:
            raise ValueError(f"workflow {name!r}: double_texting must be one of {', '.join(DOUBLE_TEXTING)}")
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"workflow name {name!r}: use letters, digits, '_' and '-'")

        def decorator(function: WorkflowFunction) -> WorkflowFunction:
            if name in self._workflows:
                raise ValueError(f"workflow {name!r} is registered twice")
            self._workflows[name] = Workflow(name, description, function, params, double_texting)
            return function

        return decorator

    def include(self, other: WorkflowRegistry) -> None:
        """Serve `other`'s workflows too."""
        for workflow in other._workflows.values():
            self.register(
                name=workflow.name,
                description=workflow.description,
                params=workflow.params,
                double_texting=workflow.double_texting,
            )(workflow.function)

    def get(self, name: str) -> Workflow:
        try:
            return self._workflows[name]
        except KeyError:
            raise WorkflowNotFound(name) from None

    def infos(self) -> list[WorkflowInfo]:
        infos = []
        for w in self._workflows.values():
            schema = w.params_schema()
            infos.append(
                WorkflowInfo(
                    name=w.name,
                    description=w.description,
                    params_schema_json=json.dumps(schema) if schema else "",
                    double_texting=w.double_texting,
                )
            )
        return infos

    def __contains__(self, name: object) -> bool:
        return name in self._workflows

"""Authoring workflows: register a function, use the session it receives."""

from flotilla.workflows._registry import Workflow, WorkflowFunction, WorkflowRegistry
from flotilla.workflows._session import Session, SyncSession

__all__ = ["Session", "SyncSession", "Workflow", "WorkflowFunction", "WorkflowRegistry"]

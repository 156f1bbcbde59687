"""Authoring workflows: register a function, use the session it receives."""

from flotilla.workflows._registry import DOUBLE_TEXTING, DoubleTexting, Workflow, WorkflowFunction, WorkflowRegistry
from flotilla.workflows._session import Session, SyncSession, WorkerSession
from flotilla.workflows._thread import PERSON, Thread, ThreadMessage
from flotilla.workflows._tools import Recorded, ToolCall, ToolSteps, current_tool_call, tool_call_scope

__all__ = [
    "Session",
    "SyncSession",
    "Workflow",
    "WorkflowFunction",
    "WorkflowRegistry",
    "DOUBLE_TEXTING",
    "DoubleTexting",
    # threads
    "PERSON",
    "Thread",
    "ThreadMessage",
    # tool calls
    "ToolCall",
    "current_tool_call",
    "tool_call_scope",
    # what the worker's session implements
    "WorkerSession",
    "ToolSteps",
    "Recorded",
]

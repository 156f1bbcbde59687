"""The wire types, generated from proto/flotilla/v1 by Pants codegen (never committed).

Code outside libs/ imports them from here, so the generated module layout can change in one place.
"""

from __future__ import annotations

from flotilla.v1.dispatcher_pb2 import (
    Caller,
    CancelRunRequest,
    CancelRunResponse,
    DeadLetter,
    ForkRunRequest,
    GetRunRequest,
    ListEventsRequest,
    ListEventsResponse,
    ListDeadLettersRequest,
    ListDeadLettersResponse,
    ListRunsRequest,
    ListRunsResponse,
    ListWorkflowsRequest,
    ListWorkflowsResponse,
    ReplyRunRequest,
    RetryRunRequest,
    StartRunRequest,
    StartRunResponse,
    SubmitInputRequest,
    SubmitInputResponse,
    WatchRunRequest,
    WatchRunResponse,
)
from flotilla.v1.dispatcher_pb2_grpc import (
    DispatcherServicer,
    DispatcherStub,
    add_DispatcherServicer_to_server,
)
from flotilla.v1.gateway_pb2 import WhoAmIRequest, WhoAmIResponse
from flotilla.v1.gateway_pb2_grpc import GatewayServicer, GatewayStub, add_GatewayServicer_to_server
from flotilla.v1.event_pb2 import (
    Error,
    FunctionCallExecution,
    InputAnswered,
    LlmCompletion,
    MultipleChoice,
    ReplyDelta,
    RunEvent,
    RunEventBatch,
    RunRetried,
    SuggestedFunctionCall,
    SystemMessage,
    TextInput,
    TextMessage,
    WorkflowCompleted,
    WorkflowStarted,
)
from flotilla.v1.run_pb2 import Job, ModelUsage, Run, RunStatus, WorkflowInfo

DISPATCHER_SERVICE = "flotilla.v1.Dispatcher"
GATEWAY_SERVICE = "flotilla.v1.Gateway"
"""The fully qualified gRPC service names (health checks, reflection)."""

__all__ = [
    "DISPATCHER_SERVICE",
    # runs
    "Job",
    "ModelUsage",
    "Run",
    "RunStatus",
    "WorkflowInfo",
    # events
    "Error",
    "FunctionCallExecution",
    "InputAnswered",
    "LlmCompletion",
    "MultipleChoice",
    "ReplyDelta",
    "RunEvent",
    "RunEventBatch",
    "RunRetried",
    "SuggestedFunctionCall",
    "SystemMessage",
    "TextInput",
    "TextMessage",
    "WorkflowCompleted",
    "WorkflowStarted",
    # dispatcher service
    "Caller",
    "CancelRunRequest",
    "ReplyRunRequest",
    "ForkRunRequest",
    "DeadLetter",
    "ListDeadLettersRequest",
    "ListDeadLettersResponse",
    "RetryRunRequest",
    "CancelRunResponse",
    "DispatcherServicer",
    "DispatcherStub",
    "GetRunRequest",
    "ListEventsRequest",
    "ListEventsResponse",
    "ListRunsRequest",
    "ListRunsResponse",
    "ListWorkflowsRequest",
    "ListWorkflowsResponse",
    "StartRunRequest",
    "StartRunResponse",
    "SubmitInputRequest",
    "SubmitInputResponse",
    "WatchRunRequest",
    "WatchRunResponse",
    "add_DispatcherServicer_to_server",
    # gateway service (its requests are the dispatcher's)
    "GATEWAY_SERVICE",
    "GatewayServicer",
    "GatewayStub",
    "WhoAmIRequest",
    "WhoAmIResponse",
    "add_GatewayServicer_to_server",
]

"""Flotilla's domain errors: one small tree, translated to HTTP or gRPC status only at the edges."""

from __future__ import annotations


class FlotillaError(Exception):
    """Base of every error Flotilla raises on purpose."""


class NotFound(FlotillaError):
    """The thing named does not exist (or is not visible to the caller)."""


class RunNotFound(NotFound):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} not found")
        self.run_id = run_id


class WorkflowNotFound(NotFound):
    def __init__(self, workflow: str) -> None:
        super().__init__(f"workflow {workflow!r} is not served by any worker")
        self.workflow = workflow


class RequestNotFound(NotFound):
    def __init__(self, run_id: str, request_id: str) -> None:
        super().__init__(f"run {run_id!r} has no question with request_id {request_id!r}")


class Conflict(FlotillaError):
    """The request is valid but contradicts the run's state."""


class RequestAlreadyAnswered(Conflict):
    def __init__(self, run_id: str, request_id: str) -> None:
        super().__init__(f"request {request_id!r} of run {run_id!r} was already answered")


class RunFinished(Conflict):
    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(f"run {run_id!r} already finished ({status})")


class ThreadBusy(Conflict):
    """A reply to a thread whose run still works, and the workflow's double-texting policy rejects it."""

    def __init__(self, thread_id: str, active_run_id: str) -> None:
        super().__init__(
            f"run {active_run_id!r} of thread {thread_id!r} is still working; "
            "reply once it has finished (or cancel it)"
        )
        self.active_run_id = active_run_id


class InvalidArgument(FlotillaError):
    """The request itself is malformed (bad params, bad JSON, out-of-range value)."""


class PermissionDenied(FlotillaError):
    """The caller is known but may not do this (a missing scope, a service acting for nobody)."""


class RateLimited(FlotillaError):
    """The caller made too many requests; it may try again after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class QuotaExceeded(FlotillaError):
    """The caller already has as many runs in flight as it may."""


class TooManyStreams(FlotillaError):
    """The caller already holds as many open streams as it may."""


class Unavailable(FlotillaError):
    """A dependency (NATS, the dispatcher) cannot be reached right now; retrying may help."""


class ConfigurationError(FlotillaError):
    """The service was started with settings that cannot work; the message says what to set."""


class InputTimeout(FlotillaError):
    """Nobody answered a question in time and it has no default."""


class RunCancelled(FlotillaError):
    """The run was cancelled (or handed to another worker): the workflow must stop."""


class RequestExpired(Conflict):
    def __init__(self, run_id: str, request_id: str) -> None:
        super().__init__(f"request {request_id!r} of run {run_id!r} expired before it was answered")


class Nondeterminism(FlotillaError):
    """A resumed run's workflow did something else than its log says it did before (its code
    changed, or it took another path): the two histories cannot be joined."""


class ToolError(FlotillaError):
    """A tool call failed (now, or in the earlier attempt whose recorded result is replayed)."""

"""Executing runs on a worker: the pull loop, one attempt of a run, the workflow's session."""

from flotilla.execution._attempt import RunAttempt, WorkerContext
from flotilla.execution._session import RunSession
from flotilla.execution._worker import Worker

__all__ = ["RunAttempt", "RunSession", "Worker", "WorkerContext"]

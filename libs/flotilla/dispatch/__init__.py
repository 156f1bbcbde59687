"""The dispatcher's logic: the run lifecycle over the JetStream layer."""

from flotilla.dispatch._index import RunIndex
from flotilla.dispatch._service import RunLimits, RunService

__all__ = ["RunIndex", "RunLimits", "RunService"]

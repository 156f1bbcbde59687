"""Flotilla's one JetStream layer: layout and provisioning, run records, event logs, the job
queue, questions and answers, the workflow catalogue."""

from flotilla.jetstream._catalogue import Catalogue
from flotilla.jetstream._connect import Reconnects, connect, redacted_url
from flotilla.jetstream._events import EventLog, LostOwnership, RunEventWriter
from flotilla.jetstream._idempotency import IdempotencyKeys
from flotilla.jetstream._inputs import Requests
from flotilla.jetstream._layout import (
    DEAD_STREAM,
    EVENTS_STREAM,
    INPUTS_STREAM,
    JOBS_STREAM,
    JOBS_SUBJECT,
    Layout,
    control_subject,
    events_subject,
    input_subject,
    provision,
    read_layout,
)
from flotilla.jetstream._queue import JobConsumer, dead_letter, enqueue
from flotilla.jetstream._runs import RunStore

__all__ = [
    # connection and layout
    "connect",
    "Reconnects",
    "redacted_url",
    "Layout",
    "provision",
    "read_layout",
    "DEAD_STREAM",
    "EVENTS_STREAM",
    "INPUTS_STREAM",
    "JOBS_STREAM",
    "JOBS_SUBJECT",
    "control_subject",
    "events_subject",
    "input_subject",
    # stores
    "Catalogue",
    "EventLog",
    "IdempotencyKeys",
    "LostOwnership",
    "Requests",
    "RunEventWriter",
    "RunStore",
    # jobs
    "JobConsumer",
    "dead_letter",
    "enqueue",
]

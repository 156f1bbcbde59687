"""Flotilla's one JetStream layer: layout and provisioning, run records, event logs, the job
queue, questions and answers, the workflow catalogue."""

from flotilla.jetstream._catalogue import Catalogue
from flotilla.jetstream._connect import Reconnects, connect, disconnect, inbox_prefix, redacted_url, when_ready
from flotilla.jetstream._events import (
    EventLog,
    LogPage,
    LogPosition,
    LostOwnership,
    RunEventWriter,
    StoreError,
    decode,
    last_seq_of,
)
from flotilla.jetstream._idempotency import IdempotencyKeys
from flotilla.jetstream._inputs import ANSWER, CLOSED, EXPIRED, OPEN, Question, Requests
from flotilla.jetstream._layout import (
    DEAD_STREAM,
    EVENTS_STREAM,
    INPUTS_STREAM,
    JOBS_STREAM,
    JOBS_SUBJECT,
    Layout,
    control_subject,
    REPLY_DELTAS,
    STORED_EVENTS,
    delta_subject,
    events_subject,
    input_filter,
    input_subject,
    job_subject,
    provision,
    read_layout,
)
from flotilla.jetstream._queue import (
    JobConsumer,
    dead_letter,
    enqueue,
    has_job,
    read_dead_letters,
    report_queue,
)
from flotilla.jetstream._runs import Mutation, RunStore, Versioned, header_of, with_header

__all__ = [
    # connection and layout
    "connect",
    "disconnect",
    "Reconnects",
    "redacted_url",
    "when_ready",
    "inbox_prefix",
    "Layout",
    "provision",
    "read_layout",
    "DEAD_STREAM",
    "EVENTS_STREAM",
    "INPUTS_STREAM",
    "JOBS_STREAM",
    "JOBS_SUBJECT",
    "control_subject",
    "REPLY_DELTAS",
    "STORED_EVENTS",
    "delta_subject",
    "events_subject",
    "input_filter",
    "input_subject",
    "job_subject",
    # event logs
    "EventLog",
    "LogPage",
    "LogPosition",
    "LostOwnership",
    "RunEventWriter",
    "StoreError",
    "decode",
    "last_seq_of",
    # questions
    "Question",
    "Requests",
    "OPEN",
    "ANSWER",
    "EXPIRED",
    "CLOSED",
    # stores
    "Catalogue",
    "IdempotencyKeys",
    "RunStore",
    "Mutation",
    "Versioned",
    "header_of",
    "with_header",
    # jobs
    "JobConsumer",
    "dead_letter",
    "read_dead_letters",
    "report_queue",
    "enqueue",
    "has_job",
]

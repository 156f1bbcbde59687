"""Names of every stream, subject, consumer and bucket, and their idempotent provisioning.

jobs      FLOTILLA_JOBS    work queue  flotilla.jobs.run.<run>    one job per run at most; durable pull
                                                                  consumer "workers"
events    FLOTILLA_EVENTS  limits      flotilla.runs.<run>.events  per-run log, conditional appends;
                                       each message the stream stored is republished by the server
                                       on flotilla.stored.runs.<run>.events (what watchers hear:
                                       a refused append is never republished; no user may publish
                                       there)
inputs    FLOTILLA_INPUTS  limits      flotilla.inputs.<run>.<request>.<state>  a question's lifecycle:
                                       open (worker), then one of answer (dispatcher), expired or
                                       closed (worker), each conditional on the one before
dead      FLOTILLA_DEAD    limits      flotilla.dead.<reason>     jobs no worker could run
control   (core NATS)                  flotilla.control.<run>     "cancel" to the holding worker
KV flotilla_runs (run records), flotilla_idempotency (key -> run_id), flotilla_workflows (catalogue,
   expires without heartbeat)

Nothing of a live run ages out: the events and inputs streams and the runs bucket have no age
limit, and the dispatcher's janitor deletes a run's log, answers and record `retention_s` after
the run ended (`flotilla.dispatch.Janitor`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import structlog
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RePublish,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BucketNotFoundError, NotFoundError

log = structlog.get_logger(__name__)

JOBS_STREAM = "FLOTILLA_JOBS"
JOBS_SUBJECT = "flotilla.jobs.run"
"""Where garbage may be published by mistake; real jobs go to `job_subject(run_id)` below it."""
WORKERS_CONSUMER = "workers"
EVENTS_STREAM = "FLOTILLA_EVENTS"
INPUTS_STREAM = "FLOTILLA_INPUTS"
DEAD_STREAM = "FLOTILLA_DEAD"
RUNS_BUCKET = "flotilla_runs"
RUN_HEADERS_BUCKET = "flotilla_run_headers"
"""What a run was started as (owner, workflow, params, idempotency key, created): written once, by
the dispatcher only. The records in RUNS_BUCKET, which workers update, carry copies the dispatcher
never trusts."""
IDEMPOTENCY_BUCKET = "flotilla_idempotency"
WORKFLOWS_BUCKET = "flotilla_workflows"


def job_subject(run_id: str) -> str:
    return f"{JOBS_SUBJECT}.{run_id}"


def events_subject(run_id: str) -> str:
    return f"flotilla.runs.{run_id}.events"


STORED_EVENTS = "flotilla.stored.runs.*.events"
"""Where the server republishes every message the events stream stored (and nothing it refused):
the only live events a watcher may see."""


def delta_subject(run_id: str) -> str:
    """Where a worker publishes the pieces of a reply its model is writing (`ReplyDelta`): core
    NATS, no stream stores it; only workers may publish there and only dispatchers subscribe."""
    return f"flotilla.deltas.{run_id}"


REPLY_DELTAS = "flotilla.deltas.*"
"""Every run's reply deltas (a dispatcher's one subscription)."""


def input_subject(run_id: str, request_id: str, state: str) -> str:
    """`state`: open, answer, expired or closed (see flotilla.jetstream._inputs)."""
    return f"flotilla.inputs.{run_id}.{request_id}.{state}"


def input_filter(run_id: str, request_id: str = "*") -> str:
    """Every state message of one question (or, with "*", of every question of the run)."""
    return f"flotilla.inputs.{run_id}.{request_id}.*"


def control_subject(run_id: str) -> str:
    return f"flotilla.control.{run_id}"


def dead_subject(reason: str) -> str:
    return f"flotilla.dead.{reason}"


@dataclass(frozen=True, kw_only=True)
class Layout:
    """The tunable parts of the layout; the dispatcher provisions it, workers read it back."""

    job_ack_wait_s: float = 30.0
    """Seconds without an ack or in-progress ack before a job is redelivered."""
    job_max_attempts: int = 3
    """Attempts a run may have (workers that started it and stopped without finishing or
    handing it back); the claim after the last one fails the run and dead-letters its job.
    Deliveries are not limited: a hand-back is not an attempt."""
    retention_s: float = 7 * 86400
    """How long a finished run's record, events and answers are kept (the janitor deletes them);
    also the age limit of dead letters and idempotency keys."""
    workflow_ttl_s: float = 15.0
    """A catalogue entry not refreshed for this long disappears."""
    replicas: int = 1
    duplicate_window_s: float = 120.0
    """JetStream's window for Nats-Msg-Id deduplication (a retried publish whose ack was lost)."""
    store_bytes: int = 20 * 10**9
    """The JetStream file store the streams share (nats-server.conf's max_file_store): the events
    get 70% of it, answers 10%, jobs and dead letters 5% each, the buckets the rest. A stream
    that is full refuses what is new and keeps what it has, so a flood of one kind of data
    cannot stop the others (cancels, answers and records still go through when the events are full)."""


MAX_MESSAGE_BYTES = 2 * 1024 * 1024
"""Largest message any stream takes: a batch of events (512 KiB, plus at most one 1 MiB event),
a question with its prompt, a record with its result."""


MAX_ATTEMPTS_METADATA = "flotilla_max_attempts"


def _share(layout: Layout, percent: int) -> int:
    return layout.store_bytes * percent // 100


def _streams(layout: Layout) -> list[StreamConfig]:
    common = dict(
        storage=StorageType.FILE, num_replicas=layout.replicas, allow_direct=True, max_msg_size=MAX_MESSAGE_BYTES
    )
    return [
        StreamConfig(
            name=JOBS_STREAM,
            subjects=["flotilla.jobs.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            duplicate_window=layout.duplicate_window_s,
            # One job per run at most, whatever the dedup window: enqueueing a run whose job is
            # still there (queued or being worked on) is refused.
            max_msgs_per_subject=1,
            discard=DiscardPolicy.NEW,
            discard_new_per_subject=True,
            max_bytes=_share(layout, 5),
            **common,  # type: ignore[arg-type]
        ),
        StreamConfig(
            name=EVENTS_STREAM,
            subjects=["flotilla.runs.*.events"],
            retention=RetentionPolicy.LIMITS,
            duplicate_window=layout.duplicate_window_s,
            max_bytes=_share(layout, 70),
            discard=DiscardPolicy.NEW,  # never drop a log's old events to make room for new ones
            # Watchers hear what was stored, never a publish the server refused (a fenced writer's).
            republish=RePublish(src="flotilla.runs.*.events", dest="flotilla.stored.runs.{{wildcard(1)}}.events"),
            **common,  # type: ignore[arg-type]
        ),
        StreamConfig(
            name=INPUTS_STREAM,
            subjects=["flotilla.inputs.>"],
            retention=RetentionPolicy.LIMITS,
            duplicate_window=layout.duplicate_window_s,
            max_bytes=_share(layout, 10),
            discard=DiscardPolicy.NEW,
            **common,  # type: ignore[arg-type]
        ),
        StreamConfig(
            name=DEAD_STREAM,
            subjects=["flotilla.dead.>"],
            retention=RetentionPolicy.LIMITS,
            max_age=layout.retention_s,
            duplicate_window=min(120.0, layout.retention_s),
            max_bytes=_share(layout, 5),  # the oldest dead letters go first
            **common,  # type: ignore[arg-type]
        ),
    ]


def _workers_consumer(layout: Layout) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=WORKERS_CONSUMER,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=layout.job_ack_wait_s,
        # Unlimited: attempts are counted in the run record (a hand-back is not one), and the
        # claim after the last attempt fails the run, so no job is ever exhausted unseen.
        max_deliver=-1,
        metadata={MAX_ATTEMPTS_METADATA: str(layout.job_max_attempts)},
        max_ack_pending=100_000,
        max_waiting=512,
        filter_subject="flotilla.jobs.>",
    )


def _buckets(layout: Layout) -> list[KeyValueConfig]:
    def bucket(name: str, ttl: float) -> KeyValueConfig:
        return KeyValueConfig(
            bucket=name,
            history=1,
            ttl=ttl,
            storage=StorageType.FILE,
            replicas=layout.replicas,
            direct=True,
            max_value_size=MAX_MESSAGE_BYTES,
        )

    return [
        bucket(RUNS_BUCKET, 0.0),  # a live run's record never ages out; the janitor deletes finished ones
        bucket(RUN_HEADERS_BUCKET, 0.0),
        bucket(IDEMPOTENCY_BUCKET, layout.retention_s),
        bucket(WORKFLOWS_BUCKET, layout.workflow_ttl_s),
    ]


async def provision(js: JetStreamContext, layout: Layout) -> None:
    """Create or update every stream, the workers' consumer and every bucket. Safe to repeat."""
    for config in _streams(layout):
        await _ensure_stream(js, config)
    # The server creates the durable consumer, or updates it in place when the config changed.
    await js.add_consumer(JOBS_STREAM, _workers_consumer(layout))
    for kv in _buckets(layout):
        try:
            await js.key_value(kv.bucket)
        except BucketNotFoundError:
            await js.create_key_value(kv)
        info = await js.stream_info(f"KV_{kv.bucket}")
        # No rollups: a client's KV "purge" (a rollup message) is refused, so no credential that may
        # write a bucket can wipe a key's history; retention purges through the JetStream API.
        if (info.config.max_age or 0) != (kv.ttl or 0) or info.config.allow_rollup_hdrs:
            await js.update_stream(replace(info.config, max_age=kv.ttl, allow_rollup_hdrs=False))
            log.info("bucket updated", bucket=kv.bucket, ttl_s=kv.ttl)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    if config.name is None:
        raise ValueError("a stream config without a name")
    try:
        info = await js.stream_info(config.name)
    except NotFoundError:
        await js.add_stream(config)
        log.info("stream created", stream=config.name)
        return
    if _tuned(info.config) != _tuned(config):
        await js.update_stream(config)
        log.info("stream updated", stream=config.name)


def _tuned(config: StreamConfig) -> tuple[object, ...]:
    """The settings provisioning may change on an existing stream."""
    return (
        config.subjects,
        config.max_age or 0,
        config.num_replicas,
        config.duplicate_window or 0,
        config.max_msgs_per_subject or -1,
        config.discard_new_per_subject or False,
        config.max_bytes or -1,
        config.max_msg_size or -1,
        config.discard or DiscardPolicy.OLD,
        (config.republish.src, config.republish.dest) if config.republish else None,
    )


async def read_layout(js: JetStreamContext) -> Layout:
    """What a worker needs of the provisioned layout (ack wait, attempts), read from the server."""
    info = await js.consumer_info(JOBS_STREAM, WORKERS_CONSUMER)
    ack_wait = info.config.ack_wait or 30.0
    attempts = (info.config.metadata or {}).get(MAX_ATTEMPTS_METADATA, "")
    if not attempts.isdigit():  # a consumer provisioned before the metadata existed
        attempts = str(max(1, (info.config.max_deliver or 4) - 1))
    return Layout(job_ack_wait_s=ack_wait, job_max_attempts=max(1, int(attempts)))

"""Names of every stream, subject, consumer and bucket, and their idempotent provisioning.

jobs      FLOTILLA_JOBS    work queue  flotilla.jobs.run          durable pull consumer "workers"
events    FLOTILLA_EVENTS  limits      flotilla.runs.<run>.events  per-run log, Nats-Msg-Id run:seq
inputs    FLOTILLA_INPUTS  limits      flotilla.inputs.<run>.<request>  human answers, durable
dead      FLOTILLA_DEAD    limits      flotilla.dead.<reason>     jobs no worker could run
control   (core NATS)                  flotilla.control.<run>     "cancel" to the holding worker
KV flotilla_runs (run records), flotilla_requests (open questions),
   flotilla_idempotency (key -> run_id), flotilla_workflows (catalogue, expires without heartbeat)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import structlog
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BucketNotFoundError, NotFoundError

log = structlog.get_logger(__name__)

JOBS_STREAM = "FLOTILLA_JOBS"
JOBS_SUBJECT = "flotilla.jobs.run"
WORKERS_CONSUMER = "workers"
EVENTS_STREAM = "FLOTILLA_EVENTS"
INPUTS_STREAM = "FLOTILLA_INPUTS"
DEAD_STREAM = "FLOTILLA_DEAD"
RUNS_BUCKET = "flotilla_runs"
REQUESTS_BUCKET = "flotilla_requests"
IDEMPOTENCY_BUCKET = "flotilla_idempotency"
WORKFLOWS_BUCKET = "flotilla_workflows"


def events_subject(run_id: str) -> str:
    return f"flotilla.runs.{run_id}.events"


def input_subject(run_id: str, request_id: str) -> str:
    return f"flotilla.inputs.{run_id}.{request_id}"


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
    """Workers that may start a run; one more delivery lets a worker dead-letter it."""
    max_age_s: float = 7 * 86400
    """Age limit of events, answers, dead letters and records."""
    workflow_ttl_s: float = 15.0
    """A catalogue entry not refreshed for this long disappears."""
    replicas: int = 1


def _streams(layout: Layout) -> list[StreamConfig]:
    common = dict(storage=StorageType.FILE, num_replicas=layout.replicas, allow_direct=True)
    return [
        StreamConfig(
            name=JOBS_STREAM,
            subjects=["flotilla.jobs.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            duplicate_window=120.0,
            **common,  # type: ignore[arg-type]
        ),
        StreamConfig(
            name=EVENTS_STREAM,
            subjects=["flotilla.runs.*.events"],
            retention=RetentionPolicy.LIMITS,
            max_age=layout.max_age_s,
            duplicate_window=120.0,
            **common,  # type: ignore[arg-type]
        ),
        StreamConfig(
            name=INPUTS_STREAM,
            subjects=["flotilla.inputs.*.*"],
            retention=RetentionPolicy.LIMITS,
            max_age=layout.max_age_s,
            duplicate_window=120.0,
            **common,  # type: ignore[arg-type]
        ),
        StreamConfig(
            name=DEAD_STREAM,
            subjects=["flotilla.dead.>"],
            retention=RetentionPolicy.LIMITS,
            max_age=layout.max_age_s,
            **common,  # type: ignore[arg-type]
        ),
    ]


def _workers_consumer(layout: Layout) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=WORKERS_CONSUMER,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=layout.job_ack_wait_s,
        max_deliver=layout.job_max_attempts + 1,
        max_ack_pending=100_000,
        max_waiting=512,
        filter_subject="flotilla.jobs.>",
    )


def _buckets(layout: Layout) -> list[KeyValueConfig]:
    def bucket(name: str, ttl: float) -> KeyValueConfig:
        return KeyValueConfig(
            bucket=name, history=1, ttl=ttl, storage=StorageType.FILE, replicas=layout.replicas, direct=True
        )

    return [
        bucket(RUNS_BUCKET, layout.max_age_s),
        bucket(REQUESTS_BUCKET, layout.max_age_s),
        bucket(IDEMPOTENCY_BUCKET, layout.max_age_s),
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
            continue
        info = await js.stream_info(f"KV_{kv.bucket}")
        if info.config.max_age != kv.ttl:  # e.g. a changed workflow TTL or retention
            await js.update_stream(replace(info.config, max_age=kv.ttl))
            log.info("bucket updated", bucket=kv.bucket, ttl_s=kv.ttl)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    assert config.name is not None
    try:
        info = await js.stream_info(config.name)
    except NotFoundError:
        await js.add_stream(config)
        log.info("stream created", stream=config.name)
        return
    current = info.config
    if (current.subjects, current.max_age or 0, current.num_replicas) != (
        config.subjects,
        config.max_age or 0,
        config.num_replicas,
    ):
        await js.update_stream(config)
        log.info("stream updated", stream=config.name)


async def read_layout(js: JetStreamContext) -> Layout:
    """What a worker needs of the provisioned layout (ack wait, attempts), read from the server."""
    info = await js.consumer_info(JOBS_STREAM, WORKERS_CONSUMER)
    ack_wait = info.config.ack_wait or 30.0
    max_deliver = info.config.max_deliver or 4
    return Layout(job_ack_wait_s=ack_wait, job_max_attempts=max(1, max_deliver - 1))

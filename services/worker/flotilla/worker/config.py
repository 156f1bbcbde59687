"""The worker's settings: FLOTILLA_WORKER_* variables (README, Configuration); the LLM's are flotilla.llm's."""

from __future__ import annotations

import os
import socket
from typing import Literal

from pydantic import Field, SecretStr

from flotilla.settings import LogFormat, NatsSettings, TracingSettings, env_alias


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class WorkerSettings(NatsSettings, TracingSettings):
    """services/worker. Variables: FLOTILLA_WORKER_<FIELD> (URL also FLOTILLA_NATS_URL); tracing's are
    shared (TracingSettings)."""

    nats_url: str = Field(
        default="nats://127.0.0.1:4222", validation_alias=env_alias("worker", "nats_url", shared=True)
    )
    nats_user: str = Field(default="worker", validation_alias=env_alias("worker", "nats_user"))
    nats_password: SecretStr = Field(default=SecretStr(""), validation_alias=env_alias("worker", "nats_password"))
    nats_tls_ca_file: str | None = Field(
        default=None, validation_alias=env_alias("worker", "nats_tls_ca_file", shared=True)
    )
    worker_id: str = Field(default_factory=_default_worker_id, validation_alias=env_alias("worker", "id"))
    """Names this worker in run records and logs (default: host-pid)."""
    workflows: str = Field(default="flotilla.examples:registry", validation_alias=env_alias("worker", "workflows"))
    """`module:attribute` of the WorkflowRegistry this worker serves."""
    max_concurrent_runs: int = Field(default=1000, ge=1, validation_alias=env_alias("worker", "max_concurrent_runs"))
    """Runs one worker holds at once (each an asyncio task)."""
    drain_timeout_s: float = Field(default=20.0, ge=0, validation_alias=env_alias("worker", "drain_timeout_s"))
    """On SIGTERM, how long to let held runs finish before handing them back to the queue."""
    input_timeout_s: float = Field(default=86400.0, gt=0, validation_alias=env_alias("worker", "input_timeout_s"))
    """How long a question waits for an answer unless the workflow says otherwise."""
    heartbeat_s: float = Field(default=5.0, gt=0, validation_alias=env_alias("worker", "heartbeat_s"))
    """How often the worker re-advertises its workflows."""
    health_port: int | None = Field(default=None, ge=0, le=65535, validation_alias=env_alias("worker", "health_port"))
    """Serve the probes here: GET /livez (200 while the event loop answers) and GET /readyz (200
    while NATS is connected and the worker pulls jobs, else 503). Unset: no health server."""
    health_host: str = Field(default="127.0.0.1", validation_alias=env_alias("worker", "health_host"))
    """Address the health server binds (the images: 0.0.0.0, for Kubernetes' probes)."""
    on_divergence: Literal["fail", "continue"] = Field(
        default="fail", validation_alias=env_alias("worker", "on_divergence")
    )
    """A resumed run whose workflow does something else than its log says: `fail` ends the run
    with a Nondeterminism error naming the step; `continue` marks the spot with an error event
    and goes on live."""
    expose_tracebacks: bool = Field(default=False, validation_alias=env_alias("worker", "expose_tracebacks"))
    """Put a failed workflow's Python traceback in its `error` event, which clients see (for
    debugging); by default only the worker's log has it."""
    metrics_host: str = Field(default="127.0.0.1", validation_alias=env_alias("worker", "metrics_host"))
    """Address the metrics server binds."""
    metrics_port: int = Field(default=0, ge=0, le=65535, validation_alias=env_alias("worker", "metrics_port"))
    """Serve Prometheus metrics (`GET /metrics`) on this port; 0: off."""
    metrics_token: SecretStr = Field(
        default=SecretStr(""), validation_alias=env_alias("worker", "metrics_token", shared=True)
    )
    """Bearer token a scraper must send (FLOTILLA_METRICS_TOKEN also works); required with a metrics port."""
    log_format: LogFormat = Field(default="auto", validation_alias=env_alias("worker", "log_format", shared=True))
    log_level: str = Field(default="info", validation_alias=env_alias("worker", "log_level", shared=True))

"""The dispatcher's settings: FLOTILLA_DISPATCHER_* variables (README, Configuration)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from flotilla.settings import LogFormat, NatsSettings, TracingSettings, env_alias


class DispatcherSettings(NatsSettings, TracingSettings):
    """services/dispatcher. Variables: FLOTILLA_DISPATCHER_<FIELD> (URL also FLOTILLA_NATS_URL); tracing's
    are shared (TracingSettings)."""

    nats_url: str = Field(
        default="nats://127.0.0.1:4222", validation_alias=env_alias("dispatcher", "nats_url", shared=True)
    )
    nats_user: str = Field(default="dispatcher", validation_alias=env_alias("dispatcher", "nats_user"))
    nats_password: SecretStr = Field(default=SecretStr(""), validation_alias=env_alias("dispatcher", "nats_password"))
    nats_tls_ca_file: str | None = Field(
        default=None, validation_alias=env_alias("dispatcher", "nats_tls_ca_file", shared=True)
    )
    grpc_host: str = Field(default="127.0.0.1", validation_alias=env_alias("dispatcher", "grpc_host"))
    """Address the gRPC server binds."""
    grpc_port: int = Field(default=50051, validation_alias=env_alias("dispatcher", "grpc_port"))
    grpc_tls_cert_file: str | None = Field(default=None, validation_alias=env_alias("dispatcher", "grpc_tls_cert_file"))
    """Serve gRPC over TLS with this certificate (PEM; with grpc_tls_key_file). Unset: plaintext."""
    grpc_tls_key_file: str | None = Field(default=None, validation_alias=env_alias("dispatcher", "grpc_tls_key_file"))
    trusted_services_dir: str | None = Field(
        default=None, validation_alias=env_alias("dispatcher", "trusted_services_dir")
    )
    """Required. `<service>.pub` Ed25519 public keys of the services allowed to call (the gateway's
    only): every call but health checks needs a token one of them signed."""
    service_token_leeway_s: float = Field(
        default=30.0, ge=0, le=600, validation_alias=env_alias("dispatcher", "service_token_leeway_s")
    )
    """Clock skew allowed on service tokens' expiry."""
    grpc_reflection: bool = Field(default=False, validation_alias=env_alias("dispatcher", "grpc_reflection"))
    """Serve gRPC server reflection (it maps the API for whoever holds a token)."""
    job_ack_wait_s: float = Field(default=30.0, gt=0, validation_alias=env_alias("dispatcher", "job_ack_wait_s"))
    """A worker that stops sending in-progress acks for this long is presumed dead; its job moves."""
    job_max_attempts: int = Field(default=3, ge=1, validation_alias=env_alias("dispatcher", "job_max_attempts"))
    """How many workers may start a run before it is marked failed (dead-lettered)."""
    event_max_age_s: float = Field(default=7 * 86400, gt=0, validation_alias=env_alias("dispatcher", "event_max_age_s"))
    """How long a run's record, events and answers are kept after the run ended (a live run keeps
    them however long it lives); also the age limit of dead letters and idempotency keys."""
    duplicate_window_s: float = Field(
        default=120.0, gt=0, validation_alias=env_alias("dispatcher", "duplicate_window_s")
    )
    """JetStream's deduplication window (a retried publish whose ack was lost). Correctness does
    not depend on it: appends to a log are conditional on the log's state."""
    workflow_ttl_s: float = Field(default=15.0, gt=0, validation_alias=env_alias("dispatcher", "workflow_ttl_s"))
    """A workflow whose workers stopped advertising it for this long leaves the catalogue."""
    max_active_runs_per_identity: int = Field(
        default=1000, ge=1, validation_alias=env_alias("dispatcher", "max_active_runs_per_identity")
    )
    """Runs one identity may have queued or running at once; one more start gets 429 / RESOURCE_EXHAUSTED."""
    index_max_runs: int = Field(default=100_000, ge=100, validation_alias=env_alias("dispatcher", "index_max_runs"))
    """Runs the dispatcher lists (newest first, as summaries); older finished ones stay readable by id."""
    store_bytes: int = Field(default=20 * 10**9, ge=10**6, validation_alias=env_alias("dispatcher", "store_bytes"))
    """The JetStream file store the streams share: keep it at most nats-server.conf's max_file_store
    (20GB). Events get 70%, answers 10%, jobs and dead letters 5% each."""
    jetstream_replicas: int = Field(
        default=1, ge=1, le=5, validation_alias=env_alias("dispatcher", "jetstream_replicas")
    )
    """Replicas of every stream and bucket (3 on a NATS cluster)."""
    metrics_host: str = Field(default="127.0.0.1", validation_alias=env_alias("dispatcher", "metrics_host"))
    """Address the metrics server binds."""
    metrics_port: int = Field(default=0, ge=0, le=65535, validation_alias=env_alias("dispatcher", "metrics_port"))
    """Serve Prometheus metrics (`GET /metrics`) on this port; 0: off."""
    metrics_token: SecretStr = Field(
        default=SecretStr(""), validation_alias=env_alias("dispatcher", "metrics_token", shared=True)
    )
    """Bearer token a scraper must send (FLOTILLA_METRICS_TOKEN also works); required with a metrics port."""
    log_format: LogFormat = Field(default="auto", validation_alias=env_alias("dispatcher", "log_format", shared=True))
    log_level: str = Field(default="info", validation_alias=env_alias("dispatcher", "log_level", shared=True))

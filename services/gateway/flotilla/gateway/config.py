"""The gateway's settings: FLOTILLA_GATEWAY_* variables (README, Configuration)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from flotilla.settings import LogFormat, TracingSettings, env_alias


class GatewaySettings(TracingSettings):
    """services/gateway. Variables: FLOTILLA_GATEWAY_<FIELD>; tracing's are shared (TracingSettings)."""

    host: str = Field(default="127.0.0.1", validation_alias=env_alias("gateway", "host"))
    port: int = Field(default=8000, validation_alias=env_alias("gateway", "port"))
    grpc_port: int = Field(default=50052, validation_alias=env_alias("gateway", "grpc_port"))
    """Port of the gateway's gRPC API (same host as HTTP); the UI uses it."""
    dispatcher_address: str = Field(
        default="127.0.0.1:50051", validation_alias=env_alias("gateway", "dispatcher_address", shared=True)
    )
    """host:port of the dispatcher's gRPC server (FLOTILLA_DISPATCHER_ADDRESS also works)."""
    service_key_file: str | None = Field(default=None, validation_alias=env_alias("gateway", "service_key_file"))
    """Required. The gateway's Ed25519 private key (PEM): it signs the gateway's calls to the dispatcher,
    which trusts the matching public key."""
    service_name: str = Field(default="gateway", validation_alias=env_alias("gateway", "service_name"))
    """The name the dispatcher knows this key by (its trusted `<name>.pub`)."""
    dispatcher_tls_ca_file: str | None = Field(
        default=None, validation_alias=env_alias("gateway", "dispatcher_tls_ca_file")
    )
    """Reach the dispatcher over TLS, trusting this CA (PEM). Unset: plaintext."""
    dispatcher_tls_server_name: str | None = Field(
        default=None, validation_alias=env_alias("gateway", "dispatcher_tls_server_name")
    )
    """The name the dispatcher's certificate must carry, when it is not the address's host."""
    grpc_tls_cert_file: str | None = Field(default=None, validation_alias=env_alias("gateway", "grpc_tls_cert_file"))
    """Serve the gateway's gRPC API over TLS with this certificate (PEM; with grpc_tls_key_file)."""
    grpc_tls_key_file: str | None = Field(default=None, validation_alias=env_alias("gateway", "grpc_tls_key_file"))
    grpc_reflection: bool = Field(default=False, validation_alias=env_alias("gateway", "grpc_reflection"))
    """Serve gRPC server reflection on the gateway's gRPC API."""
    max_body_bytes: int = Field(default=1_000_000, ge=1024, validation_alias=env_alias("gateway", "max_body_bytes"))
    """Larger request bodies are refused with 413."""
    rate_limit_per_s: float = Field(default=100.0, gt=0, validation_alias=env_alias("gateway", "rate_limit_per_s"))
    """Requests per second each identity may make (on average); more get 429 with Retry-After."""
    rate_limit_burst: int = Field(default=200, ge=1, validation_alias=env_alias("gateway", "rate_limit_burst"))
    """Requests an identity may make at once before the average applies."""
    max_streams_per_identity: int = Field(
        default=500, ge=1, validation_alias=env_alias("gateway", "max_streams_per_identity")
    )
    """Open WebSocket streams per identity; one more is closed with 4429."""
    ws_ping_interval_s: float = Field(default=20.0, gt=0, validation_alias=env_alias("gateway", "ws_ping_interval_s"))
    """How often the gateway pings each WebSocket client."""
    ws_ping_timeout_s: float = Field(default=20.0, gt=0, validation_alias=env_alias("gateway", "ws_ping_timeout_s"))
    """A client that has not answered a ping after this long is dropped (its stream slot and watch freed)."""
    ws_send_buffer_events: int = Field(
        default=1000, ge=1, validation_alias=env_alias("gateway", "ws_send_buffer_events")
    )
    """Events each WebSocket stream buffers for its client; when full, the stream reads no more from the dispatcher
    until the client takes some (bounds the gateway's memory per stream)."""
    ws_send_timeout_s: float = Field(default=10.0, gt=0, validation_alias=env_alias("gateway", "ws_send_timeout_s"))
    """A send to a WebSocket client that stalls this long (it stopped reading) closes the stream with 4408."""
    max_params_depth: int = Field(default=32, ge=1, validation_alias=env_alias("gateway", "max_params_depth"))
    """Deepest nesting of objects/lists allowed in run params (422 beyond)."""
    api_keys: SecretStr = Field(default=SecretStr(""), validation_alias=env_alias("gateway", "api_keys"))
    """API keys as JSON: `[{"name": ..., "key": ... | "sha256": ..., "scopes": [...]}]`."""
    api_keys_file: str | None = Field(default=None, validation_alias=env_alias("gateway", "api_keys_file"))
    """The same JSON in a file (both may be given)."""
    jwt_hs256_secret: SecretStr = Field(
        default=SecretStr(""), validation_alias=env_alias("gateway", "jwt_hs256_secret")
    )
    """Accept HS256 JWTs signed with this secret."""
    jwt_rs256_public_key_file: str | None = Field(
        default=None, validation_alias=env_alias("gateway", "jwt_rs256_public_key_file")
    )
    """Accept RS256 JWTs verified with this PEM public key."""
    jwt_issuer: str | None = Field(default=None, validation_alias=env_alias("gateway", "jwt_issuer"))
    jwt_audience: str | None = Field(default=None, validation_alias=env_alias("gateway", "jwt_audience"))
    jwt_leeway_s: float = Field(default=30.0, ge=0, le=600, validation_alias=env_alias("gateway", "jwt_leeway_s"))
    """Clock skew allowed when checking a JWT's exp/nbf/iat."""
    jwt_act_as_subjects: str = Field(default="", validation_alias=env_alias("gateway", "jwt_act_as_subjects"))
    """Comma-separated JWT subjects whose `act_as` scope is honoured (everyone else's is dropped)."""
    metrics_token: SecretStr = Field(
        default=SecretStr(""), validation_alias=env_alias("gateway", "metrics_token", shared=True)
    )
    """Bearer token a scraper sends for `GET /metrics` on the HTTP port (FLOTILLA_METRICS_TOKEN also works);
    unset: `/metrics` answers 404 (README, Observability)."""
    log_format: LogFormat = Field(default="auto", validation_alias=env_alias("gateway", "log_format", shared=True))
    log_level: str = Field(default="info", validation_alias=env_alias("gateway", "log_level", shared=True))

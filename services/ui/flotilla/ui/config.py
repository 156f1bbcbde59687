"""The UI's settings: FLOTILLA_UI_* variables (README, Configuration)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from flotilla.settings import LogFormat, TracingSettings, env_alias


class UiSettings(TracingSettings):
    """services/ui. Variables: FLOTILLA_UI_<FIELD>; tracing's are shared (TracingSettings)."""

    host: str = Field(default="127.0.0.1", validation_alias=env_alias("ui", "host"))
    port: int = Field(default=8888, validation_alias=env_alias("ui", "port"))
    gateway_url: str = Field(default="http://127.0.0.1:8000", validation_alias=env_alias("ui", "gateway_url"))
    """Where people reach the gateway's REST API (shown on the page)."""
    gateway_grpc_address: str = Field(
        default="127.0.0.1:50052", validation_alias=env_alias("ui", "gateway_grpc_address")
    )
    """host:port of the gateway's gRPC API, the only way the UI reaches runs."""
    gateway_tls_ca_file: str | None = Field(default=None, validation_alias=env_alias("ui", "gateway_tls_ca_file"))
    """Reach the gateway's gRPC API over TLS, trusting this CA (PEM). Unset: plaintext."""
    gateway_tls_server_name: str | None = Field(
        default=None, validation_alias=env_alias("ui", "gateway_tls_server_name")
    )
    """The name the gateway's certificate must carry, when it is not the address's host."""
    gateway_api_key: SecretStr = Field(default=SecretStr(""), validation_alias=env_alias("ui", "gateway_api_key"))
    """The UI's own service identity at the gateway: an API key with the `act_as` scope."""
    users: SecretStr = Field(default=SecretStr(""), validation_alias=env_alias("ui", "users"))
    """People who sign in with a password, as JSON: `[{"username": ..., "identity": ...,
    "password_hash": ... | "password": ...}]` (hash: `python -m flotilla.ui.users`)."""
    session_idle_timeout_s: float = Field(
        default=12 * 3600, gt=0, validation_alias=env_alias("ui", "session_idle_timeout_s")
    )
    """A signed-in person who does nothing for this long is signed out."""
    cookie_secure: bool = Field(default=False, validation_alias=env_alias("ui", "cookie_secure"))
    """Mark the session cookie Secure: set it when people reach the UI over HTTPS (a TLS-terminating proxy)."""
    metrics_host: str = Field(default="127.0.0.1", validation_alias=env_alias("ui", "metrics_host"))
    """Address the metrics server binds."""
    metrics_port: int = Field(default=0, ge=0, le=65535, validation_alias=env_alias("ui", "metrics_port"))
    """Serve Prometheus metrics (`GET /metrics`) on this port; 0: off."""
    metrics_token: SecretStr = Field(
        default=SecretStr(""), validation_alias=env_alias("ui", "metrics_token", shared=True)
    )
    """Bearer token a scraper must send (FLOTILLA_METRICS_TOKEN also works); required with a metrics port."""
    log_format: LogFormat = Field(default="auto", validation_alias=env_alias("ui", "log_format", shared=True))
    log_level: str = Field(default="info", validation_alias=env_alias("ui", "log_level", shared=True))

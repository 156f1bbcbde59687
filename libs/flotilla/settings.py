"""What every service's settings share: the variable naming, the NATS client fields, the log
format, the tracing exporter.

Each service has one settings class in its own `config.py` (services/<name>/flotilla/<name>/config.py),
built in its `main()` and passed down, never at import time; the README's configuration table
lists the variables. `settings_env` writes settings back as the variables a child process reads.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

LogFormat = Literal["auto", "json", "console"]


def env_alias(service: str, name: str, *, shared: bool = False) -> AliasChoices:
    """`FLOTILLA_<SERVICE>_<NAME>`, or `FLOTILLA_<NAME>` when the value is shared by services."""
    names = [f"FLOTILLA_{service}_{name}".upper()]
    if shared:
        names.append(f"FLOTILLA_{name}".upper())
    return AliasChoices(*names)


class ServiceSettings(BaseSettings):
    """A service's settings: frozen, unknown variables ignored."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class NatsSettings(ServiceSettings):
    """How a NATS client service (dispatcher, worker) reaches the server."""

    nats_url: str = "nats://127.0.0.1:4222"
    """Comma-separated server URLs (a cluster's seed list)."""
    nats_user: str = ""
    """This service's NATS user (see nats-server.conf)."""
    nats_password: SecretStr = SecretStr("")
    """This service's NATS password."""
    nats_tls_ca_file: str | None = None
    """Use TLS to NATS, trusting this CA bundle."""


class TracingSettings(ServiceSettings):
    """OpenTelemetry traces (flotilla.tracing), the same variables for every service: off unless an
    OTLP endpoint is set. The standard OTEL_* names work too (the FLOTILLA_* one wins)."""

    otlp_endpoint: str = Field(
        default="",
        validation_alias=AliasChoices(
            "FLOTILLA_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
        ),
    )
    """OTLP/gRPC receiver (a collector, Jaeger, Tempo): `http://host:4317` plaintext, `https://...`
    TLS. Empty: tracing off."""
    otlp_ca_file: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "FLOTILLA_OTLP_CA_FILE", "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"
        ),
    )
    """With an https endpoint: trust this CA bundle (PEM) instead of the system's."""
    otlp_headers: SecretStr = Field(
        default=SecretStr(""),
        validation_alias=AliasChoices(
            "FLOTILLA_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"
        ),
    )
    """`key=value,key2=value2` sent with every export (a vendor's API key)."""
    trace_service_name: str = Field(
        default="", validation_alias=AliasChoices("FLOTILLA_TRACE_SERVICE_NAME", "OTEL_SERVICE_NAME")
    )
    """The spans' `service.name`; empty: the service's own (gateway, dispatcher, worker)."""
    trace_sample_ratio: float = Field(
        default=1.0, ge=0.0, le=1.0, validation_alias=AliasChoices("FLOTILLA_TRACE_SAMPLE_RATIO")
    )
    """Share of new traces kept (a request that arrives with a sampled `traceparent` is kept)."""

    def tracing_env(self) -> dict[str, str]:
        """The variables that give a child process these tracing settings (the local stack's)."""
        values = {name: getattr(self, name) for name in TracingSettings.model_fields}
        return settings_env(TracingSettings, **{name: v for name, v in values.items() if v is not None})


def settings_env(settings: type[BaseSettings], **values: object) -> dict[str, str]:
    """The environment variables that make `settings()` read `values` (each field's first name):
    how a launcher configures a child process without spelling the variables a second time."""
    env: dict[str, str] = {}
    for name, value in values.items():
        field = settings.model_fields[name]  # KeyError: no such setting
        alias = field.validation_alias
        variable = alias.choices[0] if isinstance(alias, AliasChoices) else name
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[str(variable).upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    return env

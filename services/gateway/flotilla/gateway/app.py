"""The gateway's FastAPI application: wiring only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from grpc import aio

from flotilla.admission import Admission, Limits
from flotilla.auth import ServiceTokenSigner
from flotilla.errors import ConfigurationError
from flotilla.gateway import fastagency, routes, stream
from flotilla.gateway.deps import Gateway
from flotilla.gateway.dispatcher_client import DispatcherClient, rpc_error_response
from flotilla.gateway.grpc_api import GatewayApi, gateway_grpc_server
from flotilla.gateway.identity import build_authenticator
from flotilla.gateway.limits import BodyLimit
from flotilla.gateway.pump import PumpLimits
from flotilla.lifecycle import settle_heap
from flotilla.metrics import AsgiHttpMetrics, authorized, exposition
from flotilla.protocol import DISPATCHER_SERVICE
from flotilla.rpc import server_credentials
from flotilla.gateway.config import GatewaySettings
from flotilla.tracing import enabled as tracing_enabled, untraced_request


def service_signer(settings: GatewaySettings) -> ServiceTokenSigner:
    """The gateway's own identity at the dispatcher (required)."""
    if not settings.service_key_file:
        raise ConfigurationError(
            "set FLOTILLA_GATEWAY_SERVICE_KEY_FILE to the gateway's Ed25519 private key, whose public key the "
            "dispatcher trusts (python -m flotilla.credentials makes both)"
        )
    return ServiceTokenSigner.from_file(settings.service_name, settings.service_key_file, DISPATCHER_SERVICE)


def create_app(settings: GatewaySettings) -> FastAPI:
    # Both fail at start, naming what to set.
    admission = Admission(
        build_authenticator(settings),
        Limits(
            rate_per_s=settings.rate_limit_per_s,
            burst=settings.rate_limit_burst,
            max_streams=settings.max_streams_per_identity,
            max_params_depth=settings.max_params_depth,
        ),
    )
    signer = service_signer(settings)
    grpc_credentials = server_credentials(settings.grpc_tls_cert_file, settings.grpc_tls_key_file)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        dispatcher = DispatcherClient(
            settings.dispatcher_address,
            signer,
            ca_file=settings.dispatcher_tls_ca_file,
            server_name=settings.dispatcher_tls_server_name,
        )
        limits = PumpLimits(buffer=settings.ws_send_buffer_events, send_timeout_s=settings.ws_send_timeout_s)
        app.state.gateway = Gateway(dispatcher, settings, admission, limits)
        # The gRPC API shares the process, the dispatcher channel and admission (limits) with REST.
        api = GatewayApi(dispatcher, admission, limits)
        grpc_server = gateway_grpc_server(
            settings.host, settings.grpc_port, api, credentials=grpc_credentials, reflection=settings.grpc_reflection
        )
        await grpc_server.start()
        await grpc_server.set_serving(True)
        settle_heap()  # what it built to serve lives as long as the process
        yield
        await grpc_server.stop(grace_s=3.0)
        await dispatcher.close()

    app = FastAPI(
        title="Flotilla",
        version="1.0.0",
        summary="Run AG2 multi-agent workflows: start runs, stream their events, answer their questions.",
        lifespan=lifespan,
        # FastAPI's own spans of each request and WebSocket, when tracing is on (flotilla.tracing);
        # its metrics and logs stay off: Prometheus (flotilla.metrics) and structlog have those.
        telemetry={"tracing": tracing_enabled(), "metrics": False, "logs": False, "exclude": untraced_request},
    )

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AsgiHttpMetrics)  # outermost: times everything, refusals included
    app.add_exception_handler(aio.AioRpcError, rpc_error_response)
    app.include_router(routes.health)
    app.include_router(routes.router)
    app.include_router(stream.router)
    app.include_router(fastagency.router)
    _metrics_route(app, settings.metrics_token.get_secret_value())
    return app


def _metrics_route(app: FastAPI, token: str) -> None:
    """`GET /metrics` for scrapers holding the metrics token (README, Observability); 404 without one set."""

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        if not token:
            return Response("metrics are off (FLOTILLA_GATEWAY_METRICS_TOKEN is not set)\n", status_code=404)
        if not authorized(request.headers.get("authorization"), token):
            return Response(
                "a metrics token is required (Authorization: Bearer <token>)\n",
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        body, content_type = exposition()
        return Response(body, media_type=content_type)

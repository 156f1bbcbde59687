"""services/dispatcher: the gRPC server that owns the run lifecycle."""

from __future__ import annotations

import asyncio

import structlog
from grpc import aio
from nats.aio.client import Client
from nats.js import JetStreamContext

from flotilla.auth import ServiceTokenVerifier, load_trusted_services
from flotilla.dispatch import RunLimits, RunService
from flotilla.dispatcher.grpc_api import DispatcherApi
from flotilla.errors import ConfigurationError
from flotilla.jetstream import Layout, connect, disconnect, provision, redacted_url, report_queue
from flotilla.lifecycle import exit_on_bad_configuration, GrpcServer, run_service, wait_for_shutdown
from flotilla.logs import configure_logging
from flotilla.metrics import check_settings, serve_metrics
from flotilla.tracing import setup_tracing
from flotilla.protocol import DISPATCHER_SERVICE, add_DispatcherServicer_to_server
from flotilla.rpc import ServiceAuthInterceptor, server_credentials
from flotilla.dispatcher.config import DispatcherSettings

log = structlog.get_logger(__name__)


def service_verifier(settings: DispatcherSettings) -> ServiceTokenVerifier:
    """Who may call: the services whose public keys are in the trusted directory (required)."""
    if not settings.trusted_services_dir:
        raise ConfigurationError(
            "set FLOTILLA_DISPATCHER_TRUSTED_SERVICES_DIR to the directory of the public keys of the services "
            "that may call the dispatcher (python -m flotilla.credentials makes one)"
        )
    trusted = load_trusted_services(settings.trusted_services_dir)
    return ServiceTokenVerifier(trusted, DISPATCHER_SERVICE, leeway_s=settings.service_token_leeway_s)


async def serve(settings: DispatcherSettings, verifier: ServiceTokenVerifier) -> None:
    nc = await connect(settings, name="flotilla-dispatcher")
    js = nc.jetstream()
    layout = Layout(
        job_ack_wait_s=settings.job_ack_wait_s,
        job_max_attempts=settings.job_max_attempts,
        retention_s=settings.event_max_age_s,
        workflow_ttl_s=settings.workflow_ttl_s,
        replicas=settings.jetstream_replicas,
        duplicate_window_s=settings.duplicate_window_s,
        store_bytes=settings.store_bytes,
    )
    await _provision(js, layout)
    limits = RunLimits(
        max_active_runs_per_identity=settings.max_active_runs_per_identity,
        index_max_runs=settings.index_max_runs,
    )
    service = RunService(nc, layout, limits)
    await service.open()

    def register(server: aio.Server) -> None:
        add_DispatcherServicer_to_server(DispatcherApi(service), server)

    server = GrpcServer(
        settings.grpc_host,
        settings.grpc_port,
        register,
        [DISPATCHER_SERVICE],
        credentials=server_credentials(settings.grpc_tls_cert_file, settings.grpc_tls_key_file),
        interceptors=[ServiceAuthInterceptor(verifier)],
        reflection=settings.grpc_reflection,
        new_traces=False,  # the gateway passes its trace on; its readiness probes start none
    )
    await server.start()
    health = asyncio.create_task(_report_health(server, nc))
    queue = asyncio.create_task(report_queue(js))
    metrics = serve_metrics(settings.metrics_host, settings.metrics_port, settings.metrics_token.get_secret_value())
    log.info(
        "dispatcher ready",
        grpc=f"{settings.grpc_host}:{server.port}",
        metrics=f"{settings.metrics_host}:{metrics.port}" if metrics else None,
        tls=server.tls,
        trusted_services=sorted(verifier.identities),
        nats=redacted_url(settings.nats_url),
    )
    await wait_for_shutdown()
    log.info("dispatcher stopping")
    health.cancel()
    queue.cancel()
    await server.stop(grace_s=5)
    if metrics is not None:
        metrics.stop()
    await service.close()
    await disconnect(nc)


async def _provision(js: JetStreamContext, layout: Layout) -> None:
    """Provision, waiting for JetStream (a cluster electing its first leader, a server starting)."""
    for attempt in range(120):
        try:
            await provision(js, layout)
            return
        except Exception as exc:
            if attempt == 119:
                raise
            log.info("waiting for JetStream to provision the layout", error=repr(exc))
            await asyncio.sleep(0.5)


async def _report_health(server: GrpcServer, nc: Client) -> None:
    """SERVING only while NATS is connected, so /readyz and load balancers see the truth."""
    last: bool | None = None
    while True:
        connected = nc.is_connected
        if connected != last:
            await server.set_serving(connected)
            last = connected
        await asyncio.sleep(0.5)


def main() -> None:
    with exit_on_bad_configuration("dispatcher"):
        settings = DispatcherSettings()
        verifier = service_verifier(settings)
        server_credentials(settings.grpc_tls_cert_file, settings.grpc_tls_key_file)  # fails now, not later
        check_settings(
            settings.metrics_port,
            settings.metrics_token.get_secret_value(),
            variable="FLOTILLA_DISPATCHER_METRICS_TOKEN",
        )
        setup_tracing(settings, "dispatcher")
    configure_logging("dispatcher", log_format=settings.log_format, level=settings.log_level)
    run_service(serve(settings, verifier))


if __name__ == "__main__":
    main()

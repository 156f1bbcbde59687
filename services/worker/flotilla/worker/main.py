"""services/worker: pulls jobs from JetStream and runs the workflows of one registry."""

from __future__ import annotations

import asyncio
import importlib
from concurrent.futures import ThreadPoolExecutor

import structlog

from flotilla.errors import ConfigurationError
from flotilla.execution import Worker, WorkerContext
from flotilla.jetstream import EventLog, Reconnects, Requests, RunStore, connect, disconnect, read_layout, when_ready
from flotilla.lifecycle import exit_on_bad_configuration, run_service, wait_for_shutdown
from flotilla.llm import LlmService, LlmSettings
from flotilla.logs import configure_logging
from flotilla.metrics import check_settings, serve_metrics
from flotilla.tracing import setup_tracing
from flotilla.worker.config import WorkerSettings
from flotilla.worker.health import serve_health
from flotilla.workflows import WorkflowRegistry

log = structlog.get_logger(__name__)


def load_registry(path: str) -> WorkflowRegistry:
    """Import `module:attribute` and check it is a WorkflowRegistry."""
    module_name, _, attribute = path.partition(":")
    try:
        registry = getattr(importlib.import_module(module_name), attribute or "registry")
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"FLOTILLA_WORKER_WORKFLOWS={path!r} cannot be imported: {exc}") from exc
    if not isinstance(registry, WorkflowRegistry):
        raise ConfigurationError(f"FLOTILLA_WORKER_WORKFLOWS={path!r} is not a WorkflowRegistry")
    return registry


async def serve(settings: WorkerSettings, llm: LlmSettings) -> None:
    registry = load_registry(settings.workflows)
    # Up first, so that a probe sees a live (not yet ready) worker while the model loads.
    workers: list[Worker] = []
    health = None
    if settings.health_port is not None:
        health = await serve_health(settings.health_host, settings.health_port, lambda: any(w.ready for w in workers))
    # The model behind the agents: fails here, naming what to set, when misconfigured; the
    # bundled local model is fetched (first start) and loaded before any job is taken.
    llm_service = await asyncio.to_thread(LlmService.from_settings, llm, loop=asyncio.get_running_loop())
    reconnects = Reconnects()
    nc = await connect(settings, name=f"flotilla-worker-{settings.worker_id}", reconnects=reconnects)
    js = nc.jetstream()
    # The dispatcher provisions JetStream; a worker started first (or during an outage) waits.
    layout = await when_ready(lambda: read_layout(js), waiting_for="the dispatcher to provision JetStream")
    runs = await when_ready(lambda: RunStore.open(js), waiting_for="JetStream (the runs bucket)")
    ctx = WorkerContext(
        worker_id=settings.worker_id,
        nc=nc,
        js=js,
        layout=layout,
        registry=registry,
        runs=runs,
        events=EventLog(nc),
        requests=Requests(js, retry_s=300.0),  # a run waits out an outage of NATS
        reconnects=reconnects,
        executor=ThreadPoolExecutor(max_workers=settings.max_concurrent_runs, thread_name_prefix="workflow"),
        llm=llm_service,
        input_timeout_s=settings.input_timeout_s,
        on_divergence=settings.on_divergence,
        expose_tracebacks=settings.expose_tracebacks,
    )
    worker = Worker(
        ctx,
        max_concurrent_runs=settings.max_concurrent_runs,
        drain_timeout_s=settings.drain_timeout_s,
        heartbeat_s=settings.heartbeat_s,
    )
    metrics = serve_metrics(settings.metrics_host, settings.metrics_port, settings.metrics_token.get_secret_value())
    if metrics is not None:
        log.info("worker metrics", metrics=f"{settings.metrics_host}:{metrics.port}")
    workers.append(worker)
    running = asyncio.create_task(worker.run())
    stop = asyncio.create_task(wait_for_shutdown())
    await asyncio.wait({running, stop}, return_when=asyncio.FIRST_COMPLETED)
    worker.stop()
    await running
    stop.cancel()
    if health is not None:
        health.close()
    await disconnect(nc)
    if metrics is not None:
        metrics.stop()


def main() -> None:
    with exit_on_bad_configuration("worker"):
        settings = WorkerSettings()
        check_settings(
            settings.metrics_port, settings.metrics_token.get_secret_value(), variable="FLOTILLA_WORKER_METRICS_TOKEN"
        )
        setup_tracing(settings, "worker", instance=settings.worker_id)
        configure_logging("worker", log_format=settings.log_format, level=settings.log_level)
        structlog.contextvars.bind_contextvars(worker_id=settings.worker_id)
        run_service(serve(settings, LlmSettings.from_env()))


if __name__ == "__main__":
    main()

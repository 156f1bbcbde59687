"""services/worker: pulls jobs from JetStream and runs the workflows of one registry."""

from __future__ import annotations

import asyncio
import importlib
from concurrent.futures import ThreadPoolExecutor

import structlog
from nats.js import JetStreamContext

from flotilla.errors import ConfigurationError
from flotilla.execution import Worker, WorkerContext
from flotilla.jetstream import EventLog, Layout, Reconnects, Requests, RunStore, connect, read_layout
from flotilla.lifecycle import exit_on_bad_configuration, run_service, wait_for_shutdown
from flotilla.llm import LlmSettings, configure_llm
from flotilla.logs import configure_logging
from flotilla.settings import WorkerSettings
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


async def _wait_for_layout(js: JetStreamContext) -> Layout:
    """The dispatcher provisions JetStream; a worker started first waits for it."""
    while True:
        try:
            return await read_layout(js)
        except Exception as exc:
            log.info("waiting for the dispatcher to provision JetStream", error=repr(exc))
            await asyncio.sleep(1.0)


async def serve(settings: WorkerSettings, llm: LlmSettings) -> None:
    registry = load_registry(settings.workflows)
    # Up first, so that a probe sees a live (not yet ready) worker while the model loads.
    workers: list[Worker] = []
    health = None
    if settings.health_port is not None:
        health = await serve_health(settings.health_host, settings.health_port, lambda: any(w.ready for w in workers))
    # The model behind the agents: fails here, naming what to set, when misconfigured; the
    # bundled local model is fetched (first start) and loaded before any job is taken.
    await asyncio.to_thread(configure_llm, llm, loop=asyncio.get_running_loop())
    reconnects = Reconnects()
    nc = await connect(settings, name=f"flotilla-worker-{settings.worker_id}", reconnects=reconnects)
    js = nc.jetstream()
    layout = await _wait_for_layout(js)
    ctx = WorkerContext(
        worker_id=settings.worker_id,
        nc=nc,
        js=js,
        layout=layout,
        registry=registry,
        runs=await RunStore.open(js),
        events=EventLog(nc),
        requests=Requests(js, retry_s=300.0),  # a run waits out an outage of NATS
        reconnects=reconnects,
        executor=ThreadPoolExecutor(max_workers=settings.max_concurrent_runs, thread_name_prefix="workflow"),
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
    workers.append(worker)
    running = asyncio.create_task(worker.run())
    stop = asyncio.create_task(wait_for_shutdown())
    await asyncio.wait({running, stop}, return_when=asyncio.FIRST_COMPLETED)
    worker.stop()
    await running
    stop.cancel()
    if health is not None:
        health.close()
    await nc.drain()


def main() -> None:
    with exit_on_bad_configuration("worker"):
        settings = WorkerSettings()
        configure_logging("worker", log_format=settings.log_format, level=settings.log_level)
        structlog.contextvars.bind_contextvars(worker_id=settings.worker_id)
        run_service(serve(settings, LlmSettings.from_env()))


if __name__ == "__main__":
    main()

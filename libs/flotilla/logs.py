"""The one structlog set-up: JSON lines in production, readable on a terminal.

Run-scoped code binds `run_id` with `structlog.contextvars.bound_contextvars(run_id=...)`, so
every line logged while handling that run carries it (asyncio tasks copy the context). With
tracing on (flotilla.tracing, set up before this), every line logged inside a span also carries
its `trace_id` and `span_id`.
"""

from __future__ import annotations

import logging
import sys

import structlog

from flotilla import tracing
from flotilla.settings import LogFormat


def configure_logging(service: str, *, log_format: LogFormat = "auto", level: str = "info") -> None:
    """Route structlog and stdlib logging to stderr in one format, tagged with `service`."""
    as_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if tracing.enabled():
        shared.append(tracing.add_trace_ids)
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        numeric_level = logging.INFO
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)

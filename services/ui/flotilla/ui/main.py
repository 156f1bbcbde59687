"""services/ui: the Mesop web app under gunicorn (the UI only; the local stack that
`pants run services/ui` starts is flotilla.devstack)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import structlog

from flotilla.lifecycle import exit_on_bad_configuration
from flotilla.logs import configure_logging
from flotilla.metrics import check_settings, serve_metrics, wsgi_http_metrics
from flotilla import tracing
from flotilla.ui.config import UiSettings
from flotilla.ui.users import parse_users

log = structlog.get_logger(__name__)


def serve_ui(settings: UiSettings) -> None:
    # Mesop reads these when it is first imported: web components are found relative to the app
    # base path (the folder holding flotilla/ui), and cookies need a secret (one per start is
    # enough: it signs a cookie for the 60 s until the browser stores it).
    os.environ.setdefault("MESOP_APP_BASE_PATH", str(Path(__file__).resolve().parents[2]))
    os.environ.setdefault("MESOP_COOKIE_SECRET_KEY", secrets.token_hex(32))
    from gunicorn.app.base import BaseApplication

    import mesop as me

    import flotilla.ui.page  # noqa: F401  (registers the pages)
    from flotilla.ui import services
    from flotilla.ui.offline import offline

    class _Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{settings.host}:{settings.port}")
            # Sessions live in the process: one worker, many threads (a page holds one at a time).
            self.cfg.set("workers", 1)
            self.cfg.set("threads", 32)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("graceful_timeout", 5)
            if "control_socket_disable" in self.cfg.settings:
                self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:
            # In the worker, after the fork: gRPC channels must not cross a fork, nor threads
            # (the metrics server's, the trace exporter's channel and thread).
            if tracing.setup_tracing(settings, "ui"):  # before the gateway client's channel is built
                _configure_logging(settings)  # again: the worker's lines now carry trace ids
            token = settings.metrics_token.get_secret_value()
            metrics = serve_metrics(settings.metrics_host, settings.metrics_port, token)
            if metrics is not None:
                log.info("ui metrics", metrics=f"{settings.metrics_host}:{metrics.port}")
            return wsgi_http_metrics(offline(services.serving(me.create_wsgi_app(), services.build(settings))))

    _Gunicorn().run()


def main() -> None:
    with exit_on_bad_configuration("ui"):
        settings = UiSettings()
        parse_users(settings.users.get_secret_value())  # a bad FLOTILLA_UI_USERS stops the start here
        check_settings(
            settings.metrics_port, settings.metrics_token.get_secret_value(), variable="FLOTILLA_UI_METRICS_TOKEN"
        )
        if settings.otlp_endpoint:
            tracing.check_settings(settings)  # set up in gunicorn's worker, where an error would not stop the start
    _configure_logging(settings)
    serve_ui(settings)


def _configure_logging(settings: UiSettings) -> None:
    configure_logging("ui", log_format=settings.log_format, level=settings.log_level)


if __name__ == "__main__":
    main()

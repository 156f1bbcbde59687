"""services/gateway: the public REST + WebSocket API, a gRPC client of the dispatcher."""

from __future__ import annotations

import uvicorn

from flotilla.gateway.app import create_app
from flotilla.gateway.coalescing import HttpProtocol
from flotilla.gateway.wsprotocol import WebSocketProtocol
from flotilla.lifecycle import exit_on_bad_configuration
from flotilla.logs import configure_logging
from flotilla.tracing import setup_tracing
from flotilla.gateway.config import GatewaySettings


def main() -> None:
    with exit_on_bad_configuration("gateway"):
        settings = GatewaySettings()
        setup_tracing(settings, "gateway")  # before the app: it turns FastAPI's spans on when tracing is
        app = create_app(settings)
    configure_logging("gateway", log_format=settings.log_format, level=settings.log_level)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        ws_max_size=1024 * 1024,
        ws_per_message_deflate=False,  # small JSON frames: compression costs more CPU than it saves
        http=HttpProtocol,  # uvicorn's own (httptools), each turn's writes in one (coalescing.py)
        ws=WebSocketProtocol,  # uvicorn's own, but a client that stops reading cannot hold its connection
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        timeout_graceful_shutdown=5,
        # Longer than a load balancer's usual 60 s idle timeout, so the server never closes a
        # kept-alive connection just as a client (or the balancer) reuses it.
        timeout_keep_alive=75,
    )


if __name__ == "__main__":
    main()

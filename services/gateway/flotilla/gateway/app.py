"""The gateway's FastAPI application: wiring only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from flotilla.gateway import routes, stream
from flotilla.gateway.dispatcher import DispatcherClient
from flotilla.settings import GatewaySettings


def create_app(settings: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.dispatcher = DispatcherClient(settings.dispatcher_address)
        yield
        await app.state.dispatcher.close()

    app = FastAPI(
        title="Flotilla",
        version="1.0.0",
        summary="Run AG2 multi-agent workflows: start runs, stream their events, answer their questions.",
        lifespan=lifespan,
    )

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_body_bytes):
            return JSONResponse({"detail": f"request body larger than {settings.max_body_bytes} bytes"}, status_code=413)
        return await call_next(request)

    app.include_router(routes.health)
    app.include_router(routes.router)
    app.include_router(stream.router)
    return app

"""The gateway's one dependency: what the app was built with (app.py), injected into handlers,
REST and WebSocket alike, so no handler reads `app.state` itself.

One object rather than one dependency per part: FastAPI resolves every dependency of every
request anew (its cache key, its own parameters, the call), about 10 µs each, and the hot routes
(start a run, stream it) need several parts. It is `async def`: FastAPI runs a plain `def`
dependency in a worker thread, a thread-pool round trip per request for an attribute read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from flotilla.admission import Admission
from flotilla.gateway.config import GatewaySettings
from flotilla.gateway.dispatcher_client import DispatcherClient
from flotilla.gateway.pump import PumpLimits


@dataclass(frozen=True)
class Gateway:
    dispatcher: DispatcherClient
    settings: GatewaySettings
    admission: Admission
    limits: PumpLimits
    """Each stream's outbox and send timeout (from settings)."""


def gateway_of(connection: HTTPConnection) -> Gateway:
    gateway: Gateway = connection.app.state.gateway
    return gateway


async def get_gateway(connection: HTTPConnection) -> Gateway:
    return gateway_of(connection)


GatewayDep = Annotated[Gateway, Depends(get_gateway)]

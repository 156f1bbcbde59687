"""The gateway's typed dependencies: what the app was built with (app.py), injected into
handlers, REST and WebSocket alike, so no handler reads `app.state` itself.

Every dependency is `async def`: FastAPI runs a plain `def` dependency in a worker thread, a
thread-pool round trip per dependency per request for what is an attribute read."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from flotilla.admission import Admission
from flotilla.gateway.config import GatewaySettings
from flotilla.gateway.dispatcher_client import DispatcherClient


async def get_dispatcher(connection: HTTPConnection) -> DispatcherClient:
    client: DispatcherClient = connection.app.state.dispatcher
    return client


async def get_settings(connection: HTTPConnection) -> GatewaySettings:
    settings: GatewaySettings = connection.app.state.settings
    return settings


def admission_of(connection: HTTPConnection) -> Admission:
    admission: Admission = connection.app.state.admission
    return admission


async def get_admission(connection: HTTPConnection) -> Admission:
    return admission_of(connection)


DispatcherDep = Annotated[DispatcherClient, Depends(get_dispatcher)]
SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
AdmissionDep = Annotated[Admission, Depends(get_admission)]

"""The gateway's typed dependencies: what the app was built with (app.py), injected into
handlers, REST and WebSocket alike, so no handler reads `app.state` itself."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from flotilla.admission import Admission
from flotilla.gateway.config import GatewaySettings
from flotilla.gateway.dispatcher_client import DispatcherClient


def get_dispatcher(connection: HTTPConnection) -> DispatcherClient:
    client: DispatcherClient = connection.app.state.dispatcher
    return client


def get_settings(connection: HTTPConnection) -> GatewaySettings:
    settings: GatewaySettings = connection.app.state.settings
    return settings


def get_admission(connection: HTTPConnection) -> Admission:
    admission: Admission = connection.app.state.admission
    return admission


DispatcherDep = Annotated[DispatcherClient, Depends(get_dispatcher)]
SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
AdmissionDep = Annotated[Admission, Depends(get_admission)]

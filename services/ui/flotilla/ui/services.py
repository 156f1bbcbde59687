"""What the page's handlers use (`UiServices`): built once from UiSettings by `main` and carried
by the app itself, in every request it serves (`serving`); a handler reaches it with `current()`.

Mesop pages and handlers are module-level functions with no app object or dependency injection
to hand them anything, but Mesop runs each of them inside the Flask request it is handling (the
SSE response keeps the request context, and WebSocket messages are handled with a copy of it).
So the WSGI app `main` builds puts the services in each request's environ, and `current()` reads
them from Flask's request: no module-level state, and a test can serve two apps side by side.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import flask

from flotilla.ui.config import UiSettings
from flotilla.ui.gateway import Credentials, GatewayClient
from flotilla.ui.offline import Environ, StartResponse, WsgiApp
from flotilla.ui.sessions import SessionStore
from flotilla.ui.users import UserDirectory, parse_users


@dataclass(frozen=True)
class UiServices:
    gateway: GatewayClient
    sessions: SessionStore
    users: UserDirectory
    service_key: str
    """The UI's own gateway key (scope act_as); used only to act for people signed in by password."""
    gateway_url: str
    cookie_secure: bool
    """Mark the session cookie Secure (served over HTTPS, e.g. behind a TLS-terminating proxy)."""

    def acting_for(self, identity: str) -> Credentials:
        return Credentials(token=self.service_key, act_as=identity)


def build(settings: UiSettings) -> UiServices:
    return UiServices(
        gateway=GatewayClient(
            settings.gateway_grpc_address,
            ca_file=settings.gateway_tls_ca_file,
            server_name=settings.gateway_tls_server_name,
        ),
        sessions=SessionStore(idle_timeout_s=settings.session_idle_timeout_s),
        users=parse_users(settings.users.get_secret_value()),
        service_key=settings.gateway_api_key.get_secret_value(),
        gateway_url=settings.gateway_url,
        cookie_secure=settings.cookie_secure,
    )


_ENVIRON_KEY = "flotilla.ui.services"


def serving(app: WsgiApp, services: UiServices) -> WsgiApp:
    """`app` (Mesop's), with `services` in every request it serves."""

    def app_with_services(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        environ[_ENVIRON_KEY] = services
        return app(environ, start_response)

    return app_with_services


def current() -> UiServices:
    """The services of the app serving the request being handled (call it from a page or handler)."""
    services = flask.request.environ.get(_ENVIRON_KEY)
    if not isinstance(services, UiServices):
        raise RuntimeError("this request is not served by the UI's app (flotilla.ui.main builds it with `serving`)")
    return services

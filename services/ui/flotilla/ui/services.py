"""What the page's handlers use, built once per process from UiSettings by `main` and installed
here (Mesop pages are module-level functions, so they find it through `current()`)."""

from __future__ import annotations

from dataclasses import dataclass

from flotilla.ui.config import UiSettings
from flotilla.ui.gateway import Credentials, GatewayClient
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


_current: UiServices | None = None


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


def install(services: UiServices) -> None:
    global _current
    _current = services


def current() -> UiServices:
    if _current is None:
        raise RuntimeError("the UI's services are not installed (flotilla.ui.main installs them at start)")
    return _current

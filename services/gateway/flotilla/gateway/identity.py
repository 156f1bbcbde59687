"""The admission layer's HTTP and WebSocket faces: where the bearer token is found, and how
admission's domain errors become status codes, close codes and headers. (gRPC's face is in
grpc_api.py.) Every route but health goes through `require`, every WebSocket through `admit_socket`.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

from fastapi import HTTPException, Request, WebSocket
from fastapi import Path as PathParam

from flotilla.auth import Authenticator, Identity, Unauthenticated, load_jwt_config, parse_api_keys
from flotilla.errors import (
    ConfigurationError,
    FlotillaError,
    InvalidArgument,
    PermissionDenied,
    RateLimited,
    TooManyStreams,
)
from flotilla.gateway.deps import gateway_of
from flotilla.protocol import Caller
from flotilla.gateway.config import GatewaySettings

# WebSocket close codes for refused connections (shared by the v1 and FastAgency streams).
CLOSE_POLICY = 1008
"""A bad parameter (the reason says which)."""
CLOSE_UNAUTHENTICATED = 4401
"""No token, or not a valid one."""
CLOSE_FORBIDDEN = 4403
"""The token lacks the scope."""
CLOSE_TOO_MANY = 4429
"""The identity is over its rate limit, or already holds `max_streams_per_identity` streams."""


def build_authenticator(settings: GatewaySettings) -> Authenticator:
    """API keys from FLOTILLA_GATEWAY_API_KEYS(_FILE) and JWT settings; at least one is needed."""
    keys = parse_api_keys(settings.api_keys.get_secret_value(), source="FLOTILLA_GATEWAY_API_KEYS")
    if settings.api_keys_file:
        path = Path(settings.api_keys_file)
        if not path.is_file():
            raise ConfigurationError(f"FLOTILLA_GATEWAY_API_KEYS_FILE={path} does not exist")
        keys += parse_api_keys(path.read_text(), source=str(path))
    jwt_config = load_jwt_config(
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        hs256_secret=settings.jwt_hs256_secret.get_secret_value(),
        rs256_public_key_file=settings.jwt_rs256_public_key_file,
        leeway_s=settings.jwt_leeway_s,
        act_as_subjects=[s.strip() for s in settings.jwt_act_as_subjects.split(",") if s.strip()],
    )
    if not keys and jwt_config is None:
        raise ConfigurationError(
            "no identities configured: set FLOTILLA_GATEWAY_API_KEYS (or _API_KEYS_FILE) and/or the JWT settings"
        )
    return Authenticator(keys, jwt_config)


def bearer(header: str | None) -> str | None:
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


def http_error(error: FlotillaError) -> HTTPException:
    """Admission's refusal as HTTP: 401 (with WWW-Authenticate), 403, 422 or 429 (with Retry-After)."""
    if isinstance(error, Unauthenticated):
        return HTTPException(status_code=401, detail=str(error), headers={"WWW-Authenticate": "Bearer"})
    if isinstance(error, PermissionDenied):
        return HTTPException(status_code=403, detail=str(error))
    if isinstance(error, RateLimited):
        retry = str(max(1, math.ceil(error.retry_after_s)))
        return HTTPException(status_code=429, detail=str(error), headers={"Retry-After": retry})
    if isinstance(error, TooManyStreams):
        return HTTPException(status_code=429, detail=str(error))
    if isinstance(error, InvalidArgument):
        return HTTPException(status_code=422, detail=str(error))
    raise error


def close_code(error: FlotillaError) -> int:
    """Admission's refusal as a WebSocket close code."""
    if isinstance(error, Unauthenticated):
        return CLOSE_UNAUTHENTICATED
    if isinstance(error, PermissionDenied):
        return CLOSE_FORBIDDEN
    if isinstance(error, (RateLimited, TooManyStreams)):
        return CLOSE_TOO_MANY
    if isinstance(error, InvalidArgument):
        return CLOSE_POLICY
    raise error


def require(scope: str) -> Callable[[Request], Awaitable[Identity]]:
    """A dependency: the bearer token's identity, with `scope`, within its rate limit."""

    async def check(request: Request) -> Identity:
        try:
            return gateway_of(request).admission.enter(bearer(request.headers.get("authorization")), scope)
        except FlotillaError as exc:
            raise http_error(exc) from None

    return check


def require_path_token(scope: str) -> Callable[[Request, str], Awaitable[Identity]]:
    """`require`, for clients that cannot send headers: the token in the path (`/fa/<token>/...`)."""

    async def check(
        request: Request, token: Annotated[str, PathParam(description="An API key or JWT, as in a bearer header")]
    ) -> Identity:
        try:
            return gateway_of(request).admission.enter(token, scope)
        except FlotillaError as exc:
            raise http_error(exc) from None

    return check


def socket_token(websocket: WebSocket) -> str | None:
    """By the Authorization header, or a `token` query parameter (browsers cannot set headers)."""
    return bearer(websocket.headers.get("authorization")) or websocket.query_params.get("token")


def caller(identity: Identity) -> Caller:
    return Caller(identity=identity.name, admin=identity.is_admin)

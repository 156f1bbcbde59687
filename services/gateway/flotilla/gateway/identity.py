"""Authentication at the edge: bearer tokens on every route but health, scopes per route."""

from __future__ import annotations

from collections.abc import Callable
import math
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request, WebSocket

from flotilla.auth import Authenticator, Identity, Unauthenticated, load_jwt_config, parse_api_keys
from flotilla.errors import ConfigurationError
from flotilla.gateway.limits import RateLimiter
from flotilla.protocol import Caller
from flotilla.settings import GatewaySettings


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


def _bearer(header: str | None) -> str | None:
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


def authenticate_http(request: Request) -> Identity:
    authenticator: Authenticator = request.app.state.authenticator
    try:
        return authenticator.authenticate(_bearer(request.headers.get("authorization")))
    except Unauthenticated as exc:
        raise HTTPException(status_code=401, detail=str(exc), headers={"WWW-Authenticate": "Bearer"}) from None


def authenticate_websocket(websocket: WebSocket) -> Identity:
    """By the Authorization header, or a `token` query parameter (browsers cannot set headers)."""
    authenticator: Authenticator = websocket.app.state.authenticator
    token = _bearer(websocket.headers.get("authorization")) or websocket.query_params.get("token")
    return authenticator.authenticate(token)


def require(scope: str) -> Callable[[Request, Identity], Identity]:
    """Authenticated, with `scope`, and within the identity's rate limit."""

    def check(request: Request, identity: Annotated[Identity, Depends(authenticate_http)]) -> Identity:
        if not identity.allows(scope):
            raise HTTPException(status_code=403, detail=f"{identity.name!r} lacks the {scope!r} scope")
        limiter: RateLimiter = request.app.state.rate_limiter
        wait = limiter.retry_after(identity.name)
        if wait is not None:
            raise HTTPException(
                status_code=429,
                detail=f"rate limit of {identity.name!r} exceeded; retry in {wait:.2f} s",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return identity

    return check


def caller(identity: Identity) -> Caller:
    return Caller(identity=identity.name, admin=identity.is_admin)

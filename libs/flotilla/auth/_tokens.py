"""Bearer tokens: API keys (kept only as SHA-256 hashes) and JWTs (HS256 or RS256)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from flotilla.auth._identity import (
    ALL_SCOPES,
    SCOPE_ACT_AS,
    Identity,
    jwt_owner,
    key_owner,
    valid_name,
    valid_subject,
)
from flotilla.errors import ConfigurationError, FlotillaError


class Unauthenticated(FlotillaError):
    """No token, or one that is not valid (401)."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    name: str
    sha256: str
    scopes: frozenset[str]


def parse_api_keys(text: str, *, source: str) -> list[ApiKey]:
    """`[{"name": ..., "key" | "sha256": ..., "scopes": [...]}, ...]`; a plain `key` is hashed
    at once and never kept."""
    try:
        entries = json.loads(text) if text.strip() else []
    except ValueError as exc:
        raise ConfigurationError(f"{source}: not valid JSON: {exc}") from None
    if not isinstance(entries, list):
        raise ConfigurationError(f"{source}: expected a JSON list of API keys")
    keys = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not valid_name(entry.get("name")):
            raise ConfigurationError(
                f"{source}[{i}]: each API key needs a name of 1-128 characters from A-Z a-z 0-9 . _ @ + = ~ -"
            )
        digest = entry.get("sha256") or (hash_key(entry["key"]) if isinstance(entry.get("key"), str) else None)
        if not isinstance(digest, str) or len(digest) != 64:
            raise ConfigurationError(f"{source}[{i}] ({entry['name']}): give `key` or a 64-hex-digit `sha256`")
        scopes = frozenset(entry.get("scopes", []))
        unknown = scopes - ALL_SCOPES
        if unknown:
            raise ConfigurationError(f"{source}[{i}] ({entry['name']}): unknown scopes {sorted(unknown)}")
        keys.append(ApiKey(entry["name"], digest.lower(), scopes))
    return keys


@dataclass(frozen=True, kw_only=True)
class JwtConfig:
    issuer: str
    audience: str
    hs256_secret: str | None = None
    rs256_public_key: str | None = None
    leeway_s: float = 30.0
    """Clock skew allowed when checking `exp`, `nbf` and `iat`."""
    act_as_subjects: frozenset[str] = frozenset()
    """Subjects whose `act_as` scope is honoured; everyone else's is dropped."""


class Authenticator:
    """Turns a bearer token into an Identity, or raises Unauthenticated."""

    def __init__(self, api_keys: Iterable[ApiKey], jwt_config: JwtConfig | None = None) -> None:
        self._keys = {key.sha256: key for key in api_keys}
        self._jwt = jwt_config

    def authenticate(self, token: str | None) -> Identity:
        if not token:
            raise Unauthenticated("a bearer token is required (Authorization: Bearer <API key or JWT>)")
        if token.count(".") == 2 and self._jwt is not None:
            return self._from_jwt(token)
        key = self._keys.get(hash_key(token))
        if key is None:
            raise Unauthenticated("the token is not a valid API key or JWT")
        return Identity(key_owner(key.name), key.scopes, via="api_key")

    def _from_jwt(self, token: str) -> Identity:
        if self._jwt is None:
            raise Unauthenticated("JWTs are not accepted here")
        if self._jwt.hs256_secret:
            key, algorithm = self._jwt.hs256_secret, "HS256"
        else:
            key, algorithm = self._jwt.rs256_public_key or "", "RS256"
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self._jwt.issuer,
                audience=self._jwt.audience,
                leeway=self._jwt.leeway_s,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the JWT has expired") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"the JWT is not valid: {exc}") from None
        subject = claims["sub"]
        if not valid_subject(subject):
            raise Unauthenticated(
                "the JWT's subject must be 1-256 printable characters, without '/' or surrounding spaces"
            )
        scopes = _scopes(claims.get("scope", claims.get("scopes", "")))
        if subject not in self._jwt.act_as_subjects:
            scopes -= {SCOPE_ACT_AS}  # acting for others is a service's power, given by configuration
        return Identity(jwt_owner(self._jwt.issuer, subject), scopes, via="jwt")


def _scopes(claim: object) -> frozenset[str]:
    """A JWT's `scope` ("a b c") or `scopes` (["a", "b"]) claim; unknown scopes are dropped."""
    if isinstance(claim, str):
        names = claim.split()
    elif isinstance(claim, list):
        names = [name for name in claim if isinstance(name, str)]
    else:
        names = []
    return frozenset(names) & ALL_SCOPES


def load_jwt_config(
    *,
    issuer: str | None,
    audience: str | None,
    hs256_secret: str | None,
    rs256_public_key_file: str | None,
    leeway_s: float = 30.0,
    act_as_subjects: Iterable[str] = (),
) -> JwtConfig | None:
    if not (hs256_secret or rs256_public_key_file):
        return None
    if not issuer or not audience:
        raise ConfigurationError("JWTs need FLOTILLA_GATEWAY_JWT_ISSUER and FLOTILLA_GATEWAY_JWT_AUDIENCE")
    public_key = Path(rs256_public_key_file).read_text() if rs256_public_key_file else None
    return JwtConfig(
        issuer=issuer,
        audience=audience,
        hs256_secret=hs256_secret or None,
        rs256_public_key=public_key,
        leeway_s=leeway_s,
        act_as_subjects=frozenset(act_as_subjects),
    )

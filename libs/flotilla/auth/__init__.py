"""Identities of the public API: API keys and JWTs, scopes, run ownership."""

from flotilla.auth._identity import (
    ALL_SCOPES,
    SCOPE_ACT_AS,
    SCOPE_ADMIN,
    SCOPE_RUNS_READ,
    SCOPE_RUNS_WRITE,
    SCOPE_WORKFLOWS_READ,
    USER_SCOPES,
    Identity,
    acting_for,
)
from flotilla.auth._tokens import (
    ApiKey,
    Authenticator,
    JwtConfig,
    Unauthenticated,
    hash_key,
    load_jwt_config,
    parse_api_keys,
)

__all__ = [
    "ALL_SCOPES",
    "SCOPE_ACT_AS",
    "SCOPE_ADMIN",
    "SCOPE_RUNS_READ",
    "SCOPE_RUNS_WRITE",
    "SCOPE_WORKFLOWS_READ",
    "USER_SCOPES",
    "ApiKey",
    "Authenticator",
    "Identity",
    "JwtConfig",
    "Unauthenticated",
    "acting_for",
    "hash_key",
    "load_jwt_config",
    "parse_api_keys",
]

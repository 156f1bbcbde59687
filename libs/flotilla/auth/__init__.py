"""Identities: the public API's (API keys and JWTs, scopes, run ownership) and the services'
(short-lived tokens each service signs with its own key)."""

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
    display_name,
    jwt_owner,
    key_owner,
    valid_name,
    valid_subject,
)
from flotilla.auth._service import (
    ServiceTokenSigner,
    ServiceTokenVerifier,
    generate_service_key,
    load_trusted_services,
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
    "ServiceTokenSigner",
    "ServiceTokenVerifier",
    "Unauthenticated",
    "acting_for",
    "display_name",
    "generate_service_key",
    "hash_key",
    "jwt_owner",
    "key_owner",
    "load_jwt_config",
    "load_trusted_services",
    "parse_api_keys",
    "valid_name",
    "valid_subject",
]

from __future__ import annotations

import time

import jwt
import pytest

from flotilla.auth import Authenticator, JwtConfig, Unauthenticated, hash_key, parse_api_keys
from flotilla.errors import ConfigurationError


def test_api_keys_are_kept_hashed_and_checked() -> None:
    keys = parse_api_keys('[{"name": "a", "key": "secret", "scopes": ["runs:read"]}]', source="test")
    assert keys[0].sha256 == hash_key("secret") and "secret" not in repr(keys)
    auth = Authenticator(keys)
    identity = auth.authenticate("secret")
    assert identity.name == "a" and identity.allows("runs:read") and not identity.allows("runs:write")
    for bad in (None, "", "Secret", "secret "):
        with pytest.raises(Unauthenticated):
            auth.authenticate(bad)


@pytest.mark.parametrize(
    "text",
    ["not json", "{}", '[{"key": "k"}]', '[{"name": "a"}]', '[{"name": "a", "key": "k", "scopes": ["root"]}]'],
)
def test_bad_key_configuration_is_refused(text: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_api_keys(text, source="FLOTILLA_GATEWAY_API_KEYS")


def test_jwt_claims_become_an_identity() -> None:
    config = JwtConfig(issuer="iss", audience="aud", hs256_secret="s" * 32)
    auth = Authenticator([], config)
    now = int(time.time())
    good = jwt.encode(
        {"sub": "u", "scope": "runs:read admin bogus", "iss": "iss", "aud": "aud", "exp": now + 60}, "s" * 32
    )
    identity = auth.authenticate(good)
    assert identity.name == "u" and identity.is_admin and identity.scopes == {"runs:read", "admin"}
    for claims in (
        {"sub": "u", "iss": "iss", "aud": "other", "exp": now + 60},
        {"sub": "u", "iss": "iss", "aud": "aud"},
    ):
        with pytest.raises(Unauthenticated):
            auth.authenticate(jwt.encode(claims, "s" * 32))
    with pytest.raises(Unauthenticated):
        auth.authenticate(jwt.encode({"sub": "u", "iss": "iss", "aud": "aud", "exp": now + 60}, "x" * 32))

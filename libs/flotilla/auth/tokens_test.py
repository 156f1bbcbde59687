from __future__ import annotations

import time

import jwt
import pytest

from flotilla.auth import (
    Authenticator,
    Identity,
    JwtConfig,
    Unauthenticated,
    acting_for,
    hash_key,
    parse_api_keys,
)
from flotilla.errors import ConfigurationError


def test_api_keys_are_kept_hashed_and_checked() -> None:
    keys = parse_api_keys('[{"name": "a", "key": "secret", "scopes": ["runs:read"]}]', source="test")
    assert keys[0].sha256 == hash_key("secret") and "secret" not in repr(keys)
    auth = Authenticator(keys)
    identity = auth.authenticate("secret")
    assert identity.name == "key:a" and identity.allows("runs:read") and not identity.allows("runs:write")
    for bad in (None, "", "Secret", "secret "):
        with pytest.raises(Unauthenticated):
            auth.authenticate(bad)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "{}",
        '[{"key": "k"}]',
        '[{"name": "a"}]',
        '[{"name": "a", "key": "k", "scopes": ["root"]}]',
        '[{"name": "", "key": "k"}]',
        '[{"name": "ui/ada", "key": "k"}]',  # would look like the UI acting for ada
        '[{"name": "a\\n", "key": "k"}]',
        '[{"name": "a:b", "key": "k"}]',
    ],
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
    assert identity.name == "jwt:iss:u" and identity.is_admin and identity.scopes == {"runs:read", "admin"}
    for claims in (
        {"sub": "u", "iss": "iss", "aud": "other", "exp": now + 60},
        {"sub": "u", "iss": "iss", "aud": "aud"},
    ):
        with pytest.raises(Unauthenticated):
            auth.authenticate(jwt.encode(claims, "s" * 32))
    with pytest.raises(Unauthenticated):
        auth.authenticate(jwt.encode({"sub": "u", "iss": "iss", "aud": "aud", "exp": now + 60}, "x" * 32))


def _jwt(secret: str, **claims: object) -> str:
    return jwt.encode({"iss": "iss", "aud": "aud", "exp": int(time.time()) + 60, **claims}, secret)


@pytest.mark.parametrize("subject", ["", " ", " ada", "a\nb", "tab\there", "x" * 257, "svc/ada", 7])
def test_a_jwt_with_an_empty_or_odd_subject_is_refused(subject: object) -> None:
    auth = Authenticator([], JwtConfig(issuer="iss", audience="aud", hs256_secret="s" * 32))
    with pytest.raises(Unauthenticated):
        auth.authenticate(_jwt("s" * 32, sub=subject, scope="runs:read admin"))


def test_sources_never_share_an_owner() -> None:
    keys = parse_api_keys('[{"name": "ci-bot", "key": "k", "scopes": ["runs:read"]}]', source="test")
    auth = Authenticator(keys, JwtConfig(issuer="iss", audience="aud", hs256_secret="s" * 32))
    by_key = auth.authenticate("k")
    by_jwt = auth.authenticate(_jwt("s" * 32, sub="ci-bot"))
    acted = acting_for(auth.authenticate(_jwt("s" * 32, sub="ui")), "ci-bot")
    assert len({by_key.name, by_jwt.name, acted.name}) == 3, (by_key, by_jwt, acted)


def test_act_as_by_jwt_only_for_configured_subjects() -> None:
    config = JwtConfig(issuer="iss", audience="aud", hs256_secret="s" * 32, act_as_subjects=frozenset({"ui"}))
    auth = Authenticator([], config)
    assert "act_as" not in auth.authenticate(_jwt("s" * 32, sub="mallory", scope="act_as runs:read")).scopes
    assert "act_as" in auth.authenticate(_jwt("s" * 32, sub="ui", scope="act_as")).scopes
    assert auth.authenticate(_jwt("s" * 32, sub="u", scopes=["runs:read", 3])).scopes == {"runs:read"}
    assert auth.authenticate(_jwt("s" * 32, sub="u", scope=42)).scopes == frozenset()


def test_act_as_targets_are_checked_whole() -> None:
    ui = Identity("key:ui", frozenset({"act_as"}))
    assert acting_for(ui, "ada@example.org").name == "key:ui/ada@example.org"
    for bad in ("", "ada\n", "a/b", "x" * 129, "ada bob"):
        with pytest.raises(ValueError):
            acting_for(ui, bad)


def test_clock_skew_leeway_is_configurable() -> None:
    expired = _jwt("s" * 32, sub="u", exp=int(time.time()) - 20)
    lenient = Authenticator([], JwtConfig(issuer="iss", audience="aud", hs256_secret="s" * 32, leeway_s=60))
    strict = Authenticator([], JwtConfig(issuer="iss", audience="aud", hs256_secret="s" * 32, leeway_s=0))
    assert lenient.authenticate(expired).name == "jwt:iss:u"
    with pytest.raises(Unauthenticated, match="expired"):
        strict.authenticate(expired)

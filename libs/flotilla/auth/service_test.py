from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flotilla.auth import (
    ServiceTokenSigner,
    ServiceTokenVerifier,
    Unauthenticated,
    generate_service_key,
    load_trusted_services,
)
from flotilla.errors import ConfigurationError

AUDIENCE = "flotilla.v1.Dispatcher"


def test_a_trusted_service_is_recognised_and_its_token_reused_until_half_life() -> None:
    private, public = generate_service_key()
    signer = ServiceTokenSigner("gateway", private, AUDIENCE)
    verifier = ServiceTokenVerifier({"gateway": public}, AUDIENCE)
    token = signer.token()
    assert signer.token() == token
    assert verifier.verify(token) == "gateway"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256_with(secret: bytes) -> str:
    """The algorithm-confusion forgery: the verifier's public key used as an HMAC secret."""
    now = int(time.time())
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = _b64(json.dumps({"sub": "gateway", "aud": AUDIENCE, "iat": now, "exp": now + 60}).encode())
    signature = hmac.new(secret, f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{_b64(signature)}"


def test_forged_expired_and_misaddressed_tokens_are_refused() -> None:
    private, public = generate_service_key()
    other_private, _ = generate_service_key()
    verifier = ServiceTokenVerifier({"gateway": public}, AUDIENCE, leeway_s=0)
    cases = {
        "a key the dispatcher does not trust": ServiceTokenSigner("gateway", other_private, AUDIENCE).token(),
        "another audience": ServiceTokenSigner("gateway", private, "flotilla.v1.Gateway").token(),
        "an unknown service": ServiceTokenSigner("worker", private, AUDIENCE).token(),
        "HS256 with the public key as secret": _hs256_with(public),
        "no signature": jwt.encode({"sub": "gateway", "aud": AUDIENCE}, "", algorithm="none"),
        "expired": jwt.encode(
            {"sub": "gateway", "aud": AUDIENCE, "iat": 0, "exp": int(time.time()) - 1},
            Ed25519PrivateKey.generate(),
            algorithm="EdDSA",
        ),
        "garbage": "not.a.token",
        "empty": "",
    }
    for case, token in cases.items():
        with pytest.raises(Unauthenticated):
            verifier.verify(token)
            pytest.fail(f"accepted: {case}")


def test_an_expired_token_of_a_trusted_key_says_so() -> None:
    private, public = generate_service_key()
    key = ServiceTokenSigner("gateway", private, AUDIENCE)._key
    token = jwt.encode({"sub": "gateway", "aud": AUDIENCE, "iat": 0, "exp": int(time.time()) - 5}, key, "EdDSA")
    with pytest.raises(Unauthenticated, match="expired"):
        ServiceTokenVerifier({"gateway": public}, AUDIENCE, leeway_s=0).verify(token)


def test_a_token_verified_once_is_refused_after_its_expiry() -> None:
    """Verified tokens are remembered (no signature check per call), never past their expiry."""
    private, public = generate_service_key()
    signer = ServiceTokenSigner("gateway", private, AUDIENCE, lifetime_s=2.0)  # exp: whole seconds, >= 1 s ahead
    verifier = ServiceTokenVerifier({"gateway": public}, AUDIENCE, leeway_s=0)
    token = signer.token()
    assert verifier.verify(token) == "gateway"
    assert verifier.verify(token) == "gateway"  # remembered
    time.sleep(2.2)
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(token)


def test_trusted_keys_come_from_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        load_trusted_services(str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError):
        load_trusted_services(str(tmp_path))  # empty
    _, public = generate_service_key()
    (tmp_path / "gateway.pub").write_bytes(public)
    (tmp_path / "README").write_text("ignored")
    assert load_trusted_services(str(tmp_path)) == {"gateway": public}
    (tmp_path / "bad name.pub").write_bytes(public)
    with pytest.raises(ConfigurationError):
        load_trusted_services(str(tmp_path))


def test_keys_that_are_not_ed25519_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        ServiceTokenSigner("gateway", b"not a key", AUDIENCE)
    with pytest.raises(ConfigurationError):
        ServiceTokenVerifier({"gateway": b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}, AUDIENCE)

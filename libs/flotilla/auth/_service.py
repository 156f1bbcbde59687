"""Service identities: short-lived tokens a service signs with its own Ed25519 key.

A calling service (the gateway) signs a JWT (EdDSA) naming itself (`sub`), the service it calls
(`aud`, e.g. `flotilla.v1.Dispatcher`) and an expiry minutes ahead. The called service verifies it
with the caller's public key, from its list of trusted services. Each service holds only its own
private key, so none can speak as another, and a token that leaks is good for one audience for a
few minutes. Tokens travel as gRPC metadata (`authorization: Bearer <token>`); TLS, a separate
switch, keeps them off the wire in the clear.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from flotilla.auth._identity import valid_name
from flotilla.auth._tokens import Unauthenticated
from flotilla.errors import ConfigurationError

ALGORITHM = "EdDSA"
VERIFIED_TOKENS = 256
"""Verified tokens remembered (each caller holds one at a time; a renewal adds one)."""
PUBLIC_KEY_SUFFIX = ".pub"


def generate_service_key() -> tuple[bytes, bytes]:
    """A new Ed25519 key pair as (private PEM, public PEM)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def _private_key(pem: bytes, source: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except ValueError as exc:
        raise ConfigurationError(f"{source}: not a PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"{source}: an Ed25519 private key is needed")
    return key


def _public_key(pem: bytes, source: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise ConfigurationError(f"{source}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigurationError(f"{source}: an Ed25519 public key is needed")
    return key


class ServiceTokenSigner:
    """Tokens for `identity` calling `audience`, each valid `lifetime_s`, renewed at half-life."""

    def __init__(self, identity: str, private_key_pem: bytes, audience: str, *, lifetime_s: float = 300.0) -> None:
        if not valid_name(identity):
            raise ConfigurationError(f"service identity {identity!r} is not a valid name")
        self._identity = identity
        self._key = _private_key(private_key_pem, f"the private key of {identity}")
        self._audience = audience
        self._lifetime_s = lifetime_s
        self._lock = threading.Lock()
        self._token = ""
        self._renew_at = 0.0

    @classmethod
    def from_file(cls, identity: str, path: str, audience: str) -> ServiceTokenSigner:
        file = Path(path)
        if not file.is_file():
            raise ConfigurationError(f"the service key {path} does not exist")
        return cls(identity, file.read_bytes(), audience)

    def token(self) -> str:
        now = time.time()
        with self._lock:
            if now >= self._renew_at:
                claims = {
                    "sub": self._identity,
                    "aud": self._audience,
                    "iat": int(now),
                    "exp": int(now + self._lifetime_s),
                    "jti": uuid.uuid4().hex,
                }
                self._token = jwt.encode(claims, self._key, algorithm=ALGORITHM)
                self._renew_at = now + self._lifetime_s / 2
            return self._token


class ServiceTokenVerifier:
    """Accepts tokens for `audience` signed by one of `trusted` (identity -> public key PEM)."""

    def __init__(self, trusted: Mapping[str, bytes], audience: str, *, leeway_s: float = 30.0) -> None:
        self._keys = {name: _public_key(pem, f"the public key of {name}") for name, pem in trusted.items()}
        self._audience = audience
        self._leeway_s = leeway_s
        # Verified tokens (a signer reuses one for minutes): an Ed25519 check per call is most of
        # the cost of authenticating it. The expiry is still enforced on every call.
        self._verified: OrderedDict[str, tuple[str, float]] = OrderedDict()

    @property
    def identities(self) -> frozenset[str]:
        return frozenset(self._keys)

    def verify(self, token: str | None) -> str:
        """The calling service's identity, or Unauthenticated saying why not."""
        if not token:
            raise Unauthenticated("a service token is required (authorization: Bearer <token>)")
        known = self._verified.get(token)
        if known is not None and time.time() < known[1]:
            return known[0]
        name, expires = self._verify_signed(token)
        self._verified[token] = (name, expires + self._leeway_s)
        while len(self._verified) > VERIFIED_TOKENS:
            self._verified.popitem(last=False)
        return name

    def _verify_signed(self, token: str) -> tuple[str, float]:
        try:
            unverified: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"the service token is not a JWT: {exc}") from None
        name = unverified.get("sub")
        key = self._keys.get(name) if isinstance(name, str) else None
        if header.get("alg") != ALGORITHM or key is None:
            raise Unauthenticated("the service token is not signed by a trusted service")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                leeway=self._leeway_s,
                options={"require": ["exp", "sub", "aud", "iat"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the service token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"the service token is not valid: {exc}") from None
        return str(name), float(claims["exp"])


def load_trusted_services(directory: str) -> dict[str, bytes]:
    """`<identity>.pub` files (Ed25519 public keys, PEM) in `directory`: the services trusted to call."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ConfigurationError(f"the trusted service keys directory {directory} does not exist")
    trusted = {}
    for path in sorted(folder.glob(f"*{PUBLIC_KEY_SUFFIX}")):
        name = path.name.removesuffix(PUBLIC_KEY_SUFFIX)
        if not valid_name(name):
            raise ConfigurationError(f"{path}: {name!r} is not a valid service name")
        trusted[name] = path.read_bytes()
    if not trusted:
        raise ConfigurationError(f"no <service>{PUBLIC_KEY_SUFFIX} public keys in {directory}")
    return trusted

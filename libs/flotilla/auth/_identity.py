"""Who is calling the public API, and what they may do.

Identities from different sources live in different namespaces, so they never share runs: an
API key named `ci-bot` is `key:ci-bot`, a JWT subject `ci-bot` from issuer I is `jwt:I:ci-bot`,
and a person a service signs in (act_as) lives under that service: `key:ui/ada`. Names and
subjects are checked whole (no control characters, no `/`), so no spelling of one can be another.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SCOPE_RUNS_READ = "runs:read"
"""List and read runs, their events and streams."""
SCOPE_RUNS_WRITE = "runs:write"
"""Start runs, answer their questions, cancel them."""
SCOPE_WORKFLOWS_READ = "workflows:read"
"""List the workflow catalogue."""
SCOPE_ADMIN = "admin"
"""See and act on every identity's runs."""
SCOPE_ACT_AS = "act_as"
"""A service (the UI) acting for a person it signed in: gRPC `flotilla-act-as` metadata."""
ALL_SCOPES = frozenset({SCOPE_RUNS_READ, SCOPE_RUNS_WRITE, SCOPE_WORKFLOWS_READ, SCOPE_ADMIN, SCOPE_ACT_AS})
USER_SCOPES = frozenset({SCOPE_RUNS_READ, SCOPE_RUNS_WRITE, SCOPE_WORKFLOWS_READ})


_NAME = re.compile(r"[A-Za-z0-9._@+=~-]{1,128}")
MAX_SUBJECT_CHARS = 256


def valid_name(value: object) -> bool:
    """An API key's, a service's or an act_as target's name: 1-128 of `A-Z a-z 0-9 . _ @ + = ~ -`."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def valid_subject(value: object) -> bool:
    """A JWT subject: 1-256 printable characters, none of them `/`, not starting or ending with a space."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_SUBJECT_CHARS:
        return False
    return value.isprintable() and value.strip() == value and "/" not in value


def key_owner(name: str) -> str:
    return f"key:{name}"


def jwt_owner(issuer: str, subject: str) -> str:
    return f"jwt:{issuer}:{subject}"


def display_name(owner: str) -> str:
    """The part of an owner a person recognises: `ada` for `key:ui/ada`, `key:ada` or `jwt:I:ada`."""
    if "/" in owner:
        return owner.rsplit("/", 1)[1]
    if owner.startswith("key:"):
        return owner.removeprefix("key:")
    if owner.startswith("jwt:"):
        return owner.rsplit(":", 1)[1]
    return owner


@dataclass(frozen=True)
class Identity:
    """An authenticated caller: runs it starts belong to `name`."""

    name: str
    """The owner its runs get: `key:<name>`, `jwt:<issuer>:<subject>` or `<service>/<person>`."""
    scopes: frozenset[str]
    via: str = "api_key"
    """How it authenticated: `api_key`, `jwt`, or `act_as` (a service acting for it)."""

    @property
    def is_admin(self) -> bool:
        return SCOPE_ADMIN in self.scopes

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or self.is_admin


def acting_for(service: Identity, name: str) -> Identity:
    """The person a service with the act_as scope acts for, in that service's own namespace
    (`key:ui/ada`): user scopes only, never admin. ValueError for a name that is not valid."""
    if not valid_name(name):
        raise ValueError(f"{name!r} is not a valid identity to act for (1-128 of A-Z a-z 0-9 . _ @ + = ~ -)")
    return Identity(f"{service.name}/{name}", USER_SCOPES, via="act_as")

"""Who is calling the public API, and what they may do."""

from __future__ import annotations

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


@dataclass(frozen=True)
class Identity:
    """An authenticated caller: runs it starts belong to `name`."""

    name: str
    scopes: frozenset[str]
    via: str = "api_key"
    """How it authenticated: `api_key`, `jwt`, or `act_as` (a service acting for it)."""

    @property
    def is_admin(self) -> bool:
        return SCOPE_ADMIN in self.scopes

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or self.is_admin


def acting_for(service: Identity, name: str) -> Identity:
    """The identity a service with the act_as scope acts for: user scopes only, never admin."""
    return Identity(name, USER_SCOPES, via="act_as")

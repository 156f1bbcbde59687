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
ALL_SCOPES = frozenset({SCOPE_RUNS_READ, SCOPE_RUNS_WRITE, SCOPE_WORKFLOWS_READ, SCOPE_ADMIN})
USER_SCOPES = frozenset({SCOPE_RUNS_READ, SCOPE_RUNS_WRITE, SCOPE_WORKFLOWS_READ})


@dataclass(frozen=True)
class Identity:
    """An authenticated caller: runs it starts belong to `name`."""

    name: str
    scopes: frozenset[str]
    via: str = "api_key"
    """How it authenticated: `api_key` or `jwt`."""

    @property
    def is_admin(self) -> bool:
        return SCOPE_ADMIN in self.scopes

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or self.is_admin

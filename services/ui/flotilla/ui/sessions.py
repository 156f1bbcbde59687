"""Signed-in people, kept on the server: a random session id -> whose credentials.

Mesop's page state travels through the browser, so it never holds an identity or a key: only the
session id (unguessable, 256 bits), also kept in an HttpOnly cookie so a reload finds it again.
Sessions live in this process (one gunicorn worker); restarting the UI signs everyone out.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from flotilla.ui.gateway import Credentials


@dataclass(frozen=True)
class Session:
    identity: str
    credentials: Credentials
    via: str
    """"password" or "api_key": how the person signed in."""


class SessionStore:
    """Thread-safe; a session unused for `idle_timeout_s` is forgotten."""

    def __init__(self, *, idle_timeout_s: float = 12 * 3600, clock: Callable[[], float] = time.monotonic) -> None:
        self._idle_timeout_s = idle_timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, tuple[Session, float]] = {}

    def create(self, session: Session) -> str:
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            self._expire()
            self._sessions[session_id] = (session, self._clock())
        return session_id

    def get(self, session_id: str) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            found = self._sessions.get(session_id)
            if found is None or self._clock() - found[1] > self._idle_timeout_s:
                self._sessions.pop(session_id, None)
                return None
            self._sessions[session_id] = (found[0], self._clock())
            return found[0]

    def drop(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def _expire(self) -> None:
        now = self._clock()
        for key in [k for k, (_, used) in self._sessions.items() if now - used > self._idle_timeout_s]:
            del self._sessions[key]

"""Signed-in people, kept on the server: a random session id -> whose credentials.

The session id (unguessable, 256 bits) lives only in an HttpOnly cookie, out of page scripts'
reach. Mesop's page state, which travels through the browser where scripts can read it, holds a
page token instead: it names the session only together with the cookie, or, for the first
PAGE_GRACE_S after sign-in (before the browser has stored the cookie), alone. A token lifted from
the page is worth nothing elsewhere after that minute. Sessions live in this process (one
gunicorn worker); restarting the UI signs everyone out.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from flotilla.ui.gateway import Credentials

COOKIE = "flotilla_session"
PAGE_GRACE_S = 60.0
"""How long a page token alone names its session: the browser stores the cookie well before."""


@dataclass(frozen=True)
class Session:
    identity: str
    credentials: Credentials
    via: str
    """"password" or "api_key": how the person signed in."""
    admin: bool = False
    """The credentials carry the admin scope (an admin's own API key; never a password sign-in)."""


class SessionStore:
    """Thread-safe; a session unused for `idle_timeout_s` is forgotten."""

    def __init__(self, *, idle_timeout_s: float = 12 * 3600, clock: Callable[[], float] = time.monotonic) -> None:
        self._idle_timeout_s = idle_timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, tuple[Session, float]] = {}
        self._pages: dict[str, tuple[str, float]] = {}  # page token -> (session id, issued)

    def create(self, session: Session) -> str:
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            self._expire()
            self._sessions[session_id] = (session, self._clock())
        return session_id

    def page_token(self, session_id: str) -> str:
        """A token for one page of `session_id` (see the module's note)."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._pages[token] = (session_id, self._clock())
        return token

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            found = self._sessions.get(session_id)
            if found is None or self._clock() - found[1] > self._idle_timeout_s:
                self._sessions.pop(session_id, None)
                return None
            self._sessions[session_id] = (found[0], self._clock())
            return found[0]

    def for_page(self, token: str, cookie: str | None) -> tuple[str, Session] | None:
        """(session id, session) for a page's token and the request's cookie, if they agree."""
        with self._lock:
            page = self._pages.get(token) if token else None
        if page is None:
            return None
        session_id, issued = page
        if cookie != session_id and (cookie or self._clock() - issued > PAGE_GRACE_S):
            return None
        session = self.get(session_id)
        return None if session is None else (session_id, session)

    def drop(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)
            for token in [t for t, (sid, _) in self._pages.items() if sid == session_id]:
                del self._pages[token]

    def _expire(self) -> None:
        now = self._clock()
        for key in [k for k, (_, used) in self._sessions.items() if now - used > self._idle_timeout_s]:
            del self._sessions[key]
        live = set(self._sessions)
        for token in [t for t, (sid, _) in self._pages.items() if sid not in live]:
            del self._pages[token]

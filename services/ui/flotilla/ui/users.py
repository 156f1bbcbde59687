"""People who sign in with a username and password, from configuration (FLOTILLA_UI_USERS).

Each entry maps a username to a gateway identity: `{"username": "ada", "identity": "ada",
"password_hash": "scrypt$..."}` (or `"password": "..."` in plain text, for development). Make a hash
with `python -m flotilla.ui.users` (reads the password without echoing it).
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import json
import secrets
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from flotilla.auth import valid_name
from flotilla.errors import ConfigurationError

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**17, 8, 1
"""OWASP's current guidance for scrypt: 128 MiB and ~0.3 s a hash here. (Hashes made with other
parameters still verify: they are stored in the hash.)"""
_SCRYPT_MAXMEM = 256 * 1024 * 1024
_HASHING = threading.BoundedSemaphore(2)
"""At most two hashes at once: each takes 128 MiB, and guesses at many usernames must not add up."""


class BadUsersConfig(ConfigurationError):
    """FLOTILLA_UI_USERS cannot be used (the message names what is wrong, never a password)."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    with _HASHING:
        return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=32)


def hash_password(password: str) -> str:
    """A salted scrypt hash: `scrypt$N$r$p$salt$hash` (base64url)."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored_hash: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored_hash.split("$")
        if scheme != "scrypt":
            return False
        computed = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
        return hmac.compare_digest(computed, _unb64(digest))
    except ValueError:
        return False


@dataclass(frozen=True)
class User:
    username: str
    identity: str
    password_hash: str | None = None
    password: str | None = None

    def check(self, password: str) -> bool:
        if self.password_hash is not None:
            return verify_password(password, self.password_hash)
        return self.password is not None and hmac.compare_digest(password.encode(), self.password.encode())


# Checked against when the username is unknown, so a wrong name costs as long as a wrong password.
_DECOY = User(username="", identity="", password_hash=hash_password(secrets.token_hex(8)))


_MAX_TRACKED = 10_000
"""Usernames with recent failures kept before stale ones are swept."""


class TooManyAttempts(Exception):
    """Too many wrong passwords for a username lately; `retry_after_s` until it may try again."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many failed sign-ins; try again in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


class UserDirectory:
    """Configured users, with guessing slowed down: after `max_failures` wrong passwords for one
    username within `window_s`, that username is refused unchecked until the oldest failure ages out."""

    def __init__(
        self,
        users: Mapping[str, User],
        *,
        max_failures: int = 5,
        window_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._users = dict(users)
        self._max_failures = max_failures
        self._window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._pending: dict[str, int] = {}  # checks in progress per username
        self._lock = threading.Lock()  # gunicorn's threads share the directory

    def __len__(self) -> int:
        return len(self._users)

    def authenticate(self, username: str, password: str) -> User | None:
        """The user when the password is right, else None (same answer for an unknown name);
        TooManyAttempts while the username is locked out. A check in progress counts as a failure
        until it is known not to be one, so concurrent guesses cannot slip past the limit."""
        name = username.strip()
        self._reserve(name)
        user = self._users.get(name)
        ok = (user or _DECOY).check(password)
        with self._lock:
            self._pending[name] -= 1
            if not self._pending[name]:
                del self._pending[name]
            if user is not None and ok:
                self._failures.pop(name, None)
                return user
            now = self._clock()
            self._failures.setdefault(name, deque()).append(now)
            if len(self._failures) > _MAX_TRACKED:  # many made-up names: forget the stale ones
                stale = [n for n, times in self._failures.items() if now - times[-1] > self._window_s]
                for n in stale:
                    del self._failures[n]
        return None

    def _reserve(self, name: str) -> None:
        """Count an attempt for `name` in, or TooManyAttempts if its failures and the attempts in
        progress already reach the limit."""
        with self._lock:
            now = self._clock()
            failures = self._failures.get(name)
            while failures and now - failures[0] > self._window_s:
                failures.popleft()
            if failures is not None and not failures:
                del self._failures[name]  # the table stays as small as the recent guessing
                failures = None
            if len(failures or ()) + self._pending.get(name, 0) >= self._max_failures:
                oldest = failures[0] if failures else now
                raise TooManyAttempts(max(1.0, self._window_s - (now - oldest)))
            self._pending[name] = self._pending.get(name, 0) + 1


def parse_users(text: str) -> UserDirectory:
    """FLOTILLA_UI_USERS as JSON: a list of `{"username", "identity", "password" | "password_hash"}`."""
    if not text.strip():
        return UserDirectory({})
    try:
        entries = json.loads(text)
    except ValueError:
        raise BadUsersConfig("FLOTILLA_UI_USERS is not valid JSON") from None
    if not isinstance(entries, list):
        raise BadUsersConfig("FLOTILLA_UI_USERS must be a JSON list of users")
    users: dict[str, User] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise BadUsersConfig(f"FLOTILLA_UI_USERS[{i}] must be an object")
        username, identity = entry.get("username"), entry.get("identity", entry.get("username"))
        password, password_hash = entry.get("password"), entry.get("password_hash")
        if (
            not isinstance(username, str)
            or not username.strip()
            or not isinstance(identity, str)
            or not valid_name(identity)
        ):
            raise BadUsersConfig(
                f"FLOTILLA_UI_USERS[{i}] needs a username, and an identity (default: the username) of 1-128 "
                "characters from A-Z a-z 0-9 . _ @ + = ~ -"
            )
        if (password is None) == (password_hash is None):
            raise BadUsersConfig(f"FLOTILLA_UI_USERS[{i}] ({username}) needs exactly one of password, password_hash")
        if password is not None and (not isinstance(password, str) or not password):
            raise BadUsersConfig(f"FLOTILLA_UI_USERS[{i}] ({username}): password must be a non-empty string")
        if password_hash is not None and (not isinstance(password_hash, str) or password_hash.count("$") != 5):
            raise BadUsersConfig(f"FLOTILLA_UI_USERS[{i}] ({username}): password_hash is not a scrypt$... hash")
        if username.strip() in users:
            raise BadUsersConfig(f"FLOTILLA_UI_USERS: username {username!r} appears twice")
        users[username.strip()] = User(
            username=username.strip(), identity=identity, password=password, password_hash=password_hash
        )
    return UserDirectory(users)


def main() -> None:
    """Print the password_hash of a password typed at the prompt (or piped on stdin)."""
    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if not password:
        sys.exit("an empty password cannot be used")
    sys.stdout.write(hash_password(password) + "\n")


if __name__ == "__main__":
    main()

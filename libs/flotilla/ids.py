"""Identifiers: run ids sort by creation time, so the newest run has the greatest id."""

from __future__ import annotations

import os
import re
import time

# Matched with fullmatch: `$` would also accept a trailing newline, which would reach NATS.
_RUN_ID = re.compile(r"[0-9a-f]{26}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")


def new_run_id() -> str:
    """A 26-hex-digit id: 12 digits of milliseconds since the epoch, then 14 random ones."""
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(7).hex()}"


def is_run_id(value: str) -> bool:
    """True when `value` has the shape of a run id (safe to use as a NATS subject token)."""
    return _RUN_ID.fullmatch(value) is not None


def new_request_id() -> str:
    """An id for one question a run asks."""
    return os.urandom(8).hex()


def is_subject_token(value: str) -> bool:
    """True when `value` is safe as one NATS subject token and KV key part: ASCII letters,
    digits, '_' and '-' (workflow names, request ids)."""
    return _TOKEN.fullmatch(value) is not None

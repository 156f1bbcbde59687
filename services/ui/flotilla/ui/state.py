"""The page's state. It round-trips through the browser, so nothing in it is trusted: it names a
session (whose credentials stay on the server) and caches what the gateway said, for rendering."""

from __future__ import annotations

import json
from dataclasses import field
from typing import Any

import mesop as me

from flotilla.ui.sessions import COOKIE, Session
from flotilla.ui.services import current

RUN_PARAM = "run"
"""The query parameter naming the open run."""


@me.stateclass
class State:
    page_token: str = ""
    """Names the server-side session only together with its HttpOnly cookie (sessions.py)."""
    identity: str = ""
    """For display only; every call's identity comes from the session."""
    admin: bool = False
    """For display only (the admin view); the gateway checks the scope on every admin call."""
    dead_letters_json: str = ""
    """The admin view, when open: the dead letters as JSON (a list)."""
    # Sign-in form.
    username: str = ""
    password: str = ""
    api_key: str = ""
    sign_in_error: str = ""
    # Catalogue and the start form.
    workflows_json: str = "[]"
    selected_workflow: str = ""
    param_values: dict[str, str] = field(default_factory=dict)
    params_text: str = "{}"
    start_key: str = ""
    """Idempotency key of the next start: a double click starts one run."""
    start_error: str = ""
    # History.
    runs_json: str = "[]"
    history_error: str = ""
    # The open run.
    run_id: str = ""
    workflow: str = ""
    run_status: str = ""
    events: list[str] = field(default_factory=list)
    """The run's visible events as JSON, in seq order."""
    last_seq: int = 0
    """Highest seq absorbed (hidden events included): the next watch starts after it."""
    reply_json: str = ""
    """The reply an agent's model is writing (JSON: reply_id, sender, after_seq, index, text),
    until an event after it arrives; "" when none is."""
    watching: bool = False
    tick: int = 0
    drafts: dict[str, str] = field(default_factory=dict)
    """request_id -> the answer being composed (multi-select: comma-separated)."""
    sent: dict[str, str] = field(default_factory=dict)
    """request_id -> answer sent from this page, until the log records it."""
    run_error: str = ""
    # The open run's thread.
    earlier: list[str] = field(default_factory=list)
    """The visible events of the thread's earlier runs, oldest run first: one JSON list per run."""
    reply_text: str = ""
    reply_key: str = ""
    """Idempotency key of the next reply: a double click replies once."""


def session_of(state: State) -> Session | None:
    found = current().sessions.for_page(state.page_token, me.cookie(COOKIE))
    return None if found is None else found[1]


def events_of(state: State) -> list[dict[str, Any]]:
    return [json.loads(e) for e in state.events]


def workflows_of(state: State) -> list[dict[str, str]]:
    return list(json.loads(state.workflows_json or "[]"))


def runs_of(state: State) -> list[dict[str, Any]]:
    return list(json.loads(state.runs_json or "[]"))


def reply_of(state: State) -> dict[str, Any] | None:
    """The reply being written, if one is."""
    return json.loads(state.reply_json) if state.reply_json else None

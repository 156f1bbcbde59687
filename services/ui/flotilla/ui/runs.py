"""What the page does with runs, on its state: load the catalogue and history, open a run, take in
new events without repeats, answer, cancel. Every call goes to the gateway as the session's person."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable

from flotilla.events import (
    STATUS_NAMES,
    TERMINAL_STATUSES,
    dead_letter_to_json,
    event_to_json,
    is_terminal,
    run_to_json,
)
from flotilla.protocol import ReplyDelta, Run, RunEvent
from flotilla.ui import transcript
from flotilla.ui.gateway import GatewayError
from flotilla.ui.sessions import Session
from flotilla.ui.services import current
from flotilla.ui.state import State, events_of, reply_of

WATCH_WAIT_S = 1.0
"""How long one tick waits for new events while agents work. A click waits at most this long
(the page handles one event at a time); new events show as soon as they arrive."""
POLL_DELAY_MS = 1000
"""Between ticks while the run waits for the person (a question may still time out)."""
WATCH_DELAY_MS = 20
"""Between ticks while agents work (each tick itself waits up to WATCH_WAIT_S)."""


def load_catalogue(state: State, session: Session) -> None:
    workflows = current().gateway.list_workflows(session.credentials)
    state.workflows_json = json.dumps(
        [{"name": w.name, "description": w.description, "schema": w.params_schema_json} for w in workflows]
    )
    if not state.start_key:
        state.start_key = secrets.token_urlsafe(12)


def load_history(state: State, session: Session) -> None:
    try:
        runs = current().gateway.list_runs(session.credentials, limit=50)
    except GatewayError as exc:
        state.history_error = str(exc)
        return
    state.history_error = ""
    state.runs_json = json.dumps(
        [
            {
                k: v
                for k, v in run_to_json(r).items()
                if k in ("run_id", "workflow", "status", "created_at", "params", "waiting_for_input")
            }
            for r in runs
        ]
    )


def close_run(state: State) -> None:
    state.run_id = state.workflow = state.run_status = state.run_error = ""
    state.events = []
    state.last_seq = 0
    state.reply_json = ""
    state.watching = False
    state.drafts = {}
    state.sent = {}
    state.earlier = []
    state.reply_text = ""
    state.dead_letters_json = ""


def open_run(state: State, session: Session, run_id: str) -> None:
    """Show a run from its first event; keep watching it if it has not ended."""
    close_run(state)
    gateway = current().gateway
    try:
        run = gateway.get_run(session.credentials, run_id)
        _set_run(state, run)
        absorb(state, gateway.list_events(session.credentials, run_id, after_seq=0))
        load_earlier(state, session, run)
    except GatewayError as exc:
        state.run_error = f"Cannot open run {run_id}: {exc}"
        return
    state.watching = not transcript.build(events_of(state)).finished


MAX_EARLIER_RUNS = 20
"""Earlier runs of a thread shown above the open one (the latest ones)."""


def load_earlier(state: State, session: Session, run: Run) -> None:
    """The thread's earlier runs, for the page to show the whole conversation."""
    gateway = current().gateway
    earlier: list[str] = []
    previous = run.reply_to
    while previous and len(earlier) < MAX_EARLIER_RUNS:
        try:
            record = gateway.get_run(session.credentials, previous)
            events = gateway.list_events(session.credentials, previous, after_seq=0)
        except GatewayError:
            break  # expired: the conversation shown starts after it
        earlier.append(json.dumps([_earlier_event(e) for e in events]))
        previous = record.reply_to
    state.earlier = list(reversed(earlier))


def _earlier_event(event: RunEvent) -> dict[str, object]:
    """An earlier run's event for display: its question ids made unique on the page (they are
    keys of the answer controls, and every run numbers its questions from q1)."""
    data = event_to_json(event)
    if data.get("request_id"):
        data["request_id"] = f"{event.run_id}-{data['request_id']}"
    return data


def reply(state: State, session: Session, message: str) -> None:
    """Say one more thing to the open run's thread, then show the reply's run (the thread's
    earlier runs above it)."""
    if not message.strip():
        state.run_error = "Write a message first."
        return
    if not state.reply_key:
        state.reply_key = secrets.token_urlsafe(12)
    try:
        run = current().gateway.reply_run(
            session.credentials, state.run_id, message.strip(), idempotency_key=state.reply_key
        )
    except GatewayError as exc:
        state.run_error = f"The reply was not sent: {exc}"
        return
    state.reply_key = ""
    open_run(state, session, run.run_id)
    load_history(state, session)


def fork(state: State, session: Session, at_seq: int) -> None:
    """Fork the open run at `at_seq` (a question: it is asked again) and show the fork."""
    try:
        run = current().gateway.fork_run(
            session.credentials, state.run_id, at_seq, idempotency_key=f"{state.run_id}:{at_seq}:{secrets.token_hex(4)}"
        )
    except GatewayError as exc:
        state.run_error = f"Cannot fork: {exc}"
        return
    open_run(state, session, run.run_id)
    load_history(state, session)


def retry(state: State, session: Session, run_id: str) -> None:
    """Admins: retry a failed run and show the new run."""
    try:
        run = current().gateway.retry_run(
            session.credentials, run_id, idempotency_key=f"{run_id}:{secrets.token_hex(4)}"
        )
    except GatewayError as exc:
        state.run_error = f"Cannot retry: {exc}"
        return
    state.dead_letters_json = ""
    open_run(state, session, run.run_id)
    load_history(state, session)


def load_dead_letters(state: State, session: Session) -> None:
    """Admins: open the dead letters view."""
    try:
        letters = current().gateway.list_dead_letters(session.credentials)
    except GatewayError as exc:
        state.run_error = f"Cannot list dead letters: {exc}"
        return
    close_run(state)
    state.dead_letters_json = json.dumps([dead_letter_to_json(letter) for letter in letters])


def _set_run(state: State, run: Run) -> None:
    state.run_id = run.run_id
    state.workflow = run.workflow
    state.run_status = STATUS_NAMES.get(run.status, "unknown")


def absorb(state: State, events: Iterable[RunEvent]) -> bool:
    """Take in events past `last_seq` (an event seen before is skipped); True if any was new."""
    fresh = False
    for event in sorted(events, key=lambda e: e.seq):
        if event.run_id != state.run_id or event.seq <= state.last_seq:
            continue
        fresh = True
        state.last_seq = event.seq
        data = event_to_json(event)
        if not data.get("hidden"):
            state.events.append(json.dumps(data))
        if data["type"] == "input_answered":
            state.sent.pop(str(data.get("request_id")), None)
        if data["type"] in ("workflow_started", "run_retried") and state.run_status in ("", "queued"):
            state.run_status = "running"
        if is_terminal(event):
            state.run_status = str(data.get("status") or "completed")
            state.watching = False
    reply = reply_of(state)
    if reply is not None and state.last_seq > reply["after_seq"]:
        state.reply_json = ""  # an event after the reply began: its finished message, or the run moved on
    return fresh


def absorb_deltas(state: State, deltas: Iterable[ReplyDelta]) -> None:
    """Grow the reply being written: a delta continuing it is appended, one starting from the
    beginning (a new reply, or the text so far) replaces it; repeats, gaps and replies the page has
    moved past are ignored (the finished message comes as an event)."""
    for delta in deltas:
        if delta.run_id != state.run_id or delta.after_seq < state.last_seq:
            continue
        reply = reply_of(state)
        if delta.first_index == 0:
            reply = {"reply_id": delta.reply_id, "sender": delta.sender, "after_seq": delta.after_seq, "text": ""}
        elif reply is None or reply["reply_id"] != delta.reply_id or delta.first_index != reply["index"] + 1:
            continue
        reply["text"] += delta.text
        reply["index"] = delta.index
        state.reply_json = json.dumps(reply)


def waiting_for_person(state: State) -> bool:
    """The run's latest question is unanswered (and not just answered from this page)."""
    return any(q["request_id"] not in state.sent for q in transcript.build(events_of(state)).open_questions)


def watch_once(state: State, session: Session) -> None:
    """One tick: take in what arrived since `last_seq`, waiting briefly when agents are working."""
    gateway = current().gateway
    if waiting_for_person(state):
        events = gateway.list_events(session.credentials, state.run_id, after_seq=state.last_seq)
    else:
        started = time.monotonic()
        reply = reply_of(state)
        have = (str(reply["reply_id"]), int(reply["index"])) if reply else ("", -1)
        events, deltas = gateway.next_update(
            session.credentials, state.run_id, after_seq=state.last_seq, wait_s=WATCH_WAIT_S, reply=have
        )
        if deltas:
            absorb_deltas(state, deltas)
        if not events and not deltas and time.monotonic() - started < WATCH_WAIT_S / 2:
            # The watch ended at once with nothing new: never spin; trust the run record instead.
            run = gateway.get_run(session.credentials, state.run_id)
            if run.status in TERMINAL_STATUSES:
                _set_run(state, run)
                state.watching = False
                load_history(state, session)
            return
    if absorb(state, events) and not state.watching:
        load_history(state, session)  # the run ended: its badge in the sidebar changes


def tick_delay_ms(state: State) -> int:
    return POLL_DELAY_MS if waiting_for_person(state) else WATCH_DELAY_MS


def answer(state: State, session: Session, request_id: str, value: str, shown: str) -> None:
    """Send an answer; `shown` is what the transcript shows until the log has it (masked passwords)."""
    if request_id in state.sent:
        return  # a double click answers once
    try:
        current().gateway.submit_input(session.credentials, state.run_id, request_id, value)
    except GatewayError as exc:
        state.run_error = f"The answer was not taken: {exc}"
        return
    state.run_error = ""
    state.sent[request_id] = shown
    state.drafts.pop(request_id, None)
    state.watching = True


def cancel(state: State, session: Session) -> None:
    try:
        run = current().gateway.cancel_run(session.credentials, state.run_id)
    except GatewayError as exc:
        state.run_error = f"Cannot cancel: {exc}"
        return
    if run.cancel_requested:
        state.run_error = ""
    state.watching = True  # the cancelled completion event is still to come

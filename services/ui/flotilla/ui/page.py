"""The chat page: sign-in, the workflow catalogue and start form, run history, the open run.

The open run's id is in the URL (`?run=<id>`) and the session id in an HttpOnly cookie, so a
reload reopens the same run from its first event and carries on live from there.
"""

from __future__ import annotations

import json
from typing import Any

import mesop as me

from flotilla.auth import display_name

from flotilla.ui import catalogue, render, runs, signin, words
from flotilla.ui.gateway import GatewayError
from flotilla.ui.state import RUN_PARAM, State, events_of, reply_of, runs_of, session_of
from flotilla.ui.ticker import ticker
from flotilla.ui.transcript import QUESTION_KINDS, Transcript, build

STYLESHEET = "/__flotilla__/ui.css"
_OPEN = me.Style(background="#e8f0fe", border=me.Border.all(me.BorderSide(width=2, style="solid", color="#1a73e8")))


def on_load(e: me.LoadEvent) -> None:
    state = me.state(State)
    session = signin.restore(state)
    if session is None:
        return
    runs.load_history(state, session)
    run_id = me.query_params.get(RUN_PARAM, "")
    try:
        if run_id:
            runs.open_run(state, session, run_id)
        else:
            runs.load_catalogue(state, session)
    except GatewayError as exc:
        state.start_error = str(exc)


@me.page(path="/", title="Flotilla", on_load=on_load, stylesheets=[STYLESHEET])
def index() -> None:
    state = me.state(State)
    if not state.page_token:
        signin.form(state)
        return
    with me.box(classes="shell"):
        _top_bar(state)
        with me.box(classes="body"):
            _sidebar(state)
            with me.box(classes="main"):
                if state.dead_letters_json:
                    _dead_letters(state)
                elif state.run_id or state.run_error:
                    _open_run(state)
                else:
                    catalogue.form(state)


def _top_bar(state: State) -> None:
    with me.box(classes="top-bar"):
        me.text("Flotilla", type="headline-6", style=me.Style(margin=me.Margin.all(0)))
        with me.box(classes="who"):
            me.text(f"Signed in as {display_name(state.identity)}")
            me.button("Sign out", type="stroked", on_click=signin.on_sign_out, key="sign-out")


def _sidebar(state: State) -> None:
    with me.box(classes="sidebar"):
        me.button("New run", type="flat", color="primary", on_click=on_new_run, key="new-run")
        if state.admin:
            me.button("Dead letters", type="stroked", on_click=on_dead_letters, key="dead-letters")
        with me.box(classes="history-head"):
            me.text("Your runs", type="subtitle-2")
            me.button("Refresh", type="stroked", on_click=on_refresh, key="refresh-runs")
        if state.history_error:
            me.text(state.history_error, style=me.Style(color="#a50e0e"))
        entries = runs_of(state)
        if not entries:
            me.text("No runs yet.", style=me.Style(color="#5f6368"))
        for entry in entries:
            current = entry["run_id"] == state.run_id
            # Same type for every entry (Mesop loses a content button's children when its type
            # changes); the open run shows in its style.
            with (
                me.content_button(
                    type="stroked",
                    on_click=on_open_run,
                    key=f"open::{entry['run_id']}",
                    style=_OPEN if current else None,
                ),
                me.box(classes="history-entry"),
            ):
                me.text(entry["workflow"], style=me.Style(font_weight=600 if current else 400))
                status_badge(_listed_status(state, entry, current))
                described = words.params_text(entry.get("params"))
                if described:
                    me.text(described, style=me.Style(font_size=12))
                me.text(
                    f"{(entry.get('created_at') or '')[:16].replace('T', ' ')}  …{entry['run_id'][-8:]}",
                    style=me.Style(font_size=11, color="#5f6368"),
                )


def _listed_status(state: State, entry: dict[str, Any], current: bool) -> str:
    """A run's badge in the list: "waiting for you" while a question of it is open (its record
    says so; the open run's own transcript says it first)."""
    status = str(entry["status"])
    if status in ("queued", "running"):
        waiting = runs.waiting_for_person(state) if current and state.events else entry.get("waiting_for_input")
        if waiting:
            return "waiting for you"
    return status


def _open_run(state: State) -> None:
    view = build(events_of(state))
    with me.box(classes="run-head"):
        me.text(f"{state.workflow or 'Run'}", type="headline-6", style=me.Style(margin=me.Margin.all(0)))
        waiting = bool(view.open_questions) and not view.finished
        status_badge("waiting for you" if waiting else state.run_status or "queued")
        if state.run_id and not view.finished:
            me.button("Cancel run", type="stroked", color="warn", on_click=on_cancel, key="cancel-run")
        if state.admin and state.run_id and view.finished and state.run_status == "failed":
            me.button("Retry run", type="flat", color="primary", on_click=on_retry, key=f"retry::{state.run_id}")
    if state.run_error:
        me.text(state.run_error, style=me.Style(color="#a50e0e", font_weight=500))
    for earlier in state.earlier:  # the thread's conversation so far, each earlier run in turn
        with me.box(classes="thread-earlier"):
            render.transcript(build(json.loads(earlier)), sent={}, drafts={})
    render.transcript(view, sent=state.sent, drafts=state.drafts)
    reply = reply_of(state)
    if reply is not None and not view.finished:
        render.writing(reply)
    if state.run_id and view.finished:
        _reply_form(state)
        _fork_buttons(view)
    if state.run_id and not view.finished and not runs.waiting_for_person(state):
        with me.box(classes="working"):
            me.progress_spinner(diameter=20, stroke_width=3)
            me.text("The agents are working…")
    if state.run_id:
        ticker(
            active=state.watching,
            tick=state.tick,
            delay_ms=runs.tick_delay_ms(state),
            on_tick=on_tick,
            key="ticker",
        )


def _dead_letters(state: State) -> None:
    """The admin view: jobs no worker could run, each with a retry of its run."""
    me.text("Dead letters", type="headline-6")
    if state.run_error:
        me.text(state.run_error, style=me.Style(color="#a50e0e", font_weight=500))
    letters = json.loads(state.dead_letters_json or "[]")
    if not letters:
        me.text("No dead letters.", style=me.Style(color="#5f6368"))
    for letter in letters:
        with me.box(classes="item item-notice dead-letter"):
            me.text(
                f"{(letter.get('dead_at') or '')[:19].replace('T', ' ')}  {letter.get('reason')}  "
                f"{letter.get('workflow') or '?'}  run {letter.get('run_id') or '(unreadable job)'}",
                style=me.Style(font_weight=500),
            )
            me.text(str(letter.get("detail") or ""), style=me.Style(font_size=13, color="#5f6368"))
            if letter.get("run_id"):
                me.button(
                    "Retry its run",
                    type="stroked",
                    on_click=on_retry,
                    key=f"retry::{letter['run_id']}::{letter.get('seq')}",
                )


def _reply_form(state: State) -> None:
    """Under a finished run: say one more thing (the thread's next run)."""
    with me.box(classes="answer-row reply-row"):
        me.input(
            label="Reply",
            value=state.reply_text,
            on_blur=on_reply_blur,
            on_enter=on_reply_enter,
            appearance="outline",
            style=me.Style(width="100%"),
            key="reply-text",
        )
        me.button("Reply", type="flat", color="primary", on_click=on_reply, key="reply")


def _fork_buttons(view: Transcript) -> None:
    """Under a finished run: fork it at one of its answered questions, to answer it differently."""
    questions = [entry.event for entry in view.items if entry.kind in QUESTION_KINDS and entry.related is not None]
    if not questions:
        return
    with me.box(classes="chips fork-row"):
        for question in questions:
            me.button(
                f"Answer “{words.short(str(question.get('prompt') or ''))}” differently",
                type="stroked",
                on_click=on_fork,
                key=f"fork::{question.get('seq')}",
            )


def status_badge(status: str) -> None:
    with me.box(classes=f"badge badge-{status.replace(' ', '-')}"):
        me.text(status)


# Handlers ---------------------------------------------------------------------------------------


def on_tick(e: me.WebEvent) -> None:
    state = me.state(State)
    state.tick += 1
    session = session_of(state)
    if session is None:
        signin.sign_out(state)
        return
    if state.watching and state.run_id:
        try:
            runs.watch_once(state, session)
            state.run_error = ""
        except GatewayError as exc:
            state.run_error = f"Live updates interrupted ({exc}); retrying."


def on_open_run(e: me.ClickEvent) -> None:
    state = me.state(State)
    session = session_of(state)
    if session is None:
        signin.sign_out(state)
        return
    run_id = e.key.split("::", 1)[1]
    runs.open_run(state, session, run_id)
    me.query_params[RUN_PARAM] = run_id


def on_new_run(e: me.ClickEvent) -> None:
    state = me.state(State)
    session = session_of(state)
    if session is None:
        signin.sign_out(state)
        return
    runs.close_run(state)
    if RUN_PARAM in me.query_params:
        del me.query_params[RUN_PARAM]
    try:
        runs.load_catalogue(state, session)
    except GatewayError as exc:
        state.start_error = str(exc)


def on_refresh(e: me.ClickEvent) -> None:
    state = me.state(State)
    session = session_of(state)
    if session is not None:
        runs.load_history(state, session)


def on_reply_blur(e: me.InputBlurEvent) -> None:
    me.state(State).reply_text = e.value


def on_reply_enter(e: me.InputEnterEvent) -> None:
    state = me.state(State)
    state.reply_text = e.value
    _send_reply(state)


def on_reply(e: me.ClickEvent) -> None:
    _send_reply(me.state(State))


def _send_reply(state: State) -> None:
    session = session_of(state)
    if session is None:
        signin.sign_out(state)
        return
    if state.run_id:
        runs.reply(state, session, state.reply_text)
        if state.run_id:
            me.query_params[RUN_PARAM] = state.run_id


def on_fork(e: me.ClickEvent) -> None:
    state = me.state(State)
    session = session_of(state)
    if session is None:
        signin.sign_out(state)
        return
    if state.run_id:
        runs.fork(state, session, int(e.key.split("::", 1)[1]))
        if state.run_id:
            me.query_params[RUN_PARAM] = state.run_id


def on_dead_letters(e: me.ClickEvent) -> None:
    state = me.state(State)
    session = session_of(state)
    if session is None:
        signin.sign_out(state)
        return
    runs.load_dead_letters(state, session)
    if RUN_PARAM in me.query_params:
        del me.query_params[RUN_PARAM]


def on_retry(e: me.ClickEvent) -> None:
    state = me.state(State)
    session = session_of(state)
    if session is None:
        signin.sign_out(state)
        return
    runs.retry(state, session, e.key.split("::")[1])
    if state.run_id:
        me.query_params[RUN_PARAM] = state.run_id


def on_cancel(e: me.ClickEvent) -> None:
    state = me.state(State)
    session = session_of(state)
    if session is not None and state.run_id:
        runs.cancel(state, session)

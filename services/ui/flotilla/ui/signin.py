"""Signing in and out.

Two ways in: a username and password from the UI's configuration (the UI then calls the gateway
with its own service key, acting for the user's identity), or the person's own gateway API key
(checked with WhoAmI, then used as their bearer token). Either way a server-side session is
created; its random id goes to the browser in an HttpOnly cookie only, and the page state holds a
page token that works only with that cookie (sessions.py).
"""

from __future__ import annotations

import mesop as me

from flotilla.ui import runs
from flotilla.ui.gateway import Credentials, GatewayError
from flotilla.ui.services import current
from flotilla.ui.sessions import COOKIE, Session
from flotilla.ui.state import RUN_PARAM, State
from flotilla.ui.users import TooManyAttempts

WRONG_PASSWORD = "Wrong username or password."  # noqa: S105 (a message, not a password)
BAD_KEY = "That API key was not accepted."


def restore(state: State) -> Session | None:
    """The session of this page (its token and the cookie) or, after a reload, of the cookie."""
    sessions = current().sessions
    cookie = me.cookie(COOKIE)
    found = sessions.for_page(state.page_token, cookie)
    if found is not None:
        state.identity, state.admin = found[1].identity, found[1].admin
        return found[1]
    session = sessions.get(cookie)
    if session is not None and cookie:
        state.page_token, state.identity = sessions.page_token(cookie), session.identity
        state.admin = session.admin
        return session
    state.page_token = state.identity = ""
    return None


def _signed_in(state: State, session: Session) -> None:
    sessions = current().sessions
    session_id = sessions.create(session)
    state.page_token, state.identity = sessions.page_token(session_id), session.identity
    state.admin = session.admin
    state.username = state.password = state.api_key = state.sign_in_error = ""
    me.set_cookie(COOKIE, session_id, httponly=True, samesite="Strict", secure=current().cookie_secure)
    runs.load_history(state, session)
    try:
        runs.load_catalogue(state, session)
    except GatewayError as exc:
        state.start_error = str(exc)


def sign_out(state: State) -> None:
    sessions = current().sessions
    found = sessions.for_page(state.page_token, me.cookie(COOKIE))
    if found is not None:
        sessions.drop(found[0])
    me.delete_cookie(COOKIE)
    runs.close_run(state)
    state.page_token = state.identity = ""
    state.admin = False
    state.runs_json = state.workflows_json = "[]"
    state.selected_workflow = state.start_error = ""
    if RUN_PARAM in me.query_params:
        del me.query_params[RUN_PARAM]


# Handlers ---------------------------------------------------------------------------------------


def on_username(e: me.InputBlurEvent) -> None:
    me.state(State).username = e.value


def on_password(e: me.InputBlurEvent) -> None:
    me.state(State).password = e.value


def on_api_key(e: me.InputBlurEvent) -> None:
    me.state(State).api_key = e.value


def on_password_enter(e: me.InputEnterEvent) -> None:
    state = me.state(State)
    state.password = e.value
    _sign_in_with_password(state)


def on_sign_in(e: me.ClickEvent) -> None:
    _sign_in_with_password(me.state(State))


def _sign_in_with_password(state: State) -> None:
    services = current()
    try:
        user = services.users.authenticate(state.username, state.password)
    except TooManyAttempts as exc:
        state.password = ""
        state.sign_in_error = f"Too many failed sign-ins for this user; try again in {exc.retry_after_s:.0f} s."
        return
    state.password = ""
    if user is None:
        state.sign_in_error = WRONG_PASSWORD
        return
    credentials = services.acting_for(user.identity)
    try:
        who = services.gateway.who_am_i(credentials)
    except GatewayError as exc:
        state.sign_in_error = f"Signed in, but the gateway refused the UI: {exc}"
        return
    _signed_in(state, Session(identity=who.identity, credentials=credentials, via="password", admin=who.admin))


def on_api_key_enter(e: me.InputEnterEvent) -> None:
    state = me.state(State)
    state.api_key = e.value
    _sign_in_with_key(state)


def on_sign_in_with_key(e: me.ClickEvent) -> None:
    _sign_in_with_key(me.state(State))


def _sign_in_with_key(state: State) -> None:
    key, state.api_key = state.api_key.strip(), ""
    if not key:
        state.sign_in_error = "Paste an API key first."
        return
    credentials = Credentials(token=key)
    try:
        who = current().gateway.who_am_i(credentials)
    except GatewayError as exc:
        state.sign_in_error = BAD_KEY if exc.code.name == "UNAUTHENTICATED" else str(exc)
        return
    _signed_in(state, Session(identity=who.identity, credentials=credentials, via="api_key", admin=who.admin))


def on_sign_out(e: me.ClickEvent) -> None:
    sign_out(me.state(State))


# The form ---------------------------------------------------------------------------------------


def form(state: State) -> None:
    with me.box(classes="signin"):
        me.text("Sign in to Flotilla", type="headline-5")
        if state.sign_in_error:
            with me.box(classes="signin-error"):
                me.text(state.sign_in_error)
        with me.box(classes="signin-card"):
            me.text("With your username and password", type="subtitle-1")
            me.input(label="Username", value=state.username, on_blur=on_username, key="username", appearance="outline")
            me.input(
                label="Password",
                type="password",
                on_blur=on_password,
                on_enter=on_password_enter,
                key="password",
                appearance="outline",
            )
            me.button("Sign in", type="flat", color="primary", on_click=on_sign_in, key="sign-in")
        with me.box(classes="signin-card"):
            me.text("Or with a gateway API key", type="subtitle-1")
            me.input(
                label="API key",
                type="password",
                on_blur=on_api_key,
                on_enter=on_api_key_enter,
                key="api-key",
                appearance="outline",
            )
            me.button("Sign in with key", type="stroked", on_click=on_sign_in_with_key, key="sign-in-key")

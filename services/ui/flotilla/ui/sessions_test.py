from __future__ import annotations

from flotilla.ui.gateway import Credentials
from flotilla.ui.sessions import Session, SessionStore


def test_sessions_are_random_expire_when_idle_and_drop() -> None:
    now = [0.0]
    store = SessionStore(idle_timeout_s=10, clock=lambda: now[0])
    session = Session(identity="ada", credentials=Credentials(token="k", act_as="ada"), via="password")
    first, second = store.create(session), store.create(session)
    assert first != second and len(first) >= 40
    assert store.get(first) == session
    now[0] = 9
    assert store.get(first) == session  # use keeps it alive
    now[0] = 15
    assert store.get(first) == session and store.get(second) is None
    store.drop(first)
    assert store.get(first) is None and store.get("") is None and store.get("guess") is None


def test_credentials_metadata() -> None:
    assert Credentials(token="t").metadata() == (("authorization", "Bearer t"),)
    assert Credentials(token="t", act_as="ada").metadata() == (
        ("authorization", "Bearer t"),
        ("flotilla-act-as", "ada"),
    )


def test_a_page_token_names_its_session_only_with_the_cookie_after_the_first_minute() -> None:
    now = [0.0]
    store = SessionStore(clock=lambda: now[0])
    session = Session(identity="ada", credentials=Credentials(token="k"), via="api_key")
    session_id = store.create(session)
    token = store.page_token(session_id)
    assert token != session_id
    assert store.for_page(token, None) == (session_id, session)  # the browser has no cookie yet
    assert store.for_page(token, session_id) == (session_id, session)
    assert store.for_page(token, "another-session") is None
    assert store.for_page("made-up", session_id) is None and store.for_page("", session_id) is None
    now[0] = 61
    assert store.for_page(token, None) is None, "lifted from the page, alone, it is worth nothing"
    assert store.for_page(token, session_id) == (session_id, session)
    store.drop(session_id)
    assert store.for_page(token, session_id) is None

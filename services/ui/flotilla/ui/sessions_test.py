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

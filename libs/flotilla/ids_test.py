from __future__ import annotations

import time

from flotilla.ids import is_run_id, new_request_id, new_run_id


def test_run_ids_sort_by_creation_and_are_subject_safe() -> None:
    first = new_run_id()
    time.sleep(0.002)
    second = new_run_id()
    assert first < second and is_run_id(first) and is_run_id(second)
    assert not any(c in first for c in ".*> ")


def test_malformed_run_ids_are_rejected() -> None:
    for bad in ("", "x" * 26, "a.b", "*", ">", new_run_id() + "0", new_run_id().upper(), new_run_id() + "\n"):
        assert not is_run_id(bad)
    assert new_request_id().isalnum()


def test_subject_tokens_are_ascii_only() -> None:
    from flotilla.ids import is_subject_token

    assert is_subject_token("q1") and is_subject_token("learning_chat") and is_subject_token("a-b")
    for bad in ("", "\u2132", "a.b", "*", ">", "a b", "x" * 129, "q1\n"):
        assert not is_subject_token(bad)

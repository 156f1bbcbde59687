from __future__ import annotations

from typing import Any

from flotilla.ui.transcript import build, clock, selected_choices


def _events(*kinds: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"type": kind, "seq": i + 1, "timestamp": "2026-01-02T03:04:05+00:00", **fields}
        for i, (kind, fields) in enumerate(kinds)
    ]


def test_calls_join_their_results_and_answers_their_questions() -> None:
    events = _events(
        ("workflow_started", {"workflow": "w"}),
        ("suggested_function_call", {"function_name": "add", "call_id": "c1", "arguments": {"a": 1}}),
        ("llm_completion", {"hidden": True}),
        ("function_call_execution", {"function_name": "add", "call_id": "c1", "retval": 3}),
        ("function_call_execution", {"function_name": "orphan", "call_id": "c9", "retval": 0}),
        ("text_input", {"request_id": "r1", "prompt": "name?"}),
        ("input_answered", {"request_id": "r1", "value": "Ada"}),
        ("multiple_choice", {"request_id": "r2", "prompt": "ok?", "choices": ["yes", "no"]}),
    )
    view = build(reversed(events))  # order comes from seq
    assert [i.kind for i in view.items] == [
        "workflow_started",
        "suggested_function_call",
        "function_call_execution",
        "text_input",
        "multiple_choice",
    ]
    assert view.items[1].related is not None and view.items[1].related["retval"] == 3
    assert view.items[3].related is not None and view.items[3].related["value"] == "Ada"
    assert [q["request_id"] for q in view.open_questions] == ["r2"]
    assert not view.finished


def test_a_finished_run_asks_nothing() -> None:
    view = build(
        _events(
            ("multiple_choice", {"request_id": "r1", "prompt": "ok?", "choices": ["yes"]}),
            ("workflow_completed", {"status": "cancelled"}),
        )
    )
    assert view.finished and view.open_questions == [] and view.completed is not None


def test_helpers() -> None:
    assert clock("2026-01-02T03:04:05.678+00:00") == "03:04:05"
    assert clock(None) == "" and clock("garbage") == ""
    assert selected_choices(" a, b ,,c") == ["a", "b", "c"]

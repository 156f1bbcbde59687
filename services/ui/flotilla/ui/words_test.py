from __future__ import annotations

from flotilla.ui import words
from flotilla.ui.transcript import build


def test_system_messages_in_words() -> None:
    termination = {"type": "termination", "reason": "Maximum turns (3) reached"}
    assert words.system_text(termination) == "The chat ended: Maximum turns (3) reached."
    assert words.system_text({"type": "handoff", "to_agent": "teacher"}) == "Handoff: to agent: teacher"
    assert words.system_text({"note": "hello"}) == "note: hello"
    handoff = {"type": "handoff", "from": "triage", "to": "tech", "by": "context condition"}
    assert words.system_text(handoff) == "triage hands over to tech (context condition)."
    assert words.system_text({"type": "context_variables_changed", "topic": "tech"}) == "Context now: topic: tech"
    assert words.system_text({"type": "context_variables", "topic": "unknown"}) == "Context: topic: unknown"
    cost = {
        "type": "ag2_usage",
        "model": "m",
        "prompt_tokens": 5,
        "completion_tokens": 7,
        "total_tokens": 12,
        "cost": 0,
    }
    assert words.system_text(cost) == "AG2's cost report, m: 5 + 7 tokens"
    assert words.system_text("plain") == "plain"
    assert words.system_text({"type": "x", "nested": {"a": 1}}) is None  # shown as code


def test_start_and_params_in_words() -> None:
    started = {"workflow": "learning_chat", "params": {"turns": 3}, "attempt": 1}
    assert words.start_text(started) == "Started learning_chat (turns: 3)"
    assert words.start_text({**started, "params": {}, "attempt": 2}) == "Started learning_chat, attempt 2"
    assert words.params_text({"max_turns": 2, "topic": "x" * 200}).startswith("max turns: 2, topic: xxx")
    assert len(words.params_text({"topic": "x" * 200})) < 100


def test_usage_in_words() -> None:
    usage = [
        {"model": "m", "calls": 3, "prompt_tokens": 512, "completion_tokens": 210, "llm_seconds": 4.24, "cost": 0},
        {"model": "paid", "calls": 1, "prompt_tokens": 10, "completion_tokens": 5, "llm_seconds": 0.5, "cost": 0.0012},
        {"model": "unused", "calls": 0},
    ]
    assert (
        words.usage_text(usage)
        == "m: 3 calls, 512 + 210 tokens, 4.2 s\npaid: 1 call, 10 + 5 tokens, 0.5 s, cost 0.0012"
    )
    assert words.usage_text(None) == ""


def test_a_result_that_repeats_the_last_message_is_not_shown_twice() -> None:
    events = [
        {"seq": 1, "type": "text_message", "body": "Volcanoes erupt."},
        {"seq": 2, "type": "workflow_completed", "status": "completed", "result": "Volcanoes erupt. "},
    ]
    view = build(events)
    assert view.last_message == "Volcanoes erupt."
    assert words.repeats_last_message(view.completed["result"] if view.completed else None, view.last_message)
    assert not words.repeats_last_message({"answer": 1}, view.last_message)
    assert not words.repeats_last_message("something else", view.last_message)


def test_short_keeps_one_line_and_cuts_with_an_ellipsis() -> None:
    from flotilla.ui.words import short

    assert short("question 1\nof 1") == "question 1 of 1"
    assert short("x" * 50, limit=10) == "xxxxxxxxx…"

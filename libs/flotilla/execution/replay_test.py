from __future__ import annotations

import json

from flotilla.execution._replay import PriorAttempts
from flotilla.protocol import InputAnswered, LlmCompletion, RunEvent, RunRetried, TextInput, TextMessage


def _log() -> list[RunEvent]:
    return [
        RunEvent(seq=1, llm_completion=LlmCompletion(completion_json=json.dumps({"content": "hi"}))),
        RunEvent(seq=2, text_message=TextMessage(body="hi")),
        RunEvent(seq=3, text_input=TextInput(request_id="q1")),
        RunEvent(seq=4, input_answered=InputAnswered(request_id="q1", value="d", timed_out=True)),
        RunEvent(seq=5, run_retried=RunRetried(attempt=2)),
    ]


def test_the_log_splits_into_completions_to_replay_and_events_to_skip() -> None:
    prior = PriorAttempts.from_log(_log())
    assert prior.completions == [{"content": "hi"}]
    assert list(prior.emitted) == ["text_message", "text_input", "input_answered"]
    assert prior.timed_out == {"q1"}


def test_retracing_skips_in_order_then_goes_live() -> None:
    prior = PriorAttempts.from_log(_log())
    assert [prior.already_emitted(k) for k in ("text_message", "text_input", "input_answered")] == [True] * 3
    assert prior.already_emitted("text_message") is False


def test_another_path_drops_the_rest_of_the_log() -> None:
    prior = PriorAttempts.from_log(_log())
    assert prior.already_emitted("error") is None
    assert prior.already_emitted("text_message") is False

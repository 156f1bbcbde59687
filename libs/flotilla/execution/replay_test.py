from __future__ import annotations

import json

import pytest

from flotilla.errors import Nondeterminism
from flotilla.execution._replay import PriorAttempts
from flotilla.protocol import (
    FunctionCallExecution,
    InputAnswered,
    LlmCompletion,
    RunEvent,
    RunRetried,
    TextInput,
    TextMessage,
)


def _log() -> list[RunEvent]:
    return [
        RunEvent(
            seq=1, llm_completion=LlmCompletion(completion_json=json.dumps({"content": "hi"}), request_sha256="d1")
        ),
        RunEvent(seq=2, sender="a", recipient="b", text_message=TextMessage(body="hi")),
        RunEvent(seq=3, text_input=TextInput(request_id="q1", prompt="name?")),
        RunEvent(seq=4, input_answered=InputAnswered(request_id="q1", value="d", timed_out=True)),
        RunEvent(seq=5, run_retried=RunRetried(attempt=2)),
    ]


def test_the_log_splits_into_completions_to_replay_and_events_to_match() -> None:
    prior = PriorAttempts.from_log(_log())
    assert prior.completions == [{"content": "hi"}] and prior.digests == ["d1"]
    assert [e.WhichOneof("kind") for e in prior.events] == ["text_message", "text_input", "input_answered"]
    assert "q1" in prior.asked_at


def test_retracing_matches_in_order_then_goes_live() -> None:
    prior = PriorAttempts.from_log(_log())
    assert prior.already_emitted("text_message", TextMessage(body="hi"), sender="a", recipient="b")
    assert prior.already_emitted("text_input", TextInput(request_id="q1", prompt="name?"), sender="", recipient="")
    answered = InputAnswered(request_id="q1", value="d", timed_out=True)
    assert prior.already_emitted("input_answered", answered, sender="", recipient="")
    assert prior.live
    assert not prior.already_emitted("text_message", TextMessage(body="new"), sender="a", recipient="b")


def test_another_path_fails_naming_the_step() -> None:
    prior = PriorAttempts.from_log(_log())
    assert prior.already_emitted("text_message", TextMessage(body="hi"), sender="a", recipient="b")
    with pytest.raises(Nondeterminism, match=r"step 2 \(seq 3\).*text_input.*name\?.*text_message"):
        prior.already_emitted("text_message", TextMessage(body="hi again"), sender="a", recipient="b")


def test_the_same_kind_with_other_content_is_another_path_too() -> None:
    prior = PriorAttempts.from_log(_log())
    with pytest.raises(Nondeterminism, match="step 1"):
        prior.already_emitted("text_message", TextMessage(body="changed"), sender="a", recipient="b")


def test_continue_policy_drops_the_rest_and_goes_live() -> None:
    prior = PriorAttempts.from_log(_log(), policy="continue")
    assert not prior.already_emitted("error", TextMessage(body="x"), sender="", recipient="")
    assert prior.live and prior.diverged is not None and "step 1" in str(prior.diverged)


def test_a_recorded_tool_result_consumes_what_the_tool_emitted() -> None:
    log = [
        RunEvent(seq=1, text_input=TextInput(request_id="q1", prompt="allow?")),
        RunEvent(seq=2, input_answered=InputAnswered(request_id="q1", value="yes")),
        RunEvent(seq=3, function_call_execution=FunctionCallExecution(function_name="f", retval_json='"ok"', step=1)),
        RunEvent(seq=4, text_message=TextMessage(body="after")),
    ]
    prior = PriorAttempts.from_log(log)
    recorded = prior.tool_result(1)
    assert recorded is not None and recorded.retval_json == '"ok"'
    assert [e.seq for e in prior.events] == [4]
    assert prior.tool_result(2) is None

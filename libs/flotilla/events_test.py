from __future__ import annotations

from flotilla.events import event_to_json, is_terminal, request_id_of, run_to_json
from flotilla.protocol import MultipleChoice, Run, RunEvent, RunStatus, TextMessage, WorkflowCompleted


def test_event_to_json_is_flat_with_decoded_json_fields() -> None:
    event = RunEvent(run_id="r", seq=3, sender="a", recipient="b")
    event.workflow_completed.CopyFrom(WorkflowCompleted(status="completed", result_json='{"x": [1]}'))
    out = event_to_json(event)
    assert out["type"] == "workflow_completed" and out["seq"] == 3 and out["run_id"] == "r"
    assert out["result"] == {"x": [1]} and "result_json" not in out
    assert out["timestamp"] is None
    assert is_terminal(event)


def test_input_requests_carry_request_id_and_lists() -> None:
    event = RunEvent(run_id="r", seq=1)
    event.multiple_choice.CopyFrom(
        MultipleChoice(request_id="q1", prompt="?", choices=["a", "b"], default="a", single=True)
    )
    out = event_to_json(event)
    assert out["request_id"] == "q1" and out["choices"] == ["a", "b"] and out["single"] is True
    assert request_id_of(event) == "q1"
    message = RunEvent(run_id="r", seq=2)
    message.text_message.CopyFrom(TextMessage(body="hi"))
    assert request_id_of(message) is None and not is_terminal(message)


def test_run_to_json_names_the_status() -> None:
    run = Run(run_id="r", workflow="w", params_json='{"n": 1}', status=RunStatus.RUN_STATUS_CANCELLED)
    out = run_to_json(run)
    assert out["status"] == "cancelled" and out["params"] == {"n": 1} and out["result"] is None

"""What must hold for every run of the chaos drill, whatever failed while it ran (issue 11).

Each check looks at four things: the client's transcript (every event it received over the
gateway's WebSocket, across reconnects, exactly as received), the stored log (the API's paged
read, hidden events included), the run record, and the answers the client gave. `check_run`
returns the checks that failed, each with why; an empty dict is a sound run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TERMINAL_STATUSES = ("completed", "failed", "cancelled")
QUESTION_KINDS = ("text_input", "multiple_choice")

CHECKS = {
    "terminal": "the run reached a terminal state (its record and its log say so)",
    "completed": "the run completed (none lost: a fault is no reason to fail a run)",
    "transcript": "the client's transcript equals the log",
    "seqs": "the log's seqs run 1..N, each once",
    "one_terminal": "exactly one terminal event, the last",
    "questions": "no question asked twice (each request id and prompt once, as many as the workflow asks)",
    "answers": "no answer lost or invented (each question answered once, with what the client sent)",
    "record": "the record agrees with the log (status, result, error)",
}


def check_run(
    run_id: str,
    *,
    transcript: list[dict[str, Any]],
    log: list[dict[str, Any]],
    record: Mapping[str, Any],
    given: Mapping[str, str],
    questions: int,
) -> dict[str, str]:
    """The checks (names in CHECKS) that failed for this run, with what was seen."""
    failed: dict[str, str] = {}
    terminal = [e for e in log if e["type"] == "workflow_completed"]
    last = log[-1] if log else {}
    if record.get("status") not in TERMINAL_STATUSES or last.get("type") != "workflow_completed":
        failed["terminal"] = f"record {record.get('status')}, log ends with {last.get('type')}"
    if last.get("status") != "completed" or record.get("status") != "completed":
        failed["completed"] = f"log says {last.get('status')} ({last.get('error')}), record {record.get('status')}"
    if transcript != log:
        failed["transcript"] = _first_difference(transcript, log)
    seqs = [e["seq"] for e in log]
    if seqs != list(range(1, len(log) + 1)) or any(e["run_id"] != run_id for e in log):
        failed["seqs"] = f"seqs {_runs_of(seqs)}"
    if len(terminal) != 1 or last.get("type") != "workflow_completed":
        failed["one_terminal"] = f"{len(terminal)} terminal events"
    asked = [e for e in log if e["type"] in QUESTION_KINDS]
    ids = [e["request_id"] for e in asked]
    prompts = [e["prompt"] for e in asked]
    if len(set(ids)) != len(ids) or len(set(prompts)) != len(prompts) or len(asked) != questions:
        failed["questions"] = f"asked {prompts} (ids {ids}), expected {questions} questions"
    answered: dict[str, list[str]] = {}
    for event in log:
        if event["type"] == "input_answered":
            answered.setdefault(event["request_id"], []).append(event["value"])
    wrong = {rid: values for rid, values in answered.items() if values != [given.get(rid)]}
    unanswered = [rid for rid in ids if rid not in answered]
    if wrong or unanswered or set(answered) - set(ids):
        failed["answers"] = f"recorded {answered}, given {dict(given)}, unanswered {unanswered}"
    result = last.get("result")
    if isinstance(result, dict) and "answers" in result and result["answers"] != [given.get(rid) for rid in ids]:
        failed["answers"] = f"the run used {result['answers']}, given {dict(given)}"
    if terminal:
        done = terminal[-1]
        seen = (record.get("status"), record.get("result"), record.get("error") or "")
        if seen != (done.get("status"), done.get("result"), done.get("error") or ""):
            failed["record"] = f"record {seen}, log {(done.get('status'), done.get('result'), done.get('error'))}"
    return failed


def _first_difference(transcript: list[dict[str, Any]], log: list[dict[str, Any]]) -> str:
    for i, (got, stored) in enumerate(zip(transcript, log, strict=False)):
        if got != stored:
            return f"event {i}: client got seq {got.get('seq')} {got.get('type')}, log has seq {stored.get('seq')} {stored.get('type')}"
    return f"client got {len(transcript)} events, log has {len(log)}"


def _runs_of(seqs: list[int]) -> str:
    """`1-9, 7-12` style: where a list of seqs breaks."""
    if not seqs:
        return "none"
    parts, start = [], seqs[0]
    for previous, current in zip(seqs, seqs[1:], strict=False):
        if current != previous + 1:
            parts.append(f"{start}-{previous}")
            start = current
    parts.append(f"{start}-{seqs[-1]}")
    return ", ".join(parts)

"""The chaos suite's short form: every fault once, runs in flight through each, every check on
every run (chaos.checks). Waiting is lenient (a loaded 2-core machine, R3 elections); the
checks are strict: any failure of any check fails the test, with the report."""

from __future__ import annotations

import asyncio

from chaos.checks import CHECKS, check_run
from chaos.drill import FAULTS, Drill, Report, chaos_stack


def test_every_fault_once_leaves_one_sound_history_per_run() -> None:
    report = Report()
    with chaos_stack() as (stack, host):

        async def scenario() -> None:
            drill = Drill(stack, host, report, seed=11)
            try:
                for fault in drill.faults():
                    await drill.round(fault)
            finally:
                await drill.close()

        if host is None:
            report.skipped.append("netns_cut: network namespaces cannot be made here")
        asyncio.run(scenario())
    print(report.text())
    assert report.failed() == 0, report.text()
    assert report.rounds == len(FAULTS) - (host is None) and report.runs >= 4 * report.rounds
    assert report.takeovers_s and max(report.takeovers_s) < float("inf"), report.text()


def test_the_checks_catch_a_forked_history() -> None:
    """The checks themselves: the issue's fork (a thawed worker's second ending, seqs repeated,
    a question asked twice) and a transcript that lost an event are each caught."""

    def event(seq: int, kind: str, **fields: object) -> dict[str, object]:
        return {"run_id": "r", "seq": seq, "type": kind, **fields}

    sound = [
        event(1, "workflow_started", workflow="load"),
        event(2, "text_input", request_id="q1", prompt="question 1 of 1"),
        event(3, "input_answered", request_id="q1", value="a"),
        event(4, "workflow_completed", status="completed", result={"answers": ["a"]}, error=""),
    ]
    record = {"status": "completed", "result": {"answers": ["a"]}, "error": None}
    args = {"record": record, "given": {"q1": "a"}, "questions": 1}
    assert check_run("r", transcript=sound, log=sound, **args) == {}  # type: ignore[arg-type]
    forked = [*sound[:3], event(2, "text_input", request_id="q1", prompt="question 1 of 1"), *sound[3:], sound[3]]
    failed = check_run("r", transcript=forked, log=forked, **args)  # type: ignore[arg-type]
    assert {"seqs", "one_terminal", "questions"} <= set(failed)
    lossy = check_run("r", transcript=sound[:2] + sound[3:], log=sound, **args)  # type: ignore[arg-type]
    assert set(lossy) == {"transcript"}
    invented = [*sound[:2], event(3, "input_answered", request_id="q1", value=""), sound[3]]
    assert "answers" in check_run("r", transcript=invented, log=invented, **args)  # type: ignore[arg-type]
    assert set(CHECKS) >= set(failed)

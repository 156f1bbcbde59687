from __future__ import annotations

from typing import Any

from flotilla.dispatch._index import SUMMARY_FIELD_BYTES, RunIndex
from flotilla.protocol import Run, RunStatus

QUEUED, DONE = RunStatus.RUN_STATUS_QUEUED, RunStatus.RUN_STATUS_COMPLETED


def _run(n: int, owner: str = "key:ada", status: "RunStatus.ValueType" = QUEUED, **fields: Any) -> Run:
    run = Run(run_id=f"{n:026x}", workflow="w", owner=owner, status=status, **fields)
    run.updated_at.seconds = n
    if status == DONE:
        run.finished_at.seconds = n
    return run


def test_only_runs_with_a_header_are_listed_and_the_header_wins() -> None:
    index = RunIndex(store=None, max_runs=100)  # type: ignore[arg-type]
    index._on_record("0" * 26, _run(0, owner="key:mallory"))  # a record nobody started
    assert index.list(limit=10) == []
    index.put(_run(1, params_json='{"a": 1}'))
    forged = _run(1, owner="key:mallory", params_json='{"a": 2}')
    forged.updated_at.seconds = 2
    index._on_record(forged.run_id, forged)  # a worker rewrote the record
    [listed] = index.list(limit=10)
    assert (listed.owner, listed.params_json) == ("key:ada", '{"a": 1}')
    assert index.list(limit=10, owner="key:mallory") == []


def test_summaries_are_small_and_the_index_bounded() -> None:
    index = RunIndex(store=None, max_runs=100)  # type: ignore[arg-type]
    big = "x" * (SUMMARY_FIELD_BYTES + 1)
    index.put(_run(1, params_json=big, result_json=big, error=big))
    [summary] = index.list(limit=1)
    assert summary.params_json == "" and summary.result_json == "" and len(summary.error) == SUMMARY_FIELD_BYTES
    for n in range(2, 300):
        index.put(_run(n, status=DONE if n < 250 else QUEUED))
    assert len(index) == 100
    listed = index.list(limit=1000)
    assert [r.run_id for r in listed] == sorted((r.run_id for r in listed), reverse=True)
    finished = [int(r.run_id, 16) for r in listed if r.status == DONE]
    assert finished == list(range(249, 200, -1)), "the oldest finished runs leave the lists"
    assert len(index.where(QUEUED)) == 51  # live runs never leave
    assert len(index.finished()) == 248, "the janitor still knows every finished run"


def test_runs_in_flight_are_counted_per_owner() -> None:
    index = RunIndex(store=None)  # type: ignore[arg-type]
    for n in range(3):
        index.put(_run(n))
    index.put(_run(9, owner="key:bob"))
    assert index.active("key:ada") == 3 and index.active("key:bob") == 1
    done = _run(1, status=DONE)
    done.updated_at.seconds = 5
    index._on_record(done.run_id, done)
    assert index.active("key:ada") == 2
    index.remove(_run(0).run_id)
    assert index.active("key:ada") == 1 and index.active("key:nobody") == 0

"""Runs through the published gateway's REST API (synchronous: the test drives compose between calls)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

TERMINAL = ("completed", "failed", "cancelled")


def until(condition: Callable[[], bool], what: str, timeout_s: float, every_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not so after {timeout_s} s"
        time.sleep(every_s)


def start(api: httpx.Client, workflow: str, **params: Any) -> str:
    response = api.post("/v1/runs", json={"workflow": workflow, "params": params})
    assert response.status_code == 201, response.text
    return str(response.json()["run_id"])


def run(api: httpx.Client, run_id: str) -> dict[str, Any]:
    response = api.get(f"/v1/runs/{run_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def events(api: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    response = api.get(f"/v1/runs/{run_id}/events", params={"include_hidden": "true", "limit": 10_000})
    assert response.status_code == 200, response.text
    return list(response.json()["events"])


def questions(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in log if e["type"] in ("text_input", "multiple_choice")]


def open_question(api: httpx.Client, run_id: str, number: int, timeout_s: float = 120) -> str:
    """The request_id of the run's `number`th question (1-based), once it was asked."""
    found: list[str] = []

    def asked() -> bool:
        asked = questions(events(api, run_id))
        found[:] = [q["request_id"] for q in asked]
        return len(asked) >= number

    until(asked, f"run {run_id} asks question {number}", timeout_s)
    return found[number - 1]


def answer(api: httpx.Client, run_id: str, request_id: str, value: str) -> None:
    response = api.post(f"/v1/runs/{run_id}/input", json={"request_id": request_id, "value": value})
    assert response.status_code == 202, response.text


def settled(api: httpx.Client, run_id: str, timeout_s: float = 180) -> dict[str, Any]:
    until(lambda: run(api, run_id)["status"] in TERMINAL, f"run {run_id} ends", timeout_s)
    return run(api, run_id)


def assert_well_formed(run_id: str, log: list[dict[str, Any]]) -> None:
    """seq 1..N with no gap or repeat, exactly one workflow_completed, last; no question asked twice."""
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1)), [e["seq"] for e in log]
    assert [e["type"] for e in log].count("workflow_completed") == 1 and log[-1]["type"] == "workflow_completed"
    asked = [q["request_id"] for q in questions(log)]
    assert len(asked) == len(set(asked)), f"run {run_id} asked a question twice: {asked}"

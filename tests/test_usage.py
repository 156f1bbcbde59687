"""Usage per run: what a run's LLM calls used, per model, over every attempt, priced."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

import pytest

from flotilla.devstack import LocalStack
from support import Api, assert_well_formed, local_stack

PRICES = {"scripted": {"prompt": 1.0, "completion": 2.0}}  # per million tokens


def test_usage_counts_every_attempt_and_is_priced() -> None:
    env = {"FLOTILLA_LLM_PRICES": json.dumps(PRICES)}
    with local_stack(workers=2, job_ack_wait_s=1.0, env=env) as stack, tempfile.TemporaryDirectory() as tmp:

        async def scenario() -> None:
            async with Api(stack.gateway_url, stack.dev_api_key) as api:
                # One completion, a question, then the worker dies; another worker resumes (the
                # first completion replayed, not asked again) and makes the second.
                run_id = await api.start("resumable", marker=str(Path(tmp) / "died"))
                events, _ = await api.stream(run_id, answer=lambda q: "Volcanoes", timeout_s=90)
                assert_well_formed(run_id, events)
                assert events[-1]["status"] == "completed"
                log = await api.events(run_id)
                calls = [e for e in log if e["type"] == "llm_completion"]
                assert len(calls) == 2 and any(e["type"] == "run_retried" for e in log)
                record = await api.settled(run_id)
                (usage,) = record["usage"]
                assert usage["model"] == "scripted" and usage["calls"] == 2
                assert usage["prompt_tokens"] == sum(e["prompt_tokens"] for e in calls) > 0
                assert usage["completion_tokens"] == sum(e["completion_tokens"] for e in calls) > 0
                assert usage["llm_seconds"] > 0
                assert usage["llm_seconds"] == pytest.approx(sum(e["latency_s"] for e in calls))
                price = PRICES["scripted"]
                cost = usage["prompt_tokens"] * price["prompt"] + usage["completion_tokens"] * price["completion"]
                assert cost > 0 and usage["cost"] == pytest.approx(cost / 1e6)
                assert events[-1]["usage"] == record["usage"]  # the terminal event says it too

        asyncio.run(scenario())


def test_a_run_without_llm_calls_uses_nothing(stack: LocalStack) -> None:
    async def scenario() -> None:
        async with Api(stack.gateway_url, stack.dev_api_key) as api:
            run_id = await api.start("load", n=1)
            events, _ = await api.stream(run_id)
            assert events[-1]["usage"] == [] and (await api.settled(run_id))["usage"] == []

    asyncio.run(scenario())

"""A worker started with settings that cannot work stops at once and says what to set."""

from __future__ import annotations

import subprocess
import sys

from flotilla.processes import python_env


def _start_worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flotilla.worker.main"],
        env=python_env({"FLOTILLA_LOG_FORMAT": "console", **env}),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_openai_backend_without_a_model_names_the_variable() -> None:
    done = _start_worker({"FLOTILLA_LLM_BACKEND": "openai", "FLOTILLA_NATS_URL": "nats://127.0.0.1:1"})
    assert done.returncode == 2
    assert "worker: cannot start" in done.stderr and "FLOTILLA_LLM_OPENAI_MODEL" in done.stderr
    assert "Traceback" not in done.stderr


def test_unknown_backend_and_bad_registry_are_refused() -> None:
    done = _start_worker({"FLOTILLA_LLM_BACKEND": "gpt-magic"})
    assert done.returncode == 2 and "FLOTILLA_LLM_BACKEND" in done.stderr
    done = _start_worker(
        {
            "FLOTILLA_LLM_BACKEND": "scripted",
            "FLOTILLA_LLM_SCRIPTED_REPLIES": '["hi"]',
            "FLOTILLA_WORKER_WORKFLOWS": "no.such.module:registry",
        }
    )
    assert done.returncode == 2 and "FLOTILLA_WORKER_WORKFLOWS" in done.stderr

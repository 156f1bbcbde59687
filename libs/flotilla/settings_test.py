from __future__ import annotations

import pytest
from pydantic import ValidationError

from flotilla.settings import DispatcherSettings, GatewaySettings, WorkerSettings


def test_service_variables_and_shared_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_NATS_URL", "nats://shared:4222")
    monkeypatch.setenv("FLOTILLA_WORKER_NATS_URL", "nats://worker-only:4222")
    monkeypatch.setenv("FLOTILLA_DISPATCHER_NATS_PASSWORD", "secret")
    monkeypatch.setenv("FLOTILLA_DISPATCHER_ADDRESS", "dispatcher:50051")
    assert DispatcherSettings().nats_url == "nats://shared:4222"
    assert WorkerSettings().nats_url == "nats://worker-only:4222"
    assert DispatcherSettings().nats_password.get_secret_value() == "secret"
    assert "secret" not in repr(DispatcherSettings())
    assert GatewaySettings().dispatcher_address == "dispatcher:50051"


def test_bad_values_fail_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_DISPATCHER_JOB_MAX_ATTEMPTS", "0")
    with pytest.raises(ValidationError, match="job_max_attempts|FLOTILLA_DISPATCHER_JOB_MAX_ATTEMPTS"):
        DispatcherSettings()

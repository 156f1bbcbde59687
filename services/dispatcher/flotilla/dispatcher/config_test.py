from __future__ import annotations

import pytest
from pydantic import ValidationError

from flotilla.dispatcher.config import DispatcherSettings


def test_the_nats_url_may_be_shared_and_the_password_is_the_dispatchers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_NATS_URL", "nats://shared:4222")
    monkeypatch.setenv("FLOTILLA_DISPATCHER_NATS_PASSWORD", "secret")
    settings = DispatcherSettings()
    assert settings.nats_url == "nats://shared:4222"
    assert settings.nats_password.get_secret_value() == "secret"


def test_bad_values_fail_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_DISPATCHER_JOB_MAX_ATTEMPTS", "0")
    with pytest.raises(ValidationError, match="job_max_attempts|FLOTILLA_DISPATCHER_JOB_MAX_ATTEMPTS"):
        DispatcherSettings()

"""flotilla.tracing off (the default) and its settings; tests/test_tracing.py has it on, end to end."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from flotilla import tracing
from flotilla.errors import ConfigurationError
from flotilla.settings import TracingSettings

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(autouse=True)
def _no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SERVICE_NAME"):
        monkeypatch.delenv(name, raising=False)


def test_off_by_default_and_then_every_helper_is_a_no_op() -> None:
    assert TracingSettings().otlp_endpoint == ""
    assert tracing.setup_tracing(TracingSettings(), "worker") is False
    assert not tracing.enabled()
    assert tracing.inject_headers() is None
    assert tracing.inject_headers(TRACEPARENT) is None  # a run's stored one is not sent either
    assert tracing.traceparent() == ""  # so a run keeps none
    assert tracing.context_from({"traceparent": TRACEPARENT}) is None
    assert tracing.client_interceptors() == []
    assert tracing.sync_client_interceptors() == []
    assert tracing.server_interceptors() == []
    with tracing.span("anything", attributes={"a": 1}) as span:
        assert span is None


def test_the_standard_variables_work_and_flotillas_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gw-eu")
    settings = TracingSettings()
    assert (settings.otlp_endpoint, settings.trace_service_name) == ("http://collector:4317", "gw-eu")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317")
    assert TracingSettings().otlp_endpoint == "http://traces:4317"
    monkeypatch.setenv("FLOTILLA_OTLP_ENDPOINT", "https://mine:4317")
    assert TracingSettings().otlp_endpoint == "https://mine:4317"


def test_a_child_gets_the_same_settings_under_flotillas_names(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = TracingSettings(
        otlp_endpoint="http://127.0.0.1:4317", otlp_headers=SecretStr("x-key=secret"), trace_sample_ratio=0.5
    )
    env = settings.tracing_env()
    assert env["FLOTILLA_OTLP_ENDPOINT"] == "http://127.0.0.1:4317"
    assert env["FLOTILLA_OTLP_HEADERS"] == "x-key=secret"
    assert "FLOTILLA_OTLP_CA_FILE" not in env  # unset stays unset
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert TracingSettings() == settings


def test_an_endpoint_that_is_not_a_url_fails_at_start() -> None:
    with pytest.raises(ConfigurationError, match="OTLP endpoint"):
        tracing.setup_tracing(TracingSettings(otlp_endpoint="collector:4317"), "worker")
    assert not tracing.enabled()

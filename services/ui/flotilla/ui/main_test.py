"""The UI's start: settings that cannot work stop it before gunicorn forks, with one line."""

from __future__ import annotations

import pytest

from flotilla import tracing
from flotilla.ui import main


def test_a_bad_otlp_endpoint_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Tracing is set up in gunicorn's worker (its exporter holds a channel and a thread that must
    # not cross the fork), where an error would only fail the worker's boot: main checks first.
    monkeypatch.setenv("FLOTILLA_OTLP_ENDPOINT", "collector:4317")
    with pytest.raises(SystemExit) as stopped:
        main.main()
    assert stopped.value.code == 2
    assert "ui: cannot start" in capsys.readouterr().err
    assert not tracing.enabled()

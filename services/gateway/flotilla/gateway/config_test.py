from __future__ import annotations

import pytest

from flotilla.gateway.config import GatewaySettings


def test_the_dispatcher_address_has_a_shared_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_DISPATCHER_ADDRESS", "dispatcher:50051")
    assert GatewaySettings().dispatcher_address == "dispatcher:50051"

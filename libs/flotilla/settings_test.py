from __future__ import annotations

import pytest
from pydantic import Field, SecretStr

from flotilla.settings import NatsSettings, env_alias, settings_env


class _Example(NatsSettings):
    nats_url: str = Field(
        default="nats://127.0.0.1:4222", validation_alias=env_alias("example", "nats_url", shared=True)
    )
    nats_password: SecretStr = Field(default=SecretStr(""), validation_alias=env_alias("example", "nats_password"))
    retries: int = Field(default=1, validation_alias=env_alias("example", "retries"))
    verbose: bool = Field(default=False, validation_alias=env_alias("example", "verbose"))


def test_a_service_variable_wins_over_the_shared_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_NATS_URL", "nats://shared:4222")
    assert _Example().nats_url == "nats://shared:4222"
    monkeypatch.setenv("FLOTILLA_EXAMPLE_NATS_URL", "nats://mine:4222")
    assert _Example().nats_url == "nats://mine:4222"


def test_secrets_stay_out_of_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_EXAMPLE_NATS_PASSWORD", "secret")
    assert _Example().nats_password.get_secret_value() == "secret"
    assert "secret" not in repr(_Example())


def test_settings_env_is_read_back_as_the_same_values(monkeypatch: pytest.MonkeyPatch) -> None:
    env = settings_env(_Example, nats_url="nats://a:1", nats_password=SecretStr("pw"), retries=3, verbose=True)
    assert env == {
        "FLOTILLA_EXAMPLE_NATS_URL": "nats://a:1",
        "FLOTILLA_EXAMPLE_NATS_PASSWORD": "pw",
        "FLOTILLA_EXAMPLE_RETRIES": "3",
        "FLOTILLA_EXAMPLE_VERBOSE": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    read = _Example()
    assert (read.nats_url, read.nats_password.get_secret_value(), read.retries, read.verbose) == (
        "nats://a:1",
        "pw",
        3,
        True,
    )


def test_settings_env_refuses_a_name_that_is_no_setting() -> None:
    with pytest.raises(KeyError):
        settings_env(_Example, retry=3)

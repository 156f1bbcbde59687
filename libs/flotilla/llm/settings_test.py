from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from flotilla.errors import ConfigurationError
from flotilla.llm import LlmConfigError, LlmSettings, ScriptedBackend, create_backend


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("FLOTILLA_LLM_"):
            monkeypatch.delenv(name)


def test_defaults_are_the_offline_local_model() -> None:
    settings = LlmSettings()
    assert settings.backend == "local"
    assert (settings.threads, settings.ctx, settings.temperature) == (1, 2048, 0.0)
    assert settings.model_dir == Path("~/.cache/flotilla/models").expanduser()
    assert settings.problems() == []


def test_reads_flotilla_llm_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLOTILLA_LLM_BACKEND", "openai")
    monkeypatch.setenv("FLOTILLA_LLM_OPENAI_MODEL", "gpt-4o-mini")
    monkeypatch.setenv("FLOTILLA_LLM_OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("FLOTILLA_LLM_MODEL_DIR", str(tmp_path))
    settings = LlmSettings.from_env()
    assert settings.backend == "openai" and settings.openai_model == "gpt-4o-mini"
    assert settings.openai_api_key is not None and settings.openai_api_key.get_secret_value() == "sk-test"
    assert "sk-test" not in repr(settings)
    assert settings.model_dir == tmp_path


def test_settings_are_frozen() -> None:
    with pytest.raises(ValidationError):
        LlmSettings().threads = 2


def test_a_malformed_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_LLM_BACKEND", "gpt")
    with pytest.raises(LlmConfigError, match="FLOTILLA_LLM_BACKEND"):
        LlmSettings.from_env()


def test_openai_without_a_model_says_what_to_set() -> None:
    settings = LlmSettings(backend="openai", openai_api_key=SecretStr("sk-test"))
    with pytest.raises(LlmConfigError, match="set FLOTILLA_LLM_OPENAI_MODEL") as raised:
        create_backend(settings)
    assert isinstance(raised.value, ConfigurationError)
    assert "FLOTILLA_LLM_OPENAI_API_KEY" not in str(raised.value)


def test_openai_without_a_key_or_base_url_says_what_to_set() -> None:
    problems = LlmSettings(backend="openai", openai_model="m").problems()
    assert len(problems) == 1
    assert "FLOTILLA_LLM_OPENAI_API_KEY" in problems[0] and "FLOTILLA_LLM_OPENAI_BASE_URL" in problems[0]


def test_openai_to_a_keyless_server_needs_only_a_base_url() -> None:
    assert LlmSettings(backend="openai", openai_model="m", openai_base_url="http://127.0.0.1:1/v1").problems() == []


def test_scripted_without_replies_says_what_to_set() -> None:
    with pytest.raises(LlmConfigError, match="set FLOTILLA_LLM_SCRIPTED_REPLIES"):
        LlmSettings(backend="scripted").check()


@pytest.mark.parametrize(
    ("replies", "expected"),
    [
        ("[", "not valid JSON"),
        ("[]", "non-empty JSON list"),
        ('[{"tool_calls": [{"arguments": {}}]}]', r"reply 0.tool_calls\[0\].name"),
        ("[3]", "reply 0 must be a string or an object"),
        ("/no/such/script.json", "neither a JSON list nor a readable file"),
    ],
)
def test_a_bad_script_is_refused_with_its_variable(replies: str, expected: str) -> None:
    with pytest.raises(LlmConfigError, match=f"FLOTILLA_LLM_SCRIPTED_REPLIES: .*{expected}"):
        LlmSettings(backend="scripted", scripted_replies=replies).check()


def test_a_script_may_be_a_file(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps(["hello", {"tool_calls": [{"name": "f", "arguments": {"x": 1}}]}]))
    backend = create_backend(LlmSettings(backend="scripted", scripted_replies=str(script)))
    assert isinstance(backend, ScriptedBackend)


def test_a_model_path_that_is_not_a_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(LlmConfigError, match="FLOTILLA_LLM_MODEL_PATH=.*is not a file"):
        create_backend(LlmSettings(model_path=tmp_path / "missing.gguf"))


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    # What compose passes for every FLOTILLA_LLM_* that .env leaves out.
    for name in ("BACKEND", "OPENAI_BASE_URL", "OPENAI_MODEL", "OPENAI_API_KEY"):
        monkeypatch.setenv(f"FLOTILLA_LLM_{name}", "")
    settings = LlmSettings.from_env()
    assert settings.backend == "local"
    assert (settings.openai_base_url, settings.openai_model, settings.openai_api_key) == (None, None, None)


def test_prices_are_read_and_bad_ones_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_LLM_PRICES", '{"gpt-4o-mini": {"prompt": 0.15, "completion": 0.6}}')
    price = LlmSettings.from_env().prices["gpt-4o-mini"]
    assert (price.prompt, price.completion) == (0.15, 0.6)
    for bad in ("not json", '{"m": {"prompt": -1, "completion": 1}}', '{"m": {"prompt": 1}}', '{"m": {"in": 1}}'):
        monkeypatch.setenv("FLOTILLA_LLM_PRICES", bad)
        with pytest.raises(LlmConfigError, match="FLOTILLA_LLM_PRICES"):
            LlmSettings.from_env()

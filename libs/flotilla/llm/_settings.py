"""`LlmSettings`: which LLM backend a process uses, read from `FLOTILLA_LLM_*` variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from flotilla.llm._errors import LlmConfigError

ENV_PREFIX = "FLOTILLA_LLM_"

BackendName = Literal["local", "openai", "scripted"]


class ModelPrice(BaseModel):
    """What one model costs, per million tokens, in whatever currency the operator counts in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: float = Field(ge=0)
    completion: float = Field(ge=0)


def env_name(field: str) -> str:
    """The variable that sets `field`, e.g. `openai_model` → `FLOTILLA_LLM_OPENAI_MODEL`."""
    return f"{ENV_PREFIX}{field}".upper()


class LlmSettings(BaseSettings):
    """The LLM behind a process's agents. Variables: `FLOTILLA_LLM_<FIELD>`.

    Build it in `main()` (`LlmSettings.from_env()`), check it at start (`check()`, or let
    `create_backend` do it), and pass it down; tests construct it with keyword arguments.
    """

    # An empty variable counts as unset: compose forwards every FLOTILLA_LLM_* it knows, empty
    # when .env does not set it.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore", env_ignore_empty=True)

    backend: BackendName = "local"
    """`local`: the bundled small model, in-process, offline; `openai`: any OpenAI-compatible
    endpoint; `scripted`: fixed replies from configuration (tests)."""

    # local
    model_path: Path | None = None
    """A GGUF file to run instead of the bundled model (skips the download)."""
    model_dir: Path = Path("~/.cache/flotilla/models")
    """Where the bundled model is cached after its first download."""
    threads: int = Field(default=1, ge=1, le=256)
    """CPU threads for the local model (1 is steadiest on small machines shared with other work)."""
    ctx: int = Field(default=2048, ge=256)
    """The local model's context window in tokens (prompt and reply together)."""
    max_tokens: int = Field(default=128, ge=1)
    """Longest local reply in tokens, unless a call asks for another limit (each generated token
    costs ~20 ms on one core; 128 keeps a three-turn chat around 20 s)."""
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    """Local sampling temperature unless a call sets one; 0 gives the same reply for the same
    conversation."""
    repeat_penalty: float = Field(default=1.15, ge=1.0, le=2.0)
    """Local penalty on repeating recent tokens: greedy decoding of a small model otherwise loops
    on its own sentences (1.0 turns it off)."""

    # openai
    openai_api_key: SecretStr | None = None
    """The endpoint's API key (optional when `openai_base_url` names a server that needs none)."""
    openai_base_url: str | None = None
    """An OpenAI-compatible endpoint's base URL, e.g. a vLLM, Ollama or llama.cpp server's `/v1`;
    unset: the openai package's default."""
    openai_model: str | None = None
    """The model name to ask the endpoint for."""
    openai_timeout_s: float = Field(default=120.0, gt=0)
    """How long one request to the endpoint may take."""
    openai_max_retries: int = Field(default=2, ge=0)
    """Retries of failed requests (connection errors, 429, 5xx) with backoff."""

    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    """Prices per million tokens by model name, as JSON: `{"gpt-4o-mini": {"prompt": 0.15,
    "completion": 0.6}}`; each run's usage then says what it cost (0 for models not listed)."""

    # scripted
    scripted_replies: str | None = None
    """A JSON list of replies, or the path of a JSON file holding one. A reply is a string, or
    `{"content": ..., "tool_calls": [{"name": ..., "arguments": {...}}]}`."""
    scripted_cycle: bool = True
    """After the last reply start again from the first; false: fail with `ScriptExhausted`."""
    scripted_word_delay_s: float = Field(default=0.0, ge=0.0, le=10.0)
    """A streamed reply's pause between words (a model that writes slowly, for tests and demos)."""

    @field_validator("model_dir", "model_path")
    @classmethod
    def _expand_user(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()

    @classmethod
    def from_env(cls) -> LlmSettings:
        """Read the environment; a malformed value raises `LlmConfigError` naming its variable."""
        try:
            return cls()
        except ValidationError as exc:
            problems = [f"{env_name(str(error['loc'][0]))}: {error['msg']}" for error in exc.errors()]
            raise LlmConfigError("invalid LLM settings: " + "; ".join(problems)) from None
        except SettingsError as exc:  # a value that should be JSON is not
            field = re.search(r'field "(\w+)"', str(exc))
            name = env_name(field.group(1)) if field else "a FLOTILLA_LLM_ variable"
            raise LlmConfigError(f"invalid LLM settings: {name} is not valid JSON") from None

    def problems(self) -> list[str]:
        """What is missing or wrong for the chosen backend, each naming what to set."""
        if self.backend == "openai":
            return self._openai_problems()
        if self.backend == "scripted":
            return self._scripted_problems()
        return self._local_problems()

    def check(self) -> None:
        """Raise `LlmConfigError` listing `problems()`, if any. Call it at process start."""
        problems = self.problems()
        if problems:
            raise LlmConfigError(f"{env_name('backend')}={self.backend} is misconfigured: " + "; ".join(problems))

    def _openai_problems(self) -> list[str]:
        problems = []
        if not self.openai_model:
            problems.append(f"set {env_name('openai_model')} to the model name the endpoint serves (e.g. gpt-4o-mini)")
        has_key = self.openai_api_key is not None and self.openai_api_key.get_secret_value()
        if not has_key and not self.openai_base_url:
            problems.append(
                f"set {env_name('openai_api_key')} (or {env_name('openai_base_url')} for a server that needs no key)"
            )
        return problems

    def _scripted_problems(self) -> list[str]:
        # Imported here: the script format lives with the scripted backend.
        from flotilla.llm._scripted import load_script

        if not self.scripted_replies:
            return [f"set {env_name('scripted_replies')} to a JSON list of replies or the path of a JSON file"]
        try:
            load_script(self.scripted_replies)
        except ValueError as exc:
            return [f"{env_name('scripted_replies')}: {exc}"]
        return []

    def _local_problems(self) -> list[str]:
        if self.model_path is not None and not self.model_path.is_file():
            return [f"{env_name('model_path')}={self.model_path} is not a file: point it at a GGUF model or unset it"]
        return []

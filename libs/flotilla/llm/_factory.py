"""`create_backend`: the backend `LlmSettings` asks for, checked before anything starts."""

from __future__ import annotations

import threading
from pathlib import Path

from flotilla.llm._local import LocalBackend
from flotilla.llm._model import ensure_local_model
from flotilla.llm._openai import OpenAIBackend
from flotilla.llm._scripted import ScriptedBackend, load_script
from flotilla.llm._settings import LlmSettings
from flotilla.llm._types import Backend

_LocalKey = tuple[Path, int, int, int, float, float]
_local_models: dict[_LocalKey, LocalBackend] = {}
_local_lock = threading.Lock()


def create_backend(settings: LlmSettings) -> Backend:
    """Check `settings` (raising `LlmConfigError` that names what to set) and build the backend.

    `local` fetches the bundled model on first use and loads it; the loaded model is shared by
    every caller in the process that asks for the same file and parameters.
    """
    settings.check()
    if settings.backend == "openai":
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        return OpenAIBackend(
            model=settings.openai_model or "",
            api_key=key,
            base_url=settings.openai_base_url,
            timeout_s=settings.openai_timeout_s,
            max_retries=settings.openai_max_retries,
        )
    if settings.backend == "scripted":
        return ScriptedBackend(
            load_script(settings.scripted_replies or ""),
            cycle=settings.scripted_cycle,
            word_delay_s=settings.scripted_word_delay_s,
        )
    return shared_local_backend(settings, ensure_local_model(settings))


def shared_local_backend(settings: LlmSettings, model_path: Path) -> LocalBackend:
    """The process's one `LocalBackend` for this model and these parameters (loaded once)."""
    key = (
        model_path.resolve(),
        settings.threads,
        settings.ctx,
        settings.max_tokens,
        settings.temperature,
        settings.repeat_penalty,
    )
    with _local_lock:
        backend = _local_models.get(key)
        if backend is None or backend.closed:
            backend = LocalBackend(
                model_path,
                threads=settings.threads,
                ctx=settings.ctx,
                max_tokens=settings.max_tokens,
                temperature=settings.temperature,
                repeat_penalty=settings.repeat_penalty,
            )
            _local_models[key] = backend
        return backend

"""Flotilla's LLM layer: the model behind a workflow's agents is configuration.

- **Settings**: `LlmSettings` (`FLOTILLA_LLM_*`); `backend` is `local` (the bundled small model,
  in-process, offline, the default), `openai` (any OpenAI-compatible endpoint) or `scripted`
  (fixed replies, for tests).
- **Backends**: `create_backend(settings)`; all speak `Backend.complete(messages, tools=...)`.
- **Process service**: `LlmService.from_settings(settings)` once at process start, passed down
  (a workflow gets it as `session.llm`); one backend serves every run, from async code
  (`complete`) and from threads (`complete_sync`).
- **AG2**: `llm_config()` for an agent, `register_llm(agent, llm)` to activate
  `FlotillaModelClient`, `GroupChat(..., **group_chat_options(llm))` for automatic speaker
  selection.
- **Per run**: `llm_run(recorder=..., replay=...)` records every completion a run uses and
  replays recorded ones on resume; with `deltas=...`, live replies stream to it as they are
  written (the local and OpenAI backends ask for `stream: true`; the scripted one goes word by word).
"""

from flotilla.llm._ag2 import FlotillaModelClient, FlotillaResponse, group_chat_options, llm_config, register_llm
from flotilla.llm._errors import LlmConfigError, LlmError, ModelFetchError, ScriptExhausted
from flotilla.llm._factory import create_backend
from flotilla.llm._local import LocalBackend
from flotilla.llm._model import BUNDLED_MODEL, BundledModel, ensure_local_model
from flotilla.llm._openai import OpenAIBackend
from flotilla.llm._run import DeltaSink, LlmRun, Recorder, Replay, TextDelta, current_run, llm_run, request_digest
from flotilla.llm._scripted import ScriptedBackend, ScriptedReply, load_script
from flotilla.llm._service import LlmService
from flotilla.llm._settings import LlmSettings, ModelPrice
from flotilla.llm._types import Backend, Completion, Message, Tool, ToolCall

__all__ = [
    # settings and errors
    "LlmSettings",
    "ModelPrice",
    "LlmError",
    "LlmConfigError",
    "ModelFetchError",
    "ScriptExhausted",
    # completions and backends
    "Backend",
    "Completion",
    "Message",
    "Tool",
    "ToolCall",
    "create_backend",
    "LocalBackend",
    "OpenAIBackend",
    "ScriptedBackend",
    "ScriptedReply",
    "load_script",
    # the bundled model
    "BUNDLED_MODEL",
    "BundledModel",
    "ensure_local_model",
    # the process's service
    "LlmService",
    # AG2
    "FlotillaModelClient",
    "FlotillaResponse",
    "group_chat_options",
    "llm_config",
    "register_llm",
    # per-run recording and replay
    "DeltaSink",
    "LlmRun",
    "Recorder",
    "TextDelta",
    "Replay",
    "current_run",
    "llm_run",
    "request_digest",
]

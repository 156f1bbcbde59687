"""AG2 (classic `autogen`) integration: a model client routing agents to an `LlmService`.

    agent = ConversableAgent("teacher", llm_config=llm_config(), ...)
    register_llm(agent, session.llm)

`llm_config()` names `FlotillaModelClient` in its config entry; AG2 then waits for the class to
be registered on the agent, which `register_llm` does. A group chat's manager is an agent like
the others; its automatic speaker selection runs on internal agents of AG2's, which
`GroupChat(..., **group_chat_options(session.llm))` equips.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from flotilla.llm._service import LlmService
from flotilla.llm._types import Completion, Message

MODEL_LABEL = "flotilla"
"""The `model` of the config entry; the configured backend decides the real model."""

FORWARDED_PARAMS = frozenset(
    {
        "temperature",
        "max_tokens",
        "max_completion_tokens",
        "top_p",
        "stop",
        "seed",
        "tool_choice",
        "parallel_tool_calls",
        "frequency_penalty",
        "presence_penalty",
    }
)
"""The create() parameters passed on to the backend (AG2 adds others of its own)."""


@dataclass
class ResponseMessage:
    """`choices[i].message` of a response."""

    content: str | None
    role: str = "assistant"
    tool_calls: list[dict[str, Any]] | None = None
    function_call: None = None


@dataclass
class ResponseChoice:
    """`choices[i]` of a response."""

    message: ResponseMessage
    finish_reason: str = "stop"
    index: int = 0


@dataclass
class ResponseUsage:
    """`usage` of a response."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


@dataclass
class FlotillaResponse:
    """What `FlotillaModelClient.create` returns: AG2's ModelClientResponseProtocol, plus the
    `Completion` itself."""

    id: str
    model: str
    choices: list[ResponseChoice]
    usage: ResponseUsage
    completion: Completion
    cost: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, completion: Completion) -> FlotillaResponse:
        tool_calls = [call.to_dict() for call in completion.tool_calls] or None
        message = ResponseMessage(content=completion.content, tool_calls=tool_calls)
        usage = ResponseUsage(
            completion.prompt_tokens,
            completion.completion_tokens,
            completion.prompt_tokens + completion.completion_tokens,
        )
        choice = ResponseChoice(message=message, finish_reason=completion.finish_reason)
        return cls(id=completion.id, model=completion.model, choices=[choice], usage=usage, completion=completion)


class FlotillaModelClient:
    """AG2 `ModelClient` (create, message_retrieval, cost, get_usage) over an `LlmService`.

    AG2 builds it from the config entry when `register_llm(agent, llm)` registers it; `llm` is
    the service to use.
    """

    def __init__(self, config: dict[str, Any], *, llm: LlmService, speaker: str = "", **_: Any) -> None:
        """`speaker`: the agent this client writes for (its replies stream under that name)."""
        self.config = config
        self._llm = llm
        self._speaker = speaker

    def create(self, params: dict[str, Any]) -> FlotillaResponse:
        """One completion for AG2's request (called synchronously, from the agent's thread)."""
        messages: list[Message] = params.get("messages") or [{"role": "user", "content": params.get("prompt", "")}]
        tools = params.get("tools") or None
        forwarded = {key: value for key, value in params.items() if key in FORWARDED_PARAMS and value is not None}
        completion = self._llm.complete_sync(messages, tools=tools, sender=self._speaker, **forwarded)
        response = FlotillaResponse.of(completion)
        response.cost = self._llm.cost(response.completion)
        return response

    def message_retrieval(self, response: FlotillaResponse) -> list[str | dict[str, Any]]:
        """The reply's text, or the whole assistant message (a dict) when it calls tools."""
        completion = response.completion
        return [completion.message() if completion.tool_calls else completion.text]

    def cost(self, response: FlotillaResponse) -> float:
        """What the completion cost at the service's prices (`FLOTILLA_LLM_PRICES`; 0 for a model
        without one): AG2's cost report agrees with the run's usage."""
        return response.cost

    @staticmethod
    def get_usage(response: FlotillaResponse) -> dict[str, Any]:
        """Token counts for AG2's usage summary."""
        usage = response.usage
        return {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "cost": response.cost,
            "model": response.model,
        }


def llm_config(*, temperature: float | None = None, max_tokens: int | None = None, **options: Any) -> dict[str, Any]:
    """The plain-dict `llm_config` for an agent served by Flotilla's LLM (ag2 0.14 refuses
    `LLMConfig(config_list=...)`). `temperature`/`max_tokens` override the backend's defaults for
    this agent; `options` are further top-level llm_config keys. AG2's response cache is off, so
    every completion reaches the backend and the run's recorder."""
    entry: dict[str, Any] = {"model": MODEL_LABEL, "model_client_cls": FlotillaModelClient.__name__}
    if temperature is not None:
        entry["temperature"] = temperature
    if max_tokens is not None:
        entry["max_tokens"] = max_tokens
    return {"config_list": [entry], "cache_seed": None, **options}


def group_chat_options(llm: LlmService) -> dict[str, Any]:
    """Keyword arguments for `GroupChat(...)` so its automatic speaker selection runs on `llm`."""
    return {"select_speaker_auto_model_client_cls": _client_of(llm), "select_speaker_auto_llm_config": llm_config()}


def _client_of(llm: LlmService) -> type[FlotillaModelClient]:
    """`FlotillaModelClient` bound to `llm`: AG2 builds speaker selection's client itself, with
    no arguments of ours."""

    class BoundClient(FlotillaModelClient):
        def __init__(self, config: dict[str, Any], **_: Any) -> None:
            super().__init__(config, llm=llm)

    # AG2 matches the client class to the config entry by name.
    BoundClient.__name__ = BoundClient.__qualname__ = FlotillaModelClient.__name__
    return BoundClient


class _RegistersModelClients(Protocol):
    def register_model_client(self, model_client_cls: Any, **kwargs: Any) -> None: ...


# AG2 rebuilds an agent's client (losing registered model clients) whenever a tool or function is
# registered for the LLM; these are the methods that do it.
_CLIENT_REBUILDERS = ("update_tool_signature", "update_function_signature")


def register_llm(agent: _RegistersModelClients, llm: LlmService) -> None:
    """Activate `FlotillaModelClient` over `llm` (a workflow's: `session.llm`) on an agent built
    with `llm_config()`. Call it once, before or after registering tools: it stays active when
    AG2 rebuilds the agent's client for a new tool."""
    agent.register_model_client(FlotillaModelClient, llm=llm, speaker=_name_of(agent))
    for name in _CLIENT_REBUILDERS:
        rebuild = getattr(agent, name, None)
        if rebuild is None or getattr(rebuild, "flotilla_llm", False):
            continue
        setattr(agent, name, _reactivating(agent, rebuild, llm))


def _reactivating(agent: _RegistersModelClients, rebuild: Callable[..., Any], llm: LlmService) -> Any:
    @functools.wraps(rebuild)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = rebuild(*args, **kwargs)
        agent.register_model_client(FlotillaModelClient, llm=llm, speaker=_name_of(agent))
        return result

    wrapper.flotilla_llm = True  # type: ignore[attr-defined]
    return wrapper


def _name_of(agent: Any) -> str:
    name = getattr(agent, "name", "")
    return name if isinstance(name, str) else ""

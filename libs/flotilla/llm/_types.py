"""What every backend speaks: OpenAI-style chat messages in, one `Completion` out."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Message = dict[str, Any]
"""One OpenAI-style chat message: `{"role": ..., "content": ..., ...}`."""

Tool = dict[str, Any]
"""One OpenAI-style tool: `{"type": "function", "function": {"name", "description", "parameters"}}`."""


@dataclass(frozen=True)
class ToolCall:
    """A function call the model asks for; `arguments` is JSON text, as OpenAI sends it."""

    id: str
    name: str
    arguments: str = "{}"

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's shape: `{"id", "type": "function", "function": {"name", "arguments"}}`."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolCall:
        """Reads OpenAI's shape; arguments given as an object are encoded to JSON."""
        function = data.get("function") or {}
        arguments = function.get("arguments", "{}")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        return cls(id=str(data.get("id") or ""), name=str(function.get("name") or ""), arguments=arguments)


@dataclass(frozen=True)
class Completion:
    """One chat completion (its first choice). `to_dict()` is what gets recorded; `from_dict()`
    reads it back (or any OpenAI `chat.completion` JSON)."""

    content: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    model: str = ""
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    id: str = ""
    created: int = 0
    latency_s: float = field(default=0.0, compare=False)
    """How long the backend took (set by the service; not part of the recorded JSON: the
    `llm_completion` event has a field of its own for it)."""
    timings: Mapping[str, float] | None = field(default=None, compare=False, repr=False)
    """Backend-specific speed figures (the local model's prompt/generation tokens per second);
    not recorded."""

    @property
    def text(self) -> str:
        """The content, `""` when the model only called tools."""
        return self.content or ""

    def message(self) -> Message:
        """The assistant message to append to the conversation."""
        message: Message = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        return message

    def to_dict(self) -> dict[str, Any]:
        """OpenAI's `chat.completion` JSON (one choice)."""
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "message": self.message(), "finish_reason": self.finish_reason}],
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Completion:
        """Reads OpenAI's `chat.completion` JSON (its first choice); unknown fields are ignored."""
        choices: Sequence[Mapping[str, Any]] = data.get("choices") or [{}]
        choice = choices[0]
        message = choice.get("message") or {}
        usage = data.get("usage") or {}
        timings = data.get("timings")
        return cls(
            content=message.get("content"),
            tool_calls=tuple(ToolCall.from_dict(call) for call in message.get("tool_calls") or ()),
            model=str(data.get("model") or ""),
            finish_reason=str(choice.get("finish_reason") or "stop"),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            id=str(data.get("id") or ""),
            created=int(data.get("created") or 0),
            timings=dict(timings) if isinstance(timings, Mapping) else None,
        )


class Backend(Protocol):
    """A source of chat completions. One instance serves every run of a process, concurrently."""

    @property
    def model(self) -> str:
        """The model's name, as recorded with each completion."""
        ...

    async def complete(self, messages: list[Message], *, tools: list[Tool] | None = None, **params: Any) -> Completion:
        """Answer `messages`; `params` are OpenAI sampling parameters (temperature, max_tokens, ...)."""
        ...

    async def aclose(self) -> None:
        """Release what the backend holds (connections, threads); the model itself may stay cached."""
        ...

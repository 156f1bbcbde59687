"""Streamed completions: OpenAI's `chat.completion.chunk`s put back together into one `Completion`.

A backend asked to stream (`complete(..., on_text=...)`) requests `stream: true`, hands the text
of each chunk to `on_text` as it arrives, and returns the same `Completion` the unstreamed call
would have: the chunks' content joined, tool calls assembled from their pieces, the finish
reason, and the usage of the last chunk (`stream_options.include_usage`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from flotilla.llm._types import Completion, ToolCall

OnText = Callable[[str], Awaitable[None]]
"""Called with each piece of the reply's text, in order, as the model writes it."""

STREAM_OPTIONS = {"include_usage": True}
"""Asks for the usage in the stream's last chunk (as an unstreamed call reports it)."""


class ChunkAssembler:
    """Collects `chat.completion.chunk` JSON objects (first choice) into a `Completion`."""

    def __init__(self) -> None:
        self._content: list[str] = []
        self._has_content = False
        self._calls: dict[int, dict[str, str]] = {}
        self._finish_reason = "stop"
        self._usage: Mapping[str, Any] = {}
        self._id = ""
        self._model = ""
        self._created = 0
        self._timings: Mapping[str, float] | None = None

    def add(self, chunk: Mapping[str, Any]) -> str:
        """Take in one chunk; returns its text ("" when it has none)."""
        self._id = self._id or str(chunk.get("id") or "")
        self._model = self._model or str(chunk.get("model") or "")
        self._created = self._created or int(chunk.get("created") or 0)
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        if isinstance(chunk.get("timings"), Mapping):
            self._timings = dict(chunk["timings"])
        choices = chunk.get("choices") or []
        if not choices:
            return ""
        choice = choices[0]
        if choice.get("finish_reason"):
            self._finish_reason = str(choice["finish_reason"])
        delta = choice.get("delta") or {}
        for piece in delta.get("tool_calls") or ():
            call = self._calls.setdefault(int(piece.get("index") or 0), {"id": "", "name": "", "arguments": ""})
            call["id"] = call["id"] or str(piece.get("id") or "")
            function = piece.get("function") or {}
            call["name"] += str(function.get("name") or "")
            call["arguments"] += str(function.get("arguments") or "")
        text = delta.get("content")
        if isinstance(text, str):
            self._has_content = True
            self._content.append(text)
            return text
        return ""

    def completion(self) -> Completion:
        """What the chunks added up to."""
        calls = tuple(
            ToolCall(id=call["id"], name=call["name"], arguments=call["arguments"] or "{}")
            for _, call in sorted(self._calls.items())
        )
        content = "".join(self._content) if self._has_content else None
        if calls and not content:
            content = None
        return Completion(
            content=content,
            tool_calls=calls,
            model=self._model,
            finish_reason=self._finish_reason,
            prompt_tokens=int(self._usage.get("prompt_tokens") or 0),
            completion_tokens=int(self._usage.get("completion_tokens") or 0),
            id=self._id,
            created=self._created,
            timings=self._timings,
        )

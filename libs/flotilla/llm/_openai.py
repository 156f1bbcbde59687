"""`OpenAIBackend`: any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp server)."""

from __future__ import annotations

from typing import Any, cast

import openai
from openai import AsyncStream
from openai.types.chat import ChatCompletionChunk

from flotilla.llm._errors import LlmError
from flotilla.llm._stream import STREAM_OPTIONS, ChunkAssembler, OnText
from flotilla.llm._types import Completion, Message, Tool

NO_KEY = "unused"
"""The key sent to a server that needs none (the openai package insists on one)."""


class OpenAIBackend:
    """Chat completions over HTTP with the openai package's async client (one connection pool
    shared by every run of the process)."""

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 2,
        client: openai.AsyncOpenAI | None = None,
    ) -> None:
        """`client` replaces the one built from the other arguments (tests pass one with a fake
        transport)."""
        self._model = model
        self._client = client or openai.AsyncOpenAI(
            api_key=api_key or NO_KEY, base_url=base_url, timeout=timeout_s, max_retries=max_retries
        )

    @property
    def model(self) -> str:
        return self._model

    async def complete(
        self, messages: list[Message], *, tools: list[Tool] | None = None, on_text: OnText | None = None, **params: Any
    ) -> Completion:
        """One request to `/chat/completions`; failures after the client's retries raise `LlmError`.
        With `on_text`, the reply streams (`stream: true`): each piece of text is handed to it as
        it arrives, and the completion returned is the same as unstreamed."""
        request: dict[str, Any] = {**params, "model": self._model, "messages": messages, "stream": on_text is not None}
        if tools:
            request["tools"] = tools
        try:
            if on_text is None:
                response = await self._client.chat.completions.create(**request)
                return Completion.from_dict(response.model_dump(exclude_none=True))
            assembler = ChunkAssembler()
            request["stream_options"] = STREAM_OPTIONS
            # `stream` is in the request dict, so the type checker cannot pick the streaming overload.
            stream = cast(AsyncStream[ChatCompletionChunk], await self._client.chat.completions.create(**request))
            async with stream:
                async for chunk in stream:
                    text = assembler.add(chunk.model_dump(exclude_none=True))
                    if text:
                        await on_text(text)
            return assembler.completion()
        except openai.OpenAIError as exc:
            raise LlmError(f"{self._model} at {self._client.base_url}: {exc}") from exc

    async def aclose(self) -> None:
        """Closes the connection pool."""
        await self._client.close()

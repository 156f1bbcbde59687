"""`LocalBackend`: a GGUF model run in this process by xllamacpp (prebuilt llama.cpp), no HTTP.

One model instance serves every run of the process. It has one slot (`n_parallel = 1`), so
calls are serialised through a single-thread executor: they queue in order, the event loop is
never blocked, and a call whose caller was cancelled before its turn is dropped unrun.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from flotilla.llm._errors import LlmError
from flotilla.llm._settings import env_name
from flotilla.llm._stream import STREAM_OPTIONS, ChunkAssembler, OnText
from flotilla.llm._types import Completion, Message, Tool

_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*(?=\s|$)")


def end_at_sentence(text: str, *, keep_at_least: float = 0.4) -> str:
    """`text` up to its last sentence end, when that keeps at least `keep_at_least` of it;
    otherwise `text` with an ellipsis (a reply that is one long unfinished sentence)."""
    ends = [match.end() for match in _SENTENCE_END.finditer(text)]
    if ends and ends[-1] >= keep_at_least * len(text.rstrip()):
        return text[: ends[-1]]
    return text.rstrip() + "…"


class LocalBackend:
    """Chat completions from a local GGUF model via xllamacpp's in-process `Server`."""

    def __init__(
        self,
        model_path: Path,
        *,
        threads: int = 1,
        ctx: int = 2048,
        max_tokens: int = 128,
        temperature: float = 0.0,
        repeat_penalty: float = 1.15,
    ) -> None:
        """Loads the model (blocking, well under a second for the bundled one)."""
        import xllamacpp  # a 34 MB native module: only loaded by processes that use it

        params = xllamacpp.CommonParams()
        params.model.path = str(model_path)
        params.n_ctx = ctx
        params.n_parallel = 1
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.use_jinja = True  # the model's own chat template, with tool support
        params.verbosity = 0
        # The server also listens on a loopback port (it cannot be turned off); we never use it,
        # and a random key keeps other local users off it.
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.api_keys = [secrets.token_urlsafe(24)]
        self._server: Any = xllamacpp.Server(params)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flotilla-llm-local")
        self._model = model_path.name.removesuffix(".gguf")
        self._defaults: dict[str, Any] = {
            "max_tokens": max_tokens,
            "temperature": temperature,
            "repeat_penalty": repeat_penalty,
        }

    @property
    def model(self) -> str:
        return self._model

    @property
    def closed(self) -> bool:
        """True after `aclose()`."""
        return self._server is None

    async def complete(
        self, messages: list[Message], *, tools: list[Tool] | None = None, on_text: OnText | None = None, **params: Any
    ) -> Completion:
        """Runs the model in its own thread; waits in line behind calls already queued. With
        `on_text`, the reply streams: each piece of text is handed to it as the model writes it."""
        body: dict[str, Any] = {**self._defaults, **params, "messages": messages, "stream": on_text is not None}
        if tools:
            body["tools"] = tools
        loop = asyncio.get_running_loop()
        if on_text is None:
            completion = Completion.from_dict(await loop.run_in_executor(self._executor, self._handle, body))
        else:
            body["stream_options"] = STREAM_OPTIONS
            completion = await self._streamed(body, on_text)
        if completion.finish_reason == "length" and completion.content:
            # A reply cut at the token cap ends at its last whole sentence, not mid-word.
            completion = dataclasses.replace(completion, content=end_at_sentence(completion.content))
        # The server names the model by its file path; record the model's name instead.
        return dataclasses.replace(completion, model=self._model)

    async def _streamed(self, body: dict[str, Any], on_text: OnText) -> Completion:
        """The model's chunks, passed from its thread to this loop as they come."""
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def on_chunk(chunk: Any) -> None:
            if isinstance(chunk, dict):
                loop.call_soon_threadsafe(chunks.put_nowait, chunk)

        def generate() -> None:
            try:
                self._handle_stream(body, on_chunk)
            finally:
                loop.call_soon_threadsafe(chunks.put_nowait, None)

        generating = loop.run_in_executor(self._executor, generate)
        # A caller that stops listening leaves the model to finish the reply in its thread.
        generating.add_done_callback(lambda done: done.cancelled() or done.exception())
        assembler = ChunkAssembler()
        error: dict[str, Any] | None = None
        while (chunk := await chunks.get()) is not None:
            if "error" in chunk:
                error = chunk
                continue
            text = assembler.add(chunk)
            if text and error is None:
                await on_text(text)
        await generating  # raises what the model's thread raised
        if error is not None:
            raise _failure(error)
        return assembler.completion()

    def _handle_stream(self, body: dict[str, Any], on_chunk: Callable[[Any], None]) -> None:
        server = self._server
        if server is None:
            raise LlmError("the local model was closed")
        try:
            raw = server.handle_chat_completions(body, on_chunk)
        except ValueError as exc:
            raise LlmError(f"the local model refused the request: {exc}") from None
        if isinstance(raw, dict) and "error" in raw:
            raise _failure(raw)

    def _handle(self, body: dict[str, Any]) -> dict[str, Any]:
        server = self._server
        if server is None:
            raise LlmError("the local model was closed")
        try:
            raw = server.handle_chat_completions(body)
        except ValueError as exc:  # xllamacpp's answer to a request it cannot serve
            raise LlmError(f"the local model refused the request: {exc}") from None
        if isinstance(raw, dict) and "choices" in raw:
            return raw
        raise _failure(raw)

    async def aclose(self) -> None:
        """Waits for queued calls, then frees the model."""
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)
        self._server = None


def _failure(raw: Any) -> LlmError:
    """The error the local server answered with, in words."""
    error = raw.get("error") if isinstance(raw, dict) else None
    if isinstance(error, dict) and error.get("type") == "exceed_context_size_error":
        return LlmError(f"{error.get('message')} (raise {env_name('ctx')}, or keep the conversation shorter)")
    return LlmError(f"the local model failed: {error or raw!r:.500}")

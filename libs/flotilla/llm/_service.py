"""`LlmService`: one backend shared by every run of a process, for async code and for threads.

A process builds it once at start (`LlmService.from_settings`) and passes it down: the worker's
context, then each run's session (`session.llm`), then the run's agents (`register_llm`).

Backends are async. AG2 calls its model client synchronously from a workflow's thread, so the
service runs every backend call on ONE event loop (the worker's, when given; otherwise a daemon
thread of its own) and lets threads wait for the result. Many runs therefore share one backend
(one HTTP connection pool, one loaded local model) safely. The per-run hooks (`llm_run`) are
applied here, in the caller's own thread or task.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import threading
import time
from collections.abc import Awaitable, Coroutine, Mapping
from typing import Any, TypeVar

import structlog

from flotilla.llm._factory import create_backend
from flotilla.llm._run import LlmRun, TextDelta, current_run
from flotilla.llm._settings import LlmSettings, ModelPrice
from flotilla.llm._stream import OnText
from flotilla.llm._types import Backend, Completion, Message, Tool
from flotilla import tracing
from flotilla.metrics import LLM_CALL_SECONDS, LLM_CALLS, LLM_TOKENS

T = TypeVar("T")
log = structlog.get_logger(__name__)


class LlmService:
    """Completions for every run of a process, replayed or recorded per run (see `llm_run`)."""

    def __init__(
        self,
        backend: Backend,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        prices: Mapping[str, ModelPrice] | None = None,
    ) -> None:
        """`loop`: where backend calls run (the worker's loop); without one, the service starts
        a daemon thread with its own loop on first use. `prices`: per million tokens, by model."""
        self._backend = backend
        self._prices = dict(prices or {})
        self._loop = loop
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._meter = _Meter(backend.model)

    @classmethod
    def from_settings(cls, settings: LlmSettings, *, loop: asyncio.AbstractEventLoop | None = None) -> LlmService:
        """The service for `settings`, ready: a misconfiguration raises `LlmConfigError` naming
        what to set, and the local model is fetched and loaded here rather than in the first
        run. Blocking; from async code use `await asyncio.to_thread(LlmService.from_settings,
        settings, loop=asyncio.get_running_loop())`."""
        return cls(create_backend(settings), loop=loop, prices=settings.prices)

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def model(self) -> str:
        """The backend's model name."""
        return self._backend.model

    async def complete(
        self, messages: list[Message], *, tools: list[Tool] | None = None, sender: str = "", **params: Any
    ) -> Completion:
        """A completion for `messages`, from the run's replay while it lasts, else the backend.
        `sender`: the agent the reply is for; a live reply then streams to the run's `deltas`."""
        run = current_run()
        replayed = _replayed(run, messages)
        if replayed is not None:
            return replayed
        call = self._meter.timed(self._backend.complete(messages, tools=tools, **_streaming(run, sender), **params))
        loop = self._event_loop()
        if loop is asyncio.get_running_loop():
            completion = await call
        else:
            completion = await asyncio.wrap_future(_submit(loop, call, contextvars.copy_context()))
        if run is not None and run.recorder is not None:
            recorded = run.recorder(messages, completion)
            if recorded is not None:
                await recorded
        return completion

    def complete_sync(
        self, messages: list[Message], *, tools: list[Tool] | None = None, sender: str = "", **params: Any
    ) -> Completion:
        """`complete` for code running in a thread (AG2's model client); blocks that thread only.

        Must not be called from the service loop's own thread (it would wait for itself).
        """
        run = current_run()
        replayed = _replayed(run, messages)
        if replayed is not None:
            return replayed
        loop = self._event_loop()
        if _running_loop() is loop:
            raise RuntimeError("complete_sync() was called on the LLM service's event loop; await complete() there")
        call = self._meter.timed(self._backend.complete(messages, tools=tools, **_streaming(run, sender), **params))
        completion = _submit(loop, call, contextvars.copy_context()).result()
        if run is not None and run.recorder is not None:
            recorded = run.recorder(messages, completion)
            if recorded is not None:
                _submit(loop, _awaited(recorded), contextvars.copy_context()).result()
        return completion

    def cost(self, completion: Completion) -> float:
        """What `completion` cost at the configured prices (0 for a model without one)."""
        price = self._prices.get(completion.model)
        if price is None:
            return 0.0
        return (completion.prompt_tokens * price.prompt + completion.completion_tokens * price.completion) / 1e6

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=loop.run_forever, name="flotilla-llm", daemon=True)
                self._thread.start()
                self._loop = loop
            return self._loop

    async def aclose(self) -> None:
        """Close the backend, and stop the service's own loop if it started one."""
        loop = self._event_loop()
        if loop is asyncio.get_running_loop():
            await self._backend.aclose()
        else:
            await asyncio.wrap_future(_submit(loop, self._backend.aclose(), contextvars.copy_context()))
        self._stop_own_loop()

    def close(self) -> None:
        """`aclose` for synchronous code (not on the service loop's thread)."""
        loop = self._event_loop()
        _submit(loop, self._backend.aclose(), contextvars.copy_context()).result()
        self._stop_own_loop()

    def _stop_own_loop(self) -> None:
        with self._lock:
            thread, loop = self._thread, self._loop
            if thread is None or loop is None:
                return
            self._thread = self._loop = None
        loop.call_soon_threadsafe(loop.stop)
        if thread is not threading.current_thread():
            thread.join()
        loop.close()


class _Meter:
    """Calls, latency and tokens of one model (the service's, configured: a bounded label)."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._span_name = f"chat {model}"
        self._ok = LLM_CALLS.labels(model, "ok")
        self._error = LLM_CALLS.labels(model, "error")
        self._seconds = LLM_CALL_SECONDS.labels(model)
        self._prompt = LLM_TOKENS.labels(model, "prompt")
        self._completion = LLM_TOKENS.labels(model, "completion")

    async def timed(self, call: Awaitable[Completion]) -> Completion:
        """The completion, with how long the backend took to give it (its `latency_s`); a span
        (model, tokens) when tracing is on, a child of the caller's (the run attempt's)."""
        start = time.perf_counter()
        with tracing.span(self._span_name, kind=tracing.SpanKind.CLIENT, attributes=self._attributes()) as current:
            try:
                completion = await call
            except BaseException:
                self._error.inc()
                raise
            finally:
                self._seconds.observe(time.perf_counter() - start)
            if current is not None:
                current.set_attributes(
                    {
                        "gen_ai.response.model": completion.model,
                        "gen_ai.usage.input_tokens": completion.prompt_tokens,
                        "gen_ai.usage.output_tokens": completion.completion_tokens,
                        "gen_ai.response.finish_reasons": [completion.finish_reason],
                    }
                )
        elapsed = time.perf_counter() - start
        self._ok.inc()
        # Backends put the usage they report in the completion (0 where they report none).
        self._prompt.inc(completion.prompt_tokens)
        self._completion.inc(completion.completion_tokens)
        return dataclasses.replace(completion, latency_s=elapsed)

    def _attributes(self) -> dict[str, str] | None:
        if not tracing.enabled():
            return None
        return {"gen_ai.operation.name": "chat", "gen_ai.request.model": self._model}


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _replayed(run: LlmRun | None, messages: list[Message]) -> Completion | None:
    if run is None:
        return None
    run.next_index("completions")
    return run.replay.next(messages) if run.replay is not None else None


def _streaming(run: LlmRun | None, sender: str) -> dict[str, OnText]:
    """`{"on_text": ...}` for a live call whose run takes deltas and that names its agent; else
    nothing (the backend does not stream)."""
    if run is None or run.deltas is None or not sender:
        return {}
    sink, reply = run.deltas, run.completions - 1
    index, first_token_at = 0, 0.0

    async def on_text(text: str) -> None:
        nonlocal index, first_token_at
        first_token_at = first_token_at or time.time()
        delta = TextDelta(reply=reply, sender=sender, index=index, text=text, first_token_at=first_token_at)
        index += 1
        try:
            sent = sink(delta)
            if sent is not None:
                await sent
        except Exception as exc:  # deltas are a live view only: the completion goes on
            log.warning("a reply delta was not sent", error=repr(exc))

    return {"on_text": on_text}


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _submit(
    loop: asyncio.AbstractEventLoop, call: Coroutine[Any, Any, T], context: contextvars.Context
) -> concurrent.futures.Future[T]:
    """Run `call` on `loop` in `context` (so the backend sees the caller's run), from any thread."""
    result: concurrent.futures.Future[T] = concurrent.futures.Future()

    def start() -> None:
        if not result.set_running_or_notify_cancel():
            call.close()
            return
        task = loop.create_task(call, context=context)
        task.add_done_callback(finish)

    def finish(task: asyncio.Task[T]) -> None:
        if task.cancelled():
            result.set_exception(concurrent.futures.CancelledError())
        elif (error := task.exception()) is not None:
            result.set_exception(error)
        else:
            result.set_result(task.result())

    loop.call_soon_threadsafe(start)
    return result

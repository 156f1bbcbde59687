"""Per-run hooks: record every completion a run uses, and replay recorded ones on resume.

The worker wraps a run in `llm_run(recorder=..., replay=...)`; the hooks live in a context
variable, so they follow the run into the thread of a plain `def` workflow (the worker starts it
with a copy of its context) and never reach another run.

- **recorder** `(request_messages, completion)` is called with every completion the backend
  produced for the run, in order, and the completion is returned to the caller only once the
  recorder is done. It is the place to store an `llm_completion` event
  (`completion.model, messages, completion.to_dict()`). A plain function runs in the caller's
  thread or task (a threaded workflow: `sync_session.llm_completion(...)`); a recorder returning
  an awaitable (an async workflow: `session.llm_completion(...)`) is awaited, on the service's
  event loop when the caller is a thread, so give the service the loop the session lives on. If
  it raises, the call fails with that error (e.g. the run was cancelled).
- **replay** hands out completions recorded by an earlier attempt, in order: while it has some,
  they are returned instead of calling the backend (and are not recorded again); once it runs
  out, the run continues live. Each recorded completion may carry the digest of the request it
  answered (`request_digest`): a request that differs means the run has diverged from its log,
  and the call raises `Nondeterminism` (or, with `strict=False`, the replay stops and the run
  goes live).
- **deltas** receives the pieces of each reply while the model writes it (`TextDelta`), for
  the live view only: a replayed completion streams nothing, and a sink that fails never fails
  the call. Only calls that name the agent writing (`sender`, as AG2's model client does) stream.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from flotilla.errors import Nondeterminism
from flotilla.llm._types import Completion, Message

Recorder = Callable[[list[Message], Completion], Awaitable[None] | None]
"""Called with (the request's messages, the completion) for every live completion of a run; may
return an awaitable, which is awaited before the completion is used."""


@dataclass(frozen=True)
class TextDelta:
    """One piece of a reply the model is writing."""

    reply: int
    """Which LLM call of the run (0, 1, 2, ...: the same on every attempt)."""
    sender: str
    """The agent writing."""
    index: int
    """0, 1, 2, ... within the reply."""
    text: str
    first_token_at: float
    """When the reply's first piece came from the model (`time.time()`)."""


DeltaSink = Callable[[TextDelta], Awaitable[None] | None]
"""Takes each `TextDelta` of a run's live replies (may return an awaitable, which is awaited)."""


def request_digest(messages: Sequence[Message]) -> str:
    """SHA-256 (hex) of a request's canonical JSON: what a log records instead of the request."""
    canonical = json.dumps(list(messages), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Replay:
    """Completions recorded by an earlier attempt of a run, handed out once each, in order."""

    def __init__(
        self,
        completions: Iterable[Completion | Mapping[str, Any]],
        *,
        digests: Sequence[str] = (),
        strict: bool = True,
    ) -> None:
        """`digests`: the `request_digest` each completion answered ("" or missing: unchecked)."""
        self._items = [item if isinstance(item, Completion) else Completion.from_dict(item) for item in completions]
        self._digests = list(digests)
        self._strict = strict
        self._next = 0
        self._lock = threading.Lock()

    def next(self, messages: Sequence[Message] | None = None) -> Completion | None:
        """The next recorded completion, or None once all were handed out. With `messages`, the
        request is checked against the one recorded with the completion."""
        with self._lock:
            if self._next >= len(self._items):
                return None
            index = self._next
            expected = self._digests[index] if index < len(self._digests) else ""
            if messages is not None and expected and request_digest(messages) != expected:
                if self._strict:
                    raise Nondeterminism(
                        f"LLM call {index + 1} of the resumed run asks something else than the call its log "
                        "recorded (the conversation before it differs)"
                    )
                self._next = len(self._items)  # diverged: live from here
                return None
            item, self._next = self._items[index], index + 1
            return item

    @property
    def replayed(self) -> int:
        """How many were handed out."""
        return self._next

    @property
    def exhausted(self) -> bool:
        """True once every recorded completion was handed out (the run is live again)."""
        return self._next >= len(self._items)


class LlmRun:
    """One run's LLM hooks and counters (see the module docstring)."""

    def __init__(
        self, *, recorder: Recorder | None = None, replay: Replay | None = None, deltas: DeltaSink | None = None
    ) -> None:
        self.recorder = recorder
        self.replay = replay
        self.deltas = deltas
        self._counters: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def completions(self) -> int:
        """Completions the run used so far, replayed and live."""
        return self._counters.get("completions", 0)

    def next_index(self, key: str) -> int:
        """0, 1, 2, ... per `key`, counted for this run only (thread-safe)."""
        with self._lock:
            n = self._counters.get(key, 0)
            self._counters[key] = n + 1
            return n


_CURRENT: ContextVar[LlmRun | None] = ContextVar("flotilla_llm_run", default=None)


def current_run() -> LlmRun | None:
    """The hooks of the run this code belongs to, if any."""
    return _CURRENT.get()


@contextmanager
def llm_run(
    *, recorder: Recorder | None = None, replay: Replay | None = None, deltas: DeltaSink | None = None
) -> Iterator[LlmRun]:
    """Inside the `with` (and in threads started with a copy of its context), completions are
    replayed from `replay` while it lasts, every live one is passed to `recorder`, and the
    pieces of live replies, as they are written, to `deltas`."""
    run = LlmRun(recorder=recorder, replay=replay, deltas=deltas)
    token = _CURRENT.set(run)
    try:
        yield run
    finally:
        _CURRENT.reset(token)

"""`ScriptedBackend`: deterministic replies from configuration, including tool calls (for tests).

A script is a JSON list; each reply is either a string (the assistant's text) or an object
`{"content": "...", "tool_calls": [{"name": "f", "arguments": {"x": 1}}]}` (content optional,
arguments an object or JSON text, an `id` optional). Inside a run (`llm_run`) each run walks the
script from its first reply, so concurrent runs get the same answers in the same order; outside
one, the backend keeps a single cursor.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flotilla.llm._errors import ScriptExhausted
from flotilla.llm._run import current_run
from flotilla.llm._stream import OnText
from flotilla.llm._types import Completion, Message, Tool, ToolCall

SCRIPTED_MODEL = "scripted"
_WORD = re.compile(r"\s*\S+\s*$|\s*\S+|\s+$")
"""A reply's words, each with the spaces before it (the last also with the spaces after): joined,
they are the reply."""


@dataclass(frozen=True)
class ScriptedReply:
    """One reply of a script."""

    content: str | None = None
    tool_calls: tuple[tuple[str, str], ...] = ()
    """(function name, arguments as JSON text) of each call."""

    @classmethod
    def parse(cls, item: Any, where: str = "reply") -> ScriptedReply:
        """A string, or `{"content": ..., "tool_calls": [{"name": ..., "arguments": ...}]}`."""
        if isinstance(item, ScriptedReply):
            return item
        if isinstance(item, str):
            return cls(content=item)
        if not isinstance(item, Mapping):
            raise ValueError(f"{where} must be a string or an object, not {type(item).__name__}")
        content = item.get("content")
        if content is not None and not isinstance(content, str):
            raise ValueError(f"{where}.content must be a string")
        calls = item.get("tool_calls") or []
        if not isinstance(calls, list) or not all(isinstance(call, Mapping) for call in calls):
            raise ValueError(f"{where}.tool_calls must be a list of objects")
        parsed = tuple(_parse_call(call, f"{where}.tool_calls[{i}]") for i, call in enumerate(calls))
        if content is None and not parsed:
            raise ValueError(f"{where} needs a content or tool_calls")
        return cls(content=content, tool_calls=parsed)


def _parse_call(call: Mapping[str, Any], where: str) -> tuple[str, str]:
    name = call.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}.name must be a non-empty string")
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):
        try:
            json.loads(arguments)
        except ValueError:
            raise ValueError(f"{where}.arguments is not valid JSON") from None
        return name, arguments
    if not isinstance(arguments, Mapping):
        raise ValueError(f"{where}.arguments must be an object or JSON text")
    return name, json.dumps(arguments)


def load_script(value: str) -> list[ScriptedReply]:
    """Parse a script given as JSON text (starting with `[`) or as the path of a JSON file."""
    text = value
    if not value.lstrip().startswith("["):
        path = Path(value).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"neither a JSON list nor a readable file ({exc.strerror}: {path})") from None
    try:
        items = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(items, list) or not items:
        raise ValueError("must be a non-empty JSON list of replies")
    return [ScriptedReply.parse(item, f"reply {i}") for i, item in enumerate(items)]


def _words(content: Any) -> int:
    return len(content.split()) if isinstance(content, str) else 0


class ScriptedBackend:
    """Replies from a fixed script, in order; with `cycle` it starts over after the last one."""

    def __init__(
        self,
        replies: Sequence[ScriptedReply | str | Mapping[str, Any]],
        *,
        cycle: bool = True,
        word_delay_s: float = 0.0,
    ) -> None:
        """`word_delay_s`: a streamed reply's pause between words (a model writing slowly)."""
        if not replies:
            raise ValueError("a script needs at least one reply")
        self._replies = [ScriptedReply.parse(item, f"reply {i}") for i, item in enumerate(replies)]
        self._cycle = cycle
        self._word_delay_s = word_delay_s
        self._cursor = 0
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return SCRIPTED_MODEL

    async def complete(
        self, messages: list[Message], *, tools: list[Tool] | None = None, on_text: OnText | None = None, **params: Any
    ) -> Completion:
        """The next reply of the script (of this run's walk through it, inside `llm_run`). With
        `on_text`, the reply's text streams word by word, `word_delay_s` apart."""
        n = self._next_index()
        if n >= len(self._replies) and not self._cycle:
            raise ScriptExhausted(f"the script has {len(self._replies)} replies and reply {n + 1} was asked for")
        reply = self._replies[n % len(self._replies)]
        if on_text is not None and reply.content:
            for i, word in enumerate(_WORD.findall(reply.content)):
                if i and self._word_delay_s:
                    await asyncio.sleep(self._word_delay_s)
                await on_text(word)
        calls = tuple(
            ToolCall(id=f"call_{n}_{i}", name=name, arguments=arguments)
            for i, (name, arguments) in enumerate(reply.tool_calls)
        )
        return Completion(
            content=reply.content,
            tool_calls=calls,
            model=SCRIPTED_MODEL,
            finish_reason="tool_calls" if calls else "stop",
            id=f"scripted-{n}",
            # A script has no tokenizer: its "tokens" are words, so usage accounting has numbers.
            prompt_tokens=sum(_words(message.get("content")) for message in messages),
            completion_tokens=_words(reply.content),
        )

    def _next_index(self) -> int:
        run = current_run()
        if run is not None and run.completions:
            # Through the LLM service, `completions` counts this call and the replayed ones, so
            # a resumed run continues the script where its earlier attempt left off.
            return run.completions - 1
        if run is not None:
            return run.next_index("scripted")
        with self._lock:
            n, self._cursor = self._cursor, self._cursor + 1
            return n

    async def aclose(self) -> None:
        """Nothing to release."""

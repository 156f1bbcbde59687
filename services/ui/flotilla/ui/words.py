"""Events said in words for people: what the transcript shows instead of raw JSON. Pure functions."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

_MAX_VALUE_CHARS = 80


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 1] + "…"


def _humane(key: str) -> str:
    return key.replace("_", " ")


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text[-1] in ".!?…" else f"{text}."


def params_text(params: Mapping[str, Any] | None) -> str:
    """`turns: 3, topic: physics`; empty for no params."""
    if not params:
        return ""
    return ", ".join(f"{_humane(str(key))}: {_value(value)}" for key, value in params.items())


def start_text(event: Mapping[str, Any]) -> str:
    """The notice for `workflow_started`: `Started learning_chat (turns: 3)`, with the attempt
    when it is not the first."""
    params = params_text(event.get("params") if isinstance(event.get("params"), Mapping) else None)
    text = f"Started {event.get('workflow') or 'the workflow'}" + (f" ({params})" if params else "")
    attempt = event.get("attempt") or 1
    return text + (f", attempt {attempt}" if attempt > 1 else "")


def system_text(message: Any) -> str | None:
    """A system message in words, or None when it is not a flat object (the page shows it as
    code). `{"type": "termination", "reason": "Maximum turns (3) reached"}` reads
    `The chat ended: Maximum turns (3) reached.`"""
    if isinstance(message, str):
        return message
    if not isinstance(message, Mapping) or any(isinstance(v, (dict, list)) for v in message.values()):
        return None
    fields = dict(message)
    kind = str(fields.pop("type", "") or "")
    if kind == "termination":
        reason = fields.pop("reason", "")
        head = "The chat ended" + (f": {reason}" if reason else "")
        rest = params_text(fields)
        return _sentence(head) + (f" ({rest})" if rest else "")
    said = _SAID.get(kind)
    if said is not None and (text := said(fields)) is not None:
        return text
    if not kind:
        return params_text(fields) or None
    rest = params_text(fields)
    return _humane(kind).capitalize() + (f": {rest}" if rest else "")


def _handoff(fields: dict[str, Any]) -> str | None:
    """AG2's handoff: `triage hands over to tech (context condition).`"""
    if not fields.get("from") or not fields.get("to"):
        return None
    how = f" ({fields['by']})" if fields.get("by") else ""
    return f"{fields['from']} hands over to {fields['to']}{how}."


def _context(fields: dict[str, Any]) -> str:
    return "Context: " + (params_text(fields) or "empty")


def _context_changed(fields: dict[str, Any]) -> str:
    return "Context now: " + (params_text(fields) or "unchanged")


def _ag2_usage(fields: dict[str, Any]) -> str:
    model = fields.get("model") or "model"
    text = f"AG2's cost report, {model}: {int(fields.get('prompt_tokens') or 0)} + {int(fields.get('completion_tokens') or 0)} tokens"
    return text + (f", cost {float(fields['cost']):.4f}" if fields.get("cost") else "")


_SAID = {
    "handoff": _handoff,
    "context_variables": _context,
    "context_variables_changed": _context_changed,
    "ag2_usage": _ag2_usage,
}
"""System messages of AG2 group chats (flotilla.ag2), each in its own words."""


def usage_text(usage: Any) -> str:
    """A run's LLM usage in a line per model: `SmolLM2: 3 calls, 512 + 210 tokens, 4.2 s` (and
    the cost when prices are configured)."""
    if not isinstance(usage, list):
        return ""
    lines = []
    for model in usage:
        if not isinstance(model, Mapping) or not model.get("calls"):
            continue
        calls = int(model["calls"])
        text = f"{model.get('model') or 'model'}: {calls} call{'s' if calls != 1 else ''}"
        text += f", {int(model.get('prompt_tokens') or 0)} + {int(model.get('completion_tokens') or 0)} tokens"
        text += f", {float(model.get('llm_seconds') or 0):.1f} s"
        if model.get("cost"):
            text += f", cost {float(model['cost']):.4f}"
        lines.append(text)
    return "\n".join(lines)


def repeats_last_message(result: Any, last_message: str | None) -> bool:
    """A result that only repeats the last message shown (a chat's summary often is its last
    reply) is not shown twice."""
    return isinstance(result, str) and last_message is not None and result.strip() == last_message.strip()


def short(text: str, limit: int = 40) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"

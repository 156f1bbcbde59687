"""The transcript on the page: one block per item, styled by what it is and who sent it."""

from __future__ import annotations

import json
import zlib
from typing import Any

import mesop as me

from flotilla.ui.markdown import safe_markdown
from flotilla.ui import answering, words
from flotilla.ui.transcript import Item, Transcript, clock

# Agents get a colour from this palette by name, the same on every page and reload.
_PALETTE = ["#e8f0fe", "#e6f4ea", "#fef7e0", "#fce8e6", "#f3e8fd", "#e4f7fb", "#fdeee0", "#eceff1"]
_BORDERS = ["#1a73e8", "#188038", "#f9ab00", "#d93025", "#9334e6", "#12b5cb", "#e8710a", "#5f6368"]


def agent_colours(name: str) -> tuple[str, str]:
    index = zlib.crc32(name.encode()) % len(_PALETTE)
    return _PALETTE[index], _BORDERS[index]


def _pretty(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)


def _header(event: dict[str, Any], title: str | None = None) -> None:
    sender, recipient = event.get("sender") or "", event.get("recipient") or ""
    who = title or (f"{sender} → {recipient}" if recipient else sender or "workflow")
    with me.box(classes="item-head"):
        me.text(who, style=me.Style(font_weight=600))
        me.text(clock(event.get("timestamp")), style=me.Style(color="#5f6368", font_size=12))


def _block(kind: str, background: str, border: str) -> Any:
    return me.box(
        classes=f"item item-{kind}",
        style=me.Style(
            background=background, border=me.Border(left=me.BorderSide(width=4, style="solid", color=border))
        ),
    )


def _code(text: str) -> None:
    me.text(text, style=me.Style(white_space="pre-wrap", font_family="monospace", font_size=13))


def message(event: dict[str, Any]) -> None:
    background, border = agent_colours(str(event.get("sender") or "workflow"))
    with _block("message", background, border):
        _header(event)
        me.markdown(safe_markdown(str(event.get("body", ""))))


def writing(reply: dict[str, Any]) -> None:
    """The reply an agent's model is writing, growing as it comes; the finished message replaces it."""
    sender = str(reply.get("sender") or "agent")
    background, border = agent_colours(sender)
    with _block("writing", background, border):
        with me.box(classes="item-head"):
            me.text(sender, style=me.Style(font_weight=600))
            me.text("writing…", style=me.Style(color="#5f6368", font_size=12, font_style="italic"))
        me.markdown(safe_markdown(str(reply.get("text") or "")))


def function_call(item: Item) -> None:
    event, result = item.event, item.related
    with _block("call", "#f8f9fa", "#5f6368"):
        _header(event, f"{event.get('sender') or 'agent'} suggests a function call")
        me.text(f"{event.get('function_name')}  (call {event.get('call_id') or '-'})", style=me.Style(font_weight=600))
        _code("arguments: " + _pretty(event.get("arguments")))
        if result is None:
            me.text("waiting for the result…", style=me.Style(color="#5f6368", font_style="italic"))
        else:
            _code("result: " + _pretty(result.get("retval")))


def execution(event: dict[str, Any]) -> None:
    with _block("call", "#f8f9fa", "#5f6368"):
        _header(event, f"{event.get('function_name')} returned")
        _code(_pretty(event.get("retval")))


def system(event: dict[str, Any]) -> None:
    body = event.get("message")
    text = words.system_text(body)
    with _block("system", "#f1f3f4", "#9aa0a6"):
        _header(event, "system")
        if text is None:
            _code(_pretty(body))
        else:
            me.text(text)


def error(event: dict[str, Any]) -> None:
    with _block("error", "#fce8e6", "#d93025"):
        _header(event, f"error from {event.get('sender') or 'the workflow'}")
        me.text(str(event.get("short") or "error"), style=me.Style(font_weight=600, color="#a50e0e"))
        if event.get("long"):
            _code(str(event["long"]))


def question(item: Item, *, sent: dict[str, str], drafts: dict[str, str]) -> None:
    event = item.event
    request_id = str(event.get("request_id"))
    answer: str | None = None
    note = ""
    if item.related is not None:
        answer = str(item.related.get("value", ""))
        note = " (no answer in time: the default was used)" if item.related.get("timed_out") else ""
    elif request_id in sent:
        answer, note = sent[request_id], " (sending…)"
    background, border = agent_colours(str(event.get("sender") or "workflow"))
    with _block("question", background, border):
        _header(event, f"{event.get('sender') or 'workflow'} asks")
        me.markdown(safe_markdown(str(event.get("prompt") or "")))
        if event.get("type") == "text_input":
            answering.text_controls(event, answer=answer, drafts=drafts)
        else:
            answering.choice_controls(event, answer=answer, drafts=drafts)
    if answer is not None:
        with me.box(classes="item item-answer"):
            me.text(f"You answered: {answer}{note}", style=me.Style(font_weight=500))


def answered(event: dict[str, Any]) -> None:
    with me.box(classes="item item-answer"):
        me.text(f"Answered: {event.get('value', '')}")


def said(event: dict[str, Any]) -> None:
    """What the person said to start a reply's run."""
    with me.box(classes="item item-answer item-reply"):
        me.text(f"You said: {event.get('message', '')}", style=me.Style(font_weight=500))


def notice(event: dict[str, Any], text: str) -> None:
    with me.box(classes="item item-notice"):
        me.text(f"{clock(event.get('timestamp'))}  {text}", style=me.Style(color="#5f6368", font_size=13))


def completed(event: dict[str, Any], last_message: str | None) -> None:
    status = str(event.get("status") or "completed")
    colours = {"completed": ("#e6f4ea", "#188038"), "failed": ("#fce8e6", "#d93025")}
    background, border = colours.get(status, ("#f1f3f4", "#5f6368"))
    with _block("completed", background, border):
        _header(event, f"Run {status}")
        result = event.get("result")
        if words.repeats_last_message(result, last_message):
            me.text("Its result is the last message above.", style=me.Style(color="#5f6368"))
        elif result is not None:
            if isinstance(result, str):
                me.markdown(safe_markdown(result))
            else:
                _code(_pretty(result))
        if event.get("error"):
            me.text(str(event["error"]), style=me.Style(color="#a50e0e"))
        usage = words.usage_text(event.get("usage"))
        if usage:
            me.text(f"LLM use: {usage}", style=me.Style(color="#5f6368", font_size=12, white_space="pre-wrap"))


def item(entry: Item, *, sent: dict[str, str], drafts: dict[str, str], last_message: str | None = None) -> None:
    event, kind = entry.event, entry.kind
    if kind == "text_message":
        message(event)
    elif kind == "suggested_function_call":
        function_call(entry)
    elif kind == "function_call_execution":
        execution(event)
    elif kind == "system_message":
        system(event)
    elif kind == "error":
        error(event)
    elif kind in ("text_input", "multiple_choice"):
        question(entry, sent=sent, drafts=drafts)
    elif kind == "input_answered":
        answered(event)
    elif kind == "workflow_started":
        notice(event, words.start_text(event))
        if event.get("message"):
            said(event)
    elif kind == "run_retried" and str(event.get("reason") or "").startswith("forked from"):
        notice(event, f"This run was {event.get('reason')}")
    elif kind == "run_retried":
        notice(event, f"Another worker took the run over (attempt {event.get('attempt')}): {event.get('reason')}")
    elif kind == "workflow_completed":
        completed(event, last_message)
    else:
        notice(event, f"({kind})")


def transcript(view: Transcript, *, sent: dict[str, str], drafts: dict[str, str]) -> None:
    with me.box(classes="transcript"):
        for entry in view.items:
            item(entry, sent=sent, drafts=drafts, last_message=view.last_message)

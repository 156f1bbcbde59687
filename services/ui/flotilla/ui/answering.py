"""The controls that answer a question, and their handlers.

`text_input`: a text field (masked for passwords) sent with Enter or the Send button, its
suggestions as buttons that answer at once. `multiple_choice`: radio buttons (single) or
checkboxes (several), the default preselected, and Send. Once answered, the controls stay on the
page, disabled, showing the answer. Component keys carry the request id: `<what>::<request_id>`.
"""

from __future__ import annotations

from typing import Any

import mesop as me

from flotilla.ui import runs
from flotilla.ui.state import State, events_of, session_of
from flotilla.ui.transcript import selected_choices

SEP = "::"
QUESTIONS = ("text_input", "multiple_choice")
MASK = "••••••"


def _request_id(key: str) -> str:
    return key.split(SEP, 1)[1] if SEP in key else ""


def _question(state: State, request_id: str) -> dict[str, Any] | None:
    found = [e for e in events_of(state) if e.get("request_id") == request_id and e.get("type") in QUESTIONS]
    return found[0] if found else None


def _send(state: State, request_id: str, value: str) -> None:
    session = session_of(state)
    question = _question(state, request_id)
    if session is None or question is None:
        return
    runs.answer(state, session, request_id, value, MASK if question.get("password") else value)


# Handlers ---------------------------------------------------------------------------------------


def on_text_blur(e: me.InputBlurEvent) -> None:
    me.state(State).drafts[_request_id(e.key)] = e.value


def on_text_enter(e: me.InputEnterEvent) -> None:
    state = me.state(State)
    _send(state, _request_id(e.key), e.value)


def on_text_send(e: me.ClickEvent) -> None:
    state = me.state(State)
    request_id = _request_id(e.key)
    _send(state, request_id, state.drafts.get(request_id, ""))


def on_suggestion(e: me.ClickEvent) -> None:
    # key: chip::<request_id>::<index>
    state = me.state(State)
    _, request_id, index = e.key.split(SEP)
    question = _question(state, request_id)
    if question is not None and index.isdigit() and int(index) < len(question.get("suggestions", [])):
        _send(state, request_id, question["suggestions"][int(index)])


def on_radio(e: me.RadioChangeEvent) -> None:
    me.state(State).drafts[_request_id(e.key)] = e.value


def on_checkbox(e: me.CheckboxChangeEvent) -> None:
    # key: check::<request_id>::<index>
    state = me.state(State)
    _, request_id, index = e.key.split(SEP)
    question = _question(state, request_id)
    if question is None:
        return
    choices: list[str] = question.get("choices", [])
    picked = set(selected_choices(state.drafts.get(request_id, question.get("default", ""))))
    choice = choices[int(index)]
    picked = picked | {choice} if e.checked else picked - {choice}
    state.drafts[request_id] = ",".join(c for c in choices if c in picked)


def on_choice_send(e: me.ClickEvent) -> None:
    state = me.state(State)
    request_id = _request_id(e.key)
    question = _question(state, request_id)
    if question is None:
        return
    value = state.drafts.get(request_id, question.get("default", ""))
    if question.get("single") and not value:
        state.run_error = "Pick one of the choices first."
        return
    _send(state, request_id, value)


# Controls ---------------------------------------------------------------------------------------


_MAX_LABEL_CHARS = 60


def _label(prompt: str, password: bool) -> str:
    if prompt and len(prompt) <= _MAX_LABEL_CHARS:
        return prompt
    return "Password" if password else "Your answer"


def text_controls(question: dict[str, Any], *, answer: str | None, drafts: dict[str, str]) -> None:
    request_id = question["request_id"]
    done = answer is not None
    password = bool(question.get("password"))
    with me.box(classes="answer-row"):
        me.input(
            # The field's accessible name is its prompt; a long prompt (shown above in full)
            # would be cut off as a label.
            label=_label(str(question.get("prompt") or ""), password),
            type="password" if password else "text",
            value=(answer or "") if done and not password else ("" if done else drafts.get(request_id, "")),
            disabled=done,
            on_blur=on_text_blur,
            on_enter=on_text_enter,
            appearance="outline",
            style=me.Style(width="100%"),
            key=f"answer{SEP}{request_id}",
        )
        me.button(
            "Send answer",
            type="flat",
            color="primary",
            disabled=done,
            on_click=on_text_send,
            key=f"send{SEP}{request_id}",
        )
    suggestions: list[str] = question.get("suggestions", [])
    if suggestions:
        with me.box(classes="chips"):
            for i, suggestion in enumerate(suggestions):
                me.button(
                    suggestion,
                    type="stroked",
                    disabled=done,
                    on_click=on_suggestion,
                    key=f"chip{SEP}{request_id}{SEP}{i}",
                )


def choice_controls(question: dict[str, Any], *, answer: str | None, drafts: dict[str, str]) -> None:
    request_id = question["request_id"]
    done = answer is not None
    choices: list[str] = question.get("choices", [])
    current = answer if done else drafts.get(request_id, question.get("default", ""))
    if question.get("single"):
        me.radio(
            options=[me.RadioOption(label=c, value=c) for c in choices],
            value=current or "",
            disabled=done,
            on_change=on_radio,
            key=f"radio{SEP}{request_id}",
        )
    else:
        picked = set(selected_choices(current or ""))
        with me.box(classes="chips"):
            for i, choice in enumerate(choices):
                me.checkbox(
                    choice,
                    checked=choice in picked,
                    disabled=done,
                    on_change=on_checkbox,
                    key=f"check{SEP}{request_id}{SEP}{i}",
                )
    me.button(
        "Send choice",
        type="flat",
        color="primary",
        disabled=done,
        on_click=on_choice_send,
        key=f"csend{SEP}{request_id}",
    )

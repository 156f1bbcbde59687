"""Start a run: the live workflow catalogue with descriptions, the params form, the start button."""

from __future__ import annotations

import secrets

import mesop as me

from flotilla.ui import runs
from flotilla.ui.gateway import GatewayError
from flotilla.ui.params import ParamField, ParamsError, fields_of, initial_values, parse_json_params, to_params
from flotilla.ui.services import current
from flotilla.ui.state import RUN_PARAM, State, session_of, workflows_of

SEP = "::"
_picked = me.Style(background="#e8f0fe", border=me.Border.all(me.BorderSide(width=2, style="solid", color="#1a73e8")))


def _selected(state: State) -> dict[str, str] | None:
    return next((w for w in workflows_of(state) if w["name"] == state.selected_workflow), None)


# Handlers ---------------------------------------------------------------------------------------


def on_pick(e: me.ClickEvent) -> None:
    state = me.state(State)
    state.selected_workflow = e.key.split(SEP, 1)[1]
    state.start_error = ""
    workflow = _selected(state)
    fields = fields_of(workflow["schema"]) if workflow else None
    state.param_values = initial_values(fields) if fields else {}
    state.params_text = "{}"


def on_param(e: me.InputBlurEvent) -> None:
    me.state(State).param_values[e.key.split(SEP, 1)[1]] = e.value


def on_param_flag(e: me.CheckboxChangeEvent) -> None:
    me.state(State).param_values[e.key.split(SEP, 1)[1]] = "true" if e.checked else "false"


def on_param_choice(e: me.SelectSelectionChangeEvent) -> None:
    me.state(State).param_values[e.key.split(SEP, 1)[1]] = e.value


def on_params_text(e: me.InputBlurEvent) -> None:
    me.state(State).params_text = e.value


def on_start(e: me.ClickEvent) -> None:
    state = me.state(State)
    session = session_of(state)
    workflow = _selected(state)
    if session is None or workflow is None:
        return
    fields = fields_of(workflow["schema"])
    try:
        params = to_params(fields, state.param_values) if fields is not None else parse_json_params(state.params_text)
    except ParamsError as exc:
        state.start_error = str(exc)
        return
    key = state.start_key or secrets.token_urlsafe(12)
    try:
        run = current().gateway.start_run(session.credentials, workflow["name"], params, idempotency_key=key)
    except GatewayError as exc:
        state.start_error = f"The run did not start: {exc}"
        return
    state.start_error = ""
    state.start_key = secrets.token_urlsafe(12)
    runs.open_run(state, session, run.run_id)
    runs.load_history(state, session)
    me.query_params[RUN_PARAM] = run.run_id


# The form ---------------------------------------------------------------------------------------


def _field(field: ParamField, value: str) -> None:
    key = f"param{SEP}{field.name}"
    label = field.label + (" *" if field.required else "")
    if field.kind == "boolean":
        me.checkbox(label, checked=value == "true", on_change=on_param_flag, key=key)
    elif field.kind == "choice":
        me.select(
            label=label,
            options=[me.SelectOption(label=c, value=c) for c in field.choices],
            value=value,
            on_selection_change=on_param_choice,
            appearance="outline",
            key=key,
        )
    else:
        me.input(
            label=label,
            value=value,
            type="number" if field.kind in ("integer", "number") else "text",
            hint_label=field.description,
            on_blur=on_param,
            appearance="outline",
            style=me.Style(width="100%"),
            key=key,
        )


def form(state: State) -> None:
    me.text("Start a run", type="headline-6")
    if state.start_error:
        with me.box(classes="form-error"):
            me.text(state.start_error)
    workflows = workflows_of(state)
    if not workflows:
        me.text("No workflow is being served right now: start a worker, then refresh.")
    with me.box(classes="catalogue"):
        for workflow in workflows:
            chosen = workflow["name"] == state.selected_workflow
            # The button's type stays the same when picked (Mesop loses a content button's children
            # when its type changes); the pick shows in its style.
            with (
                me.content_button(
                    type="stroked",
                    on_click=on_pick,
                    key=f"pick{SEP}{workflow['name']}",
                    style=_picked if chosen else None,
                ),
                me.box(classes="workflow-card"),
            ):
                me.text(workflow["name"], style=me.Style(font_weight=600))
                me.text(workflow["description"] or "(no description)", style=me.Style(font_size=13))
    selected = _selected(state)
    if selected is None:
        return
    _params_form(state, selected)


def _params_form(state: State, workflow: dict[str, str]) -> None:
    with me.box(classes="params"):
        me.text(f"Params of {workflow['name']}", type="subtitle-1")
        fields = fields_of(workflow["schema"])
        if fields is None:
            me.textarea(
                label="Params (a JSON object)",
                value=state.params_text,
                on_blur=on_params_text,
                appearance="outline",
                style=me.Style(width="100%"),
                key="params-json",
            )
        elif not fields:
            me.text("This workflow takes no params.")
        for field in fields or []:
            _field(field, state.param_values.get(field.name, field.default))
        me.button("Start run", type="flat", color="primary", on_click=on_start, key="start-run")

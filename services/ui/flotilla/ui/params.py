"""A workflow's params form, from the JSON Schema it declares (WorkflowInfo.params_schema_json).

Top-level properties of simple types become fields (text, number, checkbox, choice); anything
else is typed as JSON. A workflow with no schema takes a free JSON object. Values are kept as the
text a person typed and converted when the run starts; the gateway checks them against the schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

FieldKind = Literal["text", "integer", "number", "boolean", "choice", "json"]


class ParamsError(ValueError):
    """The form cannot become params; the message says which field and why."""


@dataclass(frozen=True)
class ParamField:
    name: str
    label: str
    kind: FieldKind
    required: bool
    default: str
    """The default as form text ("" when there is none)."""
    description: str = ""
    choices: tuple[str, ...] = ()


def _type_of(spec: dict[str, Any]) -> str:
    if isinstance(spec.get("type"), str):
        return str(spec["type"])
    for option in spec.get("anyOf", []):  # Optional[X] is anyOf [X, null]
        if isinstance(option, dict) and option.get("type") not in (None, "null"):
            return str(option["type"])
    return ""


def _field(name: str, spec: dict[str, Any], required: bool) -> ParamField:
    kind: FieldKind
    choices: tuple[str, ...] = ()
    json_type = _type_of(spec)
    if isinstance(spec.get("enum"), list) and all(isinstance(c, str) for c in spec["enum"]):
        kind, choices = "choice", tuple(spec["enum"])
    elif json_type in ("string", "integer", "number", "boolean"):
        kind = "text" if json_type == "string" else json_type  # type: ignore[assignment]
    else:
        kind = "json"
    default = spec.get("default")
    if default is None:
        default_text = ""
    elif kind == "json":
        default_text = json.dumps(default)
    elif kind == "boolean":
        default_text = "true" if default else "false"
    else:
        default_text = str(default)
    return ParamField(
        name=name,
        label=str(spec.get("title") or name),
        kind=kind,
        required=required,
        default=default_text,
        description=str(spec.get("description") or ""),
        choices=choices,
    )


def fields_of(schema_json: str) -> list[ParamField] | None:
    """The form's fields, or None when the workflow declares no schema (free JSON params)."""
    if not schema_json.strip():
        return None
    try:
        schema = json.loads(schema_json)
    except ValueError:
        return None
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return None
    required = set(schema.get("required", []))
    return [_field(name, spec, name in required) for name, spec in properties.items() if isinstance(spec, dict)]


def initial_values(fields: list[ParamField]) -> dict[str, str]:
    return {f.name: f.default for f in fields}


def _convert(field: ParamField, text: str) -> Any:
    try:
        if field.kind == "integer":
            return int(text)
        if field.kind == "number":
            return float(text)
        if field.kind == "json":
            return json.loads(text)
    except ValueError:
        expected = {"integer": "a whole number", "number": "a number", "json": "JSON"}[field.kind]
        raise ParamsError(f"{field.label}: {text!r} is not {expected}") from None
    if field.kind == "boolean":
        return text == "true"
    if field.kind == "choice" and text not in field.choices:
        raise ParamsError(f"{field.label}: pick one of {', '.join(field.choices)}")
    return text


def to_params(fields: list[ParamField], values: dict[str, str]) -> dict[str, Any]:
    """The params object; an empty optional field is left out (the workflow's default applies)."""
    params: dict[str, Any] = {}
    for field in fields:
        raw = values.get(field.name, field.default)
        text = raw if field.kind == "text" else raw.strip()
        if text == "" and field.kind != "boolean":
            if field.required:
                raise ParamsError(f"{field.label} is required")
            continue
        params[field.name] = _convert(field, text or "false")
    return params


def parse_json_params(text: str) -> dict[str, Any]:
    """Free params typed as a JSON object ("" means {})."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ParamsError(f"Params are not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ParamsError('Params must be a JSON object, like {"n": 3}')
    return value

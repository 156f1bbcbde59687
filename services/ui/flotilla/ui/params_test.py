from __future__ import annotations

import json

import pytest

from flotilla.ui.params import ParamsError, fields_of, initial_values, parse_json_params, to_params

SCHEMA = json.dumps(
    {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "title": "Name", "maxLength": 40},
            "times": {"type": "integer", "default": 1, "description": "How often"},
            "ratio": {"type": "number"},
            "loud": {"type": "boolean", "default": False},
            "mood": {"enum": ["calm", "cheerful"], "default": "calm"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        },
    }
)


def test_fields_follow_the_schema() -> None:
    fields = fields_of(SCHEMA)
    assert fields is not None
    kinds = {f.name: f.kind for f in fields}
    assert kinds == {
        "name": "text",
        "times": "integer",
        "ratio": "number",
        "loud": "boolean",
        "mood": "choice",
        "tags": "json",
        "note": "text",
    }
    assert initial_values(fields) == {
        "name": "",
        "times": "1",
        "ratio": "",
        "loud": "false",
        "mood": "calm",
        "tags": "",
        "note": "",
    }
    assert [f.name for f in fields if f.required] == ["name"]
    assert fields_of("") is None and fields_of("{") is None


def test_values_become_typed_params() -> None:
    fields = fields_of(SCHEMA)
    assert fields is not None
    values = initial_values(fields) | {"name": "Ada", "times": " 3 ", "loud": "true", "tags": '["x"]'}
    assert to_params(fields, values) == {"name": "Ada", "times": 3, "loud": True, "mood": "calm", "tags": ["x"]}
    with pytest.raises(ParamsError, match="Name is required"):
        to_params(fields, values | {"name": ""})
    with pytest.raises(ParamsError, match="not a whole number"):
        to_params(fields, values | {"times": "three"})
    with pytest.raises(ParamsError, match="pick one of"):
        to_params(fields, values | {"mood": "angry"})


def test_free_json_params() -> None:
    assert parse_json_params("") == {} and parse_json_params('{"n": 3}') == {"n": 3}
    with pytest.raises(ParamsError, match="JSON object"):
        parse_json_params("[1]")
    with pytest.raises(ParamsError, match="not valid JSON"):
        parse_json_params("{n: 3}")

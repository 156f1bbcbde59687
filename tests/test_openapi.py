"""The live gateway's OpenAPI document has an example for every request body and every 2xx
response, and each example is valid against its own schema."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import jsonschema

from flotilla.devstack import LocalStack


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = spec["components"]["schemas"][name]
    return schema


def _examples(spec: dict[str, Any], media: dict[str, Any]) -> list[Any]:
    """The examples of a media type: its own `example`/`examples`, else its schema's."""
    if "example" in media:
        return [media["example"]]
    if "examples" in media:
        return [example["value"] for example in media["examples"].values()]
    return list(_resolve(spec, media.get("schema", {})).get("examples", []))


def _allows_null(spec: dict[str, Any], schema: dict[str, Any]) -> bool:
    schema = _resolve(spec, schema)
    return schema.get("type") == "null" or any(_allows_null(spec, s) for s in schema.get("anyOf", []))


def _restore_nulls(spec: dict[str, Any], schema: dict[str, Any], value: Any) -> Any:
    """FastAPI drops null values from the whole OpenAPI document (exclude_none), examples included:
    put them back where the schema allows null, so the example can be validated."""
    schema = _resolve(spec, schema)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name, sub in properties.items():
            if name in value:
                value[name] = _restore_nulls(spec, sub, value[name])
            elif _allows_null(spec, sub):
                value[name] = None
    elif isinstance(value, list) and "items" in schema:
        return [_restore_nulls(spec, schema["items"], item) for item in value]
    return value


def _check(spec: dict[str, Any], media: dict[str, Any], where: str) -> list[str]:
    examples = _examples(spec, media)
    if not examples:
        return [f"{where}: no example"]
    problems = []
    schema = {**media.get("schema", {}), "components": spec["components"]}
    for example in examples:
        example = _restore_nulls(spec, media.get("schema", {}), copy.deepcopy(example))
        try:
            jsonschema.validate(example, schema)
        except jsonschema.ValidationError as exc:
            problems.append(f"{where}: example does not match the schema: {exc.message}")
    return problems


def test_every_operation_has_valid_examples(stack: LocalStack) -> None:
    spec = httpx.get(f"{stack.gateway_url}/openapi.json", timeout=30).json()
    problems: list[str] = []
    operations = 0
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            operations += 1
            where = f"{method.upper()} {path}"
            body = operation.get("requestBody")
            if body is not None:
                problems += _check(spec, body["content"]["application/json"], f"{where} request")
            ok = {code: response for code, response in operation["responses"].items() if code.startswith("2")}
            if not ok:
                problems.append(f"{where}: no 2xx response documented")
            for code, response in ok.items():
                media = response.get("content", {}).get("application/json")
                if media is None:
                    problems.append(f"{where} {code}: no JSON content")
                else:
                    problems += _check(spec, media, f"{where} {code}")
    assert operations >= 11  # the v1 routes, health and FastAgency's
    assert not problems, "\n".join(problems)

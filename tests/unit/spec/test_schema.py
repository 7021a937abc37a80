"""The JSON Schema for editors: draft 2020-12; it accepts the template and rejects what the loader rejects."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from ruamel.yaml import YAML

from conveyor.spec import json_schema, render_init

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def _errors(schema: dict[str, Any], value: Any, root: dict[str, Any], path: str = "") -> list[str]:
    """A small JSON Schema checker covering the keywords pydantic emits for conveyor.yaml."""
    if "$ref" in schema:
        return _errors(root["$defs"][schema["$ref"].rsplit("/", 1)[1]], value, root, path)
    found: list[str] = []
    for keyword in ("anyOf", "oneOf"):
        if keyword in schema:
            matches = [not _errors(option, value, root, path) for option in schema[keyword]]
            if not any(matches) or (keyword == "oneOf" and sum(matches) > 1):
                found.append(f"{path}: no {keyword} option matches {value!r}")
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, name) for name in names):
            return [*found, f"{path}: {value!r} is not {schema['type']}"]
    if "const" in schema and value != schema["const"]:
        found.append(f"{path}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{path}: {value!r} not in {schema['enum']}")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        found.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            found.append(f"{path}: below minimum")
        if "maximum" in schema and value > schema["maximum"]:
            found.append(f"{path}: above maximum")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            found.append(f"{path}: not above exclusiveMinimum")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            found.append(f"{path}: too few items")
        for index, item in enumerate(value):
            found += _errors(schema.get("items", {}), item, root, f"{path}[{index}]")
    if isinstance(value, dict):
        if len(value) < schema.get("minProperties", 0):
            found.append(f"{path}: too few properties")
        for key in schema.get("required", []):
            if key not in value:
                found.append(f"{path}: missing {key}")
        properties = schema.get("properties", {})
        patterns = schema.get("patternProperties", {})
        for key, item in value.items():
            if key in properties:
                found += _errors(properties[key], item, root, f"{path}.{key}")
            elif any(re.search(pattern, key) for pattern in patterns):
                continue
            elif schema.get("additionalProperties") is False:
                found.append(f"{path}: unknown key {key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                found += _errors(schema["additionalProperties"], item, root, f"{path}.{key}")
    return found


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json_schema()


def test_schema_identity(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "conveyor.yaml"
    assert schema["required"] == ["project", "environments"]
    assert json.loads(json.dumps(schema)) == schema


@pytest.mark.parametrize("extra", [set(), {"qa", "dr", "preview"}], ids=["base", "qa+dr+preview"])
def test_the_init_template_is_valid_under_the_schema(schema: dict[str, Any], extra: set[str]) -> None:
    document = YAML(typ="safe").load(render_init("shop", extra))
    assert _errors(schema, document, schema) == []


def test_shorthands_are_valid_under_the_schema(schema: dict[str, Any]) -> None:
    document = YAML(typ="safe").load(
        "project: demo\n"
        "x-anchors: {a: 1}\n"
        "roles: {auditor: [audit:read]}\n"
        "services: {web: {command: python app.py}}\n"
        "environments:\n  production: {tier: production, scale: {instances: 3}, secrets: {API_KEY: }}\n"
        "pipeline: {stages: [production]}\n"
    )
    assert _errors(schema, document, schema) == []


@pytest.mark.parametrize(
    ("snippet", "fragment"),
    [
        ("{tier: prod}", "not in"),
        ("{tier: production, aprovals: {}}", "unknown key aprovals"),
        ("{tier: production, approvals: {expires_after: 5 minutes}}", "does not match"),
        ("{tier: production, promotion: {gates: [{type: lod}]}}", "no oneOf option"),
        ("{tier: production, router: {port: 0}}", "no anyOf option"),
        ("{tier: production, scale: {instances: {min: 0, max: 1}}}", "no anyOf option"),
    ],
)
def test_the_schema_rejects_what_the_loader_rejects(
    schema: dict[str, Any], snippet: str, fragment: str
) -> None:
    document = YAML(typ="safe").load(f"project: demo\nenvironments:\n  production: {snippet}\n")
    assert any(fragment in error for error in _errors(schema, document, schema))

"""Check JSON against flagd's draft-07 schema (shared fixtures) without a JSON Schema library.

Only the keywords `flags.json` uses are implemented: $ref (local; the uncopied ./targeting.json is
stubbed as `{}`, which accepts anything), type, enum, properties, patternProperties,
additionalProperties, required, allOf, anyOf, oneOf, items and minLength.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[3].parent / "shared/fixtures/openfeature"

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "null": lambda v: v is None,
}


def flagd_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((FIXTURES / "flags.json").read_text())
    return schema


def errors(value: Any, schema: Any, root: dict[str, Any], path: str = "$") -> list[str]:
    """Every way `value` breaks `schema` (empty when it is valid)."""
    if schema is True or schema == {}:
        return []
    if schema is False:
        return [f"{path}: not allowed"]
    found: list[str] = []
    if "$ref" in schema:
        ref = schema["$ref"]
        if ref.startswith("#/"):
            target: Any = root
            for part in ref[2:].split("/"):
                target = target[part]
            found += errors(value, target, root, path)
        # any other reference (./targeting.json) was not copied with the fixtures: accept anything
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            return [*found, f"{path}: expected {' or '.join(types)}, got {value!r}"]
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{path}: {value!r} not in {schema['enum']}")
    if isinstance(value, str) and len(value) < schema.get("minLength", 0):
        found.append(f"{path}: shorter than {schema['minLength']}")
    if isinstance(value, dict):
        found += [f"{path}: missing {name}" for name in schema.get("required", []) if name not in value]
        for name, item in value.items():
            matched = False
            if name in schema.get("properties", {}):
                matched = True
                found += errors(item, schema["properties"][name], root, f"{path}.{name}")
            for pattern, sub in schema.get("patternProperties", {}).items():
                if re.search(pattern, name):
                    matched = True
                    found += errors(item, sub, root, f"{path}.{name}")
            if not matched and "additionalProperties" in schema:
                found += errors(item, schema["additionalProperties"], root, f"{path}.{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += errors(item, schema["items"], root, f"{path}[{i}]")
    for sub in schema.get("allOf", []):
        found += errors(value, sub, root, path)
    if "anyOf" in schema and all(errors(value, sub, root, path) for sub in schema["anyOf"]):
        found.append(f"{path}: matches none of anyOf")
    if "oneOf" in schema and sum(not errors(value, sub, root, path) for sub in schema["oneOf"]) != 1:
        found.append(f"{path}: does not match exactly one of oneOf")
    return found


def validate(document: Any) -> list[str]:
    """Problems of `document` under flagd's flags.json (the `base` definition)."""
    schema = flagd_schema()
    return errors(document, schema, schema)

"""The JSON Schema (draft 2020-12) of conveyor.yaml, for editors and language servers."""

from __future__ import annotations

from typing import Any

from conveyor.spec.fields import SpecModel
from conveyor.spec.models import Spec

SCHEMA_ID = "https://conveyor.dev/schemas/conveyor.yaml.json"


def _models() -> dict[str, type[SpecModel]]:
    found: dict[str, type[SpecModel]] = {}
    pending: list[type[SpecModel]] = [SpecModel]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


def _as_written(name: str, definition: dict[str, Any], model: type[SpecModel]) -> dict[str, Any]:
    """Loosen a model's schema to what the file may say: derived keys optional, shorthands allowed."""
    required = [key for key in definition.get("required", []) if key not in model.derived_defaults]
    if required:
        definition["required"] = required
    else:
        definition.pop("required", None)
    if model.shorthand is None:
        return definition
    schema, _ = model.shorthand
    return {
        "title": definition.get("title", name),
        "description": definition.get("description", ""),
        "anyOf": [schema, definition],
    }


def json_schema() -> dict[str, Any]:
    """The schema of the file as a user writes it: shorthands accepted, derived keys optional."""
    schema = Spec.model_json_schema(mode="validation")
    models = _models()
    definitions = schema.get("$defs", {})
    for name, definition in list(definitions.items()):
        if name in models:
            definitions[name] = _as_written(name, definition, models[name])
    top = {key: value for key, value in schema.items() if key != "$defs"}
    top = _as_written("Spec", top, Spec)
    top["patternProperties"] = {"^x-": {}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **top,
        "title": "conveyor.yaml",
        "$defs": definitions,
    }

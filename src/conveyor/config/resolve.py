"""Pure: resolve an environment's configuration from ordered layers, with provenance and problems.

Layers, highest first (ADR 0009): a runtime `override`, a `secret`, a `dynamic` value, the
`environment`'s values in conveyor.yaml, the service's `default`. The highest layer that sets a
key wins; what it shadows is kept, so `config show --reveal-sources` can say where every value
came from. The winning value is checked against the service's schema, and a required key that no
layer sets is a problem naming the key and the layer that should supply it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from conveyor.spec.settings import ConfigSetting, ScalarValue
from conveyor.spec.types import Duration, ValueFormatError

LayerName = Literal["override", "secret", "dynamic", "environment", "default"]
ORDER: tuple[LayerName, ...] = ("override", "secret", "dynamic", "environment", "default")


@dataclass(frozen=True)
class Layer:
    """One source of values, with where each value came from in words."""

    name: LayerName
    values: Mapping[str, ScalarValue]
    origins: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Shadowed:
    """A value a higher layer hides."""

    layer: LayerName
    value: ScalarValue
    origin: str


@dataclass(frozen=True)
class Setting:
    """One resolved key."""

    key: str
    value: ScalarValue
    layer: LayerName
    origin: str
    shadowed: tuple[Shadowed, ...] = ()

    @property
    def text(self) -> str:
        """The value as the app receives it, in an environment variable."""
        return as_text(self.value)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "value": self.text,
            "layer": self.layer,
            "origin": self.origin,
            "shadowed": [
                {"layer": s.layer, "value": as_text(s.value), "origin": s.origin} for s in self.shadowed
            ],
        }


@dataclass(frozen=True)
class Problem:
    """A key whose resolved value is missing or wrong, and how to fix it."""

    key: str
    message: str
    fix: str

    def to_json(self) -> dict[str, str]:
        return {"key": self.key, "message": self.message, "fix": self.fix}


@dataclass(frozen=True)
class Resolution:
    """Every resolved key in name order, and the problems."""

    settings: tuple[Setting, ...]
    problems: tuple[Problem, ...]

    def env(self) -> dict[str, str]:
        """The values as environment variables."""
        return {s.key: s.text for s in self.settings}

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": [s.to_json() for s in self.settings],
            "problems": [p.to_json() for p in self.problems],
        }


def as_text(value: ScalarValue) -> str:
    """A value as an environment variable holds it (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def resolve(
    schema: Mapping[str, ConfigSetting], layers: Sequence[Layer], fixes: Mapping[LayerName, str] | None = None
) -> Resolution:
    """Resolve every key any layer or the schema names; deterministic for the same input.

    `fixes` says, per layer, how a person changes a value there (for the problems' words).
    """
    ordered = sorted(layers, key=lambda layer: ORDER.index(layer.name))
    keys = sorted(set(schema) | {key for layer in ordered for key in layer.values})
    settings: list[Setting] = []
    problems: list[Problem] = []
    for key in keys:
        found = [(layer, layer.values[key]) for layer in ordered if key in layer.values]
        if not found:
            if schema[key].required:
                problems.append(_missing(key, fixes or {}))
            continue
        (top, value), rest = found[0], found[1:]
        shadowed = tuple(Shadowed(layer.name, v, layer.origins.get(key, layer.name)) for layer, v in rest)
        settings.append(Setting(key, value, top.name, top.origins.get(key, top.name), shadowed))
        setting = schema.get(key)
        problem = setting.problem_with(value) if setting is not None else None
        if problem is not None:
            problems.append(_wrong(key, value, top, problem, fixes or {}))
    return Resolution(tuple(settings), tuple(problems))


def _missing(key: str, fixes: Mapping[LayerName, str]) -> Problem:
    fix = fixes.get("environment", "set it in the environment's config") + f" (key {key})"
    return Problem(key, f"{key} is required, and no layer sets it", fix)


def _wrong(
    key: str, value: ScalarValue, layer: Layer, problem: str, fixes: Mapping[LayerName, str]
) -> Problem:
    origin = layer.origins.get(key, layer.name)
    fix = fixes.get(layer.name, f"change it in the {layer.name} layer")
    return Problem(key, f"{key}={as_text(value)} from {origin}: {problem}", f"{fix} (key {key})")


def parse_value(setting: ConfigSetting | None, text: str) -> ScalarValue:
    """A value typed on the command line, converted to the setting's type; ValueError says why not."""
    if setting is None or setting.type == "string":
        value: ScalarValue = text
    elif setting.type == "boolean":
        lowered = text.strip().lower()
        if lowered not in ("true", "false"):
            raise ValueError(f"expected true or false, got '{text}'")
        value = lowered == "true"
    elif setting.type == "integer":
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got '{text}'") from None
    elif setting.type == "number":
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected a number, got '{text}'") from None
    else:
        try:
            Duration.parse(text)
        except ValueFormatError as exc:
            raise ValueError(f"expected a duration like 30s or 5m: {exc}") from None
        value = text
    problem = setting.problem_with(value) if setting is not None else None
    if problem is not None:
        raise ValueError(problem)
    return value

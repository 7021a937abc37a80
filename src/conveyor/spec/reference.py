"""Generates the Markdown reference of every conveyor.yaml key from the models' types, defaults, docstrings.

Regenerate the committed page after changing a model:

    python -m conveyor.spec.reference docs/reference/conveyor-yaml.md

A unit test fails when the page and the models disagree.
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from conveyor.auth.permissions import DEFAULT_ROLE_PERMISSIONS, ENVIRONMENT_ACTIONS, GLOBAL_PERMISSIONS
from conveyor.spec.fields import NAME_RULE, Label, SpecModel
from conveyor.spec.models import Spec
from conveyor.spec.types import Duration, Money, Percent, Size

_SCALARS: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Duration: "duration",
    Percent: "percent",
    Size: "size",
    Money: "money",
}
_BOUNDS = (
    (annotated_types.Ge, "ge", "≥"),
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "≤"),
    (annotated_types.Lt, "lt", "<"),
)

_FORMATS: tuple[tuple[str, str, str], ...] = (
    (
        "duration",
        "`500ms`, `30s`, `5m`, `1h30m`, `7d`, `2w`, `1y`",
        "whole numbers with units `y` (365 days), `w`, `d`, `h`, `m`, `s`, `ms`, largest first; "
        "printed back without weeks (`2w` → `14d`)",
    ),
    ("percent", "`1%`, `0.1%`, `99.9%`", "from `0%` to `100%`, always with the `%` sign"),
    (
        "size",
        "`512MB`, `2GB`, `1TB`",
        "a whole number with `B`, `KB`, `MB`, `GB`, `TB` or `PB`; binary units (1GB = 1024MB)",
    ),
    ("money", "`300`, `$300`, `$1,250.50`", "US dollars"),
    ("name", "`production`, `web`, `release-manager`", NAME_RULE),
    (
        "variable name",
        "`LOG_LEVEL`, `API_KEY`",
        "letters, digits and underscores; config and secrets become environment variables",
    ),
    ("time of day", '`"09:00"`', "24-hour `HH:MM`; quote it"),
    ("date", "`2025-12-20`", "`YYYY-MM-DD`"),
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _slug(path: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in path.replace("<name>", "name")).strip("-")


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _members(tp: Any) -> list[Any]:
    return [arg for arg in get_args(tp) if arg is not type(None)]


def _tag(model: type[BaseModel]) -> str:
    for key in ("type", "kind"):
        field = model.model_fields.get(key)
        if field is not None and get_origin(field.annotation) is Literal:
            return f"{key}: {get_args(field.annotation)[0]}"
    return model.__name__


def _type_label(tp: Any, metadata: Sequence[Any] = ()) -> str:
    for item in metadata:
        if isinstance(item, Label):
            return item.text
    origin = get_origin(tp)
    if origin is Annotated:
        base, *extra = get_args(tp)
        return _type_label(base, extra) + _bounds(extra)
    if origin in (Union, types.UnionType):
        members = _members(tp)
        nullable = " or null" if len(members) < len(get_args(tp)) else ""
        if all(_is_model(m) or get_origin(m) is Annotated for m in members) and len(members) > 1:
            return (
                "one of the mappings below, chosen by " + _tag(_unwrap(members[0])).split(":")[0] + nullable
            )
        return " or ".join(_type_label(m) for m in members) + nullable
    if origin is Literal:
        return "one of " + ", ".join(f"`{value}`" for value in get_args(tp))
    if origin is list:
        return f"list of {_type_label(get_args(tp)[0])}"
    if origin is dict:
        key, value = get_args(tp)
        return f"mapping of {_type_label(key)} to {_type_label(value)}"
    if _is_model(tp):
        return "mapping"
    return _SCALARS.get(tp, getattr(tp, "__name__", str(tp)))


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType) and len(_members(tp)) == 1:
            tp = _members(tp)[0]
        else:
            return tp


def _bounds(metadata: Sequence[Any]) -> str:
    parts = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            parts += [_bounds(item.metadata)[2:-1]] if _bounds(item.metadata) else []
            continue
        for kind, attribute, sign in _BOUNDS:
            if isinstance(item, kind):
                parts.append(f"{sign} {getattr(item, attribute)}")
        if isinstance(item, annotated_types.MinLen) and item.min_length:
            parts.append(f"at least {item.min_length}")
    return f" ({', '.join(parts)})" if parts else ""


def _value_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_value_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def _default(model: type[SpecModel], name: str, field: FieldInfo) -> str:
    if name in model.derived_defaults:
        return model.derived_defaults[name]
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        dumped = value.model_dump(mode="json")
        return f"`{_value_text(dumped)}`" if len(dumped) <= 2 else "see below"
    return f"`{_value_text(value)}`"


def _nested(tp: Any) -> list[tuple[str, Any]]:
    """Models reachable from a field's type, with the path suffix that leads to each."""
    tp = _unwrap(tp)
    origin = get_origin(tp)
    if _is_model(tp):
        return [("", tp)]
    if origin is list:
        return [(f"[]{suffix}", model) for suffix, model in _nested(get_args(tp)[0])]
    if origin is dict:
        return [(f".<name>{suffix}", model) for suffix, model in _nested(get_args(tp)[1])]
    if origin in (Union, types.UnionType):
        return [(f" ({_tag(_unwrap(m))})", _unwrap(m)) for m in _members(tp) if _is_model(_unwrap(m))]
    return []


def _description(name: str, field: FieldInfo) -> str:
    if field.description:
        return field.description
    # the discriminator of a union member: its only possible value is in the type column
    return "Selects this variant." if name in ("type", "kind") else ""


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.documented: dict[type[BaseModel], str] = {}

    def section(self, path: str, model: type[SpecModel]) -> None:
        self.documented[model] = path
        title = "Top level" if not path else f"`{path}`"
        nested = path.replace(".<name>", "").replace("[]", "").count(".")
        self.lines += [f'<a id="{_slug(path) or "top"}"></a>', "", f"{'###' if nested else '##'} {title}", ""]
        doc = inspect.cleandoc(model.__doc__ or "")
        if doc:
            self.lines += [doc, ""]
        if model.shorthand is not None:
            self.lines += [f"Instead of a mapping you may write {model.shorthand[1]}.", ""]
        self.lines += ["| key | type | default | description |", "|---|---|---|---|"]
        children: list[tuple[str, Any]] = []
        for name, field in model.model_fields.items():
            kind = _type_label(field.annotation, field.metadata) + _bounds(field.metadata)
            reachable = _nested(field.annotation)
            for suffix, child in reachable:
                if child not in self.documented:
                    child_path = f"{path}.{name}{suffix}" if path else f"{name}{suffix}"
                    children.append((child_path, child))
                    self.documented[child] = child_path
            if len(reachable) == 1:
                target = self.documented[reachable[0][1]]
                kind += f", see [`{target}`](#{_slug(target)})"
            cells = (f"`{name}`", kind, _default(model, name, field), _description(name, field))
            self.lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
        self.lines.append("")
        for child_path, child in children:
            self.section(child_path, child)


def _permissions() -> list[str]:
    lines = [
        "## Permissions and roles",
        "",
        "Global permissions, granted to roles under `roles:`:",
        "",
        "| permission | lets a caller |",
        "|---|---|",
    ]
    lines += [f"| `{name}` | {_cell(text)} |" for name, text in GLOBAL_PERMISSIONS.items()]
    lines += [
        "| `*` | do everything |",
        "",
        "Environment actions, granted per environment under `access:`:",
        "",
    ]
    lines += ["| action | lets a role |", "|---|---|"]
    lines += [f"| `{name}` | {_cell(text)} |" for name, text in ENVIRONMENT_ACTIONS.items()]
    lines += [
        "",
        "Built-in roles and their default global permissions:",
        "",
        "| role | permissions |",
        "|---|---|",
    ]
    lines += [
        f"| `{role}` | {', '.join(f'`{p}`' for p in sorted(perms))} |"
        for role, perms in DEFAULT_ROLE_PERMISSIONS.items()
    ]
    return [*lines, ""]


def render_reference() -> str:
    """The whole reference page as Markdown."""
    writer = _Writer()
    writer.lines += [
        "# conveyor.yaml reference",
        "",
        "<!-- Generated by `python -m conveyor.spec.reference docs/reference/conveyor-yaml.md`. -->",
        "",
        "`conveyor init` writes a commented starting file. Every key below is optional unless its default",
        "says *required*. Unknown keys are errors, and so are values of the wrong type: nothing is guessed.",
        "",
        "## Value formats",
        "",
        "| format | examples | meaning |",
        "|---|---|---|",
        *(f"| {name} | {examples} | {_cell(meaning)} |" for name, examples, meaning in _FORMATS),
        "",
    ]
    writer.section("", Spec)
    writer.lines += _permissions()
    return "\n".join(writer.lines).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the reference to the path given, or print it."""
    args = list(sys.argv[1:] if argv is None else argv)
    text = render_reference()
    if args:
        Path(args[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

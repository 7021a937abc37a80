"""Turns pydantic validation errors into SpecProblems: plain words, the key path, line and column, the fix.

Called by `models.validate_spec`. Positions come from ruamel's round-trip data (`.lc`); a plain dict
(a stored document) has none, so its problems carry only the key path.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from conveyor.errors import SpecProblem
from conveyor.spec.fields import ERROR_TYPE, Issue, did_you_mean
from conveyor.spec.types import show

Path = tuple[str | int, ...]

_KEY_MARK = "[key]"


def path_text(path: Iterable[Any]) -> str:
    """`environments.staging.promotion.gates[2].multiplier` for a key path."""
    text = ""
    for item in path:
        if isinstance(item, int) and not isinstance(item, bool):
            text += f"[{item}]"
        else:
            text += f".{item}" if text else str(item)
    return text


def position(root: Any, path: Sequence[Any], *, at_key: bool = False) -> tuple[int | None, int | None]:
    """1-based (line, column) of the value (or key) at `path`, or of the nearest enclosing key that exists."""
    if getattr(root, "lc", None) is None:
        return None, None
    node, found = root, (0, 0)
    for depth, item in enumerate(path):
        last = depth == len(path) - 1
        lc = getattr(node, "lc", None)
        if lc is None or not _has(node, item):
            break
        try:
            if isinstance(node, dict):
                here = lc.key(item) if (not last or at_key) else lc.value(item)
            else:
                here = lc.item(item)
        except (KeyError, IndexError, TypeError):
            here = None
        if not here:
            break  # merged (`<<:`) keys have no position of their own: keep the enclosing key's
        found, node = here, node[item]
    return found[0] + 1, found[1] + 1


def _resolve(data: Any, loc: Sequence[Any]) -> tuple[Path, Path]:
    """(path shown to the user, part of it that exists in `data`) for a pydantic error location."""
    shown: list[str | int] = []
    existing: list[str | int] = []
    node, inside = data, True
    for item in loc:
        if item == _KEY_MARK:
            continue
        if (
            inside
            and isinstance(node, dict)
            and item not in node
            and item in (node.get("type"), node.get("kind"))
        ):
            continue  # the tag pydantic adds for a member of a discriminated union
        if inside and not isinstance(node, dict | list):
            break  # a shorthand scalar (e.g. a bare stage name) stands for the whole item
        shown.append(item)
        if not inside:
            continue
        if _has(node, item):
            node = node[item]
            existing.append(item)
        else:
            inside = False
    return tuple(shown), tuple(existing)


def _has(node: Any, item: Any) -> bool:
    if isinstance(node, dict):
        return item in node
    return isinstance(node, list) and isinstance(item, int) and 0 <= item < len(node)


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [arg for arg in get_args(tp) if arg is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _tags(model: type[BaseModel]) -> tuple[str, ...]:
    for key in ("type", "kind"):
        field = model.model_fields.get(key)
        if field is not None and get_origin(field.annotation) is Literal:
            return tuple(str(arg) for arg in get_args(field.annotation))
    return ()


def _union_members(tp: Any) -> list[type[BaseModel]]:
    tp = _unwrap(tp)
    if get_origin(tp) in (Union, types.UnionType):
        return [member for member in (_unwrap(arg) for arg in get_args(tp)) if _is_model(member)]
    return []


def _type_at(model: type[BaseModel], loc: Sequence[Any]) -> Any:
    """The annotated type at a pydantic error location, following models, lists, dicts and union tags."""
    tp: Any = model
    for item in loc:
        if item == _KEY_MARK:
            continue
        tp = _unwrap(tp)
        origin = get_origin(tp)
        if _is_model(tp):
            field = tp.model_fields.get(item) if isinstance(item, str) else None
            if field is None:
                return None
            tp = field.annotation
        elif origin is list:
            tp = get_args(tp)[0]
        elif origin is dict:
            tp = get_args(tp)[1]
        elif origin in (Union, types.UnionType):
            tp = next((m for m in _union_members(tp) if item in _tags(m)), None)
            if tp is None:
                return None
        else:
            return None
    return tp


def _noun(shown: Path) -> str:
    """What a value is called in a message: its key, or for a list item the singular of the list's key."""
    if shown and isinstance(shown[-1], str):
        return shown[-1]
    if len(shown) > 1 and isinstance(shown[-2], str):
        word = shown[-2]
        return word[:-1] if word.endswith("s") else word
    return "value"


_CHOICE = re.compile(r"'([^']*)'|(-?\d+)")
_TYPE_WORDS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping of keys to values",
    "model_type": "a mapping of keys to values",
    "model_attributes_type": "a mapping of keys to values",
}
_BOUND_WORDS = {
    "greater_than_equal": ("ge", "must be at least"),
    "greater_than": ("gt", "must be more than"),
    "less_than_equal": ("le", "must be at most"),
    "less_than": ("lt", "must be less than"),
}


def _choices(expected: str) -> list[str]:
    """The choices in pydantic's "'a', 'b' or 'c'" (numbers are not quoted)."""
    return [quoted or number for quoted, number in _CHOICE.findall(expected)]


def _describe(err: ErrorDetails, model: type[BaseModel], shown: Path) -> tuple[str, str | None]:
    kind, value = err["type"], err.get("input")
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    loc = err["loc"]
    if kind == ERROR_TYPE:
        return str(ctx.get("message", err["msg"])), ctx.get("hint")
    if kind == "missing":
        return f"missing required key '{_noun(shown)}'", None
    if kind == "extra_forbidden":
        key = loc[-1]
        parent = _unwrap(_type_at(model, loc[:-1]))
        valid = list(parent.model_fields) if _is_model(parent) else []
        return f"unknown key {show(key)}", (did_you_mean(key, valid, "valid keys are") if valid else None)
    if kind == "literal_error":
        choices = _choices(str(ctx.get("expected", "")))
        return f"unknown {_noun(shown)} {show(value)}", did_you_mean(value, choices)
    if kind == "union_tag_invalid":
        discriminator = str(ctx.get("discriminator", "type")).strip("'")
        choices = _choices(str(ctx.get("expected_tags", "")))
        noun = f"{_noun(shown)} {discriminator}" if shown and isinstance(shown[-1], int) else discriminator
        return f"unknown {noun} {show(ctx.get('tag'))}", did_you_mean(ctx.get("tag"), choices)
    if kind == "union_tag_not_found":
        discriminator = str(ctx.get("discriminator", "type")).strip("'")
        tags = [tag for member in _union_members(_type_at(model, loc)) for tag in _tags(member)]
        if not isinstance(value, dict):
            return (
                f"expected a mapping with a {discriminator}, got {show(value)}",
                f"write it like {{{discriminator}: …}}",
            )
        return f"missing required key '{discriminator}'", (
            "choose one of: " + ", ".join(tags)
        ) if tags else None
    if kind in _BOUND_WORDS:
        limit_key, words = _BOUND_WORDS[kind]
        return f"{words} {ctx.get(limit_key)}, got {show(value)}", None
    if kind == "too_short":
        item = "entry" if isinstance(value, dict) else "item"
        count = ctx.get("min_length", 1)
        return f"needs at least {count} {item}{'' if count == 1 else 's'}", None
    if kind == "too_long":
        return f"can have at most {ctx.get('max_length')} items", None
    if kind in _TYPE_WORDS:
        hint = None
        if kind == "string_type" and isinstance(value, int | float | bool):
            hint = f"put it in quotes: '{show(value)}'"
        elif kind == "list_type" and isinstance(value, str):
            hint = f"write it as a list: [{value}]"
        elif kind in ("bool_type", "bool_parsing"):
            hint = "write true or false"
        return f"expected {_TYPE_WORDS[kind]}, got {show(value)}", hint
    return err["msg"], None


def _problem(
    file: str, data: Any, loc: Sequence[Any], message: str, hint: str | None, at_key: bool
) -> SpecProblem:
    shown, existing = _resolve(data, loc)
    complete = len(existing) == len(shown)
    line, column = position(data, existing, at_key=at_key or not complete)
    return SpecProblem(file, line, column, path_text(shown), message, hint)


def problems_from_validation(
    error: ValidationError, *, model: type[BaseModel], data: Any, file: str
) -> list[SpecProblem]:
    """One SpecProblem per pydantic error (or per Issue a model check raised), positioned in `data`."""
    problems: list[SpecProblem] = []
    for err in error.errors(include_url=False):
        loc = tuple(err["loc"])
        ctx = err.get("ctx") or {}
        issues: tuple[Issue, ...] = ctx.get("issues", ()) if err["type"] == ERROR_TYPE else ()
        if issues:
            problems.extend(
                _problem(file, data, loc + issue.path, issue.message, issue.hint, issue.at_key)
                for issue in issues
            )
            continue
        shown, _ = _resolve(data, loc)
        message, hint = _describe(err, model, shown)
        at_key = err["type"] == "extra_forbidden" or _KEY_MARK in loc
        problems.append(_problem(file, data, loc, message, hint, at_key))
    return _unique(problems)


def _unique(problems: Iterable[SpecProblem]) -> list[SpecProblem]:
    seen: set[tuple[str, str]] = set()
    unique = []
    for problem in problems:
        if (problem.path, problem.message) not in seen:
            seen.add((problem.path, problem.message))
            unique.append(problem)
    return unique


def sort_problems(problems: Iterable[SpecProblem]) -> list[SpecProblem]:
    """Problems in file order; those without a position keep their order at the end."""
    return sorted(problems, key=lambda p: (p.line is None, p.line or 0, p.column or 0))

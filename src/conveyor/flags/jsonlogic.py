"""Pure: a JsonLogic interpreter with the semantics flagd relies on (JavaScript truthiness and coercion).

`apply(rule, data, operations)` evaluates `rule` against `data`; flag evaluation (`flags.evaluate`)
adds flagd's own operations (`fractional`, `sem_ver`, `starts_with`, `ends_with`) through
`operations`. Two errors, as flagd tells them apart:

    UnknownOperation   the rule is not valid JsonLogic (an unknown operation, a $ref with no
                       evaluator, nesting too deep): the flag answers PARSE_ERROR
    OperatorError      an operation got arguments it cannot work with: the whole targeting
                       yields null, so the flag answers its default variant
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

MAX_DEPTH = 64


class UnknownOperation(Exception):
    """The rule is not something this interpreter can evaluate."""


class OperatorError(Exception):
    """An operation's arguments are unusable (wrong count or type)."""


Evaluate = Callable[[Any], Any]
"""Evaluates a sub-rule against the same data (what lazy operations receive)."""

Operation = Callable[[list[Any], Any, Evaluate], Any]
"""A custom operation: its raw (unevaluated) arguments, the data, and an evaluator for sub-rules."""


def kind(value: Any) -> str:
    """The JSON type of a value: null, boolean, number, string, array or object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    return "object"


def truthy(value: Any) -> bool:
    """JsonLogic truthiness: false, null, 0, NaN, "" and [] are false; everything else is true."""
    if value is None or value is False:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0 and not math.isnan(value)
    if isinstance(value, str | list | tuple):
        return len(value) > 0
    return True


def js_string(value: Any) -> str:
    """A value as JavaScript's String() writes it (what `cat` and string comparisons use)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return ",".join("" if item is None else js_string(item) for item in value)
    if isinstance(value, Mapping):
        return "[object Object]"
    return str(value)


def js_number(value: Any) -> float:
    """A value as JavaScript's Number() reads it (NaN when it is not a number)."""
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 0.0
        try:
            return float(text)
        except ValueError:
            return math.nan
    if isinstance(value, list | tuple):
        return js_number(js_string(value))
    return math.nan


def loose_equal(a: Any, b: Any) -> bool:
    """JavaScript's `==` for JSON values."""
    ka, kb = kind(a), kind(b)
    if ka == kb:
        if ka in ("array", "object"):
            return a is b  # JavaScript compares objects by identity
        return bool(a == b)
    if ka == "null" or kb == "null":
        return False
    if ka == "boolean":
        return loose_equal(js_number(a), b)
    if kb == "boolean":
        return loose_equal(a, js_number(b))
    if {ka, kb} == {"number", "string"}:
        return js_number(a) == js_number(b)
    if ka in ("array", "object"):
        return loose_equal(js_string(a), b)
    if kb in ("array", "object"):
        return loose_equal(a, js_string(b))
    return False


def strict_equal(a: Any, b: Any) -> bool:
    """JavaScript's `===` for JSON values."""
    if kind(a) != kind(b):
        return False
    if kind(a) in ("array", "object"):
        return a is b
    return bool(a == b)


def _less(a: Any, b: Any, or_equal: bool) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a <= b if or_equal else a < b
    x, y = js_number(a), js_number(b)
    if math.isnan(x) or math.isnan(y):
        return False
    return x <= y if or_equal else x < y


def _var(args: list[Any], data: Any) -> Any:
    path = args[0] if args else None
    default = args[1] if len(args) > 1 else None
    if path is None or path == "" or path == []:
        return data
    current = data
    for part in js_string(path).split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list | tuple) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return default
    return default if current is None else current


def _in(needle: Any, haystack: Any) -> bool:
    if isinstance(haystack, str):
        return js_string(needle) in haystack
    if isinstance(haystack, list | tuple):
        return any(strict_equal(needle, item) for item in haystack)
    return False


def _compare(values: list[Any], or_equal: bool) -> bool:
    if len(values) < 2:
        return False
    if len(values) >= 3:  # between: a < b < c
        return _less(values[0], values[1], or_equal) and _less(values[1], values[2], or_equal)
    return _less(values[0], values[1], or_equal)


_EAGER: dict[str, Callable[[list[Any], Any], Any]] = {
    "var": _var,
    "==": lambda v, _d: loose_equal(_at(v, 0), _at(v, 1)),
    "===": lambda v, _d: strict_equal(_at(v, 0), _at(v, 1)),
    "!=": lambda v, _d: not loose_equal(_at(v, 0), _at(v, 1)),
    "!==": lambda v, _d: not strict_equal(_at(v, 0), _at(v, 1)),
    "!": lambda v, _d: not truthy(_at(v, 0)),
    "!!": lambda v, _d: truthy(_at(v, 0)),
    "<": lambda v, _d: _compare(v, or_equal=False),
    "<=": lambda v, _d: _compare(v, or_equal=True),
    ">": lambda v, _d: _less(_at(v, 1), _at(v, 0), or_equal=False),
    ">=": lambda v, _d: _less(_at(v, 1), _at(v, 0), or_equal=True),
    "in": lambda v, _d: _in(_at(v, 0), _at(v, 1)),
    "cat": lambda v, _d: "".join(js_string(x) for x in v),
}
_LAZY = ("if", "?:", "and", "or")
STANDARD_OPERATIONS: frozenset[str] = frozenset((*_EAGER, *_LAZY))
"""The JsonLogic operations this interpreter knows without custom ones."""


def _at(values: list[Any], index: int) -> Any:
    return values[index] if index < len(values) else None


def is_operation(rule: Any) -> bool:
    """Whether `rule` is an operation (an object with exactly one key) rather than a literal."""
    return isinstance(rule, Mapping) and len(rule) == 1


def apply(
    rule: Any,
    data: Any,
    operations: Mapping[str, Operation] | None = None,
    references: Mapping[str, Any] | None = None,
    depth: int = 0,
) -> Any:
    """Evaluate `rule` against `data`; `references` resolves `{"$ref": name}` (flagd's $evaluators)."""
    if depth > MAX_DEPTH:
        raise UnknownOperation(f"the rule nests deeper than {MAX_DEPTH} levels")
    custom = operations or {}
    refs = references or {}

    def sub(inner: Any) -> Any:
        return apply(inner, data, custom, refs, depth + 1)

    if isinstance(rule, list | tuple):
        return [sub(item) for item in rule]
    if not is_operation(rule):
        return rule
    ((name, raw),) = rule.items()
    if name == "$ref":
        if not isinstance(raw, str) or raw not in refs:
            raise UnknownOperation(f"$ref names no evaluator: {raw!r}")
        return sub(refs[raw])
    args = list(raw) if isinstance(raw, list | tuple) else [raw]
    if name in custom:
        return custom[name](args, data, sub)
    if name in ("if", "?:"):
        for i in range(0, len(args) - 1, 2):
            if truthy(sub(args[i])):
                return sub(args[i + 1])
        return sub(args[-1]) if len(args) % 2 == 1 else None
    if name in ("and", "or"):
        value: Any = None
        for item in args:
            value = sub(item)
            if truthy(value) == (name == "or"):
                return value
        return value
    if name in _EAGER:
        return _EAGER[name]([sub(a) for a in args], data)
    raise UnknownOperation(f"unknown operation '{name}'")

"""Pure: the targeting `conveyor flag target` and `flag rollout` build, and the `--when` conditions.

Conveyor writes targeting as an ordered list of rules, then an optional percentage rollout:

    {"if": [condition1, "variantA", condition2, "variantB", {"fractional": [["on", 10], ["off", 90]]}]}

The first rule whose condition holds chooses its variant; when none does, the rollout splits the
rest by targeting key (a null instead of the rollout serves the default variant). Targeting in
any other shape (written by hand, imported) is left alone: it is replaced only as a whole, with
`conveyor flag set --file`.

`parse_when` turns `email ends_with @example.com and plan == pro` into JsonLogic.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from typing import Any

from conveyor.errors import InvalidRequest
from conveyor.flags.jsonlogic import is_operation


@dataclass(frozen=True)
class Rollout:
    """A fractional split: (variant, weight) buckets, bucketed by targeting key (or an expression)."""

    buckets: tuple[tuple[str, int], ...]
    bucket_by: Any = None

    def to_json(self) -> dict[str, Any]:
        head = [self.bucket_by] if self.bucket_by is not None else []
        return {"fractional": [*head, *([v, w] for v, w in self.buckets)]}

    def percent(self, variant: str) -> float:
        """The share of targeting keys that get `variant`, in percent."""
        total = sum(w for _, w in self.buckets)
        return 100.0 * sum(w for v, w in self.buckets if v == variant) / total if total else 0.0


@dataclass(frozen=True)
class Chain:
    """Rules in order, then the rollout (or the default variant)."""

    rules: tuple[tuple[Any, str], ...] = ()
    rollout: Rollout | None = None

    def to_targeting(self) -> dict[str, Any] | None:
        """The flagd targeting for this chain (None when it has neither rules nor a rollout)."""
        tail = self.rollout.to_json() if self.rollout else None
        if not self.rules:
            return tail
        return {"if": [*(part for cond, variant in self.rules for part in (cond, variant)), tail]}

    def with_rule(self, condition: Any, variant: str) -> Chain:
        """This chain with a rule for `condition` (replacing one with the same condition, else last)."""
        rules = [(c, v) for c, v in self.rules if c != condition]
        at = next((i for i, (c, _) in enumerate(self.rules) if c == condition), len(rules))
        rules.insert(at, (condition, variant))
        return Chain(tuple(rules), self.rollout)

    def without_rules(self) -> Chain:
        return Chain((), self.rollout)

    def with_rollout(self, rollout: Rollout | None) -> Chain:
        return Chain(self.rules, rollout)


def _rollout(rule: Any) -> Rollout | None:
    if not (is_operation(rule) and "fractional" in rule and isinstance(rule["fractional"], list)):
        return None
    args = rule["fractional"]
    bucket_by = None if not args or isinstance(args[0], list) else args[0]
    buckets = args if bucket_by is None else args[1:]
    parsed = []
    for bucket in buckets:
        if not (isinstance(bucket, list) and len(bucket) == 2 and isinstance(bucket[0], str)):
            return None
        if isinstance(bucket[1], bool) or not isinstance(bucket[1], int):
            return None
        parsed.append((bucket[0], bucket[1]))
    return Rollout(tuple(parsed), bucket_by)


def chain_of(targeting: Any) -> Chain | None:
    """The chain `targeting` was built as, or None when it has another shape."""
    if not targeting:
        return Chain()
    rollout = _rollout(targeting)
    if rollout is not None:
        return Chain((), rollout)
    if not (is_operation(targeting) and "if" in targeting and isinstance(targeting["if"], list)):
        return None
    args = targeting["if"]
    if len(args) < 3 or len(args) % 2 == 0:
        return None
    pairs = [(args[i], args[i + 1]) for i in range(0, len(args) - 1, 2)]
    if not all(isinstance(variant, str) for _, variant in pairs):
        return None
    tail = args[-1]
    tail_rollout = _rollout(tail) if tail is not None else None
    if tail is not None and tail_rollout is None:
        return None
    return Chain(tuple(pairs), tail_rollout)


def rollout_weights(percent: float) -> tuple[int, int]:
    """Weights for `percent` against the rest: whole percent as is, finer shares in 1/100 of a percent."""
    if not 0 <= percent <= 100:
        raise InvalidRequest(
            f"a rollout of {percent:g}% is not between 0 and 100", hint="for example 10 or 2.5"
        )
    basis = round(percent * 100)
    if basis % 100 == 0:
        return basis // 100, 100 - basis // 100
    return basis, 10_000 - basis


_OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "in", "not_in", "starts_with", "ends_with", "contains")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
WHEN_HELP = (
    "write ATTRIBUTE OPERATOR VALUE, joined by 'and': e.g. `email ends_with @example.com`, "
    "`plan == pro and age >= 18`, `country in DE,FR,IT`; operators: " + ", ".join(_OPERATORS)
)


def _value(token: str, quoted: bool) -> Any:
    if quoted:
        return token
    if token in ("true", "false"):
        return token == "true"
    if _NUMBER.fullmatch(token):
        return float(token) if "." in token else int(token)
    return token


def _comparison(attribute: str, operator: str, raw: str, quoted: bool) -> dict[str, Any]:
    var = {"var": attribute}
    if operator in ("in", "not_in"):
        items = [_value(part.strip(), quoted) for part in raw.split(",") if part.strip()]
        test: dict[str, Any] = {"in": [var, items]}
        return {"!": test} if operator == "not_in" else test
    if operator == "contains":
        return {"in": [raw, var]}
    if operator in ("starts_with", "ends_with"):
        return {operator: [var, raw]}
    return {operator: [var, _value(raw, quoted)]}


def parse_when(text: str) -> dict[str, Any]:
    """JsonLogic for a condition like `email ends_with @example.com and plan == pro`."""
    try:
        lexer = shlex.shlex(text, posix=True, punctuation_chars=False)
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError as exc:
        raise InvalidRequest(f"cannot read the condition {text!r}: {exc}", hint=WHEN_HELP) from None
    quoted = {m.group(1) or m.group(2) for m in re.finditer(r"'([^']*)'|\"([^\"]*)\"", text)}
    parts: list[dict[str, Any]] = []
    while tokens:
        if len(tokens) < 3:
            raise InvalidRequest(f"the condition {text!r} is incomplete", hint=WHEN_HELP)
        attribute, operator, raw = tokens[0], tokens[1], tokens[2]
        if operator not in _OPERATORS:
            raise InvalidRequest(f"'{operator}' is not a condition operator in {text!r}", hint=WHEN_HELP)
        if not re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_.$-]*", attribute):
            raise InvalidRequest(f"'{attribute}' is not an attribute name in {text!r}", hint=WHEN_HELP)
        parts.append(_comparison(attribute, operator, raw, raw in quoted))
        tokens = tokens[3:]
        if tokens:
            if tokens[0] != "and" or len(tokens) == 1:
                raise InvalidRequest(f"expected 'and' then another comparison in {text!r}", hint=WHEN_HELP)
            tokens = tokens[1:]
    if not parts:
        raise InvalidRequest("the condition is empty", hint=WHEN_HELP)
    return parts[0] if len(parts) == 1 else {"and": parts}


def parse_condition(text: str) -> dict[str, Any]:
    """A condition given as JsonLogic JSON (starting with `{`) or in the `--when` words."""
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise InvalidRequest(f"the condition is not valid JSON: {exc}", hint=WHEN_HELP) from None
        if not is_operation(value):
            raise InvalidRequest('a JsonLogic condition is one operation, like {"==": [...]}', hint=WHEN_HELP)
        return dict(value)
    return parse_when(text)

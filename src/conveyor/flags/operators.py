"""Pure: flagd's own JsonLogic operations: `fractional`, `sem_ver`, `starts_with`, `ends_with`.

`fractional` buckets the way flagd does today (flagd-testbed's "v2" vectors, ADR 0011): the
MurmurHash3 x86 32-bit hash of the bucketing value (by default `flagKey + targetingKey`) is mapped
onto the sum of the weights with `(hash * total) >> 32`, and the bucket whose cumulative range holds
that number wins. Invalid arguments raise `OperatorError`, which makes the flag fall back to its
default variant, as flagd does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.flags.jsonlogic import Evaluate, Operation, OperatorError
from conveyor.flags.murmur import murmur3_32

MAX_TOTAL_WEIGHT = 2**31 - 1
SEMVER_OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "^", "~")


@dataclass(frozen=True)
class Bucket:
    """One share of a `fractional` split: what it yields and its weight."""

    variant: Any
    weight: int


def bucket_number(bucketing_value: str, total_weight: int) -> int:
    """Where a bucketing value falls in [0, total_weight): flagd's high-precision mapping of the hash."""
    return (murmur3_32(bucketing_value.encode()) * total_weight) >> 32


def choose(bucketing_value: str, buckets: list[Bucket]) -> Any:
    """The variant of the bucket `bucketing_value` falls in (stable for the same value and buckets)."""
    total = sum(b.weight for b in buckets)
    point = bucket_number(bucketing_value, total)
    end = 0
    for b in buckets:
        end += b.weight
        if point < end:
            return b.variant
    raise OperatorError("fractional: the weights add up to nothing")  # unreachable when total > 0


def parse_buckets(values: list[Any]) -> list[Bucket]:
    """`[variant, weight]` pairs (weight 1 when left out; a negative weight counts as 0)."""
    buckets = []
    for item in values:
        if not isinstance(item, list | tuple) or not 1 <= len(item) <= 2:
            raise OperatorError("fractional: each bucket is [variant, weight]")
        variant = item[0]
        if not (variant is None or isinstance(variant, str | bool | int | float)):
            raise OperatorError("fractional: a bucket's variant is a string, boolean, number or null")
        weight: Any = item[1] if len(item) == 2 else 1
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight != int(weight):
            raise OperatorError("fractional: a bucket's weight is a whole number")
        buckets.append(Bucket(variant, max(0, int(weight))))
    total = sum(b.weight for b in buckets)
    if total <= 0:
        raise OperatorError("fractional: the weights add up to zero")
    if total > MAX_TOTAL_WEIGHT:
        raise OperatorError(f"fractional: the weights add up to more than {MAX_TOTAL_WEIGHT}")
    return buckets


def fractional(args: list[Any], data: Any, sub: Evaluate) -> Any:
    """flagd's `fractional`: an optional bucketing value, then buckets; deterministic per value."""
    values = [sub(a) for a in args]
    if not values:
        raise OperatorError("fractional: no buckets")
    first = values[0]
    bucketing: str | None
    if isinstance(first, str):
        bucketing, values = first, values[1:]
    elif first is None or isinstance(first, list | tuple):
        if first is None:  # a bucketing expression that found nothing: fall back to the targeting key
            values = values[1:]
        flagd = data.get("$flagd") if isinstance(data, Mapping) else None
        flag_key = flagd.get("flagKey") if isinstance(flagd, Mapping) else None
        targeting_key = data.get("targetingKey") if isinstance(data, Mapping) else None
        ok = isinstance(targeting_key, str) and isinstance(flag_key, str)
        bucketing = f"{flag_key}{targeting_key}" if ok else None
    else:
        raise OperatorError("fractional: the bucketing value is not a string")
    buckets = parse_buckets(values)
    if bucketing is None:
        weighted = [b for b in buckets if b.weight > 0]
        if len(weighted) == 1:  # one bucket holds all the weight: no hash needed
            return weighted[0].variant
        raise OperatorError("fractional: no bucketing value and no targetingKey in the context")
    return choose(bucketing, buckets)


_SEMVER = re.compile(
    r"[vV]?(0|[1-9]\d*)"
    r"(?:\.(0|[1-9]\d*)"
    r"(?:\.(0|[1-9]\d*)(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)?)?"
)


@dataclass(frozen=True)
class Version:
    """A semantic version: MAJOR.MINOR.PATCH and pre-release identifiers (build metadata is ignored)."""

    core: tuple[int, int, int]
    pre: tuple[str, ...]

    def sort_key(self) -> tuple[Any, ...]:
        # a release sorts after its pre-releases; numeric identifiers sort before alphanumeric ones
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.pre)
        return (self.core, not self.pre, pre)


def parse_version(value: Any) -> Version:
    """`1.2.3-rc.1+build`, `v1.2.3`, or a partial `1.2` / `1` (missing parts are 0); OperatorError if not."""
    text = str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
    match = _SEMVER.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise OperatorError(f"sem_ver: {value!r} is not a semantic version")
    major, minor, patch, pre = match.groups()
    return Version((int(major), int(minor or 0), int(patch or 0)), tuple(pre.split(".")) if pre else ())


def sem_ver(args: list[Any], data: Any, sub: Evaluate) -> bool:
    """flagd's `sem_ver`: [version, operator, version]; `^` same major, `~` same major and minor."""
    values = [sub(a) for a in args]
    if len(values) != 3:
        raise OperatorError("sem_ver: expects [version, operator, version]")
    left, op, right = values
    if op not in SEMVER_OPERATORS:
        raise OperatorError(f"sem_ver: unknown operator {op!r}")
    a, b = parse_version(left), parse_version(right)
    if op == "^":
        return a.core[0] == b.core[0]
    if op == "~":
        return a.core[:2] == b.core[:2]
    x, y = a.sort_key(), b.sort_key()
    return {"=": x == y, "!=": x != y, "<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]


def _affix(name: str, test: str) -> Operation:
    def operation(args: list[Any], data: Any, sub: Evaluate) -> bool:
        values = [sub(a) for a in args]
        if len(values) != 2 or not all(isinstance(v, str) for v in values):
            raise OperatorError(f"{name}: expects [string, string]")
        text, affix = values
        return text.startswith(affix) if test == "start" else text.endswith(affix)

    return operation


FLAGD_OPERATIONS: dict[str, Operation] = {
    "fractional": fractional,
    "sem_ver": sem_ver,
    "starts_with": _affix("starts_with", "start"),
    "ends_with": _affix("ends_with", "end"),
}

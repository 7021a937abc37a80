"""Pure: a feature flag as flagd defines it, and the checks that refuse a bad one with the fix.

A flag is a key, a state (ENABLED or DISABLED), named variants of one type (boolean, string,
number or object), the variant served when no targeting applies (`defaultVariant`; null means
"the application's own default"), and optional targeting: a JsonLogic rule that returns a variant
name, with flagd's operations and `$ref`s to a document's `$evaluators`. `parse_document` reads a
whole flagd file; the service stores flags one by one, with every `$ref` replaced by its rule.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from conveyor.errors import InvalidRequest
from conveyor.flags.jsonlogic import STANDARD_OPERATIONS, OperatorError, is_operation
from conveyor.flags.operators import FLAGD_OPERATIONS, SEMVER_OPERATORS, parse_version
from conveyor.spec.fields import suggest

FLAGD_SCHEMA = "https://flagd.dev/schema/v0/flags.json"
KEY_MAX = 100
KEY_RULE = f"start with a letter; letters, digits, '-', '_' and '.' after it; at most {KEY_MAX} characters"
_KEY = re.compile(rf"[A-Za-z][A-Za-z0-9_.-]{{0,{KEY_MAX - 1}}}")
RESERVED_KEYS = ("flagd.json",)
STATES = ("ENABLED", "DISABLED")
FIELDS = ("state", "variants", "defaultVariant", "targeting", "metadata")
DOCUMENT_FIELDS = ("$schema", "flags", "$evaluators", "metadata")
OPERATIONS: frozenset[str] = STANDARD_OPERATIONS | frozenset(FLAGD_OPERATIONS)
VariantKind = Literal["boolean", "string", "number", "object"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a flag definition, and how to fix it."""

    flag: str | None
    message: str
    fix: str

    def render(self) -> str:
        """`flag 'x': what is wrong`, as a person reads it."""
        return f"flag '{self.flag}': {self.message}" if self.flag else self.message


class InvalidFlag(InvalidRequest):
    """A flag definition (or a flagd document) that breaks the rules; lists every problem."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        detail = "; ".join(p.render() for p in problems)
        hint = "; ".join(dict.fromkeys(p.fix for p in problems))
        super().__init__(detail, hint=hint, problems=[p.__dict__ for p in problems])


def variant_kind(value: Any) -> VariantKind | None:
    """The flagd variant type of a value; None for values no variant can hold (null, arrays)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    return None


@dataclass(frozen=True)
class Flag:
    """One flag in flagd's shape; build it with `parse_flag` so it is always valid."""

    key: str
    state: str
    variants: dict[str, Any]
    default_variant: str | None
    targeting: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.state == "ENABLED"

    @property
    def kind(self) -> VariantKind:
        """The type every variant of this flag has."""
        kind = variant_kind(next(iter(self.variants.values())))
        assert kind is not None
        return kind

    def definition(self) -> dict[str, Any]:
        """The flag as flagd's JSON writes it (without its key)."""
        out: dict[str, Any] = {
            "state": self.state,
            "variants": self.variants,
            "defaultVariant": self.default_variant,
        }
        if self.targeting:
            out["targeting"] = self.targeting
        if self.metadata:
            out["metadata"] = self.metadata
        return out

    def with_changes(self, **changes: Any) -> Flag:
        """A checked copy with the given flagd fields replaced (`state`, `targeting`, ...)."""
        return parse_flag(self.key, {**self.definition(), **changes})


def check_key(key: Any) -> list[Problem]:
    """Problems with a flag key (it appears in URLs, the CLI and application code)."""
    if key in RESERVED_KEYS:  # the API serves the whole document at .../flags/flagd.json
        return [Problem(str(key), "is a reserved name", "choose another flag key")]
    if isinstance(key, str) and _KEY.fullmatch(key):
        return []
    return [Problem(str(key), "is not a valid flag key", f"flag keys {KEY_RULE}, like new-checkout")]


def check_flag(key: str, data: Any, evaluators: Mapping[str, Any] | None = None) -> list[Problem]:
    """Every problem with one flag's definition (empty when it is valid)."""
    problems = check_key(key)
    if not isinstance(data, Mapping):
        return [*problems, Problem(key, "is not a JSON object", _EXAMPLE)]
    found: list[tuple[str, str]] = []
    for name in data:
        if name not in FIELDS:
            close = suggest(str(name), FIELDS)
            fix = f"did you mean '{close}'?" if close else f"a flag has only {', '.join(FIELDS)}"
            found.append((f"has an unknown field '{name}'", fix))
    state = data.get("state")
    if state not in STATES:
        found.append((f"state is {state!r}", "set state to ENABLED or DISABLED"))
    variants = data.get("variants")
    found += _check_variants(variants)
    names = list(variants) if isinstance(variants, Mapping) else []
    default = data.get("defaultVariant")
    if default is not None and default not in names:
        close = suggest(default, names) if isinstance(default, str) else None
        hint = f"did you mean '{close}'?" if close else f"use one of: {', '.join(map(str, names)) or 'none'}"
        found.append((f"defaultVariant '{default}' is not one of its variants", hint))
    if "targeting" in data:
        found += _check_targeting(data["targeting"], names, evaluators or {})
    found += _check_metadata(data.get("metadata", {}))
    return problems + [Problem(key, message, fix) for message, fix in found]


_EXAMPLE = (
    'write it like {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}'
)


def _check_variants(variants: Any) -> list[tuple[str, str]]:
    if not isinstance(variants, Mapping) or not variants:
        return [("has no variants", 'give it variants, like {"on": true, "off": false}')]
    found = []
    kinds: dict[str, list[str]] = {}
    for name, value in variants.items():
        if not isinstance(name, str) or not name:
            found.append(("has a variant with an empty name", "name every variant"))
        kind = variant_kind(value)
        if kind is None or (isinstance(value, float) and not math.isfinite(value)):
            found.append(
                (
                    f"variant '{name}' is {_json_kind(value)}",
                    "a variant is a boolean, a string, a number or an object",
                )
            )
            continue
        kinds.setdefault(kind, []).append(str(name))
    if len(kinds) > 1:
        mix = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in kinds.items())
        found.append((f"mixes variant types ({mix})", "give every variant of a flag the same type"))
    return found


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "an array"
    return f"not a JSON value ({type(value).__name__})"


def _check_metadata(metadata: Any) -> list[tuple[str, str]]:
    fix = "metadata maps names to strings, numbers or booleans"
    if not isinstance(metadata, Mapping):
        return [("metadata is not an object", fix)]
    bad = [str(k) for k, v in metadata.items() if variant_kind(v) not in ("boolean", "number", "string")]
    return [(f"metadata {', '.join(bad)} is not a string, number or boolean", fix)] if bad else []


def _check_targeting(
    targeting: Any, variants: list[str], evaluators: Mapping[str, Any]
) -> list[tuple[str, str]]:
    if targeting is None or targeting == {}:
        return []
    if not is_operation(targeting):
        return [
            (
                "targeting is not one JsonLogic operation",
                'write it like {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "on", null]}',
            )
        ]
    found = [(message, fix) for message, fix in _rule_problems(targeting, evaluators, 0)]
    if found:
        return found
    for result in _results(targeting, evaluators, 0):
        name = _variant_name(result)
        if name is None:
            found.append(
                (
                    f"targeting can return {result!r}, which is not a variant name",
                    "make every branch return a variant name (or null for the default)",
                )
            )
        elif name not in variants:
            found.append(
                (
                    f"targeting can return '{name}', which is not one of its variants",
                    f"use one of: {', '.join(variants)}, or add a variant '{name}'",
                )
            )
    return found


def _variant_name(result: Any) -> str | None:
    if isinstance(result, bool):
        return "true" if result else "false"  # flagd reads a boolean result as that variant name
    return result if isinstance(result, str) else None


def _rule_problems(rule: Any, evaluators: Mapping[str, Any], depth: int) -> Iterator[tuple[str, str]]:
    if depth > 32:
        yield ("targeting nests too deep", "flatten the rule")
        return
    if isinstance(rule, list | tuple):
        for item in rule:
            yield from _rule_problems(item, evaluators, depth + 1)
        return
    if not is_operation(rule):
        return
    ((name, raw),) = rule.items()
    if name == "$ref":
        if raw not in evaluators:
            have = ", ".join(evaluators) or "none"
            yield (f"targeting refers to evaluator {raw!r}, which the file does not define",
                   f"define it under $evaluators (defined: {have})")  # fmt: skip
        return
    if name not in OPERATIONS:
        close = suggest(str(name), OPERATIONS)
        fix = f"did you mean '{close}'?" if close else f"use one of: {', '.join(sorted(OPERATIONS))}"
        yield (f"targeting uses the unknown operation '{name}'", fix)
        return
    args = list(raw) if isinstance(raw, list | tuple) else [raw]
    yield from _argument_problems(name, args)
    yield from _rule_problems(args, evaluators, depth + 1)


def _argument_problems(name: str, args: list[Any]) -> Iterator[tuple[str, str]]:
    if name in ("starts_with", "ends_with") and len(args) != 2:
        yield (f"{name} takes two arguments", f'write {{"{name}": [{{"var": "email"}}, "@example.com"]}}')
    if name == "sem_ver":
        if len(args) != 3:
            yield ("sem_ver takes three arguments", 'write {"sem_ver": [{"var": "version"}, ">=", "2.0.0"]}')
            return
        if isinstance(args[1], str) and args[1] not in SEMVER_OPERATORS:
            yield (f"sem_ver has no operator {args[1]!r}", f"use one of: {' '.join(SEMVER_OPERATORS)}")
        for arg in (args[0], args[2]):
            if isinstance(arg, str):
                try:
                    parse_version(arg)
                except OperatorError:
                    yield (f"sem_ver: {arg!r} is not a semantic version", "write versions like 2.1.0")
    if name == "fractional":
        yield from _fractional_problems(args)


def _fractional_problems(args: list[Any]) -> Iterator[tuple[str, str]]:
    fix = 'write buckets as [variant, weight], e.g. {"fractional": [["on", 10], ["off", 90]]}'
    buckets = args[1:] if args and not isinstance(args[0], list | tuple) else args
    if not buckets:
        yield ("fractional has no buckets", fix)
        return
    weights: list[Any] = []
    for bucket in buckets:
        if not isinstance(bucket, list | tuple) or not 1 <= len(bucket) <= 2:
            yield (f"fractional bucket {bucket!r} is not [variant, weight]", fix)
            continue
        weight = bucket[1] if len(bucket) == 2 else 1
        if is_operation(weight):
            weights.append(None)
        elif isinstance(weight, bool) or not isinstance(weight, int | float) or weight != int(weight):
            yield (f"fractional weight {weight!r} is not a whole number", fix)
        elif weight < 0:
            yield (f"fractional weight {weight} is negative", fix)
        else:
            weights.append(weight)
    if weights and None not in weights and sum(weights) == 0:
        yield ("fractional weights add up to zero", "give at least one bucket a positive weight")


def _results(rule: Any, evaluators: Mapping[str, Any], depth: int) -> Iterator[Any]:
    """The literal values a rule can return (operations that compute a value are not followed)."""
    if depth > 32 or rule is None:
        return
    if not is_operation(rule):
        if not isinstance(rule, Mapping | list | tuple):
            yield rule
        return
    ((name, raw),) = rule.items()
    args = list(raw) if isinstance(raw, list | tuple) else [raw]
    if name == "$ref":
        yield from _results(evaluators.get(raw), evaluators, depth + 1)
    elif name in ("if", "?:"):
        branches = [args[i] for i in range(1, len(args), 2)]
        if len(args) % 2 == 1:
            branches.append(args[-1])
        for branch in branches:
            yield from _results(branch, evaluators, depth + 1)
    elif name == "fractional":
        buckets = args[1:] if args and not isinstance(args[0], list | tuple) else args
        for bucket in buckets:
            if isinstance(bucket, list | tuple) and bucket:
                yield from _results(bucket[0], evaluators, depth + 1)


def parse_flag(key: str, data: Any, evaluators: Mapping[str, Any] | None = None) -> Flag:
    """A valid Flag from flagd JSON; InvalidFlag naming every problem otherwise."""
    problems = check_flag(key, data, evaluators)
    if problems:
        raise InvalidFlag(problems)
    targeting = data.get("targeting")
    if evaluators:
        targeting = inline_refs(targeting, evaluators)
    return Flag(
        key=key,
        state=data["state"],
        variants=dict(data["variants"]),
        default_variant=data.get("defaultVariant"),
        targeting=dict(targeting) if targeting else None,
        metadata=dict(data.get("metadata") or {}),
    )


def inline_refs(rule: Any, evaluators: Mapping[str, Any], depth: int = 0) -> Any:
    """`rule` with every `{"$ref": name}` replaced by the evaluator it names."""
    if depth > 32:
        raise InvalidFlag([Problem(None, "$evaluators refer to each other in a loop", "break the loop")])
    if isinstance(rule, list | tuple):
        return [inline_refs(item, evaluators, depth + 1) for item in rule]
    if is_operation(rule):
        ((name, raw),) = rule.items()
        if name == "$ref" and isinstance(raw, str) and raw in evaluators:
            return inline_refs(evaluators[raw], evaluators, depth + 1)
        return {name: inline_refs(raw, evaluators, depth + 1)}
    return rule


def parse_document(document: Any) -> list[Flag]:
    """Every flag of a flagd JSON document, checked, with `$ref`s inlined; InvalidFlag lists all problems."""
    if not isinstance(document, Mapping) or not isinstance(document.get("flags"), Mapping):
        raise InvalidFlag(
            [
                Problem(
                    None, "the file is not a flagd document", 'it must be a JSON object with "flags": {...}'
                )
            ]
        )
    problems = [
        Problem(
            None, f"the file has an unknown top-level field '{name}'", f"use {', '.join(DOCUMENT_FIELDS)}"
        )
        for name in document
        if name not in DOCUMENT_FIELDS
    ]
    evaluators = document.get("$evaluators") or {}
    if not isinstance(evaluators, Mapping):
        problems.append(Problem(None, "$evaluators is not an object", "map names to JsonLogic rules"))
        evaluators = {}
    for name, rule in evaluators.items():
        problems += [
            Problem(None, f"evaluator '{name}': {message}", fix)
            for message, fix in _rule_problems(rule, evaluators, 0)
        ]
    for key, data in document["flags"].items():
        problems += check_flag(str(key), data, evaluators)
    if problems:
        raise InvalidFlag(problems)
    return [parse_flag(str(key), data, evaluators) for key, data in document["flags"].items()]


def document(flags: Iterable[Flag], metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A flagd JSON document holding `flags`, keys sorted."""
    out: dict[str, Any] = {
        "$schema": FLAGD_SCHEMA,
        "flags": {f.key: f.definition() for f in sorted(flags, key=lambda f: f.key)},
    }
    if metadata:
        out["metadata"] = dict(metadata)
    return out

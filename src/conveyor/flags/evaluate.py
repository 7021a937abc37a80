"""Pure: evaluate a flag of a flagd document for a context, as flagd and its OpenFeature providers do.

`evaluate(document, key, context, now=...)` returns a `Resolution` with an OpenFeature reason:
STATIC (no targeting), TARGETING_MATCH (targeting chose the variant), DEFAULT (targeting returned
null, or an operation failed), DISABLED (the flag is off: the application uses its own default),
or ERROR with a code (FLAG_NOT_FOUND, PARSE_ERROR, TYPE_MISMATCH, GENERAL). Like flagd, the
context is enriched with `targetingKey` and `$flagd.flagKey` / `$flagd.timestamp` (from `now`:
this module never reads the clock).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from conveyor.flags.jsonlogic import OperatorError, UnknownOperation, apply
from conveyor.flags.operators import FLAGD_OPERATIONS

FlagType = Literal["boolean", "string", "integer", "float", "object"]
FLAG_TYPES: tuple[str, ...] = ("boolean", "string", "integer", "float", "object")


@dataclass(frozen=True)
class Resolution:
    """The outcome of one evaluation; `value` None (with no variant) means "use the code default"."""

    key: str
    value: Any
    variant: str | None
    reason: str
    error_code: str | None = None
    error_message: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": self.key,
            "value": self.value,
            "variant": self.variant,
            "reason": self.reason,
        }
        if self.error_code:
            out["errorCode"] = self.error_code
            out["errorDetails"] = self.error_message
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out


def _error(key: str, code: str, message: str) -> Resolution:
    return Resolution(key, None, None, "ERROR", code, message)


def value_type(value: Any) -> FlagType | None:
    """The OpenFeature type of a resolved value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    return None


def _fits(value: Any, expected: FlagType) -> bool:
    actual = value_type(value)
    if expected == "float":
        return actual in ("float", "integer")
    if expected == "integer":
        return actual == "integer" or (actual == "float" and float(value).is_integer())
    return actual == expected


def context_data(flag_key: str, context: Mapping[str, Any], now: datetime, targeting_key: str | None) -> Any:
    """The data targeting sees: the context, its targeting key, and flagd's `$flagd` properties."""
    data = dict(context)
    if targeting_key is not None:
        data["targetingKey"] = targeting_key
    data["$flagd"] = {"flagKey": flag_key, "timestamp": int(now.timestamp())}
    return data


def evaluate(
    document: Mapping[str, Any],
    flag_key: str,
    context: Mapping[str, Any] | None = None,
    *,
    now: datetime,
    targeting_key: str | None = None,
    expected: FlagType | None = None,
) -> Resolution:
    """Resolve `flag_key` for `context`; deterministic for the same document, context and `now`."""
    flags = document.get("flags") if isinstance(document, Mapping) else None
    if not isinstance(flags, Mapping):
        return _error(flag_key, "PARSE_ERROR", "the flag document has no flags object")
    flag = flags.get(flag_key)
    if flag is None:
        return _error(flag_key, "FLAG_NOT_FOUND", f"flag '{flag_key}' does not exist")
    if not isinstance(context, Mapping | None):
        return _error(flag_key, "INVALID_CONTEXT", "the evaluation context is not an object")
    variants = flag.get("variants") if isinstance(flag, Mapping) else None
    if not isinstance(variants, Mapping) or flag.get("state") not in ("ENABLED", "DISABLED"):
        return _error(flag_key, "PARSE_ERROR", f"flag '{flag_key}' is not a valid flagd definition")
    metadata = {**_mapping(document.get("metadata")), **_mapping(flag.get("metadata"))}
    if flag["state"] == "DISABLED":
        return Resolution(flag_key, None, None, "DISABLED", metadata=metadata)
    targeting = flag.get("targeting")
    reason = "STATIC"
    variant: Any = flag.get("defaultVariant")
    if targeting:
        data = context_data(flag_key, context or {}, now, targeting_key)
        evaluators = _mapping(document.get("$evaluators"))
        try:
            chosen = apply(targeting, data, FLAGD_OPERATIONS, evaluators)
        except UnknownOperation as exc:
            return _error(flag_key, "PARSE_ERROR", f"flag '{flag_key}': {exc}")
        except OperatorError:
            chosen = None  # flagd: a failing operation makes the targeting yield null
        if chosen is None:
            reason = "DEFAULT"
        else:
            if isinstance(chosen, bool):
                chosen = "true" if chosen else "false"
            if not isinstance(chosen, str) or chosen not in variants:
                return _error(
                    flag_key, "GENERAL", f"flag '{flag_key}': targeting chose {chosen!r}, no variant"
                )
            variant, reason = chosen, "TARGETING_MATCH"
    if variant is None:
        return Resolution(flag_key, None, None, "DEFAULT", metadata=metadata)
    if variant not in variants:
        return _error(flag_key, "GENERAL", f"flag '{flag_key}': defaultVariant {variant!r} is no variant")
    value = variants[variant]
    if expected is not None and not _fits(value, expected):
        return _error(flag_key, "TYPE_MISMATCH", f"flag '{flag_key}' is {value_type(value)}, not {expected}")
    return Resolution(flag_key, value, variant, reason, metadata=metadata)


def evaluate_all(
    document: Mapping[str, Any],
    context: Mapping[str, Any] | None = None,
    *,
    now: datetime,
    targeting_key: str | None = None,
) -> list[Resolution]:
    """Every flag of the document, by key."""
    flags = document.get("flags") if isinstance(document, Mapping) else None
    keys = sorted(flags) if isinstance(flags, Mapping) else []
    return [evaluate(document, key, context, now=now, targeting_key=targeting_key) for key in keys]


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}

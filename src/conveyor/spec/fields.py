"""Building blocks of the spec models: the base model, issues, suggestions, names and cross-references.

Models raise `Issue`s through `raise_issues` so that one check can report several problems, each at
its own key; `problems.py` turns them into `SpecProblem`s with line and column. References to roles
and environments are checked against a `SpecContext` that the loader derives from the whole file
before validation, so a typo in a reference is reported together with every other mistake. A check
that spans several blocks runs once the blocks it reads are well-formed.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo
from pydantic_core import PydanticCustomError

from conveyor.auth.permissions import ALL, BUILTIN_ROLES, GLOBAL_PERMISSIONS, is_known_permission

CONTEXT_KEY = "conveyor.spec"
ERROR_TYPE = "conveyor"


class SpecModel(BaseModel):
    """Base of every conveyor.yaml block: unknown keys rejected, no silent type coercion, immutable."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        allow_inf_nan=False,
        use_attribute_docstrings=True,
    )

    # Keys the file may leave out although the model requires them, and what fills them in.
    derived_defaults: ClassVar[dict[str, str]] = {}
    # A shorter spelling accepted instead of the mapping: its JSON Schema and how the docs describe it.
    shorthand: ClassVar[tuple[dict[str, Any], str] | None] = None


@dataclass(frozen=True)
class Issue:
    """A problem a model's own check found, at `path` relative to that model."""

    path: tuple[str | int, ...]
    message: str
    hint: str | None = None
    at_key: bool = False


def invalid(message: str, hint: str | None = None) -> PydanticCustomError:
    """A validation error with our own message and fix, for a single value."""
    return PydanticCustomError(ERROR_TYPE, "{message}", {"message": message, "hint": hint})


def raise_issues(issues: Sequence[Issue]) -> None:
    """Raise every issue at once (no-op when there are none)."""
    if issues:
        first = issues[0]
        raise PydanticCustomError(
            ERROR_TYPE, "{message}", {"message": first.message, "hint": first.hint, "issues": tuple(issues)}
        )


def suggest(word: str, choices: Iterable[str]) -> str | None:
    """The closest choice to a misspelt word, if one is close enough (an abbreviation counts)."""
    options = list(choices)
    lowered = word.lower()
    if len(lowered) >= 2:
        starts = [option for option in options if option.lower().startswith(lowered)]
        if len(starts) == 1:
            return starts[0]
    matches = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(word: Any, choices: Iterable[str], listing: str = "choose one of") -> str:
    """'did you mean 'x'?' when a choice is close, otherwise the list of valid choices."""
    options = list(choices)
    close = suggest(word, options) if isinstance(word, str) else None
    if close:
        return f"did you mean '{close}'?"
    return f"{listing}: {', '.join(options)}"


@dataclass(frozen=True)
class Label:
    """How the reference documentation names an annotated type (`role`, `environment name`, …)."""

    text: str


_NAME_RE = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
NAME_MAX = 40
NAME_RULE = f"use lowercase letters, digits and dashes, starting with a letter, at most {NAME_MAX} characters"


def is_valid_name(value: str) -> bool:
    """Whether `value` can name a project, environment, service or role."""
    return len(value) <= NAME_MAX and _NAME_RE.fullmatch(value) is not None


def _name_check(noun: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not is_valid_name(value):
            raise invalid(f"'{value}' is not a valid {noun}", NAME_RULE)
        return value

    return check


ProjectName = Annotated[str, AfterValidator(_name_check("project name")), Label("name")]
EnvironmentName = Annotated[str, AfterValidator(_name_check("environment name")), Label("environment name")]
ServiceName = Annotated[str, AfterValidator(_name_check("service name")), Label("service name")]
RoleName = Annotated[str, AfterValidator(_name_check("role name")), Label("role name")]
ReportName = Annotated[str, AfterValidator(_name_check("report name")), Label("report name")]
KeyName = Annotated[str, AfterValidator(_name_check("key name")), Label("key name")]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise invalid("must not be empty")
    return value


Text = Annotated[str, AfterValidator(_not_blank), Label("string")]


@dataclass(frozen=True)
class SpecContext:
    """What references may point at: every role and environment the file declares."""

    roles: frozenset[str]
    environments: tuple[str, ...]


def context_for(data: Any) -> dict[str, SpecContext]:
    """The validation context for a raw conveyor.yaml mapping (tolerates any shape)."""
    roles = set(BUILTIN_ROLES)
    environments: tuple[str, ...] = ()
    if isinstance(data, dict):
        if isinstance(data.get("roles"), dict):
            roles.update(k for k in data["roles"] if isinstance(k, str))
        if isinstance(data.get("environments"), dict):
            environments = tuple(k for k in data["environments"] if isinstance(k, str))
    return {CONTEXT_KEY: SpecContext(frozenset(roles), environments)}


def _context(info: ValidationInfo) -> SpecContext | None:
    if isinstance(info.context, dict):
        found = info.context.get(CONTEXT_KEY)
        if isinstance(found, SpecContext):
            return found
    return None


def _check_role_ref(value: str, info: ValidationInfo) -> str:
    context = _context(info)
    if context is not None and value not in context.roles:
        known = sorted(context.roles)
        close = suggest(value, known)
        hint = (
            f"did you mean '{close}'?"
            if close
            else f"known roles: {', '.join(known)} (declare new ones under `roles:`)"
        )
        raise invalid(f"unknown role '{value}'", hint)
    return value


RoleRef = Annotated[str, AfterValidator(_check_role_ref), Label("role")]


def environment_ref(what: str) -> AfterValidator:
    """Check that a value names an environment of this file; `what` starts the message."""

    def check(value: str, info: ValidationInfo) -> str:
        context = _context(info)
        if context is not None and value not in context.environments:
            raise invalid(
                f"{what} '{value}' is not an environment",
                did_you_mean(value, context.environments, "environments are"),
            )
        return value

    return AfterValidator(check)


def _check_permission(value: str) -> str:
    if not is_known_permission(value):
        raise invalid(f"unknown permission '{value}'", did_you_mean(value, [*GLOBAL_PERMISSIONS, ALL]))
    return value


Permission = Annotated[str, AfterValidator(_check_permission), Label("permission")]

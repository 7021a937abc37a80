"""What applying a spec would change: a pure diff of two canonical documents and the plan it summarizes to.

Mappings are compared key by key, recursively. Lists are compared as whole values: the spec keeps
every named collection (environments, services, config, secrets) in mappings, so a list change is
an ordered change (pipeline stages, gates, traffic steps) and is shown whole.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Op = Literal["add", "change", "remove"]


@dataclass(frozen=True)
class Change:
    """One difference: `op` at `path` (keys from the document's root), with the old and new value."""

    op: Op
    path: tuple[str, ...]
    old: Any
    new: Any

    def describe(self) -> str:
        """`environments.production.approvals.required: 1 → 2` (or `+ …` / `- …`)."""
        where = ".".join(self.path) or "(document)"
        if self.op == "add":
            return f"+ {where}: {_short(self.new)}"
        if self.op == "remove":
            return f"- {where}: {_short(self.old)}"
        return f"~ {where}: {_short(self.old)} → {_short(self.new)}"


def _short(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{…}" if value else "{}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def diff_documents(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[Change]:
    """Every change that turns `old` into `new` (`old=None`: everything is added)."""
    return _diff(old or {}, new, ())


def _diff(old: Mapping[str, Any], new: Mapping[str, Any], path: tuple[str, ...]) -> list[Change]:
    changes: list[Change] = []
    for key, value in new.items():
        here = (*path, key)
        if key not in old:
            changes.append(Change("add", here, None, copy.deepcopy(value)))
        elif isinstance(old[key], Mapping) and isinstance(value, Mapping):
            changes.extend(_diff(old[key], value, here))
        elif not _same(old[key], value):
            changes.append(Change("change", here, copy.deepcopy(old[key]), copy.deepcopy(value)))
    for key, value in old.items():
        if key not in new:
            changes.append(Change("remove", (*path, key), copy.deepcopy(value), None))
    return changes


def _same(a: Any, b: Any) -> bool:
    # 1 == 1.0 == True in Python, but they are different values in a document.
    if type(a) is not type(b):
        return False
    if isinstance(a, Mapping):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a is b or bool(a == b)


def apply_changes(document: Mapping[str, Any] | None, changes: Iterable[Change]) -> dict[str, Any]:
    """A copy of `document` with `changes` applied; `apply_changes(a, diff_documents(a, b)) == b`."""
    result: dict[str, Any] = copy.deepcopy(dict(document or {}))
    for change in changes:
        *parents, last = change.path
        node = result
        for key in parents:
            node = node.setdefault(key, {})
        if change.op == "remove":
            node.pop(last, None)
        else:
            node[last] = copy.deepcopy(change.new)
    return result


@dataclass(frozen=True)
class Plan:
    """A diff grouped for people: environments added, changed (field by field) or removed; other sections."""

    environments_added: tuple[str, ...] = ()
    environments_removed: tuple[str, ...] = ()
    environments_changed: dict[str, tuple[Change, ...]] = field(default_factory=dict)
    """Per environment, its changes with paths relative to the environment."""
    sections_changed: dict[str, tuple[Change, ...]] = field(default_factory=dict)
    """Per other top-level key (project, roles, services, pipeline, …), its changes with full paths."""

    @property
    def is_empty(self) -> bool:
        """Whether applying would change nothing."""
        return not (
            self.environments_added
            or self.environments_removed
            or self.environments_changed
            or self.sections_changed
        )

    def summary(self) -> str:
        """One line: what is added, changed and removed."""
        if self.is_empty:
            return "no changes"
        parts = []
        if self.environments_added:
            parts.append(f"environments added: {', '.join(self.environments_added)}")
        if self.environments_changed:
            parts.append(f"environments changed: {', '.join(self.environments_changed)}")
        if self.environments_removed:
            parts.append(f"environments removed: {', '.join(self.environments_removed)}")
        if self.sections_changed:
            parts.append(f"also changed: {', '.join(self.sections_changed)}")
        return "; ".join(parts)


def summarize_plan(changes: Iterable[Change]) -> Plan:
    """Group a diff of two spec documents into a Plan."""
    added: list[str] = []
    removed: list[str] = []
    changed: dict[str, list[Change]] = {}
    sections: dict[str, list[Change]] = {}
    for change in changes:
        top, rest = change.path[0], change.path[1:]
        if top != "environments":
            sections.setdefault(top, []).append(change)
        elif not rest:
            # the whole `environments` mapping appeared, vanished or was replaced by something else
            new_names = list(change.new) if isinstance(change.new, Mapping) else []
            old_names = list(change.old) if isinstance(change.old, Mapping) else []
            added.extend(new_names)
            removed.extend(old_names)
            odd_new = change.op != "remove" and not isinstance(change.new, Mapping)
            odd_old = change.op != "add" and not isinstance(change.old, Mapping)
            if odd_new or odd_old or not (new_names or old_names):
                sections.setdefault(top, []).append(change)
        elif len(rest) == 1 and change.op == "add":
            added.append(rest[0])
        elif len(rest) == 1 and change.op == "remove":
            removed.append(rest[0])
        else:
            relative = Change(change.op, rest[1:], change.old, change.new)
            changed.setdefault(rest[0], []).append(relative)
    return Plan(
        environments_added=tuple(added),
        environments_removed=tuple(removed),
        environments_changed={name: tuple(items) for name, items in changed.items()},
        sections_changed={name: tuple(items) for name, items in sections.items()},
    )

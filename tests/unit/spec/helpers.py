"""Shared helpers for the spec tests: a minimal valid file and ways to collect its problems."""

from __future__ import annotations

import textwrap

import pytest

from conveyor.errors import SpecError, SpecProblem
from conveyor.spec import Spec, load_spec_text

MINIMAL = """\
project: demo
environments:
  development:
    tier: development
  production:
    tier: production
"""


def yaml(text: str) -> str:
    """Dedent an indented YAML snippet."""
    return textwrap.dedent(text).lstrip("\n")


def load(text: str) -> Spec:
    """Load a (dedented) YAML snippet that must be valid."""
    return load_spec_text(yaml(text))


def problems(text: str) -> list[SpecProblem]:
    """Every problem of a (dedented) YAML snippet that must be invalid."""
    with pytest.raises(SpecError) as caught:
        load_spec_text(yaml(text))
    return caught.value.problems


def one_problem(text: str) -> SpecProblem:
    """The only problem of a (dedented) YAML snippet."""
    found = problems(text)
    assert len(found) == 1, [p.render() for p in found]
    return found[0]


def with_environment(block: str, name: str = "production", tier: str = "production") -> str:
    """A minimal file whose environment `name` carries the extra YAML `block` (starting on line 7)."""
    others = "" if name == "development" else "  development:\n    tier: development\n"
    head = f"project: demo\nenvironments:\n{others}  {name}:\n    tier: {tier}\n"
    body = textwrap.indent(yaml(block), "    ")
    return head + body + ("" if body.endswith("\n") or not body else "\n")

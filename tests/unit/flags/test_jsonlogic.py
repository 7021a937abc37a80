"""JsonLogic as flagd users rely on it: JavaScript truthiness and coercion, lazy if/and/or, var defaults."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conveyor.flags.jsonlogic import OperatorError, UnknownOperation, apply
from conveyor.flags.operators import FLAGD_OPERATIONS

DATA = {"user": {"name": "ana", "age": 42, "tags": ["beta", "eu"]}, "email": "ana@example.com", "zero": 0}

CASES: list[tuple[Any, Any]] = [
    ({"var": "user.name"}, "ana"),
    ({"var": ["user.missing", "fallback"]}, "fallback"),
    ({"var": "user.tags.1"}, "eu"),
    ({"var": "nothing"}, None),
    ({"==": [1, "1"]}, True),
    ({"==": [0, False]}, True),
    ({"==": [None, 0]}, False),
    ({"===": [1, "1"]}, False),
    ({"===": [1, 1.0]}, True),
    ({"!=": ["a", "b"]}, True),
    ({"!==": [1, "1"]}, True),
    ({"!": [""]}, True),
    ({"!": [[]]}, True),
    ({"!!": ["0"]}, True),
    ({"!!": [0]}, False),
    ({"and": [1, "x", 0, "never"]}, 0),
    ({"or": [0, "", "first", "second"]}, "first"),
    ({"if": [{"var": "zero"}, "yes", "no"]}, "no"),
    ({"if": [False, "a", True, "b", "c"]}, "b"),
    ({"if": [False, "a"]}, None),
    ({"<": [1, 2, 3]}, True),
    ({"<=": [1, 1, 0]}, False),
    ({">": ["10", 9]}, True),
    ({">=": ["b", "a"]}, True),
    ({"<": ["abc", 5]}, False),
    ({"in": ["@example", {"var": "email"}]}, True),
    ({"in": ["eu", {"var": "user.tags"}]}, True),
    ({"in": ["x", None]}, False),
    ({"cat": ["v", 1, ".", 2.0, True, None]}, "v1.2truenull"),
    ({"starts_with": [{"var": "email"}, "ana"]}, True),
    ({"ends_with": [{"var": "email"}, ".org"]}, False),
    ({"sem_ver": ["v1.2.3", ">=", "1.2.3"]}, True),
    ({"sem_ver": ["1.2.3-rc.1", "<", "1.2.3"]}, True),
    ({"sem_ver": ["1.2.3-rc.2", ">", "1.2.3-rc.10"]}, False),
    ({"sem_ver": ["1.2.3+build", "=", "1.2.3"]}, True),
    ({"sem_ver": ["1.9", "~", "1.9.7"]}, True),
    ([{"var": "user.age"}, {"var": "zero"}], [42, 0]),
    ({"a": 1, "b": 2}, {"a": 1, "b": 2}),
]


@pytest.mark.parametrize(("rule", "expected"), CASES, ids=[json.dumps(r) for r, _ in CASES])
def test_operation(rule: Any, expected: Any) -> None:
    assert apply(rule, DATA, FLAGD_OPERATIONS) == expected


def test_if_and_or_do_not_evaluate_branches_they_skip() -> None:
    boom = {"nope": []}  # an unknown operation raises if evaluated
    assert apply({"if": [True, "taken", boom]}, {}) == "taken"
    assert apply({"and": [False, boom]}, {}) is False
    assert apply({"or": [True, boom]}, {}) is True


@pytest.mark.parametrize(
    "rule",
    [{"starts_with": [1, "a"]}, {"ends_with": ["a"]}, {"sem_ver": ["1.0.0", "==", "1.0.0"]},
     {"sem_ver": ["not-a-version", "=", "1.0.0"]}, {"fractional": [["a", 1], ["b", 1]]}],
    ids=["non-string", "one-argument", "bad-operator", "bad-version", "no-bucketing-value"],
)  # fmt: skip
def test_operations_refuse_unusable_arguments(rule: Any) -> None:
    with pytest.raises(OperatorError):
        apply(rule, {"$flagd": {"flagKey": "f"}}, FLAGD_OPERATIONS)


def test_unknown_operations_and_references_are_parse_errors() -> None:
    with pytest.raises(UnknownOperation, match="unknown operation 'nope'"):
        apply({"nope": [1]}, {})
    with pytest.raises(UnknownOperation, match="no evaluator"):
        apply({"$ref": "missing"}, {}, references={})
    loop = {"a": {"$ref": "a"}}
    with pytest.raises(UnknownOperation, match="deeper"):
        apply({"$ref": "a"}, {}, references=loop)

"""Flag definitions: a bad one is refused with the problem and the fix; what we emit fits flagd's schema."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.flags.model import FLAGD_SCHEMA, InvalidFlag, document, parse_document, parse_flag
from tests.unit.flags.schema import FIXTURES, validate
from tests.unit.flags.test_evaluate import flags

BOOL = {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off"}


REFUSALS = [
    ("bad-key", "new checkout", BOOL, "is not a valid flag key", "start with a letter"),
    ("reserved-key", "flagd.json", BOOL, "is a reserved name", "another flag key"),
    ("unknown-default", "f", {**BOOL, "defaultVariant": "of"}, "defaultVariant 'of' is not one", "'off'"),
    ("mixed-types", "f", {**BOOL, "variants": {"on": True, "off": "no"}}, "mixes variant types",
     "same type"),
    ("no-variants", "f", {**BOOL, "variants": {}}, "has no variants", '{"on": true'),
    ("null-variant", "f", {**BOOL, "variants": {"on": None}, "defaultVariant": "on"}, "is null",
     "a boolean, a string"),
    ("bad-state", "f", {**BOOL, "state": "ON"}, "state is 'ON'", "ENABLED or DISABLED"),
    ("typo-field", "f", {**BOOL, "targetting": {}}, "unknown field 'targetting'", "'targeting'"),
    ("unknown-operation", "f", {**BOOL, "targeting": {"iff": [True, "on", "off"]}},
     "unknown operation 'iff'", "'if'"),
    ("not-an-operation", "f", {**BOOL, "targeting": {"if": [], "and": []}}, "not one JsonLogic operation",
     '{"if"'),
    ("unknown-variant-result", "f", {**BOOL, "targeting": {"if": [True, "three", "off"]}},
     "can return 'three'", "on, off"),
    ("number-result", "f", {**BOOL, "targeting": {"if": [True, 2, "off"]}}, "can return 2",
     "variant name"),
    ("fractional-bucket-not-variant", "f",
     {**BOOL, "targeting": {"fractional": [["yes", 50], ["off", 50]]}}, "can return 'yes'", "on, off"),
    ("fractional-float-weight", "f", {**BOOL, "targeting": {"fractional": [["on", 0.5], ["off", 50]]}},
     "not a whole number", "[variant, weight]"),
    ("fractional-zero", "f", {**BOOL, "targeting": {"fractional": [["on", 0], ["off", 0]]}},
     "add up to zero", "positive weight"),
    ("sem_ver-operator", "f", {**BOOL, "targeting": {"if": [{"sem_ver": [{"var": "v"}, "=>", "1.0.0"]},
     "on", "off"]}}, "no operator '=>'", ">="),
    ("sem_ver-version", "f", {**BOOL, "targeting": {"if": [{"sem_ver": [{"var": "v"}, ">=", "1.x"]},
     "on", "off"]}}, "'1.x' is not a semantic version", "2.1.0"),
    ("missing-ref", "f", {**BOOL, "targeting": {"if": [{"$ref": "nope"}, "on", "off"]}},
     "evaluator 'nope'", "$evaluators"),
]  # fmt: skip


class TestRefusals:
    @pytest.mark.parametrize(
        ("key", "definition", "message", "fix"), [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS]
    )
    def test_is_refused_naming_the_flag_the_problem_and_the_fix(
        self, key: str, definition: dict[str, Any], message: str, fix: str
    ) -> None:
        with pytest.raises(InvalidFlag) as raised:
            parse_flag(key, definition)
        assert message in raised.value.detail and f"flag '{key}'" in raised.value.detail
        assert raised.value.hint is not None and fix in raised.value.hint
        assert raised.value.status == 400


def test_a_document_lists_every_problem_of_every_flag() -> None:
    bad = {"flags": {"a": {**BOOL, "defaultVariant": "x"}, "b": {**BOOL, "state": "on"}, "c": BOOL}}
    with pytest.raises(InvalidFlag) as raised:
        parse_document(bad)
    assert "flag 'a'" in raised.value.detail and "flag 'b'" in raised.value.detail
    assert "flag 'c'" not in raised.value.detail
    assert [p["flag"] for p in raised.value.extra["problems"]] == ["a", "b"]


@pytest.mark.parametrize(
    "data",
    [[], {"flag": {}}, {"flags": []}, {"flags": {}, "extra": 1}],
    ids=["list", "no-flags", "flags-list", "extra"],
)
def test_what_is_not_a_flagd_document_is_refused(data: Any) -> None:
    with pytest.raises(InvalidFlag):
        parse_document(data)


def test_the_example_file_is_accepted_with_its_evaluators_inlined() -> None:
    parsed = {f.key: f for f in parse_document(json.loads((FIXTURES / "example.flagd.json").read_text()))}
    assert len(parsed) == 8
    header = parsed["headerColor"].targeting
    assert header is not None and "$ref" not in json.dumps(header)
    assert header["if"][0] == {"in": ["@faas.com", {"var": ["email"]}]}


def test_a_flag_with_no_default_variant_is_valid_and_defers_to_the_application() -> None:
    flag = parse_flag("f", {**BOOL, "defaultVariant": None})
    assert flag.default_variant is None and flag.definition()["defaultVariant"] is None


@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True), flags(), max_size=5))
def test_every_document_conveyor_emits_fits_the_flagd_schema(definitions: dict[str, dict[str, Any]]) -> None:
    emitted = document(
        [parse_flag(key, d) for key, d in definitions.items()], {"flagSetId": "conveyor/staging"}
    )
    assert emitted["$schema"] == FLAGD_SCHEMA
    assert validate(emitted) == []
    assert validate(json.loads(json.dumps(emitted))) == []


def test_the_schema_check_is_not_vacuous() -> None:
    mixed = {"flags": {"f": {"state": "ENABLED", "variants": {"a": 1, "b": "x"}}}}
    assert validate(mixed)
    assert validate({"flags": {"f": {**BOOL, "state": "ON"}}})
    assert validate({"flags": {"f": {"variants": {"on": True}}}})  # no state
    assert validate(json.loads((FIXTURES / "example.flagd.json").read_text())) == []

"""`services.NAME.data`: personal columns, masking rules, reviewed columns and subset rules."""

from __future__ import annotations

import pytest

from conveyor.data.service import declared
from tests.unit.spec.helpers import load, one_problem, problems

HEAD = """
project: demo
services:
  web:
    command: python app.py
    data:
"""
TAIL = """
environments:
  development:
    tier: development
"""


def spec(block: str) -> str:
    body = "".join(f"      {line}\n" for line in block.strip("\n").splitlines())
    return HEAD.lstrip("\n") + body + TAIL.lstrip("\n")


def test_a_full_declaration_loads_and_merges_into_the_clone_rules() -> None:
    loaded = load(
        spec(
            """
            pii: [users.email, users.card]
            masking:
              users.email: {transform: email, unique: true}
              users.card: {transform: card_number, keep_last: 4}
              users.note: constant:n/a
            not_sensitive: [users.created_at]
            subset: {users: 10%, orders: "status = 'paid'", events: {percent: 5, where: "kind <> 'debug'"}}
            """.replace("            ", "")
        )
    )
    merged = declared(loaded)
    assert merged.pii == ("users.email", "users.card") and merged.not_sensitive == ("users.created_at",)
    assert merged.rules.to_mapping() == {
        "users.card": {"transform": "card_number", "keep_last": 4},
        "users.email": {"transform": "email", "unique": True},
        "users.note": "constant:n/a",
    }
    assert merged.subset["users"].percent == 10 and merged.subset["orders"].where == "status = 'paid'"
    assert merged.subset["events"].describe() == "5% where kind <> 'debug'"


class TestProblems:
    @pytest.mark.parametrize(
        ("block", "path", "message", "hint"),
        [
            (
                "masking: {users.email: emial}",
                "services.web.data.masking.users.email",
                "unknown masking transform 'emial'",
                "did you mean 'email'?",
            ),
            (
                "masking: {users.card: {transform: card_number, keep_lst: 4}}",
                "services.web.data.masking.users.card",
                "card_number has no option 'keep_lst'",
                "did you mean 'keep_last'?",
            ),
            (
                "pii: [email]",
                "services.web.data.pii[0]",
                "'email' is not a column reference",
                "write table.column or schema.table.column (letters, digits, '_' and '$')",
            ),
            (
                "pii: [users.phone]",
                "services.web.data.pii[0]",
                "users.phone is declared PII and has no masking rule: a clone would copy it unmasked",
                "add it under masking, e.g. users.phone: phone",
            ),
            (
                "pii: [users.ssn]\nmasking: {users.ssn: keep}",
                "services.web.data.masking.users.ssn",
                "users.ssn is declared PII and its rule is keep: real values would leave the source",
                "mask it, e.g. users.ssn: hash",
            ),
            (
                "masking: {users.email: email}\nnot_sensitive: [users.email]",
                "services.web.data.not_sensitive[0]",
                "users.email has a masking rule and is also marked not sensitive",
                "keep one: drop it from not_sensitive, or drop its masking rule",
            ),
            (
                "subset: {users: \"id > 1; DROP TABLE users\"}",
                "services.web.data.subset.users",
                "the condition holds more than one statement",
                "write one SQL condition over the table's columns, e.g. created_at > '2025-01-01'",
            ),
            (
                "subset: {users: 150%}",
                "services.web.data.subset.users",
                "must be at most 100.0, got 150.0",
                None,
            ),
        ],
        ids=["unknown-transform", "unknown-option", "bad-ref", "pii-unmasked", "pii-kept",
             "masked-and-not-sensitive", "two-statements", "percent-range"],
    )  # fmt: skip
    def test_each_mistake_is_reported_at_its_key_with_the_fix(
        self, block: str, path: str, message: str, hint: str | None
    ) -> None:
        problem = one_problem(spec(block))
        assert (problem.path, problem.message) == (path, message)
        if hint is not None:
            assert problem.hint == hint

    def test_two_services_may_not_mask_one_column_differently(self) -> None:
        text = spec("masking: {users.email: email}").replace(
            "environments:",
            "  api:\n    command: python api.py\n"
            "    data:\n      masking: {users.email: hash}\nenvironments:",
        )
        found = problems(text)
        assert [p.path for p in found] == ["services.api.data.masking.users.email"]
        assert found[0].message == "users.email is masked differently by services 'web' and 'api'"

"""Masking rules: parsing with every mistake named, the pre-flight per kind of problem, the report."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.data.masking import Masker, Transform, unique_safe
from conveyor.data.rules import (
    PROBLEM_KINDS,
    Column,
    ColumnRef,
    ForeignKey,
    InvalidRules,
    MaskingRefused,
    Problem,
    RuleSet,
    Schema,
    Table,
    Unique,
    column_category,
    parse_rules,
    preflight,
    report,
)
from conveyor.errors import InvalidRequest

T = Transform.of
USERS = Table(
    "users",
    (
        Column("id", "bigint", nullable=False),
        Column("email", "character varying(255)", nullable=False),
        Column("name"),
        Column("phone", "text", nullable=False),
        Column("born_on", "date"),
        Column("nickname"),
        Column("api_token", "uuid"),
    ),
    primary_key=("id",),
    unique=(Unique(("email",)), Unique(("nickname",))),
)
ORDERS = Table(
    "orders",
    (
        Column("id", "bigint", nullable=False),
        Column("user_id", "bigint", nullable=False),
        Column("user_email", "text"),
        Column("card", "text"),
        Column("placed_at", "timestamp with time zone"),
        Column("shipped_at", "timestamp with time zone"),
    ),
    primary_key=("id",),
    foreign_keys=(
        ForeignKey("user_id", ColumnRef("users", "id")),
        ForeignKey("user_email", ColumnRef("users", "email")),
    ),
)
SCHEMA = Schema((USERS, ORDERS))
PII = ("users.email", "users.name", "users.phone", "users.born_on", "orders.user_email", "orders.card")
GOOD = {
    "users.email": {"transform": "email", "unique": True},
    "users.name": "name",
    "users.phone": "phone",
    "users.born_on": "date_shift",
    "users.nickname": "hash",
    "orders.user_email": {"transform": "email", "unique": True},
    "orders.card": {"transform": "card_number", "keep_last": 4},
    "orders.placed_at": {"transform": "date_shift", "by": "user_id"},
    "orders.shipped_at": {"transform": "date_shift", "by": "user_id"},
}


def with_rules(**changes: Any) -> RuleSet:
    """GOOD with some rules replaced (value None drops one); keys use '__' for '.'."""
    rules = dict(GOOD)
    for key, value in changes.items():
        column = key.replace("__", ".")
        if value is None:
            rules.pop(column, None)
        else:
            rules[column] = value
    return parse_rules(rules)


def kinds(problems: tuple[Problem, ...]) -> list[tuple[str, str]]:
    return [(p.kind, p.column) for p in problems]


class TestParse:
    def test_every_rule_form(self) -> None:
        rules = parse_rules(
            {"users.email": "email", "public.users.note": "constant:n/a", "orders.card": GOOD["orders.card"]}
        )
        assert rules.get(ColumnRef("users", "email")) == T("email")
        assert rules.get(ColumnRef("public.users", "note")) == T("constant", value="n/a")
        assert rules.transform(ColumnRef("orders", "card")) == T("card_number", keep_last=4)
        assert rules.transform(ColumnRef("orders", "id")) == T("keep")

    def test_round_trip(self) -> None:
        rules = parse_rules(GOOD)
        assert parse_rules(rules.to_mapping()) == rules
        assert rules.to_mapping()["orders.card"] == {"transform": "card_number", "keep_last": 4}

    def test_explicit_defaults_are_the_same_rule(self) -> None:
        assert parse_rules({"a.b": {"transform": "hash", "length": 32}}) == parse_rules({"a.b": "hash"})

    @pytest.mark.parametrize(
        ("rules", "detail", "hint"),
        [
            ({"users.email": "emial"}, "unknown masking transform 'emial'", "did you mean 'email'?"),
            ({"users.email": "mail"}, "unknown masking transform 'mail'", "did you mean 'email'?"),
            ({"users.email": "scramble"}, "unknown masking transform", "use one of: email, name"),
            ({"users": "email"}, "'users' is not a column reference", "table.column"),
            ({"a.b.c.d": "email"}, "not a column reference", "schema.table.column"),
            ({"users.e mail": "email"}, "not a column reference", "letters, digits"),
            ({"orders.card": {"transform": "card_number", "keep_last": "4"}}, "is '4'", "trailing digits"),
            (
                {"orders.card": {"transform": "card_number", "keep_lst": 4}},
                "no option 'keep_lst'",
                "keep_last",
            ),
            ({"orders.card": {"keep_last": 4}}, "needs 'transform'", '"transform": "card_number"'),
            ({"users.name": "name:x"}, "only constant takes a value", '"transform": "name"'),
            ({"users.name": "constant"}, "constant needs its value", "constant:<value>"),
            ({"users.name": 3}, "not int", '"constant:n/a"'),
            ({"users.name": {"transform": "constant", "value": [1]}}, "text, a number", "every row"),
        ],
        ids=[
            "misspelt",
            "abbreviated",
            "unknown-no-close-match",
            "no-column",
            "too-many-parts",
            "space",
            "option-type",
            "option-name",
            "mapping-without-transform",
            "argument-to-non-constant",
            "constant-without-value",
            "not-a-rule",
            "constant-not-scalar",
        ],
    )
    def test_bad_rule_is_refused_with_the_fix(self, rules: dict[str, Any], detail: str, hint: str) -> None:
        with pytest.raises(InvalidRules) as error:
            parse_rules(rules)
        (problem,) = error.value.problems
        assert detail in problem.message
        assert hint in problem.fix

    def test_every_mistake_is_listed_at_once(self) -> None:
        with pytest.raises(InvalidRules) as error:
            parse_rules({"users": "emial", "users.name": "name", "orders.card": {"transform": "x"}})
        assert [p.rule for p in error.value.problems] == ["users", "users", "orders.card"]
        assert isinstance(error.value, InvalidRequest) and error.value.status == 400
        assert "did you mean 'email'?" in (error.value.hint or "")

    def test_rules_must_be_a_mapping(self) -> None:
        with pytest.raises(InvalidRules, match="mapping"):
            parse_rules(["users.email"])


class TestPreflightPasses:
    def test_good_rules(self) -> None:
        result = preflight(SCHEMA, parse_rules(GOOD), PII)
        assert result.ok, [p.render() for p in result.problems]
        result.raise_for_problems()


class TestUnknownColumn:
    @pytest.mark.parametrize(
        ("rules", "column", "fix"),
        [
            ({"usres.email": "email"}, "usres.email", "did you mean 'users.email'?"),
            ({"users.emial": "email"}, "users.emial", "did you mean 'users.email'?"),
            ({"users.zzz": "email"}, "users.zzz", "users has: id, email"),
            ({"invoices.total": "null"}, "invoices.total", "correct the table's name"),
            (
                {"orders.placed_at": {"transform": "date_shift", "by": "usr_id"}},
                "orders.placed_at",
                "by: user_id",
            ),
        ],
        ids=["table", "column", "column-no-close-match", "table-no-close-match", "date-shift-by"],
    )
    def test_rule_for_a_missing_column(self, rules: dict[str, Any], column: str, fix: str) -> None:
        result = preflight(SCHEMA, with_rules(**{k.replace(".", "__"): v for k, v in rules.items()}), PII)
        (problem,) = [p for p in result.problems if p.kind == "unknown-column"]
        assert problem.column == column and fix in problem.fix


class TestPii:
    def test_unmasked_pii_column(self) -> None:
        result = preflight(SCHEMA, with_rules(users__name=None), PII)
        assert kinds(result.problems) == [("pii-unmasked", "users.name")]
        assert '{"users.name": "name"}' in result.problems[0].fix

    def test_kept_pii_column_is_refused_whatever_the_rule_says(self) -> None:
        result = preflight(SCHEMA, with_rules(users__name="keep"), PII)
        assert kinds(result.problems) == [("pii-kept", "users.name")]
        assert "never leave production" in result.problems[0].message

    def test_misspelt_pii_declaration(self) -> None:
        result = preflight(SCHEMA, parse_rules(GOOD), [*PII, "users.emial", "nonsense"])
        assert kinds(result.problems) == [
            ("unknown-pii-column", "nonsense"),
            ("unknown-pii-column", "users.emial"),
        ]
        assert "did you mean 'users.email'?" in result.problems[1].fix

    @pytest.mark.parametrize(
        ("column", "suggested"),
        [
            (Column("contact_email"), "email"),
            (Column("mobile"), "phone"),
            (Column("surname"), "last_name"),
            (Column("street_line"), "address"),
            (Column("born", "date"), "date_shift"),
            (Column("salary", "numeric(10,2)"), "null"),
            (Column("notes"), "hash"),
        ],
        ids=lambda c: c.name if isinstance(c, Column) else None,
    )
    def test_fix_suggests_a_fitting_rule(self, column: Column, suggested: str) -> None:
        schema = Schema((Table("people", (column,)),))
        (problem,) = preflight(schema, RuleSet(), [f"people.{column.name}"]).problems
        assert f'"{suggested}"' in problem.fix


class TestTypeMismatch:
    @pytest.mark.parametrize(
        ("rules", "column"),
        [
            ({"users.born_on": "email"}, "users.born_on"),
            ({"orders.user_id": "hash"}, "orders.user_id"),
            ({"users.api_token": {"transform": "hash", "length": 12}}, "users.api_token"),
            ({"users.nickname": "date_shift"}, "users.nickname"),
        ],
        ids=["text-into-date", "text-into-bigint", "short-hash-into-uuid", "date-into-text"],
    )
    def test_transform_the_column_cannot_hold(self, rules: dict[str, Any], column: str) -> None:
        result = preflight(SCHEMA, with_rules(**{k.replace(".", "__"): v for k, v in rules.items()}), PII)
        assert ("type-mismatch", column) in kinds(result.problems)

    def test_hash_of_32_digits_is_a_uuid(self) -> None:
        assert preflight(SCHEMA, with_rules(users__api_token="hash"), PII).ok

    @pytest.mark.parametrize(
        ("pg_type", "category"),
        [
            ("character varying(255)", "text"),
            ("TIMESTAMP(3) WITH TIME ZONE", "date"),
            ("numeric(10, 2)", "number"),
            ("text[]", None),
            ("mood", None),
        ],
    )
    def test_column_category(self, pg_type: str, category: str | None) -> None:
        assert column_category(pg_type) == category


class TestNotNull:
    def test_null_into_a_not_null_column(self) -> None:
        result = preflight(SCHEMA, with_rules(users__phone="null"), PII)
        assert kinds(result.problems) == [("not-null", "users.phone")]
        assert '{"users.phone": "phone"}' in result.problems[0].fix

    def test_null_into_a_primary_key(self) -> None:
        result = preflight(SCHEMA, with_rules(orders__id="null"), PII)
        assert kinds(result.problems) == [("not-null", "orders.id")]


class TestForeignKeys:
    def test_referencing_column_left_unmasked(self) -> None:
        result = preflight(SCHEMA, with_rules(orders__user_email=None), ())
        assert kinds(result.problems) == [("foreign-key-mismatch", "orders.user_email")]
        assert '{"orders.user_email": {"transform": "email", "unique": true}}' in result.problems[0].fix

    def test_referenced_column_left_unmasked(self) -> None:
        result = preflight(SCHEMA, with_rules(orders__user_id="hash"), ())
        (problem,) = [p for p in result.problems if p.kind == "foreign-key-mismatch"]
        assert problem.column == "orders.user_id"
        assert "mask users.id the same way" in problem.fix

    def test_different_options_break_the_relationship(self) -> None:
        result = preflight(SCHEMA, with_rules(orders__user_email={"transform": "hash"}), PII)
        assert ("foreign-key-mismatch", "orders.user_email") in kinds(result.problems)

    @given(
        mine=st.sampled_from(["email", "hash", "keep", "name"]),
        theirs=st.sampled_from(["email", "hash", "keep", "name"]),
    )
    def test_flagged_exactly_when_the_two_ends_differ(self, mine: str, theirs: str) -> None:
        schema = Schema(
            (
                Table("a", (Column("id"),)),
                Table("b", (Column("a_id"),), foreign_keys=(ForeignKey("a_id", ColumnRef("a", "id")),)),
            )
        )
        result = preflight(schema, parse_rules({"b.a_id": mine, "a.id": theirs}))
        assert (("foreign-key-mismatch", "b.a_id") in kinds(result.problems)) == (mine != theirs)

    def test_masked_foreign_keys_still_join(self) -> None:
        masker, rules = Masker("k" * 32), parse_rules(GOOD)
        users = [{"id": i, "email": f"person{i}@corp.io"} for i in range(50)]
        orders = [{"id": i, "user_id": i % 50, "user_email": f"person{i % 50}@corp.io"} for i in range(200)]

        def masked(table: str, row: dict[str, Any]) -> dict[str, Any]:
            return {k: masker.mask(rules.transform(ColumnRef(table, k)), v, row) for k, v in row.items()}

        emails = {masked("users", u)["email"] for u in users}
        assert all(masked("orders", o)["user_email"] in emails for o in orders)
        assert not emails & {u["email"] for u in users}


class TestUnique:
    @given(t=st.sampled_from([T("first_name"), T("name"), T("constant", value="x"), T("redact"), T("email")]))
    def test_collision_prone_transform_on_a_unique_column(self, t: Transform) -> None:
        assert not unique_safe(t)
        rules = with_rules(users__nickname=t.to_rule())
        result = preflight(SCHEMA, rules, PII)
        assert kinds(result.problems) == [("unique-collision", "users.nickname")]

    @given(
        t=st.sampled_from([T("hash"), T("hash", length=24), T("keep"), T("null"), T("email", unique=True)])
    )
    def test_unique_safe_transform_passes(self, t: Transform) -> None:
        assert preflight(SCHEMA, with_rules(users__nickname=t.to_rule()), PII).ok

    def test_fix_names_the_unique_form(self) -> None:
        rules = with_rules(users__email="email", orders__user_email="email")
        (problem,) = preflight(SCHEMA, rules, PII).problems
        assert problem.kind == "unique-collision" and problem.column == "users.email"
        assert '{"users.email": {"transform": "email", "unique": true}}' in problem.fix
        assert "every column that references it" in problem.fix

    def test_composite_unique_constraint(self) -> None:
        table = Table("members", (Column("team"), Column("email")), unique=(Unique(("team", "email")),))
        result = preflight(Schema((table,)), parse_rules({"members.email": "email"}))
        assert kinds(result.problems) == [("unique-collision", "members.email")]
        assert "unique (team, email)" in result.problems[0].message

    def test_null_under_nulls_not_distinct(self) -> None:
        table = Table("t", (Column("code"),), unique=(Unique(("code",), nulls_distinct=False),))
        result = preflight(Schema((table,)), parse_rules({"t.code": "null"}))
        assert kinds(result.problems) == [("unique-collision", "t.code")]
        assert "NULLS NOT DISTINCT" in result.problems[0].message

    def test_primary_key(self) -> None:
        result = preflight(SCHEMA, with_rules(orders__id="first_name"), PII)
        assert ("unique-collision", "orders.id") in kinds(result.problems)
        (problem,) = [p for p in result.problems if p.kind == "unique-collision"]
        assert "the primary key" in problem.message


class TestRefusal:
    def test_every_kind_found_in_one_run_in_a_stable_order(self) -> None:
        rules = with_rules(
            users__emial="email",
            users__name=None,
            users__phone="null",
            users__born_on="email",
            users__nickname="first_name",
            orders__user_email="keep",
        )
        result = preflight(SCHEMA, rules, [*PII, "users.ssn"])
        assert [p.kind for p in result.problems] == sorted(
            {p.kind for p in result.problems}, key=PROBLEM_KINDS.index
        )
        assert {p.kind for p in result.problems} == set(PROBLEM_KINDS)
        with pytest.raises(MaskingRefused) as error:
            result.raise_for_problems()
        assert error.value.to_problem()["type"].endswith("/masking-refused")
        assert len(error.value.to_problem()["problems"]) == len(result.problems)


class TestReport:
    def test_what_was_masked(self) -> None:
        rules = parse_rules({**GOOD, "orders.id": "keep"})
        counts = {"users.email": 50, ColumnRef("orders", "card"): 200, "orders.id": 200, "orders.total": 200}
        result = report(rules, counts, PII, key_fingerprint="2ad07874d8ad")
        by_column = {f"{c.table}.{c.column}": c for c in result.columns}
        assert set(by_column) == set(GOOD) | {"orders.id"}
        assert by_column["orders.card"].transform == "card_number(keep_last=4)"
        assert by_column["orders.card"].rows == 200 and by_column["orders.card"].pii
        assert by_column["users.nickname"].rows == 0 and not by_column["users.nickname"].pii
        assert not by_column["orders.id"].masked
        assert result.cells == 250
        assert result.tables == ("orders", "users")
        assert result.lines()[-1] == "250 values masked in 2 table(s), key 2ad07874d8ad"
        assert result.to_json()["columns"][0]["table"] == "orders"

    def test_counts_must_be_row_counts(self) -> None:
        with pytest.raises(ValueError, match="whole number"):
            report(parse_rules(GOOD), {"users.email": -1})

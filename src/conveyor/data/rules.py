"""Pure: masking rules as conveyor.yaml holds them, the pre-flight that refuses a clone before it
starts, and the report of what a clone masked.

`parse_rules` reads a mapping of column to transform (`{"users.email": "email", "orders.card":
{"transform": "card_number", "keep_last": 4}}`) and lists every mistake at once. `preflight` holds
the rules against a description of the source schema and the declared PII columns, and returns what
would leak personal data or break the copy: a PII column left unmasked or kept, a foreign key whose
two ends mask differently, a unique column whose transform can collide, NULL into a NOT NULL column,
a transform the column's type cannot hold, a rule for a column that is not there — each with its
fix. `report` says what was masked, for the clone's evidence: names and counts, never a value.
A masked clone always targets a non-production environment; `real` data never goes through here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, get_args

from conveyor.data.masking import (
    KEEP,
    Category,
    OptionValue,
    Transform,
    closest,
    for_unique,
    unique_safe,
)
from conveyor.errors import InvalidRequest

_IDENT = r"[A-Za-z_][A-Za-z0-9_$]*"
_REF = re.compile(rf"(?P<table>{_IDENT}(?:\.{_IDENT})?)\.(?P<column>{_IDENT})")
REF_RULE = "write table.column or schema.table.column (letters, digits, '_' and '$')"
RULE_EXAMPLE = '"email", "constant:n/a" or {"transform": "card_number", "keep_last": 4}'


@dataclass(frozen=True, order=True)
class ColumnRef:
    """A column by table and name; the table may carry its schema (`public.users`)."""

    table: str
    column: str

    @classmethod
    def parse(cls, text: object) -> ColumnRef:
        """`users.email` or `public.users.email`; InvalidRequest says how to write one."""
        match = _REF.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise InvalidRequest(f"{text!r} is not a column reference", hint=REF_RULE)
        return cls(match["table"], match["column"])

    def __str__(self) -> str:
        return f"{self.table}.{self.column}"


@dataclass(frozen=True)
class Rule:
    """One column and the transform its values go through."""

    column: ColumnRef
    transform: Transform


@dataclass(frozen=True)
class RuleSet:
    """Every rule of a clone, one per column; a column without a rule is copied unchanged."""

    rules: tuple[Rule, ...] = ()

    @cached_property
    def _by_column(self) -> dict[ColumnRef, Transform]:
        return {rule.column: rule.transform for rule in self.rules}

    def get(self, column: ColumnRef) -> Transform | None:
        """The column's rule, if it has one."""
        return self._by_column.get(column)

    def transform(self, column: ColumnRef) -> Transform:
        """What the clone does to the column: its rule, or `keep`."""
        return self._by_column.get(column, KEEP)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def to_mapping(self) -> dict[str, str | dict[str, OptionValue]]:
        """The rules in the form `parse_rules` reads."""
        return {str(rule.column): rule.transform.to_rule() for rule in self.rules}


@dataclass(frozen=True)
class RuleProblem:
    """One rule that cannot be read, and how to fix it."""

    rule: str
    message: str
    fix: str

    def render(self) -> str:
        """`rule 'users.email': what is wrong`."""
        return f"rule '{self.rule}': {self.message}" if self.rule else self.message


class InvalidRules(InvalidRequest):
    """Masking rules that cannot be read; lists every problem."""

    def __init__(self, problems: list[RuleProblem]) -> None:
        self.problems = problems
        detail = "; ".join(p.render() for p in problems)
        hint = "; ".join(dict.fromkeys(p.fix for p in problems if p.fix))
        super().__init__(detail, hint=hint, problems=[p.__dict__ for p in problems])


def parse_rules(rules: object) -> RuleSet:
    """Rules from their plain form, `table.column` to a transform; InvalidRules lists every mistake."""
    if not isinstance(rules, Mapping):
        raise InvalidRules(
            [
                RuleProblem(
                    "", "masking rules must be a mapping of column to transform", f"e.g. {RULE_EXAMPLE}"
                )
            ]
        )
    parsed: list[Rule] = []
    problems: list[RuleProblem] = []
    for key, spec in rules.items():
        column: ColumnRef | None = None
        transform: Transform | None = None
        for read in ("column", "transform"):
            try:
                if read == "column":
                    column = ColumnRef.parse(key)
                else:
                    transform = parse_transform(spec)
            except InvalidRequest as error:
                problems.append(RuleProblem(str(key), error.detail, error.hint or ""))
        if column is not None and transform is not None:
            parsed.append(Rule(column, transform))
    if problems:
        raise InvalidRules(problems)
    return RuleSet(tuple(sorted(parsed, key=lambda rule: rule.column)))


def parse_transform(spec: object) -> Transform:
    """A transform from its rule form: `"email"`, `"constant:n/a"` or a mapping with `transform`."""
    if isinstance(spec, str):
        name, colon, argument = spec.partition(":")
        if name == "constant":
            if not colon:
                raise InvalidRequest(
                    "constant needs its value", hint='write constant:<value>, e.g. "constant:n/a"'
                )
            return Transform("constant", (("value", argument),))
        transform = Transform(name)
        if colon:
            raise InvalidRequest(
                f"only constant takes a value after ':', and this rule is {name}",
                hint=f'give {name} options as a mapping: {{"transform": "{name}", …}}',
            )
        return transform
    if isinstance(spec, Mapping):
        given = spec.get("transform")
        if not isinstance(given, str):
            raise InvalidRequest(
                "a rule written as a mapping needs 'transform', the transform's name",
                hint='e.g. {"transform": "card_number", "keep_last": 4}',
            )
        return Transform(given, tuple((str(k), v) for k, v in spec.items() if k != "transform"))
    raise InvalidRequest(
        f"a rule is a transform's name or a mapping with 'transform', not {type(spec).__name__}",
        hint=f"e.g. {RULE_EXAMPLE}",
    )


@dataclass(frozen=True)
class Column:
    """A column of the source schema; `type` as PostgreSQL names it (`character varying(255)`)."""

    name: str
    type: str = "text"
    nullable: bool = True


@dataclass(frozen=True)
class ForeignKey:
    """One column of a table that references a column of another (a composite key is several)."""

    column: str
    references: ColumnRef


@dataclass(frozen=True)
class Unique:
    """A unique constraint or index over one or more columns."""

    columns: tuple[str, ...]
    nulls_distinct: bool = True
    """False for NULLS NOT DISTINCT: then two NULLs clash too."""


@dataclass(frozen=True)
class Table:
    """A table of the source schema, with the constraints the clone must keep."""

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    unique: tuple[Unique, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()

    def column(self, name: str) -> Column | None:
        """The column called `name`, if the table has one."""
        return next((c for c in self.columns if c.name == name), None)

    def not_null(self, name: str) -> bool:
        """Whether the column refuses NULL (declared NOT NULL, or part of the primary key)."""
        column = self.column(name)
        return name in self.primary_key or (column is not None and not column.nullable)


@dataclass(frozen=True)
class Schema:
    """The source database as the pre-flight needs it: tables, columns, keys, unique constraints."""

    tables: tuple[Table, ...]

    def table(self, name: str) -> Table | None:
        """The table called `name`, if there is one."""
        return next((t for t in self.tables if t.name == name), None)

    def column(self, ref: ColumnRef) -> Column | None:
        """The column a reference names, if it exists."""
        table = self.table(ref.table)
        return table.column(ref.column) if table else None


_TYPES: tuple[tuple[Category, str], ...] = (
    ("text", "text, character varying, varchar, character, char, bpchar, citext, name"),
    ("date", "date, timestamp, timestamptz, timestamp without time zone, timestamp with time zone"),
    (
        "number",
        "smallint, integer, int, bigint, int2, int4, int8, numeric, decimal, real, double precision, "
        "float4, float8, money, smallserial, serial, bigserial",
    ),
    ("boolean", "boolean, bool"),
    ("json", "json, jsonb"),
    ("bytes", "bytea"),
    ("uuid", "uuid"),
    ("other", "time, timetz, time without time zone, time with time zone, interval, inet, cidr"),
)
_CATEGORIES: dict[str, Category] = {
    name: category for category, names in _TYPES for name in names.split(", ")
}


def column_category(pg_type: str) -> Category | None:
    """What a PostgreSQL type holds; None for types the pre-flight does not judge (arrays, enums, domains)."""
    name = " ".join(re.sub(r"\(.*?\)", "", pg_type.lower()).split())
    return None if name.endswith("[]") else _CATEGORIES.get(name)


ProblemKind = Literal[
    "unknown-column",
    "unknown-pii-column",
    "pii-unmasked",
    "pii-kept",
    "type-mismatch",
    "not-null",
    "foreign-key-mismatch",
    "unique-collision",
]
PROBLEM_KINDS: tuple[ProblemKind, ...] = get_args(ProblemKind)


@dataclass(frozen=True)
class Problem:
    """A reason not to start the clone: which column, what is wrong, and the fix."""

    kind: ProblemKind
    column: str
    message: str
    fix: str

    def render(self) -> str:
        """The problem and its fix, in one line."""
        return f"{self.message} — {self.fix}"

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "column": self.column, "message": self.message, "fix": self.fix}


class MaskingRefused(InvalidRequest):
    """A masked clone the pre-flight refuses; lists every problem."""

    title = "Masked clone refused"
    slug = "masking-refused"

    def __init__(self, problems: tuple[Problem, ...]) -> None:
        self.problems = problems
        detail = f"{len(problems)} problem(s) with the masking rules: " + "; ".join(
            p.message for p in problems
        )
        super().__init__(detail, hint=problems[0].fix, problems=[p.to_json() for p in problems])


@dataclass(frozen=True)
class Preflight:
    """The pre-flight's verdict: no problems means the clone may start."""

    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        """Whether the clone may start."""
        return not self.problems

    def raise_for_problems(self) -> None:
        """Raise MaskingRefused when there is any problem."""
        if self.problems:
            raise MaskingRefused(self.problems)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "problems": [p.to_json() for p in self.problems]}


def preflight(schema: Schema, rules: RuleSet, pii: Iterable[ColumnRef | str] = ()) -> Preflight:
    """Every reason not to start a masked clone of `schema` with `rules`, before a row is read.

    `pii` names the columns conveyor.yaml declares personal. A column without a rule is copied
    unchanged, so it counts as `keep` on either end of a foreign key or in a unique constraint.
    """
    problems = [
        *_unknown_columns(schema, rules),
        *_pii(schema, rules, pii),
        *_fits(schema, rules),
        *_foreign_keys(schema, rules),
        *_unique(schema, rules),
    ]
    problems.sort(key=lambda p: (PROBLEM_KINDS.index(p.kind), p.column))
    return Preflight(tuple(problems))


def _rule_text(column: ColumnRef, transform: Transform) -> str:
    return json.dumps({str(column): transform.to_rule()})


def _unknown_columns(schema: Schema, rules: RuleSet) -> Iterator[Problem]:
    for rule in rules:
        ref = rule.column
        table = schema.table(ref.table)
        if table is None:
            close = closest(ref.table, [t.name for t in schema.tables])
            yield Problem(
                "unknown-column",
                str(ref),
                f"the rule for {ref} names table {ref.table}, which the schema does not have",
                f"did you mean '{close}.{ref.column}'?"
                if close
                else "correct the table's name or drop the rule",
            )
            continue
        names = [c.name for c in table.columns]
        if table.column(ref.column) is None:
            close = closest(ref.column, names)
            yield Problem(
                "unknown-column",
                str(ref),
                f"the rule for {ref} names a column that table {table.name} does not have",
                f"did you mean '{table.name}.{close}'?" if close else f"{table.name} has: {', '.join(names)}",
            )
        by = rule.transform.option("by") if rule.transform.name == "date_shift" else None
        if by is not None and table.column(by) is None:
            close = closest(by, names)
            yield Problem(
                "unknown-column",
                str(ref),
                f"the rule for {ref} shifts dates by {table.name}.{by}, which does not exist",
                f"did you mean by: {close}?"
                if close
                else f"name a column of {table.name}: {', '.join(names)}",
            )


_SUGGESTED = (
    ("mail", "email"),
    ("phone", "phone"),
    ("mobile", "phone"),
    ("first", "first_name"),
    ("given", "first_name"),
    ("last", "last_name"),
    ("surname", "last_name"),
    ("family", "last_name"),
    ("name", "name"),
    ("street", "address"),
    ("address", "address"),
    ("card", "card_number"),
    ("pan", "card_number"),
    ("iban", "iban"),
)


def suggested_rule(column: Column) -> str:
    """A sensible first rule for a personal column, guessed from its name and type."""
    category = column_category(column.type)
    if category == "date":
        return "date_shift"
    lowered = column.name.lower()
    if category in (None, "text"):
        for part, transform in _SUGGESTED:
            if part in lowered:
                return transform
        return "hash"
    return "null" if column.nullable else "constant:0"


def _pii(schema: Schema, rules: RuleSet, pii: Iterable[ColumnRef | str]) -> Iterator[Problem]:
    for declared in dict.fromkeys(pii):
        try:
            ref = declared if isinstance(declared, ColumnRef) else ColumnRef.parse(declared)
        except InvalidRequest as error:
            yield Problem("unknown-pii-column", str(declared), error.detail, error.hint or REF_RULE)
            continue
        table = schema.table(ref.table)
        column = table.column(ref.column) if table else None
        if table is None or column is None:
            candidates = [f"{t.name}.{c.name}" for t in schema.tables for c in t.columns]
            close = closest(str(ref), candidates)
            yield Problem(
                "unknown-pii-column",
                str(ref),
                f"{ref} is declared PII, and the schema has no such column: the one meant stays unprotected",
                f"correct the PII list in conveyor.yaml (did you mean '{close}'?)"
                if close
                else "correct or remove it in conveyor.yaml's PII list",
            )
            continue
        transform = rules.get(ref)
        example = json.dumps({str(ref): suggested_rule(column)})
        if transform is None:
            yield Problem(
                "pii-unmasked",
                str(ref),
                f"{ref} is declared PII and has no masking rule: its real values would be copied",
                f"add a rule, e.g. {example}",
            )
        elif not transform.kind.masks:
            yield Problem(
                "pii-kept",
                str(ref),
                f"{ref} is declared PII and its rule is keep: real values never leave production",
                f"mask it, e.g. {example}",
            )


_FITTING: dict[Category, str] = {
    "text": "use a transform that writes text (hash, redact, email, name, …), or check the column's type",
    "date": "use date_shift, null, constant:<value> or keep, or check the column's type",
    "uuid": 'use {"transform": "hash", "length": 32} (a valid uuid), null or keep',
}


def _fits(schema: Schema, rules: RuleSet) -> Iterator[Problem]:
    for rule in rules:
        table = schema.table(rule.column.table)
        column = table.column(rule.column.column) if table else None
        if table is None or column is None:
            continue
        t, ref = rule.transform, rule.column
        category = column_category(column.type)
        if category is not None and not t.fits(category):
            writes = " or ".join(sorted(t.kind.writes or ()))
            yield Problem(
                "type-mismatch",
                str(ref),
                f"{ref} is {column.type}, and {t} writes {writes}",
                _FITTING.get(category, "use null, constant:<value> or keep, or check the column's type"),
            )
        if t.name == "null" and table.not_null(column.name):
            yield Problem(
                "not-null",
                str(ref),
                f"{ref} is NOT NULL, and null would empty it",
                f"use a transform that writes a value, e.g. {json.dumps({str(ref): suggested_rule(column)})}",
            )


def _foreign_keys(schema: Schema, rules: RuleSet) -> Iterator[Problem]:
    for table in schema.tables:
        for fk in table.foreign_keys:
            here, there = ColumnRef(table.name, fk.column), fk.references
            mine, theirs = rules.transform(here), rules.transform(there)
            if mine == theirs:
                continue
            fix = (
                f"give {here} the rule of {there}: {_rule_text(here, theirs)}"
                if theirs != KEEP
                else f"mask {there} the same way ({_rule_text(there, mine)}) or drop the rule for {here}"
            )
            yield Problem(
                "foreign-key-mismatch",
                str(here),
                f"{here} references {there}, which is {_treatment(theirs)}, while {here} is "
                f"{_treatment(mine)}: masked rows would point at values that no longer exist",
                fix,
            )


def _treatment(transform: Transform) -> str:
    return "copied unchanged" if transform == KEEP else f"masked with {transform}"


def _unique(schema: Schema, rules: RuleSet) -> Iterator[Problem]:
    seen: set[ColumnRef] = set()
    for table in schema.tables:
        keys = [Unique(table.primary_key)] if table.primary_key else []
        for index, constraint in enumerate([*keys, *table.unique]):
            what = "the primary key" if keys and index == 0 else f"unique ({', '.join(constraint.columns)})"
            for name in constraint.columns:
                ref = ColumnRef(table.name, name)
                t = rules.transform(ref)
                if ref in seen or (t.name == "null" and table.not_null(name)):
                    continue  # a NOT NULL column under `null` is already a problem of its own
                if t.name == "null" and not constraint.nulls_distinct:
                    seen.add(ref)
                    yield Problem(
                        "unique-collision",
                        str(ref),
                        f"{ref} is in {what} with NULLS NOT DISTINCT, and null gives every row NULL",
                        f"use hash: {_rule_text(ref, Transform('hash'))}",
                    )
                elif not unique_safe(t):
                    seen.add(ref)
                    yield Problem(
                        "unique-collision",
                        str(ref),
                        f"{ref} is in {what}, and {t} can give two rows the same value",
                        _unique_fix(ref, t),
                    )


def _unique_fix(ref: ColumnRef, transform: Transform) -> str:
    try:
        safe = for_unique(transform)
    except InvalidRequest:
        return (
            f"use hash ({_rule_text(ref, Transform('hash'))}), which keeps distinct values distinct, "
            "or keep if the column holds nothing personal"
        )
    return f"use {_rule_text(ref, safe)}, and the same rule on every column that references it"


@dataclass(frozen=True)
class MaskedColumn:
    """One ruled column of a clone: its transform and how many rows went through it."""

    table: str
    column: str
    transform: str
    rows: int
    pii: bool
    masked: bool
    """False for a `keep` rule: the values were copied unchanged, on purpose."""

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "column": self.column,
            "transform": self.transform,
            "rows": self.rows,
            "pii": self.pii,
            "masked": self.masked,
        }


@dataclass(frozen=True)
class MaskingReport:
    """What a masked clone did, column by column, for its evidence."""

    columns: tuple[MaskedColumn, ...]
    key_fingerprint: str | None = None

    @property
    def cells(self) -> int:
        """Values that went through a masking transform (`keep` rules not counted)."""
        return sum(c.rows for c in self.columns if c.masked)

    @property
    def tables(self) -> tuple[str, ...]:
        """The tables with at least one rule."""
        return tuple(sorted({c.table for c in self.columns}))

    def lines(self) -> list[str]:
        """The report as text: one line per column, then the totals."""
        width = max((len(f"{c.table}.{c.column}") for c in self.columns), default=0)
        lines = [
            f"{c.table + '.' + c.column:<{width}}  {c.transform:<24} {c.rows:>12,} rows"
            + ("  (PII)" if c.pii else "")
            for c in self.columns
        ]
        key = f", key {self.key_fingerprint}" if self.key_fingerprint else ""
        lines.append(f"{self.cells:,} values masked in {len(self.tables)} table(s){key}")
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "columns": [c.to_json() for c in self.columns],
            "cells": self.cells,
            "tables": list(self.tables),
            "key_fingerprint": self.key_fingerprint,
        }


def report(
    rules: RuleSet,
    counts: Mapping[ColumnRef | str, int],
    pii: Iterable[ColumnRef | str] = (),
    key_fingerprint: str | None = None,
) -> MaskingReport:
    """What a clone masked, for its evidence: every rule's column, transform and rows, never a value.

    `counts` holds the rows the clone wrote per column (`ColumnRef` or "table.column"); a ruled
    column it never reached counts 0. Counts of columns without a rule are not masking evidence and
    are left out. `key_fingerprint` is `Masker.fingerprint`, which tells keys apart without revealing one.
    """
    rows: dict[ColumnRef, int] = {}
    for key, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"the row count of {key} must be a whole number ≥ 0, not {count!r}")
        rows[key if isinstance(key, ColumnRef) else ColumnRef.parse(key)] = count
    personal = {p if isinstance(p, ColumnRef) else ColumnRef.parse(p) for p in pii}
    columns = tuple(
        MaskedColumn(
            table=rule.column.table,
            column=rule.column.column,
            transform=str(rule.transform),
            rows=rows.get(rule.column, 0),
            pii=rule.column in personal,
            masked=rule.transform.kind.masks,
        )
        for rule in rules
    )
    return MaskingReport(columns, key_fingerprint)

"""Pure: which rows a masked clone keeps, planned as SQL over the source's catalog (ADR 0015).

A subset rule (`conveyor.yaml`: `services.NAME.data.subset`) keeps the rows of one table that match a
SQL condition and/or a share picked by a hash of the primary key (the same rows in every clone).
`plan_subset` turns the rules and the catalog into a `SubsetPlan`:

1. **Seed**, parents first: a ruled table keeps the rows its rule matches; a table without a rule
   that references a subsetted table keeps the rows whose references all point at kept rows (or
   are NULL). Tables that neither have a rule nor reference a subsetted one are copied whole.
2. **Close** upwards until nothing changes: every row a kept row references is kept too (self
   references and cycles included), so every foreign key of the clone holds.

The clone runs the plan's statements in one snapshot of the source, in temporary tables that the
source transaction's rollback removes; it then copies `source_of(table)` instead of the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.data.catalog import Catalog, CatalogForeignKey, CatalogTable, quote_ident, table_order
from conveyor.errors import InvalidRequest

HASH_BUCKETS = 1_000_000
"""The percent sample compares a row's key hash modulo this with percent × 10 000."""


def where_problem(text: str) -> str | None:
    """Why `text` is not one SQL condition (a second statement, a syntax error); None when it is."""
    import pglast

    if not text.strip():
        return "the condition is empty"
    try:
        statements = pglast.parse_sql(f"SELECT 1 WHERE {text}")
    except pglast.parser.ParseError as error:
        return f"the condition is not valid SQL: {error}"
    if len(statements) != 1:
        return "the condition holds more than one statement"
    stmt: Any = statements[0].stmt
    extra = (stmt.fromClause, stmt.groupClause, stmt.havingClause, stmt.sortClause, stmt.limitCount)
    if any(extra) or getattr(stmt, "op", None) is None or stmt.op.value != 0:
        return "the condition must be a single boolean expression, without FROM, ORDER BY, LIMIT or UNION"
    if "--" in text or "/*" in text:
        return "the condition may not hold a comment (it would hide the rest of the statement it goes into)"
    return _unsafe_part(stmt.whereClause)


# Functions a subset condition may call: pure, row-local ones. Anything else (a subquery, a function
# that reads files, changes settings or sleeps) could reach beyond the table on the source database.
SAFE_FUNCTIONS = frozenset(
    {
        "now", "date_trunc", "date_part", "extract", "age", "to_timestamp", "to_date", "make_date",
        "make_interval", "lower", "upper", "length", "char_length", "btrim", "trim", "substr",
        "substring", "left", "right", "starts_with", "abs", "mod", "floor", "ceil", "round",
    }
)  # fmt: skip


def _unsafe_part(where: Any) -> str | None:
    """A part of the condition that reaches beyond the row: a subquery or a function not listed safe."""
    from pglast import ast
    from pglast.visitors import Visitor

    found: list[str] = []

    class Check(Visitor):
        def visit_SubLink(self, ancestors: Any, node: Any) -> None:
            found.append("a subquery")

        def visit_FuncCall(self, ancestors: Any, node: Any) -> None:
            name = str(node.funcname[-1].sval).lower()
            schema = [str(part.sval).lower() for part in node.funcname[:-1]]
            if name not in SAFE_FUNCTIONS or schema not in ([], ["pg_catalog"]):
                found.append(f"the function {name}()")

    if isinstance(where, ast.Node):
        Check()(where)
    if found:
        return (
            f"the condition may only compare the row's own columns; it uses {found[0]} "
            f"(allowed functions: {', '.join(sorted(SAFE_FUNCTIONS))})"
        )
    return None


@dataclass(frozen=True)
class SubsetRule:
    """What one table keeps: rows matching `where`, a `percent` sample of them, or both."""

    where: str | None = None
    percent: float | None = None

    def __post_init__(self) -> None:
        if self.where is None and self.percent is None:
            raise InvalidRequest("a subset rule needs where or percent", hint="e.g. {percent: 10}")
        if self.percent is not None and not 0 < self.percent <= 100:
            raise InvalidRequest(f"percent {self.percent} is not in (0, 100]", hint="e.g. {percent: 10}")
        if self.where is not None and (problem := where_problem(self.where)) is not None:
            raise InvalidRequest(f"subset condition {self.where!r}: {problem}")

    def describe(self) -> str:
        """`10% where created_at > …`, for the report."""
        parts = [f"{self.percent:g}%"] if self.percent is not None else []
        if self.where is not None:
            parts.append(f"where {self.where}")
        return " ".join(parts)


@dataclass(frozen=True)
class SubsetPlan:
    """The statements that build the kept rows, in order, and where each table's rows come from."""

    seed: tuple[str, ...]
    close: tuple[str, ...]
    """Run repeatedly, in this order, until none of them inserts a row."""
    sources: Mapping[str, str]
    """Table ref → the temporary table that holds its kept rows (tables copied whole are absent)."""
    rules: Mapping[str, SubsetRule]
    cleanup: tuple[str, ...] = ()

    def source_of(self, table: CatalogTable) -> str:
        """What to copy the table's rows from: its temporary table of kept rows, or the table itself."""
        temp = self.sources.get(table.ref)
        return quote_ident(temp) if temp else f"ONLY {table.sql}"

    @property
    def empty(self) -> bool:
        """Whether every table is copied whole."""
        return not self.sources


class SubsetProblem(InvalidRequest):
    """Subset rules that do not fit the source schema."""

    title = "Subset refused"
    slug = "subset-refused"


def _match(alias: str, columns: tuple[str, ...], other: str, other_columns: tuple[str, ...]) -> str:
    return " AND ".join(
        f"{alias}.{quote_ident(a)} = {other}.{quote_ident(b)}"
        for a, b in zip(columns, other_columns, strict=True)
    )


def _any_null(alias: str, columns: tuple[str, ...]) -> str:
    return " OR ".join(f"{alias}.{quote_ident(c)} IS NULL" for c in columns)


def _sample(table: CatalogTable, percent: float) -> str:
    keys = table.primary_key or tuple(c.name for c in table.columns)
    text = "ROW(" + ", ".join(f"t.{quote_ident(k)}" for k in keys) + ")::text"
    return f"abs(hashtextextended({text}, 0) % {HASH_BUCKETS}) < {round(percent * HASH_BUCKETS / 100)}"


def plan_subset(catalog: Catalog, rules: Mapping[str, SubsetRule]) -> SubsetPlan:
    """The statements that keep what `rules` ask plus every row a kept row references.

    SubsetProblem names a rule for a table the source does not have, or a percent rule on a table
    nothing identifies rows of.
    """
    missing = [ref for ref in rules if catalog.table(ref) is None]
    if missing:
        from conveyor.data.masking import did_you_mean

        names = [t.ref for t in catalog.tables]
        raise SubsetProblem(
            f"subset rule for {', '.join(sorted(missing))}: no such table in the source",
            hint=did_you_mean(missing[0], names, "the source has"),
        )
    order = table_order(catalog)
    # filtered: a ruled table, or one that references a filtered table (to a fixpoint: cycles too)
    marked = set(rules)
    grew = True
    while grew:
        grew = False
        for table in order:
            if table.ref not in marked and any(
                fk.ref_table in marked and fk.ref_table != table.ref for fk in table.foreign_keys
            ):
                marked.add(table.ref)
                grew = True
    filtered: dict[str, str] = {}
    seed: list[str] = []
    for index, table in enumerate(order):
        rule = rules.get(table.ref)
        if table.ref not in marked:
            continue
        # parents seeded before this table; a parent later in a cycle is reached by the closure
        parents = [fk for fk in table.foreign_keys if fk.ref_table in filtered and fk.ref_table != table.ref]
        temp = f"_conveyor_keep_{index}"
        filtered[table.ref] = temp
        conditions: list[str] = []
        if rule is not None:
            if rule.where is not None:
                conditions.append(f"({rule.where})")
            if rule.percent is not None and rule.percent < 100:
                conditions.append(_sample(table, rule.percent))
        else:
            conditions += [_points_at_kept(fk, filtered[fk.ref_table]) for fk in parents]
        where = " AND ".join(conditions) or "true"
        seed.append(
            f"CREATE TEMPORARY TABLE {quote_ident(temp)} AS SELECT * FROM ONLY {table.sql} AS t WHERE {where}"
        )
        seed.append(f"ANALYZE {quote_ident(temp)}")
    close: list[str] = []
    by_ref = {t.ref: t for t in catalog.tables}
    for table in reversed(order):
        if table.ref not in filtered:
            continue
        for fk in table.foreign_keys:
            parent = by_ref.get(fk.ref_table)
            if parent is None or parent.ref not in filtered:
                continue
            close.append(_add_referenced(quote_ident(filtered[table.ref]), fk, parent, filtered[parent.ref]))
    cleanup = tuple(f"DROP TABLE IF EXISTS {quote_ident(temp)}" for temp in filtered.values())
    return SubsetPlan(tuple(seed), tuple(close), dict(filtered), dict(rules), cleanup)


def _points_at_kept(fk: CatalogForeignKey, parent_temp: str) -> str:
    exists = (
        f"EXISTS (SELECT 1 FROM {quote_ident(parent_temp)} AS p WHERE "
        f"{_match('p', fk.ref_columns, 't', fk.columns)})"
    )
    return f"({_any_null('t', fk.columns)} OR {exists})"


def _add_referenced(child_temp: str, fk: CatalogForeignKey, parent: CatalogTable, parent_temp: str) -> str:
    kept = quote_ident(parent_temp)
    return (
        f"INSERT INTO {kept} SELECT t.* FROM ONLY {parent.sql} AS t "
        f"WHERE EXISTS (SELECT 1 FROM {child_temp} AS c "
        f"WHERE {_match('c', fk.columns, 't', fk.ref_columns)}) "
        f"AND NOT EXISTS (SELECT 1 FROM {kept} AS k WHERE {_match('k', fk.ref_columns, 't', fk.ref_columns)})"
    )

"""Pure: the expand/contract check. Would these migrations break a version that is running somewhere?

Every version expects the schema its own migrations build (its `Shape`). A pending migration is
checked statement by statement against the shape of every version that runs in any environment:
dropping, renaming or retyping a table or column that version still needs, adding a NOT NULL column
without a default to a table it writes, or making a column it does not write NOT NULL, is refused with
the rule, the statement, who needs the old shape, and the safe multi-release sequence instead. The
same shapes answer the rollback question: can an older version run against the schema as it is now?
New columns must be declared for masking (`services.NAME.data.masking`) or as `not_sensitive`.
Alembic's version table is bookkeeping (`is_bookkeeping`): no rule applies to it (ADR 0018).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from conveyor.migrations.files import Migration
from conveyor.migrations.schema import Op, Shape, statements


@dataclass(frozen=True)
class Running:
    """A version some environment runs, and the schema it expects."""

    environment: str
    version: str
    shape: Shape

    def __str__(self) -> str:
        return f"{self.version} in {self.environment}"


@dataclass(frozen=True)
class Violation:
    """One statement refused, and why."""

    rule: str
    migration: str
    line: int
    statement: str
    why: str
    safe: tuple[str, ...]
    needed_by: tuple[str, ...] = ()

    def render(self) -> str:
        lines = [
            f"{self.migration}, line {self.line}: {self.why} [{self.rule}]",
            f"  {_short(self.statement)}",
        ]
        lines += [f"  safe sequence: {step}" for step in self.safe]
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "migration": self.migration,
            "line": self.line,
            "statement": self.statement,
            "why": self.why,
            "safe_sequence": list(self.safe),
            "needed_by": list(self.needed_by),
        }


def is_bookkeeping(table: str) -> bool:
    """Alembic's version table (`alembic_version`, or `alembic_version_NAME` when several services
    share a database): migration history, not application data, so no version needs its shape."""
    name = table.rsplit(".", 1)[-1]
    return name == "alembic_version" or name.startswith("alembic_version_")


def _short(statement: str, limit: int = 160) -> str:
    flat = re.sub(r"\s+", " ", statement)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _unused_step(ref: str) -> str:
    return (
        f"release a version that no longer reads or writes {ref} and says so in a migration "
        f"(`-- conveyor: unused {ref}`), and promote it to every environment"
    )


def _safe_steps(op: Op) -> tuple[str, ...]:
    table, column = op.table, op.column
    ref = f"{table}.{column}" if column else table
    if op.kind == "drop_column" or op.kind == "drop_table":
        return (_unused_step(ref), f"then release the migration that drops {ref}")
    if op.kind in ("rename_column", "alter_type"):
        new = f"{table}.{op.new_name}" if op.new_name else f"{table}.{column}_new"
        what = f"a new nullable column {new}" + (f" of type {op.type}" if op.kind == "alter_type" else "")
        return (
            f"release 1 (expand): add {what}; the code writes both {ref} and {new}",
            f"release 2 (migrate): backfill {new} from {ref} in batches; the code reads {new}, "
            f"and a migration marks `-- conveyor: unused {ref}`",
            f"release 3 (contract), once release 2 runs everywhere: drop {ref}",
        )
    if op.kind == "rename_table":
        return (
            f"create {op.new_name} beside {table} (or a view named {op.new_name}); the code writes both",
            f"backfill, switch reads, and mark `-- conveyor: unused {table}`",
            f"drop {table} once that version runs everywhere",
        )
    if op.kind == "add_column":
        return (
            f"add {ref} as a nullable column (or NOT NULL with a DEFAULT); the code writes it",
            "backfill the existing rows",
            f"make {ref} NOT NULL in a later release, once every running version writes it",
        )
    if op.kind == "set_not_null":
        return (
            f"first promote a version that writes {ref} to every environment listed",
            f"then release SET NOT NULL on {ref} (or give it a DEFAULT first)",
        )
    return ()


def _widening(old: str, new: str) -> bool:
    """A type change every reader of the old type copes with: varchar(n) to varchar(m ≥ n) or text."""
    if new in ("text", "varchar", "character varying"):
        return old.startswith(("varchar", "character varying", "text"))
    old_len, new_len = re.fullmatch(r"varchar\((\d+)\)", old), re.fullmatch(r"varchar\((\d+)\)", new)
    return bool(old_len and new_len and int(new_len[1]) >= int(old_len[1]))


def _breaks(op: Op, before: Shape, version: Shape) -> str | None:
    """Why `op`, run on a schema shaped `before`, breaks a version expecting `version` (None: it does not)."""
    table, column = op.table, op.column
    if op.kind == "drop_table" and version.needs_table(table):
        return f"drops table {table}, which it still uses"
    if op.kind == "rename_table" and version.needs_table(table):
        return f"renames table {table}, which it still uses by that name"
    if column is None:
        return None
    ref = f"{table}.{column}"
    if op.kind == "drop_column" and version.needs_column(table, column):
        return f"drops {ref}, which it still reads or writes"
    if op.kind == "rename_column" and version.needs_column(table, column):
        return f"renames {ref}, which it still uses by that name"
    if op.kind == "alter_type" and version.needs_column(table, column):
        current = before.column(table, column)
        if current is None or not _widening(current.type, op.type or ""):
            return (
                f"changes the type of {ref}, which it reads and writes as {current.type if current else '?'}"
            )
    if op.kind == "add_column" and op.not_null and not op.has_default and version.needs_table(table):
        return f"adds {ref} NOT NULL without a default; its inserts into {table} leave it out"
    if op.kind == "set_not_null" and version.needs_table(table) and column not in version.tables[table]:
        current = before.column(table, column)
        if current is None or not current.has_default:
            return f"makes {ref} NOT NULL, but it does not write that column"
    return None


_RULES = {
    "drop_table": "contract-drop-table",
    "rename_table": "contract-rename-table",
    "drop_column": "contract-drop-column",
    "rename_column": "contract-rename-column",
    "alter_type": "contract-change-type",
    "add_column": "expand-required-column",
    "set_not_null": "expand-not-null-unwritten",
}


def check(
    pending: Sequence[Migration],
    current: Shape,
    running: Sequence[Running],
    declared: Callable[[str, str], bool] | None = None,
) -> list[Violation]:
    """Every way `pending` (in order, on a schema shaped `current`) would break a running version.

    `declared(table, column)` says whether a new column has a masking rule or is marked not
    sensitive; None skips that check.
    """
    violations: list[Violation] = []
    shape = current
    for migration in pending:
        for statement in statements(migration.sql, file=migration.file):
            if statement.forbidden:
                violations.append(
                    Violation(
                        "forbidden-statement",
                        migration.file,
                        statement.line,
                        statement.text,
                        f"a migration may not run this: {statement.forbidden}",
                        ("do it outside the release, by hand and audited, or drop it from the migration",),
                    )
                )
            for op in statement.ops:
                if is_bookkeeping(op.table):
                    shape = shape.apply(op)
                    continue
                violations += _against_running(op, shape, running, migration, statement.line, statement.text)
                if op.kind == "add_column" and op.column and declared and not declared(op.table, op.column):
                    violations.append(_undeclared(op, migration, statement.line, statement.text))
                shape = shape.apply(op)
    return violations


def _against_running(
    op: Op, before: Shape, running: Sequence[Running], migration: Migration, line: int, text: str
) -> list[Violation]:
    broken = [(r, why) for r in running if (why := _breaks(op, before, r.shape)) is not None]
    if not broken:
        return []
    needed = tuple(str(r) for r, _ in broken)
    why = f"{broken[0][1]}: needed by {', '.join(needed)}"
    return [Violation(_RULES[op.kind], migration.file, line, text, why, _safe_steps(op), needed)]


def _undeclared(op: Op, migration: Migration, line: int, text: str) -> Violation:
    ref = f"{op.table}.{op.column}"
    return Violation(
        "undeclared-sensitivity",
        migration.file,
        line,
        text,
        f"new column {ref} has no masking rule and is not marked not sensitive",
        (
            f"add `{ref}: RULE` under services.SERVICE.data.masking (e.g. email, name, hash) "
            "if it can hold personal data",
            f"or list {ref} under services.SERVICE.data.not_sensitive",
        ),
    )


def rollback_problems(target: Shape, now: Shape, version: str) -> list[str]:
    """Why `version` (expecting `target`) cannot run against the schema as it is `now` (empty: it can)."""
    problems: list[str] = []
    for table, columns in sorted(target.tables.items()):
        if not target.needs_table(table) or is_bookkeeping(table):
            continue
        if table not in now.tables:
            problems.append(f"{version} uses table {table}, which a later migration dropped or renamed")
            continue
        for column, expected in sorted(columns.items()):
            if not target.needs_column(table, column):
                continue
            actual = now.column(table, column)
            if actual is None:
                problems.append(
                    f"{version} uses {table}.{column}, which a later migration dropped or renamed"
                )
            elif actual.type != expected.type and not _widening(expected.type, actual.type):
                problems.append(
                    f"{version} uses {table}.{column} as {expected.type}; it is {actual.type} now"
                )
        for column, actual in sorted(now.tables[table].items()):
            if column not in columns and actual.not_null and not actual.has_default:
                problems.append(
                    f"{table}.{column} is NOT NULL without a default now, and {version} does not write it"
                )
    return problems


def pending_of(migrations: Iterable[Migration], applied: Iterable[str]) -> list[Migration]:
    done = set(applied)
    return [m for m in migrations if m.id not in done]

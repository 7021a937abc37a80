"""Pure: what migrations do to the schema, read with PostgreSQL's own parser (pglast).

`statements` splits a file into statements and names the schema operations each performs (create or
drop a table, add, drop, rename or retype a column, NOT NULL and defaults). `Shape` is the schema a
version expects: the result of its own migrations, minus what it marked `-- conveyor: unused
table.column` (a version that no longer reads or writes a column says so; the contract step that
drops it is allowed once no environment runs a version that still needs it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from conveyor.errors import InvalidRequest

OpKind = Literal[
    "create_table",
    "drop_table",
    "rename_table",
    "add_column",
    "drop_column",
    "rename_column",
    "alter_type",
    "set_not_null",
    "drop_not_null",
    "set_default",
    "drop_default",
]
_UNUSED = re.compile(r"^\s*--\s*conveyor:\s*unused\s+(?P<ref>\S+)\s*$", re.MULTILINE | re.IGNORECASE)
_REF = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*){0,2}$")
_SERIAL = {"serial", "serial2", "serial4", "serial8", "smallserial", "bigserial"}


@dataclass(frozen=True)
class Op:
    """One change a statement makes to a table."""

    kind: OpKind
    table: str
    column: str | None = None
    new_name: str | None = None
    type: str | None = None
    not_null: bool = False
    has_default: bool = False


@dataclass(frozen=True)
class Statement:
    """One SQL statement of a migration file, where it starts, and what it changes."""

    text: str
    line: int
    ops: tuple[Op, ...]
    concurrent: bool = False
    """CREATE/DROP INDEX CONCURRENTLY and the like: PostgreSQL refuses to run it inside a transaction."""
    forbidden: str | None = None
    """Why a migration may not run this (it would change who it runs as, or reach outside the database)."""


_ROLE_SETTINGS = {"role", "session_authorization"}
_ROLE_STATEMENTS = {"CreateRoleStmt", "AlterRoleStmt", "AlterRoleSetStmt", "DropRoleStmt", "GrantRoleStmt"}
_FORBIDDEN_CALLS = {
    "set_config",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "lo_import",
    "lo_export",
}


def _forbidden(stmt: Any, text: str) -> str | None:
    """Why `stmt` may not run in a migration: it changes the role it runs as, manages roles, or reaches
    files and programs on the server (a migration runs as the database's owner role, nothing more)."""
    from pglast import ast
    from pglast.visitors import Visitor

    kind = type(stmt).__name__
    if isinstance(stmt, ast.VariableSetStmt) and (stmt.name in _ROLE_SETTINGS or stmt.name is None):
        return "it changes the role the migration runs as"
    if kind in _ROLE_STATEMENTS:
        return "it manages roles; provisioning does that (`conveyor resource provision`)"
    if isinstance(stmt, ast.CopyStmt) and (stmt.is_program or stmt.filename):
        return "COPY to or from a server file or program reaches outside the database"
    calls: list[str] = []

    class Calls(Visitor):
        def visit_FuncCall(self, ancestors: Any, node: Any) -> None:
            calls.append(str(node.funcname[-1].sval).lower())

    Calls()(stmt)
    bad = sorted(set(calls) & _FORBIDDEN_CALLS)
    if bad:
        return f"it calls {bad[0]}()"
    if kind in ("DoStmt", "CreateFunctionStmt") and re.search(
        r"\b(role|session_authorization|set_config)\b", text, re.IGNORECASE
    ):
        return "its body changes the role it runs as (SET ROLE, set_config) or names one"
    return None


class MigrationSqlInvalid(InvalidRequest):
    """A migration file is not SQL PostgreSQL can parse, or a directive is malformed."""

    title = "Migration SQL invalid"
    slug = "migration-sql-invalid"


def statements(sql: str, *, file: str) -> list[Statement]:
    """The statements of `sql`, each with its 1-based line and its schema operations."""
    import pglast

    try:
        raws = pglast.parse_sql(sql)
    except pglast.parser.ParseError as exc:
        location = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else 0
        line = sql[: max(location, 0)].count("\n") + 1  # pglast's offsets count characters, not bytes
        raise MigrationSqlInvalid(
            f"{file}, line {line}: {exc.args[0]}", hint="fix the SQL; PostgreSQL's own parser read it"
        ) from None
    found = []
    for raw in raws:
        start = raw.stmt_location or 0
        length = raw.stmt_len or len(sql) - start
        chunk = sql[start : start + length]
        stripped = chunk.lstrip()
        line = sql[:start].count("\n") + chunk[: len(chunk) - len(stripped)].count("\n") + 1
        found.append(
            Statement(
                text=stripped.strip(),
                line=line,
                ops=tuple(_ops(raw.stmt)),
                concurrent=bool(getattr(raw.stmt, "concurrent", False)),
                forbidden=_forbidden(raw.stmt, chunk),
            )
        )
    return found


def unused_marks(sql: str, *, file: str) -> list[str]:
    """`table` or `table.column` named by `-- conveyor: unused REF` lines."""
    refs = [m["ref"] for m in _UNUSED.finditer(sql)]
    bad = [ref for ref in refs if not _REF.match(ref)]
    if bad:
        raise MigrationSqlInvalid(
            f"{file}: {bad[0]!r} is not a table or table.column",
            hint="write `-- conveyor: unused users.user_id` (or a table name)",
        )
    return [ref.lower() for ref in refs]


def _lower(name: object) -> str:
    return str(name).lower()


def _table(relation: Any) -> str:
    name = str(relation.relname).lower()
    schema = relation.schemaname
    return name if schema in (None, "public") else f"{str(schema).lower()}.{name}"


def _type_text(type_name: Any) -> str:
    from pglast.stream import RawStream

    return str(RawStream()(type_name)).lower()


def _column_def(column: Any) -> tuple[str, bool, bool]:
    """(type, NOT NULL, has a default) of a ColumnDef."""
    from pglast import enums

    type_text = _type_text(column.typeName)
    kinds = {c.contype for c in column.constraints or ()}
    not_null = bool(kinds & {enums.ConstrType.CONSTR_NOTNULL, enums.ConstrType.CONSTR_PRIMARY})
    defaults = {
        enums.ConstrType.CONSTR_DEFAULT,
        enums.ConstrType.CONSTR_IDENTITY,
        enums.ConstrType.CONSTR_GENERATED,
    }
    has_default = bool(kinds & defaults) or type_text in _SERIAL
    return type_text, not_null, has_default


def _ops(stmt: Any) -> list[Op]:
    from pglast import ast, enums

    if isinstance(stmt, ast.CreateStmt):
        table = _table(stmt.relation)
        ops = [Op("create_table", table)]
        for element in stmt.tableElts or ():
            if isinstance(element, ast.ColumnDef):
                type_text, not_null, has_default = _column_def(element)
                ops.append(
                    Op("add_column", table, _lower(element.colname), None, type_text, not_null, has_default)
                )
        return ops
    if isinstance(stmt, ast.DropStmt) and stmt.removeType == enums.ObjectType.OBJECT_TABLE:
        return [
            Op("drop_table", ".".join(n.sval for n in obj).lower().removeprefix("public."))
            for obj in stmt.objects or ()
        ]
    if isinstance(stmt, ast.RenameStmt) and stmt.relation is not None:
        table = _table(stmt.relation)
        if stmt.renameType == enums.ObjectType.OBJECT_COLUMN:
            return [Op("rename_column", table, _lower(stmt.subname), _lower(stmt.newname))]
        if stmt.renameType == enums.ObjectType.OBJECT_TABLE:
            return [Op("rename_table", table, None, _lower(stmt.newname))]
        return []
    if isinstance(stmt, ast.AlterTableStmt) and stmt.objtype == enums.ObjectType.OBJECT_TABLE:
        return [op for cmd in stmt.cmds or () if (op := _alter(_table(stmt.relation), cmd)) is not None]
    return []


def _alter(table: str, cmd: Any) -> Op | None:
    from pglast import ast, enums

    kind = enums.AlterTableType
    column = cmd.name.lower() if cmd.name else None
    if cmd.subtype == kind.AT_AddColumn and isinstance(cmd.def_, ast.ColumnDef):
        type_text, not_null, has_default = _column_def(cmd.def_)
        return Op("add_column", table, _lower(cmd.def_.colname), None, type_text, not_null, has_default)
    simple: dict[Any, OpKind] = {
        kind.AT_DropColumn: "drop_column",
        kind.AT_SetNotNull: "set_not_null",
        kind.AT_DropNotNull: "drop_not_null",
    }
    if cmd.subtype in simple:
        return Op(simple[cmd.subtype], table, column)
    if cmd.subtype == kind.AT_AlterColumnType and isinstance(cmd.def_, ast.ColumnDef):
        return Op("alter_type", table, column, None, _type_text(cmd.def_.typeName))
    if cmd.subtype == kind.AT_ColumnDefault:
        return Op("set_default" if cmd.def_ is not None else "drop_default", table, column)
    return None


# ---- the shape a version expects -------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    type: str
    not_null: bool = False
    has_default: bool = False


@dataclass(frozen=True)
class Shape:
    """Tables and their columns after a run of migrations; `unused` holds what the code gave up."""

    tables: Mapping[str, Mapping[str, Column]] = field(default_factory=dict)
    unused: frozenset[str] = frozenset()

    def needs_table(self, table: str) -> bool:
        return table in self.tables and table not in self.unused

    def needs_column(self, table: str, column: str) -> bool:
        return (
            self.needs_table(table)
            and column in self.tables[table]
            and f"{table}.{column}" not in self.unused
        )

    def column(self, table: str, column: str) -> Column | None:
        return self.tables.get(table, {}).get(column)

    def apply(self, op: Op) -> Shape:
        """The shape after `op` (an op on a table this shape does not know changes nothing)."""
        tables = {name: dict(columns) for name, columns in self.tables.items()}
        unused = set(self.unused)
        columns = tables.get(op.table)
        if op.kind == "create_table":
            tables[op.table] = {}
        elif op.kind == "drop_table":
            tables.pop(op.table, None)
            unused = {u for u in unused if u != op.table and not u.startswith(f"{op.table}.")}
        elif op.kind == "rename_table" and columns is not None and op.new_name:
            tables[op.new_name] = tables.pop(op.table)
        elif columns is None:
            pass
        elif op.kind == "add_column" and op.column:
            columns[op.column] = Column(op.type or "", op.not_null, op.has_default)
        elif op.kind == "drop_column" and op.column:
            columns.pop(op.column, None)
            unused.discard(f"{op.table}.{op.column}")
        elif op.kind == "rename_column" and op.column in columns and op.new_name:
            columns[op.new_name] = columns.pop(op.column)
        elif op.column in columns:
            assert op.column is not None
            current = columns[op.column]
            if op.kind == "alter_type":
                columns[op.column] = replace(current, type=op.type or current.type)
            elif op.kind in ("set_not_null", "drop_not_null"):
                columns[op.column] = replace(current, not_null=op.kind == "set_not_null")
            elif op.kind in ("set_default", "drop_default"):
                columns[op.column] = replace(current, has_default=op.kind == "set_default")
        return Shape(tables, frozenset(unused))

    def mark_unused(self, refs: Iterable[str]) -> Shape:
        return Shape(self.tables, self.unused | frozenset(refs))


def shape_of(migrations: Iterable[Any]) -> Shape:
    """The shape `migrations` (conveyor.migrations.files.Migration, in order) leave behind."""
    shape = Shape()
    for migration in migrations:
        for statement in statements(migration.sql, file=migration.file):
            for op in statement.ops:
                shape = shape.apply(op)
        shape = shape.mark_unused(unused_marks(migration.sql, file=migration.file))
    return shape

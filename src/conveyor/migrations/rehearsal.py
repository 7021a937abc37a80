"""The `migration-rehearsal` gate: a release's pending migrations, tried on a throwaway clone first.

The environment's database (or `clone_from`'s) is dumped in one snapshot and restored into a
scratch database owned by the same owner role; row counts and an order-independent checksum of
every table are taken; the pending migrations run there through the real runner (same lock,
timeouts and records), with each statement timed; tables the migrations do not touch must come out
identical, every constraint valid and every index usable; the declared way back (`.down.sql`) is
run and must restore every table's columns and rows. The clone is dropped whatever happens. The
evidence goes on the promotion (ADR 0014).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.backups import pgtools
from conveyor.errors import first_line
from conveyor.migrations import runner
from conveyor.migrations.files import Migration
from conveyor.migrations.schema import statements
from conveyor.pipeline.outcome import GateOutcome
from conveyor.resources import postgres

_TABLES = (
    "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg\\_%%' AND c.relname <> %s ORDER BY 1, 2"
)


@dataclass(frozen=True)
class TableState:
    rows: int
    checksum: int
    columns: tuple[str, ...]


def _name(schema: str, table: str) -> str:
    return table if schema == "public" else f"{schema}.{table}"


def table_states(conn: Any) -> dict[str, TableState]:
    """Rows, an order-independent checksum of every row's text, and the column list of each table."""
    from psycopg import sql

    found: dict[str, TableState] = {}
    for schema, table in conn.execute(_TABLES, (runner.TABLE,)).fetchall():
        ident = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        rows, checksum = conn.execute(
            sql.SQL("SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0) FROM {} AS t").format(
                ident
            )
        ).fetchone()
        columns = tuple(
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                (schema, table),
            )
        )
        found[_name(schema, table)] = TableState(int(rows), int(checksum), columns)
    return found


def _touched(pending: Sequence[Migration]) -> set[str]:
    """Tables a pending migration names in a schema change or writes to (any statement mentioning them)."""
    touched: set[str] = set()
    for migration in pending:
        for statement in statements(migration.sql, file=migration.file):
            touched |= {op.table for op in statement.ops} | {
                op.new_name for op in statement.ops if op.new_name
            }
            if not statement.ops:  # an UPDATE, INSERT, DELETE or anything else: read its target tables
                touched |= _written_tables(statement.text)
    return touched


def _written_tables(text: str) -> set[str]:
    import pglast
    from pglast import ast

    found: set[str] = set()
    for raw in pglast.parse_sql(text):
        relation = getattr(raw.stmt, "relation", None)
        if isinstance(relation, ast.RangeVar):
            schema = relation.schemaname
            found.add(str(relation.relname) if schema in (None, "public") else f"{schema}.{relation.relname}")
    return found


def _not_valid(conn: Any) -> tuple[set[str], set[str]]:
    """(constraints left NOT VALID, indexes left invalid by a failed CONCURRENTLY build)."""
    constraints = conn.execute(
        "SELECT conrelid::regclass::text || '.' || conname FROM pg_constraint WHERE NOT convalidated"
    ).fetchall()
    indexes = conn.execute("SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid").fetchall()
    return {r[0] for r in constraints}, {r[0] for r in indexes}


def rehearse(
    server: str,
    source: str,
    owner: str,
    migrations: Sequence[Migration],
    *,
    service: str,
    release: str,
    lock_timeout_ms: int,
    statement_timeout_ms: int,
    test_rollback: bool = True,
    integrity: Sequence[str] = ("counts", "checksums"),
    login: tuple[str, str] | None = None,
) -> GateOutcome:
    """Clone `source` on `server`, apply what is pending there, check integrity, and drop the clone.

    `login` (role, password): the environment's app login, which migrates the clone as it migrates
    the real database; without it the server's own connection does, switching to `owner`.
    """
    clone = f"{source[:40]}_rehearsal_{uuid.uuid4().hex[:8]}"
    evidence: dict[str, Any] = {"source": source, "clone": clone}
    began = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="conveyor-rehearsal-") as tmp:
            dump = Path(tmp) / "source.dump"
            with pgtools.exported_snapshot(server, source) as (snapshot, _):
                pgtools.dump(server, source, snapshot, dump, lambda: None)
            pgtools.create_scratch(server, clone, owner)
            pgtools.restore(server, clone, owner, dump, lambda: None)
        evidence["clone_seconds"] = round(time.perf_counter() - began, 3)
        clone_url = postgres.with_database(server, clone)
        return _on_clone(
            postgres.as_login(clone_url, *login) if login else clone_url,
            owner,
            migrations,
            evidence,
            service=service,
            release=release,
            lock_timeout_ms=lock_timeout_ms,
            statement_timeout_ms=statement_timeout_ms,
            test_rollback=test_rollback,
            integrity=integrity,
        )
    finally:
        evidence["total_seconds"] = round(time.perf_counter() - began, 3)
        try:
            pgtools.drop(server, clone)
        except Exception as exc:  # the verdict stands; the leftover is named so it can be dropped
            evidence["cleanup"] = f"could not drop the clone {clone}: {first_line(exc)}"


def _on_clone(
    url: str,
    owner: str,
    migrations: Sequence[Migration],
    evidence: dict[str, Any],
    *,
    service: str,
    release: str,
    lock_timeout_ms: int,
    statement_timeout_ms: int,
    test_rollback: bool,
    integrity: Sequence[str],
) -> GateOutcome:
    with postgres.connect(url) as conn:
        applied = runner.read_applied(conn, service)
        pending = [m for m in migrations if m.id not in applied]
        evidence["pending"] = [m.id for m in pending]
        if not pending:
            return GateOutcome("passed", "nothing to rehearse: every migration is applied", evidence)
        before = table_states(conn)
        constraints_before, indexes_before = _not_valid(conn)
        evidence["rows_before"] = {name: state.rows for name, state in before.items()}
        try:
            run = runner.migrate(
                conn,
                owner,
                migrations,
                service=service,
                release=f"{release} (rehearsal)",
                lock_timeout_ms=lock_timeout_ms,
                statement_timeout_ms=statement_timeout_ms,
            )
        except runner.MigrationFailed as exc:
            return GateOutcome("failed", f"the migration failed on the clone: {exc.detail}", evidence)
        evidence["applied"] = run.applied
        after = table_states(conn)
        touched = _touched(pending)
        failures = []
        for name, state in before.items():
            now = after.get(name)
            if name in touched:
                continue
            if now is None:
                failures.append(f"{name} disappeared though no migration names it")
            elif "counts" in integrity and now.rows != state.rows:
                failures.append(
                    f"{name} has {now.rows} rows, had {state.rows}, though no migration writes it"
                )
            elif "checksums" in integrity and now.checksum != state.checksum:
                failures.append(f"{name}'s rows changed though no migration writes it")
        evidence["touched"] = sorted(touched)
        evidence["rows_after"] = {name: state.rows for name, state in after.items()}
        constraints_after, indexes_after = _not_valid(conn)
        failures += [
            f"index {i} is invalid (a failed concurrent build)"
            for i in sorted(indexes_after - indexes_before)
        ]
        unvalidated = sorted(constraints_after - constraints_before)
        if unvalidated:  # a NOT VALID constraint is a legitimate step; the next release validates it
            evidence["not_validated"] = unvalidated
        if failures:
            return GateOutcome(
                "failed", "integrity check failed on the clone: " + "; ".join(failures), evidence
            )
        slowest: dict[str, Any] | None = max(
            (s | {"migration": a["id"]} for a in run.applied for s in a["statements"]),
            key=lambda s: s["ms"],
            default=None,
        )
        evidence["slowest_statement"] = slowest
        reason = (
            f"rehearsed {', '.join(m.id for m in pending)} on a clone of {evidence['source']} "
            f"({sum(s.rows for s in before.values())} rows): "
            f"{sum(a['duration_ms'] for a in run.applied):.0f} ms"
        )
        if slowest is not None:
            where = f"line {slowest['line']} of {slowest['migration']}"
            reason += f", slowest statement {slowest['ms']:.0f} ms ({where})"
        if test_rollback:
            back = _roll_back(conn, owner, service, pending, before, statement_timeout_ms)
            evidence["rollback"] = back
            if back["result"] == "failed":
                return GateOutcome(
                    "failed", f"{reason}; the declared rollback failed: {back['why']}", evidence
                )
            reason += f"; rollback: {back['result']}"
        return GateOutcome("passed", reason, evidence)


def _roll_back(
    conn: Any,
    owner: str,
    service: str,
    pending: Sequence[Migration],
    before: dict[str, TableState],
    statement_timeout_ms: int,
) -> dict[str, Any]:
    """Run the pending migrations' .down.sql in reverse; every table's columns and rows must come back."""
    import psycopg
    from psycopg import sql

    missing = [m.id for m in pending if m.down is None]
    if missing:
        return {"result": "not declared", "missing": missing}
    began = time.perf_counter()
    try:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
        conn.execute(f"SET statement_timeout = {int(statement_timeout_ms)}")
        for migration in reversed(pending):
            assert migration.down is not None
            parsed = statements(migration.down, file=migration.file.replace(".sql", ".down.sql"))
            # like the runner: one transaction, unless a statement (DROP INDEX CONCURRENTLY) refuses one
            with conn.transaction() if not any(s.concurrent for s in parsed) else contextlib.nullcontext():
                for statement in parsed:
                    conn.execute(statement.text)
                conn.execute(
                    f"DELETE FROM {runner.TABLE} WHERE service = %s AND id = %s", (service, migration.id)
                )
    except psycopg.Error as exc:
        return {"result": "failed", "why": first_line(exc)}
    finally:
        conn.execute("RESET statement_timeout")
        conn.execute("RESET ROLE")
    after = table_states(conn)
    differ = sorted(
        name
        for name in set(before) | set(after)
        if name not in after
        or name not in before
        or (after[name].columns, after[name].rows) != (before[name].columns, before[name].rows)
    )
    if differ:
        return {
            "result": "failed",
            "why": f"the schema or row counts differ afterwards in {', '.join(differ)}",
        }
    return {"result": "passed", "seconds": round(time.perf_counter() - began, 3)}

"""PostgreSQL edge: apply a service's pending migrations to an environment's database (ADR 0014).

One runner at a time per database (a session advisory lock); each migration runs in its own
transaction with `lock_timeout` and `statement_timeout` set, as the database's owner role, and is
recorded in `conveyor_schema_migrations` with its checksum and per-statement timings in the same
transaction — so a failed migration leaves nothing behind and is simply run again. A file with a
statement PostgreSQL refuses inside a transaction (CREATE INDEX CONCURRENTLY) runs statement by
statement; write such statements idempotently (IF NOT EXISTS). An applied file whose checksum
changed is refused before anything runs.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import Conflict, ConveyorError, InvalidRequest, first_line
from conveyor.migrations.files import Migration
from conveyor.migrations.schema import statements

TABLE = "conveyor_schema_migrations"
LOCK_KEY = 0x636F6E7665796F72 & 0x7FFFFFFFFFFFFFFF  # "conveyor": one runner per database
LOCK_WAIT = 60.0


@dataclass(frozen=True)
class Applied:
    id: str
    checksum: str
    applied_at: str
    release: str
    duration_ms: float


@dataclass
class Run:
    """What one call applied, with timings, and what was already there."""

    applied: list[dict[str, Any]] = field(default_factory=list)
    already: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"applied": self.applied, "already_applied": self.already}


class ChecksumChanged(Conflict):
    title = "Applied migration changed"
    slug = "migration-checksum-changed"


class MigrationFailed(InvalidRequest):
    """A migration's SQL failed on the server; its transaction rolled back."""

    status = 422
    title = "Migration failed"
    slug = "migration-failed"


class MigrationBusy(ConveyorError):
    """Another runner holds the lock, or a table lock was not granted in time: try again later."""

    status = 409
    title = "Migration waiting for a lock"
    slug = "migration-busy"


def read_applied(conn: Any, service: str) -> dict[str, Applied]:
    """The migrations of `service` the database records as applied (none before the table exists).

    Every service of an environment shares its database; each keeps its own history in it.
    """
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()[0]
    if not exists:
        return {}
    rows = conn.execute(
        f"SELECT id, checksum, applied_at::text, release, duration_ms FROM {TABLE} "
        "WHERE service = %s ORDER BY id",
        (service,),
    ).fetchall()
    return {r[0]: Applied(r[0], r[1], r[2], r[3], float(r[4])) for r in rows}


def changed(migrations: Sequence[Migration], applied: dict[str, Applied]) -> list[str]:
    """Applied files whose bytes differ from the artifact's, described."""
    return [
        f"{m.file} was applied with {applied[m.id].checksum[:19]}… (release {applied[m.id].release}); "
        f"the artifact's file is {m.checksum[:19]}…"
        for m in migrations
        if m.id in applied and applied[m.id].checksum != m.checksum
    ]


def refuse_changed(migrations: Sequence[Migration], applied: dict[str, Applied]) -> None:
    problems = changed(migrations, applied)
    if problems:
        raise ChecksumChanged(
            "an applied migration was edited: " + "; ".join(problems),
            hint="never edit an applied migration: restore the file and add a new migration for the change",
        )


def refuse_forbidden(pending: Sequence[Migration]) -> None:
    """A statement that would change who the migration runs as (or reach outside the database) refuses
    the whole run before anything is applied: migrations run as the database's owner role, no more."""
    for migration in pending:
        for statement in statements(migration.sql, file=migration.file):
            if statement.forbidden:
                raise MigrationFailed(
                    f"{migration.file}, line {statement.line}: "
                    f"a migration may not run this: {statement.forbidden}",
                    hint="do it outside the release, by hand and audited, and drop it from the migration",
                )


def migrate(
    conn: Any,
    owner: str,
    migrations: Sequence[Migration],
    *,
    service: str,
    release: str,
    lock_timeout_ms: int,
    statement_timeout_ms: int,
    before: Callable[[list[Migration], dict[str, Applied]], None] | None = None,
) -> Run:
    """Apply what is pending of `migrations` on `conn` (autocommit), under the advisory lock.

    `before(pending, applied)` runs under the lock before anything is applied; it may refuse.
    """
    import psycopg
    from psycopg import sql

    deadline = time.monotonic() + LOCK_WAIT
    while not conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]:
        if time.monotonic() > deadline:
            raise MigrationBusy(
                f"another migration run has held this database's lock for over {LOCK_WAIT:.0f} s",
                hint="it is retried; `conveyor migrations status ENV` shows what is applied",
            )
        time.sleep(0.2)
    try:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (service text NOT NULL, id text NOT NULL, "
            "version integer NOT NULL, checksum text NOT NULL, release text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now(), duration_ms double precision NOT NULL, "
            "statements jsonb NOT NULL, PRIMARY KEY (service, id))"
        )
        applied = read_applied(conn, service)
        refuse_changed(migrations, applied)
        pending = [m for m in migrations if m.id not in applied]
        refuse_forbidden(pending)
        if before is not None:
            before(pending, applied)
        run = Run(already=len(migrations) - len(pending))
        for migration in pending:
            run.applied.append(
                _apply_one(conn, migration, service, release, lock_timeout_ms, statement_timeout_ms)
            )
        return run
    except psycopg.errors.LockNotAvailable as exc:
        raise MigrationBusy(
            f"a table lock was not granted within {lock_timeout_ms} ms: {first_line(exc)}",
            hint="a long transaction holds it; the migration is retried, and nothing of it was applied",
        ) from None
    except psycopg.OperationalError as exc:
        raise MigrationBusy(
            f"the database connection failed: {first_line(exc)}", hint="the migration is retried"
        ) from None
    except psycopg.Error as exc:  # preparing the run (the role, the history table) failed
        raise MigrationFailed(
            f"could not prepare the migration run as {owner}: {first_line(exc)}",
            hint="check the database was provisioned by Conveyor (`conveyor resource show ENV`)",
        ) from None
    finally:
        if not conn.closed:
            with contextlib.suppress(psycopg.Error):  # a broken connection releases the lock by itself
                conn.execute("RESET ROLE")
                conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


def _apply_one(
    conn: Any,
    migration: Migration,
    service: str,
    release: str,
    lock_timeout_ms: int,
    statement_timeout_ms: int,
) -> dict[str, Any]:
    import psycopg

    parsed = statements(migration.sql, file=migration.file)
    in_transaction = not any(s.concurrent for s in parsed)
    timings: list[dict[str, Any]] = []
    began = time.perf_counter()
    current = parsed[0] if parsed else None
    try:
        if in_transaction:
            with conn.transaction():
                conn.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
                conn.execute(f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}")
                for current in parsed:
                    timings.append(_timed(conn, current.text, current.line))
                _record(conn, migration, service, release, began, timings)
        else:
            conn.execute(f"SET lock_timeout = {int(lock_timeout_ms)}")
            conn.execute(f"SET statement_timeout = {int(statement_timeout_ms)}")
            for current in parsed:
                timings.append(_timed(conn, current.text, current.line))
            _record(conn, migration, service, release, began, timings)
            conn.execute("RESET lock_timeout")
            conn.execute("RESET statement_timeout")
    except (psycopg.errors.LockNotAvailable, psycopg.OperationalError):
        raise  # retried by the caller: nothing of this migration was recorded
    except psycopg.errors.QueryCanceled as exc:
        where = f"{migration.file}, line {current.line}" if current else migration.file
        raise MigrationFailed(
            f"{where} ran longer than the statement timeout ({statement_timeout_ms} ms): {first_line(exc)}",
            hint="raise migrations.statement_timeout, or split the work (backfill in batches)",
        ) from None
    except psycopg.Error as exc:
        where = f"{migration.file}, line {current.line}" if current else migration.file
        rolled = "rolled back" if in_transaction else "stopped at that statement (no transaction)"
        raise MigrationFailed(
            f"{where} failed: {first_line(exc)}; the migration {rolled}",
            hint="fix it in a new artifact version; nothing of this migration was recorded",
        ) from None
    return {
        "id": migration.id,
        "duration_ms": round((time.perf_counter() - began) * 1000, 1),
        "statements": timings,
    }


def _timed(conn: Any, text: str, line: int) -> dict[str, Any]:
    began = time.perf_counter()
    conn.execute(text)
    return {"line": line, "ms": round((time.perf_counter() - began) * 1000, 2), "sql": text[:200]}


def _record(
    conn: Any, migration: Migration, service: str, release: str, began: float, timings: list[dict[str, Any]]
) -> None:
    conn.execute(
        f"INSERT INTO {TABLE} (service, id, version, checksum, release, duration_ms, statements) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            service,
            migration.id,
            migration.version,
            migration.checksum,
            release,
            (time.perf_counter() - began) * 1000,
            json.dumps(timings),
        ),
    )

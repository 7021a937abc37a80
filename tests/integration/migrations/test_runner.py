"""The migration runner against the real PostgreSQL: lock, timeouts, checksums, nothing half-applied."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from conveyor.migrations import runner
from conveyor.migrations.files import parse_files
from conveyor.resources import postgres
from tests.conftest import _pg_connect, drop_pg_database, make_pg_database

pytestmark = pytest.mark.integration

FIRST = {
    "0001_users.sql": b"CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text);"
    b"\n"
    b"INSERT INTO users (email) SELECT 'u' || g || '@example.test' FROM generate_series(1, 500) g;\n",
    "0002_index.sql": b"CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email ON users (email);\n",
}


@pytest.fixture
def database() -> Iterator[tuple[str, str]]:
    """A throwaway database owned by its own role, as `conveyor resource provision` makes it."""
    url, name = make_pg_database()
    owner = f"owner_{uuid.uuid4().hex[:10]}"
    with _pg_connect(url) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(owner)))
        conn.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(name), sql.Identifier(owner))
        )
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(owner)))
    try:
        yield url, owner
    finally:
        drop_pg_database(name)
        with _pg_connect(url.rsplit("/", 1)[0] + "/postgres") as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(owner)))


def migrate(url: str, owner: str, files: dict[str, bytes], **options: Any) -> runner.Run:
    options.setdefault("lock_timeout_ms", 2000)
    options.setdefault("statement_timeout_ms", 30_000)
    with _pg_connect(url) as conn:
        return runner.migrate(conn, owner, parse_files(files), service="web", release="web 1.0.0", **options)


def applied(url: str) -> list[tuple[str, str]]:
    with _pg_connect(url) as conn:
        return [(a.id, a.release) for a in runner.read_applied(conn, "web").values()]


def test_applies_in_order_records_checksums_and_timings_then_nothing_twice(database: tuple[str, str]) -> None:
    url, owner = database
    run = migrate(url, owner, FIRST)
    assert [a["id"] for a in run.applied] == ["0001_users", "0002_index"]
    assert [s["line"] for s in run.applied[0]["statements"]] == [1, 2]
    assert all(s["ms"] >= 0 for s in run.applied[0]["statements"])
    assert applied(url) == [("0001_users", "web 1.0.0"), ("0002_index", "web 1.0.0")]
    with _pg_connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (500,)
        table_owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'users'").fetchone()
        assert table_owner == (owner,)  # objects belong to the owner role, so both app logins can use them
    again = migrate(url, owner, FIRST)
    assert again.applied == [] and again.already == 2


def test_an_edited_applied_migration_is_refused_before_anything_runs(database: tuple[str, str]) -> None:
    url, owner = database
    migrate(url, owner, FIRST)
    edited = {**FIRST, "0001_users.sql": FIRST["0001_users.sql"] + b"-- tidied\n"}
    edited["0003_more.sql"] = b"ALTER TABLE users ADD COLUMN name text;"
    with pytest.raises(runner.ChecksumChanged, match=r"0001_users\.sql was applied with sha256:"):
        migrate(url, owner, edited)
    assert [i for i, _ in applied(url)] == ["0001_users", "0002_index"]  # 0003 did not run either


def test_a_failing_migration_leaves_nothing_of_itself(database: tuple[str, str]) -> None:
    url, owner = database
    migrate(url, owner, FIRST)
    broken = {
        **FIRST,
        "0003_half.sql": b"ALTER TABLE users ADD COLUMN name text;\n\n"
        b"ALTER TABLE users ADD CONSTRAINT one UNIQUE (nope);\n",
    }
    with pytest.raises(runner.MigrationFailed, match=r"0003_half.sql, line 3 failed: column \"nope\""):
        migrate(url, owner, broken)
    with _pg_connect(url) as conn:
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'users'"
            )
        }
    assert columns == {"id", "email"}  # the first statement rolled back with the second
    assert "0003_half" not in dict(applied(url))


def test_a_lock_held_elsewhere_times_out_and_nothing_is_applied(database: tuple[str, str]) -> None:
    url, owner = database
    migrate(url, owner, FIRST)
    later = {**FIRST, "0003_name.sql": b"ALTER TABLE users ADD COLUMN name text;"}
    holder = psycopg.connect(url)
    try:
        holder.execute("SELECT * FROM users LIMIT 1")  # a long transaction holding ACCESS SHARE on users
        with pytest.raises(runner.MigrationBusy, match="not granted within 300 ms"):
            migrate(url, owner, later, lock_timeout_ms=300)
    finally:
        holder.close()
    assert "0003_name" not in dict(applied(url))
    assert [a["id"] for a in migrate(url, owner, later).applied] == [
        "0003_name"
    ]  # applies once the lock is free


def test_two_runners_at_once_apply_each_migration_once(database: tuple[str, str]) -> None:
    url, owner = database
    slow = {**FIRST, "0003_slow.sql": b"SELECT pg_sleep(0.5);\nALTER TABLE users ADD COLUMN name text;"}
    runs: list[runner.Run] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            runs.append(migrate(url, owner, slow))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(len(r.applied) for r in runs) == [0, 3]
    assert sorted(r.already for r in runs) == [0, 3]


def test_a_migration_that_would_change_its_role_is_refused_before_anything_runs(
    database: tuple[str, str],
) -> None:
    url, owner = database
    escalating = {
        **FIRST,
        "0003_escalate.sql": b"CREATE TABLE a (id int);\nRESET ROLE;\nALTER ROLE postgres NOLOGIN;\n",
    }
    with pytest.raises(
        runner.MigrationFailed, match=r"0003_escalate\.sql, line 2: a migration may not run this"
    ):
        migrate(url, owner, escalating)
    assert dict(applied(url)) == {}  # refused before 0001 ran: nothing of the run applied


# a migration that hides its way back to the connection's own role from the statement check
ESCAPE = {
    "0001_escape.sql": b"DO $$ BEGIN EXECUTE 'RESET ' || chr(82) || 'OLE'; "
    b"EXECUTE 'CREATE TABLE escaped AS SELECT current_user::text AS who, "
    b"(SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS super'; END $$;\n",
}


def test_a_migration_run_as_the_login_can_escape_to_no_more_than_the_login(
    database: tuple[str, str],
) -> None:
    # what apply_for does: connect as the environment's app login (a member of the owner role)
    url, owner = database
    login, password = f"{owner}_a", uuid.uuid4().hex
    with _pg_connect(url) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(sql.Identifier(login), sql.Identifier(owner))
        )
    try:
        postgres.set_login(url, login, password)
        runner.refuse_forbidden(parse_files(ESCAPE))  # the statement check does not see through it
        migrate(postgres.as_login(url, login, password), owner, ESCAPE)
        with _pg_connect(url) as conn:
            assert conn.execute("SELECT who, super FROM escaped").fetchone() == (login, False)
    finally:
        drop_pg_database(url.rsplit("/", 1)[1])  # its objects go before the role can
        with _pg_connect(url.rsplit("/", 1)[0] + "/postgres") as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))

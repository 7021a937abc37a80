"""The rehearsal on a real clone: timings, integrity of untouched tables, the declared way back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from psycopg import sql

from conveyor.migrations import runner
from conveyor.migrations.files import parse_files
from conveyor.migrations.rehearsal import rehearse
from tests.conftest import PG_ADMIN_URL, _pg_connect

pytestmark = pytest.mark.integration

APPLIED = {
    "0001_orders.sql": b"CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL);\n"
    b"CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers, total bigint);\n",
}
NEXT = {
    **APPLIED,
    "0002_currency.sql": b"ALTER TABLE orders ADD COLUMN currency text;\n"
    b"UPDATE orders SET currency = 'EUR';\n",
    "0002_currency.down.sql": b"ALTER TABLE orders DROP COLUMN currency;\n",
}


@pytest.fixture
def source() -> Iterator[tuple[str, str]]:
    """A provisioned-like database with 20,000 orders and the first migration applied."""
    name = f"rh_{uuid.uuid4().hex[:10]}"
    owner = name
    with _pg_connect(PG_ADMIN_URL) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(owner)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner))
        )
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    with _pg_connect(url) as conn:
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(owner)))
        runner.migrate(
            conn,
            owner,
            parse_files(APPLIED),
            service="shop",
            release="shop 1.0.0",
            lock_timeout_ms=2000,
            statement_timeout_ms=60_000,
        )
        conn.execute("INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 2000) g")
        conn.execute("INSERT INTO orders SELECT g, 1 + g % 2000, g * 7 FROM generate_series(1, 20000) g")
    try:
        yield name, owner
    finally:
        with _pg_connect(PG_ADMIN_URL) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            leftovers = conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{name}_rehearsal_%",)
            )
            assert leftovers.fetchall() == []  # the clone is always dropped
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(owner)))


def rehearsed(name: str, owner: str, files: dict[str, bytes], **options: object):  # type: ignore[no-untyped-def]
    return rehearse(
        PG_ADMIN_URL, name, owner, parse_files(files), service="shop", release="shop 2.0.0",
        lock_timeout_ms=2000, statement_timeout_ms=60_000, **options,  # type: ignore[arg-type]
    )  # fmt: skip


def test_a_rehearsal_times_each_statement_checks_integrity_and_rolls_back(source: tuple[str, str]) -> None:
    name, owner = source
    outcome = rehearsed(name, owner, NEXT)
    assert outcome.verdict == "passed", outcome.reason
    evidence = outcome.evidence
    assert evidence["pending"] == ["0002_currency"]
    assert evidence["rows_before"] == {"customers": 2000, "orders": 20000} == evidence["rows_after"]
    assert evidence["touched"] == ["orders"]
    (applied,) = evidence["applied"]
    assert [s["line"] for s in applied["statements"]] == [1, 2] and applied["duration_ms"] > 0
    assert evidence["rollback"]["result"] == "passed"
    assert "rehearsed 0002_currency on a clone of" in outcome.reason and "rollback: passed" in outcome.reason
    with _pg_connect(f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}") as conn:  # the source is untouched
        assert "0002_currency" not in runner.read_applied(conn, "shop")


def test_a_migration_that_changes_a_table_it_does_not_name_fails_the_rehearsal(
    source: tuple[str, str],
) -> None:
    name, owner = source
    sneaky = {
        **APPLIED,
        # a trigger-like side effect the statement list does not show: rows of customers change
        "0002_sneaky.sql": b"ALTER TABLE orders ADD COLUMN note text;\n"
        b"DO $$ BEGIN UPDATE customers SET name = upper(name); END $$;\n",
    }
    outcome = rehearsed(name, owner, sneaky, test_rollback=False)
    assert outcome.verdict == "failed"
    assert "customers's rows changed though no migration writes it" in outcome.reason


def test_a_failing_migration_or_rollback_fails_the_gate_and_says_where(source: tuple[str, str]) -> None:
    name, owner = source
    broken = {
        **APPLIED,
        "0002_broken.sql": b"ALTER TABLE orders ADD COLUMN x text;\nALTER TABLE nope ADD COLUMN y text;\n",
    }
    failed = rehearsed(name, owner, broken)
    assert failed.verdict == "failed"
    assert '0002_broken.sql, line 2 failed: relation "nope" does not exist' in failed.reason
    bad_way_back = {**NEXT, "0002_currency.down.sql": b"ALTER TABLE orders DROP COLUMN total;\n"}
    back = rehearsed(name, owner, bad_way_back)
    assert back.verdict == "failed" and "the declared rollback failed" in back.reason
    assert "orders" in back.reason
    undeclared = {k: v for k, v in NEXT.items() if not k.endswith(".down.sql")}
    assert rehearsed(name, owner, undeclared).evidence["rollback"] == {
        "result": "not declared",
        "missing": ["0002_currency"],
    }

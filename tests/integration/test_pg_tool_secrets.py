"""No password on a PostgreSQL tool's command line: backups, restores and masked clones, for real.

A throwaway login role with a password stands in for an admin URL that carries one (local
connections are trusted, so the password is not what lets the tools in: the test is about where it
travels). pg_dump and pg_restore are reached through wrappers in CONVEYOR_PG_BINDIR that record
their own /proc/PID/cmdline (what `ps` shows every user) and a hash of the PGPASSWORD they were given,
then exec the real tool.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from psycopg import sql

from conveyor.backups import pgtools
from conveyor.data import clone as cloning
from conveyor.data.masking import Masker
from conveyor.data.rules import parse_rules
from conveyor.data.subset import plan_subset
from conveyor.errors import Conflict
from conveyor.resources.postgres import Names, with_database
from tests.conftest import PG_ADMIN_URL, _pg_connect

pytestmark = pytest.mark.integration

# one file per launch: a pipeline's pg_dump and pg_restore start at the same moment
WRAPPER = """#!/bin/sh
tr '\\0' ' ' < /proc/$$/cmdline > '{log}'/$$.cmdline
printf %s "$PGPASSWORD" | sha256sum | cut -d' ' -f1 > '{log}'/$$.password
exec '{real}' "$@"
"""


@dataclass
class Throwaway:
    role: str
    password: str
    server: str  # the admin URL, password included
    source: str  # a database with two related tables
    log: Path

    def launches(self) -> list[str]:
        """Each launched tool's command line, as /proc showed it."""
        return [f.read_text() for f in sorted(self.log.glob("*.cmdline"))]

    def passwords_seen(self) -> set[str]:
        """The hashes of the PGPASSWORD each tool was started with."""
        return {f.read_text().strip() for f in self.log.glob("*.password")}


@pytest.fixture
def throwaway(tmp_path: Path, pg_available: bool, monkeypatch: pytest.MonkeyPatch) -> Iterator[Throwaway]:
    tag = uuid.uuid4().hex[:10]
    role, password = f"conveyor_pw_{tag}", f"pw-{uuid.uuid4().hex}"
    source = f"{role}_src"
    parts = urlsplit(PG_ADMIN_URL)
    server = f"postgresql://{role}:{password}@{parts.hostname}:{parts.port or 5432}/postgres"
    bindir, log = tmp_path / "bin", tmp_path / "launches"
    bindir.mkdir()
    log.mkdir()
    for name in ("pg_dump", "pg_restore"):
        real = shutil.which(name)
        assert real, f"{name} is needed on PATH"
        wrapper = bindir / name
        wrapper.write_text(WRAPPER.format(log=log, real=real))
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("CONVEYOR_PG_BINDIR", str(bindir))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    with _pg_connect(PG_ADMIN_URL) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(source), sql.Identifier(role))
        )
    try:
        with _pg_connect(with_database(server, source)) as conn:
            conn.execute("CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL UNIQUE)")
            conn.execute(
                "INSERT INTO customers SELECT g, 'c' || g || '@example.com' FROM generate_series(1, 200) g"
            )
            conn.execute(
                "CREATE TABLE orders (id int PRIMARY KEY, customer int NOT NULL REFERENCES customers)"
            )
            conn.execute("INSERT INTO orders SELECT g, 1 + g % 200 FROM generate_series(1, 500) g")
        yield Throwaway(role, password, server, source, log)
    finally:
        with _pg_connect(PG_ADMIN_URL) as admin:
            for (name,) in admin.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{role}%",)
            ).fetchall():
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _assert_no_password_on_any_command_line(t: Throwaway, expected_launches: int) -> None:
    launches = t.launches()
    assert len(launches) == expected_launches, launches
    assert not [x for x in launches if t.password in x], "a password reached a command line"
    assert all(f"postgresql://{t.role}@" in x for x in launches), launches
    # every tool had the password, through its environment
    assert t.passwords_seen() == {hashlib.sha256(t.password.encode()).hexdigest()}


def test_backup_and_restore_give_pg_dump_and_pg_restore_the_password_only_in_their_environment(
    throwaway: Throwaway, tmp_path: Path
) -> None:
    t = throwaway
    path = tmp_path / "source.dump"
    recorded = pgtools.backup(t.server, t.source, path, lambda: None)
    assert recorded.tables == {"public.customers": 200, "public.orders": 500}
    scratch = f"{t.role}_restored"
    pgtools.create_scratch(t.server, scratch, t.role)
    pgtools.restore(t.server, scratch, t.role, path, lambda: None)
    assert pgtools.inspect(t.server, scratch).tables == recorded.tables
    _assert_no_password_on_any_command_line(t, expected_launches=2)

    with pytest.raises(Conflict) as failed:  # a tool that fails says why, with no secret in it
        pgtools.dump(t.server, t.source, "00000003-0000001B-1", tmp_path / "never.dump", lambda: None)
    assert "pg_dump failed" in failed.value.detail and t.password not in failed.value.detail
    _assert_no_password_on_any_command_line(t, expected_launches=3)


def test_a_masked_clone_gives_every_tool_it_starts_the_password_only_in_its_environment(
    throwaway: Throwaway,
) -> None:
    t = throwaway
    target = cloning.Target(t.server, Names(f"{t.role}_clone_target", t.role, (f"{t.role}_a", f"{t.role}_b")))
    name, built, _ = cloning.build(
        with_database(t.server, t.source),
        target,
        parse_rules({"customers.email": {"transform": "email", "unique": True}}),
        Masker("k" * 32),
        lambda catalog: plan_subset(catalog, {}),
    )
    assert {c.table: c.rows for c in built.tables} == {"customers": 200, "orders": 500}
    with _pg_connect(with_database(t.server, name)) as conn:
        kept = conn.execute(
            "SELECT count(*) FROM customers WHERE email = 'c' || id || '@example.com'"
        ).fetchone()
    assert kept == (0,)  # the ruled column went through the masking
    # schema dump, pre-data restore, the unmasked table's dump | restore, post-data restore
    _assert_no_password_on_any_command_line(t, expected_launches=5)

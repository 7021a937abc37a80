"""Migration files (names, order, checksums) and what their SQL does to the schema (pglast)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.migrations.files import MigrationFilesInvalid, parse_files
from conveyor.migrations.schema import (
    Column,
    MigrationSqlInvalid,
    Op,
    Shape,
    shape_of,
    statements,
    unused_marks,
)


def test_files_are_ordered_by_version_with_their_way_back() -> None:
    found = parse_files(
        {
            "0010_later.sql": b"SELECT 1;",
            "0002_users.sql": b"CREATE TABLE users (id bigint);",
            "0002_users.down.sql": b"DROP TABLE users;",
            "README.md": b"notes",
        }
    )
    assert [m.id for m in found] == ["0002_users", "0010_later"]
    assert found[0].down == "DROP TABLE users;" and found[1].down is None
    assert found[0].file == "0002_users.sql" and found[0].checksum.startswith("sha256:")


def test_every_mistake_in_a_directory_is_named_at_once() -> None:
    with pytest.raises(MigrationFilesInvalid) as caught:
        parse_files(
            {
                "1_a.sql": b"SELECT 1;",
                "01_b.sql": b"SELECT 2;",
                "add_users.sql": b"SELECT 3;",
                "0003_c.down.sql": b"SELECT 4;",
                "0004_d.sql": b"\xff\xfe",
            }
        )
    detail = caught.value.detail
    assert "1_a.sql: version 1 is also 01_b.sql" in detail
    assert "add_users.sql: not a migration name" in detail
    assert "0003_c.down.sql: no forward migration" in detail
    assert "0004_d.sql: not UTF-8" in detail
    assert "NNNN_description.sql" in (caught.value.hint or "")


@given(st.binary(min_size=1, max_size=200), st.integers(min_value=0, max_value=199))
def test_any_edit_changes_the_checksum(data: bytes, at: int) -> None:
    at %= len(data)
    edited = data[:at] + bytes([(data[at] + 1) % 256]) + data[at + 1 :]
    (before,) = parse_files({"0001_a.sql": data}) if _utf8(data) else (None,)
    (after,) = parse_files({"0001_a.sql": edited}) if _utf8(edited) else (None,)
    if before is not None and after is not None:
        assert before.checksum != after.checksum


def _utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def test_statements_name_their_operations_and_lines() -> None:
    sql = """-- the first release's schema
CREATE TABLE users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL,
    name varchar(40) DEFAULT 'x'
);

ALTER TABLE public.users ADD COLUMN account_id bigint, DROP COLUMN name;
ALTER TABLE users RENAME COLUMN email TO mail;
ALTER TABLE users ALTER COLUMN account_id TYPE text, ALTER COLUMN account_id SET NOT NULL;
DROP TABLE IF EXISTS old, audit.trail;
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_account ON users (account_id);
UPDATE users SET account_id = '1' WHERE account_id IS NULL;
"""
    found = statements(sql, file="0001_a.sql")
    assert [s.line for s in found] == [2, 8, 9, 10, 11, 12, 13]
    assert found[0].ops == (
        Op("create_table", "users"),
        Op("add_column", "users", "id", None, "bigint", True, True),
        Op("add_column", "users", "email", None, "text", True, False),
        Op("add_column", "users", "name", None, "varchar(40)", False, True),
    )
    assert found[1].ops == (
        Op("add_column", "users", "account_id", None, "bigint"),
        Op("drop_column", "users", "name"),
    )
    assert found[2].ops == (Op("rename_column", "users", "email", "mail"),)
    assert [o.kind for o in found[3].ops] == ["alter_type", "set_not_null"] and found[3].ops[0].type == "text"
    assert found[4].ops == (Op("drop_table", "old"), Op("drop_table", "audit.trail"))
    assert found[5].concurrent and not found[5].ops
    assert found[6].ops == () and found[6].text.startswith("UPDATE users")


def test_sql_postgresql_cannot_parse_is_refused_with_its_line() -> None:
    with pytest.raises(MigrationSqlInvalid, match=r"0002_b.sql, line 3: syntax error"):
        statements("SELECT 1;\n\nALTER TABLE users ADD COLUMN;\n", file="0002_b.sql")


def test_unused_marks_are_read_and_checked() -> None:
    assert unused_marks("-- conveyor: unused users.user_id\n--conveyor: UNUSED Legacy\n", file="f") == [
        "users.user_id",
        "legacy",
    ]
    with pytest.raises(MigrationSqlInvalid, match=r"not a table or table\.column"):
        unused_marks("-- conveyor: unused users.user-id\n", file="f")


def test_shape_follows_the_migrations() -> None:
    migrations = parse_files(
        {
            "0001_users.sql": b"CREATE TABLE users (id bigserial PRIMARY KEY, user_id text);",
            "0002_account.sql": b"ALTER TABLE users ADD COLUMN account_id text;",
            "0003_unused.sql": b"-- conveyor: unused users.user_id\nSELECT 1;",
        }
    )
    shape = shape_of(migrations)
    assert shape.tables["users"] == {
        "id": Column("bigserial", True, True),
        "user_id": Column("text"),
        "account_id": Column("text"),
    }
    assert not shape.needs_column("users", "user_id") and shape.needs_column("users", "account_id")
    dropped = shape.apply(Op("drop_column", "users", "user_id"))
    assert "user_id" not in dropped.tables["users"] and "users.user_id" not in dropped.unused


_NAMES = st.sampled_from(["users", "orders", "items"])
_COLUMNS = st.sampled_from(["id", "email", "user_id", "total"])
_OPS = st.builds(
    Op,
    kind=st.sampled_from(
        [
            "create_table",
            "drop_table",
            "add_column",
            "drop_column",
            "rename_column",
            "set_not_null",
            "set_default",
        ]
    ),
    table=_NAMES,
    column=_COLUMNS,
    new_name=st.sampled_from(["renamed", "email"]),
    type=st.sampled_from(["text", "bigint"]),
    not_null=st.booleans(),
    has_default=st.booleans(),
)


@given(st.lists(_OPS, max_size=20))
def test_applying_ops_never_invents_tables_or_keeps_dropped_ones(ops: list[Op]) -> None:
    shape = Shape()
    for op in ops:
        before = shape
        shape = shape.apply(op)
        if op.kind == "drop_table":
            assert op.table not in shape.tables
            assert not any(u == op.table or u.startswith(f"{op.table}.") for u in shape.unused)
        elif op.kind == "create_table":
            assert op.table in shape.tables
        else:
            assert set(shape.tables) == set(before.tables)  # column changes never add or remove tables
        assert all(
            u.split(".")[0] in shape.tables or "." not in u for u in shape.unused if u in before.unused
        )


def test_the_spec_takes_a_directory_or_the_long_form_and_keeps_paths_inside_the_bundle() -> None:
    from pydantic import ValidationError

    from conveyor.spec.migrations import Migrations

    short = Migrations.model_validate("db/migrations")
    assert short.path == "db/migrations" and short.lock_timeout.milliseconds == 5000
    long = Migrations.model_validate(
        {"path": "m", "statement_timeout": "30s", "lint_exclude": ["ban-char-field"]}
    )
    assert long.statement_timeout.milliseconds == 30_000 and long.lint_exclude == ["ban-char-field"]
    for escaping in ("/etc", "../outside", "a/../../b"):
        with pytest.raises(ValidationError, match="leaves the bundle"):
            Migrations.model_validate(escaping)


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("RESET ROLE;", "changes the role"),
        ("SET ROLE postgres;", "changes the role"),
        ("SET SESSION AUTHORIZATION postgres;", "changes the role"),
        ("RESET ALL;", "changes the role"),
        ("SELECT set_config('role', 'postgres', false);", "calls set_config()"),
        ("UPDATE t SET a = (SELECT pg_catalog.set_config('role', 'x', true));", "calls set_config()"),
        ("ALTER ROLE app SUPERUSER;", "manages roles"),
        ("COPY t TO PROGRAM 'curl example.test';", "outside the database"),
        ("COPY t FROM '/etc/passwd';", "outside the database"),
        ("DO $$ BEGIN EXECUTE 'RESET ' || 'ROLE'; END $$;", "its body changes the role"),
    ],
)
def test_a_migration_may_not_change_who_it_runs_as(sql: str, why: str) -> None:
    (statement,) = statements(sql, file="0002_x.sql")
    assert statement.forbidden is not None and why in statement.forbidden


def test_ordinary_statements_are_allowed() -> None:
    sql = (
        "SET LOCAL lock_timeout = '1s';\n"
        "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN NEW.at = now(); RETURN NEW; END $$;\n"
        "COPY t FROM STDIN;\n"
        "SELECT count(*) FROM users;\n"
    )
    assert [s.forbidden for s in statements(sql, file="0002_x.sql")] == [None, None, None, None]


@given(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="'\\"), max_size=30
    )
)
def test_text_before_a_statement_never_shifts_the_next_one(value: str) -> None:
    # pglast counts characters: a multi-byte value in one statement must not cut into the next
    sql = f"INSERT INTO notes VALUES ('{value}');\n\nALTER TABLE users DROP COLUMN user_id;\n"
    first, second = statements(sql, file="0001_x.sql")
    assert first.text.rstrip(";") == f"INSERT INTO notes VALUES ('{value}')"
    assert second.text.rstrip(";") == "ALTER TABLE users DROP COLUMN user_id"
    assert second.ops == (Op("drop_column", "users", "user_id"),)
    assert second.line == 3 + value.count("\n")


def test_a_parse_error_after_non_ascii_text_names_its_own_line() -> None:
    with pytest.raises(MigrationSqlInvalid, match="line 3"):
        statements("SELECT 'ééééééé';\n\nSELEC 1;", file="0001_x.sql")

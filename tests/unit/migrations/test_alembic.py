"""The pure parts of the Alembic adapter: the history, names, SQL without transaction control."""

from __future__ import annotations

import re
from pathlib import Path

import pglast
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pglast import ast

from conveyor.migrations.alembic import (
    DUMMY_URL,
    AlembicProjectInvalid,
    Rendered,
    linear_order,
    migration_name,
    render_environment,
    strip_transaction_control,
    to_migrations,
)
from conveyor.migrations.compat import Running, check, is_bookkeeping, rollback_problems
from conveyor.migrations.files import parse_files
from conveyor.migrations.schema import MigrationSqlInvalid, Op, Shape, shape_of

# what `alembic upgrade base:aaa1 --sql` prints for a first revision (PostgreSQL; trailing spaces cut)
FIRST_UP = """BEGIN;

CREATE TABLE alembic_version (
    version_num VARCHAR(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

-- Running upgrade  -> aaa1

CREATE TABLE users (
    id BIGSERIAL NOT NULL,
    user_id TEXT,
    email TEXT NOT NULL,
    PRIMARY KEY (id)
);

INSERT INTO alembic_version (version_num) VALUES ('aaa1') RETURNING alembic_version.version_num;

COMMIT;

"""
FIRST_DOWN = """BEGIN;

-- Running downgrade aaa1 ->

DROP TABLE users;

DELETE FROM alembic_version WHERE alembic_version.version_num = 'aaa1';

COMMIT;

"""
SECOND_UP = """BEGIN;

-- Running upgrade aaa1 -> bbb2

ALTER TABLE users ADD COLUMN account_id TEXT;

-- conveyor: unused users.user_id;

UPDATE alembic_version SET version_num='bbb2' WHERE alembic_version.version_num = 'aaa1';

COMMIT;
"""
SECOND_DOWN = """BEGIN;

ALTER TABLE users DROP COLUMN account_id;

UPDATE alembic_version SET version_num='aaa1' WHERE alembic_version.version_num = 'bbb2';

COMMIT;
"""


def _transaction_kinds(sql: str) -> list[str]:
    return [r.stmt.kind.name for r in pglast.parse_sql(sql) if isinstance(r.stmt, ast.TransactionStmt)]


class TestStripTransactionControl:
    def test_alembics_begin_and_commit_go_and_every_line_stays_where_it_was(self) -> None:
        stripped = strip_transaction_control(FIRST_UP, file="0001_aaa1.sql")
        assert _transaction_kinds(stripped) == []
        assert stripped.splitlines() == [
            "" if line in ("BEGIN;", "COMMIT;") else line for line in FIRST_UP.splitlines()
        ]
        assert "-- Running upgrade  -> aaa1" in stripped  # comments stay

    @pytest.mark.parametrize(
        ("sql", "expected"),
        [
            ("begin; SELECT 1; commit;", " SELECT 1; "),
            ("START TRANSACTION;\nSELECT 1;\nEND;", "\nSELECT 1;\n"),
            ("BEGIN; -- é\nINSERT INTO t VALUES ('ü');\nCOMMIT", " -- é\nINSERT INTO t VALUES ('ü');\n"),
            ("BEGIN; SAVEPOINT a; ROLLBACK TO a; COMMIT;", " SAVEPOINT a; ROLLBACK TO a; "),
            ("SELECT 'BEGIN;';", "SELECT 'BEGIN;';"),
        ],
        ids=["lower-case", "start-and-end", "non-ascii", "savepoints-stay", "a-string-is-not-a-statement"],
    )  # fmt: skip
    def test_examples(self, sql: str, expected: str) -> None:
        assert strip_transaction_control(sql, file="0001_x.sql") == expected

    @pytest.mark.parametrize(
        "statement", ["ROLLBACK;", "PREPARE TRANSACTION 'x';", "COMMIT PREPARED 'x';"], ids=str
    )
    def test_what_would_end_the_runners_transaction_is_refused_with_its_line(self, statement: str) -> None:
        with pytest.raises(MigrationSqlInvalid, match=r"0002_x\.sql, line 3: .* cannot run inside"):
            strip_transaction_control(f"BEGIN;\nSELECT 1;\n{statement}\n", file="0002_x.sql")

    def test_sql_postgresql_cannot_parse_is_reported_with_its_line(self) -> None:
        with pytest.raises(MigrationSqlInvalid, match=r"0002_x\.sql, line 2"):
            strip_transaction_control("BEGIN;\nALTER TABLE;\n", file="0002_x.sql")


_BODY = st.sampled_from(
    [
        "CREATE TABLE t (id int)",
        "ALTER TABLE t ADD COLUMN note text",
        "UPDATE t SET note = 'commit;'",
        "-- a comment\nSELECT 1",
        "/* begin */ DELETE FROM t",
        "SAVEPOINT s",
    ]
)
_CONTROL = st.sampled_from(["BEGIN", "begin", "START TRANSACTION", "COMMIT", "END", "commit"])


@given(
    st.lists(st.one_of(_BODY.map(lambda s: ("body", s)), _CONTROL.map(lambda s: ("control", s))), max_size=12)
)
def test_stripping_keeps_every_other_statement_in_order_and_every_line(items: list[tuple[str, str]]) -> None:
    sql = "".join(f"{text};\n\n" for _, text in items)
    stripped = strip_transaction_control(sql, file="0001_x.sql")
    kept = [r.stmt for r in pglast.parse_sql(stripped)]
    assert not any(isinstance(s, ast.TransactionStmt) and s.kind.name != "TRANS_STMT_SAVEPOINT" for s in kept)
    bodies = [text for kind, text in items if kind == "body"]
    assert len(kept) == len(bodies)
    assert [pglast.fingerprint(b) for b in bodies] == [
        pglast.fingerprint(pglast.stream.RawStream()(s)) for s in kept
    ]
    assert stripped.count("\n") == sql.count("\n")


class TestMigrationName:
    @pytest.mark.parametrize(
        ("revision", "name"),
        [
            ("ae1027a6acf", "ae1027a6acf"),
            ("2024_01_Add-Users", "2024_01_add_users"),
            ("--__--", "revision"),
            ("x" * 80, "x" * 60),
        ],
        ids=["hex", "custom-rev-id", "nothing-left", "long"],
    )
    def test_examples(self, revision: str, name: str) -> None:
        assert migration_name(revision) == name

    @given(st.text(max_size=90))
    def test_any_revision_id_makes_a_name_the_sql_files_rule_accepts(self, revision: str) -> None:
        name = migration_name(revision)
        assert re.fullmatch(r"[a-z0-9_]{1,60}", name)
        assert migration_name(name) == name
        (parsed,) = parse_files({f"0007_{name}.sql": b"SELECT 1;"})
        assert parsed.id == f"0007_{name}"


_IDS = st.lists(st.from_regex(r"[a-f0-9]{4,12}", fullmatch=True), min_size=1, max_size=8, unique=True)


class TestLinearOrder:
    @given(_IDS)
    def test_a_chain_comes_back_base_first_whatever_order_it_is_listed_in(self, ids: list[str]) -> None:
        chain = {rev: ((ids[i - 1],) if i else ()) for i, rev in enumerate(ids)}
        assert linear_order(dict(reversed(list(chain.items())))) == ids

    @given(_IDS.filter(lambda ids: len(ids) >= 2), st.data())
    def test_a_second_child_anywhere_is_refused_naming_the_branch_point_and_the_heads(
        self, ids: list[str], data: st.DataObject
    ) -> None:
        chain = {rev: ((ids[i - 1],) if i else ()) for i, rev in enumerate(ids)}
        parent = data.draw(st.sampled_from(ids[:-1]))
        chain["fork"] = (parent,)
        with pytest.raises(AlembicProjectInvalid) as caught:
            linear_order(chain)
        assert f"branch point {parent} (revised by " in caught.value.detail
        assert f"several heads ({', '.join(sorted([ids[-1], 'fork']))})" in caught.value.detail
        assert "down_revision" in (caught.value.hint or "")

    def test_a_merge_revision_is_refused_by_name(self) -> None:
        history = {"a": (), "b": ("a",), "c": ("a",), "m": ("b", "c")}
        with pytest.raises(AlembicProjectInvalid, match=r"merge revision m \(revises b, c\)"):
            linear_order(history, where="the Alembic project in db")

    @pytest.mark.parametrize(
        ("history", "message"),
        [
            ({"a": (), "b": ("zz",)}, "b revises zz, which is not in the project"),
            ({"a": (), "b": ()}, "several bases (a, b)"),
            ({"a": ("b",), "b": ("a",)}, "a cycle"),
            ({"a": (), "b": ("a",), "c": ("d",), "d": ("c",)}, "a cycle among c, d"),
        ],
        ids=["missing-parent", "two-roots", "all-cycle", "cycle-beside-a-chain"],
    )
    def test_other_histories_that_are_not_one_line(
        self, history: dict[str, tuple[str, ...]], message: str
    ) -> None:
        with pytest.raises(AlembicProjectInvalid, match=re.escape(message)):
            linear_order(history)

    def test_an_empty_project_has_no_migrations(self) -> None:
        assert linear_order({}) == []


def _rendered(revision: str, down_revision: str | None, up: str, down: str) -> Rendered:
    return Rendered(revision, down_revision, "", f"db/versions/{revision}.py", "ab" * 32, up, down)


class TestToMigrations:
    def test_ids_checksums_sql_and_the_first_way_back_dropping_the_version_table(self) -> None:
        found = to_migrations(
            [
                _rendered("aaa1", None, FIRST_UP, FIRST_DOWN),
                _rendered("bbb2", "aaa1", SECOND_UP, SECOND_DOWN),
            ],
            "alembic_version",
        )
        assert [(m.id, m.file) for m in found] == [
            ("0001_aaa1", "0001_aaa1.sql"),
            ("0002_bbb2", "0002_bbb2.sql"),
        ]
        assert all(m.checksum == "sha256:" + "ab" * 32 for m in found)
        assert all(_transaction_kinds(m.sql) == [] and _transaction_kinds(m.down or "") == [] for m in found)
        assert (found[0].down or "").rstrip().endswith("DROP TABLE alembic_version;")
        assert "DROP TABLE alembic_version" not in (found[1].down or "")
        # the marker a revision writes with op.execute(...) reads like the SQL files' marker
        assert shape_of(found).unused == frozenset({"users.user_id"})

    def test_a_version_table_conveyor_would_take_for_application_data_is_refused(self) -> None:
        with pytest.raises(AlembicProjectInvalid, match="version table 'versions'") as caught:
            to_migrations([_rendered("aaa1", None, FIRST_UP, FIRST_DOWN)], "versions")
        assert "alembic_version_SERVICE" in (caught.value.hint or "")
        assert to_migrations([_rendered("aaa1", None, FIRST_UP, FIRST_DOWN)], "alembic_version_web")


class TestBookkeeping:
    @pytest.mark.parametrize(
        ("table", "kept"),
        [("alembic_version", True), ("alembic_version_web", True), ("audit.alembic_version", True),
         ("alembic_versions", False), ("users", False)],
        ids=str,
    )  # fmt: skip
    def test_which_tables_are_history(self, table: str, kept: bool) -> None:
        assert is_bookkeeping(table) is kept

    def test_the_version_table_needs_no_masking_rule_and_blocks_no_release(self) -> None:
        migrations = to_migrations(
            [
                _rendered("aaa1", None, FIRST_UP, FIRST_DOWN),
                _rendered("bbb2", "aaa1", SECOND_UP, SECOND_DOWN),
            ],
            "alembic_version",
        )
        declared = {"users.id", "users.user_id", "users.email", "users.account_id"}
        found = check(migrations, Shape(), [], lambda table, column: f"{table}.{column}" in declared)
        assert found == []
        # no running version needs the version table: changing it breaks nobody, nor does going back
        old = shape_of(migrations[:1])
        assert "alembic_version" in old.tables
        drop = parse_files({"0003_x.sql": b"DROP TABLE alembic_version;"})
        assert check(drop, old, [Running("production", "1.0.0", old)]) == []
        now = shape_of(migrations).apply(Op("drop_table", "alembic_version"))
        assert rollback_problems(old, now, "1.0.0") == []


def test_the_subprocess_environment_carries_no_conveyor_variable_and_no_secret() -> None:
    environ = {
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "CONVEYOR_HOME": "/srv/conveyor",
        "CONVEYOR_DATABASE_URL": "postgresql://admin:pw@db/conveyor",
        "CONVEYOR_MASTER_KEY": "k",
        "PGPASSWORD": "pw",
        "AWS_SECRET_ACCESS_KEY": "s",
        "DATABASE_URL": "postgresql://real@prod/db",
        "PYTHONPATH": "/srv/conveyor/src",
    }
    found = render_environment(Path("/tmp/x/bundle"), Path("/tmp/x"), environ)
    assert found == {
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "HOME": "/tmp/x",
        "PYTHONPATH": "/tmp/x/bundle",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUTF8": "1",
        "DATABASE_URL": DUMMY_URL,
    }


class TestSpec:
    SPEC = """\
project: demo
services:
  web:
    command: python app.py
    migrations: {migrations}
environments:
  development: {{tier: development}}
"""

    def test_sql_stays_the_default_and_the_short_form(self) -> None:
        from conveyor.spec import load_spec_text

        short = load_spec_text(self.SPEC.format(migrations="db/migrations")).services["web"].migrations
        assert short is not None and (short.path, short.format) == ("db/migrations", "sql")
        long = load_spec_text(self.SPEC.format(migrations="{path: db, format: alembic}")).services["web"]
        assert long.migrations is not None and (long.migrations.path, long.migrations.format) == (
            "db",
            "alembic",
        )

    @pytest.mark.parametrize(
        ("migrations", "message", "hint"),
        [
            ("{path: db, format: alembics}", "unknown format 'alembics'", "did you mean 'alembic'?"),
            ("{path: db/alembic.ini, format: alembic}", "names a file", "write path: db"),
            ("{path: ../db, format: alembic}", "leaves the bundle", "inside the bundle"),
        ],
        ids=["misspelt-format", "the-ini-file-itself", "outside-the-bundle"],
    )
    def test_mistakes_are_named_with_the_fix(self, migrations: str, message: str, hint: str) -> None:
        from conveyor.errors import SpecError
        from conveyor.spec import load_spec_text

        with pytest.raises(SpecError) as caught:
            load_spec_text(self.SPEC.format(migrations=migrations))
        (problem,) = caught.value.problems
        assert problem.path.startswith("services.web.migrations.")
        assert message in problem.message and hint in (problem.hint or "")

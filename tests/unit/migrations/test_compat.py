"""The expand/contract check: the seed's user_id example, and properties over random schemas."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from conveyor.migrations.compat import Running, check, rollback_problems
from conveyor.migrations.files import Migration, parse_files
from conveyor.migrations.schema import Shape, shape_of

RELEASE_1 = {
    "0001_users.sql": b"CREATE TABLE users (id bigserial PRIMARY KEY, user_id text, email text NOT NULL);"
}
RELEASE_2 = {
    **RELEASE_1,
    # expand: nullable, written by both versions
    "0002_account_id.sql": b"ALTER TABLE users ADD COLUMN account_id text;",
    "0003_backfill.sql": b"-- conveyor: unused users.user_id\nUPDATE users SET account_id = user_id;",
}
RELEASE_3 = {
    **RELEASE_2,
    "0004_contract.sql": b"ALTER TABLE users ALTER COLUMN account_id SET NOT NULL;\n"
    b"ALTER TABLE users DROP COLUMN user_id;",
}


def versions() -> tuple[list[Migration], list[Migration], list[Migration]]:
    return parse_files(RELEASE_1), parse_files(RELEASE_2), parse_files(RELEASE_3)


def test_the_contract_step_is_refused_while_release_1_runs_anywhere() -> None:
    r1, r2, r3 = versions()
    running = [Running("staging", "2.0.0", shape_of(r2)), Running("production", "1.0.0", shape_of(r1))]
    found = check(r3[3:], shape_of(r2), running)
    assert [v.rule for v in found] == ["expand-not-null-unwritten", "contract-drop-column"]
    drop = found[1]
    assert drop.needed_by == ("1.0.0 in production",) and drop.line == 2
    assert drop.statement == "ALTER TABLE users DROP COLUMN user_id"
    assert any("conveyor: unused users.user_id" in step for step in drop.safe)
    assert "needed by 1.0.0 in production" in drop.render()


def test_the_contract_step_passes_once_release_2_runs_everywhere() -> None:
    _, r2, r3 = versions()
    running = [Running("staging", "2.0.0", shape_of(r2)), Running("production", "2.0.0", shape_of(r2))]
    assert check(r3[3:], shape_of(r2), running) == []


def test_the_expand_step_is_safe_beside_release_1() -> None:
    r1, r2, _ = versions()
    assert check(r2[1:], shape_of(r1), [Running("production", "1.0.0", shape_of(r1))]) == []


def test_renames_retypes_and_required_columns_are_refused_with_a_sequence() -> None:
    r1, _, _ = versions()
    pending = parse_files(
        {
            "0002_x.sql": b"ALTER TABLE users RENAME COLUMN email TO mail;\n"
            b"ALTER TABLE users ALTER COLUMN user_id TYPE bigint USING user_id::bigint;\n"
            b"ALTER TABLE users ADD COLUMN tenant bigint NOT NULL;\n"
            b"ALTER TABLE users ADD COLUMN region text NOT NULL DEFAULT 'eu';\n"
        }
    )
    found = check(pending, shape_of(r1), [Running("production", "1.0.0", shape_of(r1))])
    assert [(v.rule, v.line) for v in found] == [
        ("contract-rename-column", 1),
        ("contract-change-type", 2),
        ("expand-required-column", 3),
    ]
    assert all(len(v.safe) >= 2 for v in found)


def test_a_column_of_text_may_widen() -> None:
    base = parse_files({"0001_a.sql": b"CREATE TABLE t (name varchar(40));"})
    wider = parse_files({"0002_b.sql": b"ALTER TABLE t ALTER COLUMN name TYPE varchar(80);"})
    assert check(wider, shape_of(base), [Running("production", "1", shape_of(base))]) == []


def test_new_columns_must_be_declared_for_masking() -> None:
    r1, r2, _ = versions()
    found = check(r2[1:], shape_of(r1), [], declared=lambda table, column: column != "account_id")
    assert [(v.rule, v.statement) for v in found] == [
        ("undeclared-sensitivity", "ALTER TABLE users ADD COLUMN account_id text")
    ]
    assert "not_sensitive" in found[0].safe[1]


def test_rollback_knows_the_schema() -> None:
    r1, r2, r3 = versions()
    assert rollback_problems(shape_of(r2), shape_of(r3), "2.0.0") == []
    problems = rollback_problems(shape_of(r1), shape_of(r3), "1.0.0")
    assert problems == [
        "1.0.0 uses users.user_id, which a later migration dropped or renamed",
        "users.account_id is NOT NULL without a default now, and 1.0.0 does not write it",
    ]


_TABLES = ("users", "orders")
_COLUMNS = ("id", "email", "user_id", "total")


@st.composite
def shapes(draw: st.DrawFn) -> Shape:
    sql = []
    for table in draw(st.lists(st.sampled_from(_TABLES), unique=True, min_size=1)):
        columns = draw(st.lists(st.sampled_from(_COLUMNS), unique=True, min_size=1))
        sql.append(f"CREATE TABLE {table} ({', '.join(f'{c} text' for c in columns)});")
    return shape_of(parse_files({"0001_a.sql": "\n".join(sql).encode()}))


@given(shapes())
def test_a_version_always_runs_against_its_own_schema(shape: Shape) -> None:
    assert rollback_problems(shape, shape, "v") == []


@given(shapes(), st.sampled_from(_TABLES), st.sampled_from(_COLUMNS))
def test_expanding_never_breaks_a_running_version(shape: Shape, table: str, column: str) -> None:
    pending = parse_files(
        {
            "0002_expand.sql": f"CREATE TABLE IF NOT EXISTS new_{table} (id bigint);\n"
            f"ALTER TABLE {table} ADD COLUMN extra_{column} text;\n"
            f"ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL;\n".encode()
        }
    )
    assert check(pending, shape, [Running("production", "1", shape)]) == []


@given(shapes(), st.sampled_from(_TABLES), st.sampled_from(_COLUMNS))
def test_dropping_what_a_running_version_needs_is_always_refused(
    shape: Shape, table: str, column: str
) -> None:
    pending = parse_files({"0002_drop.sql": f"ALTER TABLE {table} DROP COLUMN {column};".encode()})
    found = check(pending, shape, [Running("production", "1", shape)])
    needed = shape.needs_column(table, column)
    assert bool(found) == needed
    if needed:
        assert found[0].rule == "contract-drop-column" and found[0].needed_by == ("1 in production",)
    marked = shape.mark_unused([f"{table}.{column}"])
    assert check(pending, shape, [Running("production", "2", marked)]) == []

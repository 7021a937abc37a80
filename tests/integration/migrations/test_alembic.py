"""An Alembic project in the artifact, rendered offline in a subprocess and run by the real runner.

The project is what `alembic init` makes (the template's env.py, importing the app's models from
the bundle) with three revisions: create users, add a nullable account_id, drop user_id. It goes
through everything a SQL directory goes through — the runner, checksums, the expand/contract check,
squawk, the rehearsal, seeding — and `alembic current` stays true for the team.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import textwrap
import time
import uuid
from pathlib import Path

import alembic
import pytest
import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from psycopg import sql

from conveyor.artifacts.service import blob_path
from conveyor.data.seeding import seed_database
from conveyor.errors import InvalidRequest
from conveyor.migrations import runner
from conveyor.migrations.alembic import AlembicProjectInvalid, render
from conveyor.migrations.compat import Running, check, rollback_problems
from conveyor.migrations.files import Migration, MigrationFilesInvalid
from conveyor.migrations.lint import lint
from conveyor.migrations.rehearsal import rehearse
from conveyor.migrations.schema import shape_of
from conveyor.migrations.service import bundle_migrations
from conveyor.runtime.local.bundle import digest_file
from tests.conftest import PG_ADMIN_URL, Server, _pg_connect, free_port
from tests.integration.migrations import test_rehearsal as rehearsal_tests
from tests.integration.migrations import test_runner as runner_tests
from tests.integration.migrations.test_expand_contract import bundle, register

pytestmark = pytest.mark.integration

database = runner_tests.database  # a throwaway database owned by its own role
source = rehearsal_tests.source  # a database with 22,000 rows to rehearse on

TEMPLATE_ENV_PY = (Path(alembic.__file__).parent / "templates" / "generic" / "env.py").read_text()
ENV_PY = TEMPLATE_ENV_PY.replace(
    "target_metadata = None", "from app.models import metadata\n\ntarget_metadata = metadata"
)
ALEMBIC_INI = """\
[alembic]
script_location = %(here)s/migrations
prepend_sys_path = .
path_separator = os
sqlalchemy.url = driver://user:pass@localhost/dbname

[loggers]
keys = root,sqlalchemy,alembic

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console
qualname =

[logger_sqlalchemy]
level = WARNING
handlers =
qualname = sqlalchemy.engine

[logger_alembic]
level = INFO
handlers =
qualname = alembic

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
"""
MODELS = b"""import sqlalchemy as sa

metadata = sa.MetaData()
users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("account_id", sa.Text),
)
"""
HEAD = "c3d4e5f60003"


def revision(
    rev: str, down: str | tuple[str, ...] | None, message: str, upgrade: str, downgrade: str
) -> bytes:
    """A revision file as `alembic revision` writes it."""
    return (
        f'"""{message}\n\nRevision ID: {rev}\nRevises: {down or ""}\n"""\n'
        "import sqlalchemy as sa\nfrom alembic import op\n\n"
        f"revision = {rev!r}\ndown_revision = {down!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
        f"def upgrade() -> None:\n{textwrap.indent(upgrade, '    ')}\n\n\n"
        f"def downgrade() -> None:\n{textwrap.indent(downgrade, '    ')}\n"
    ).encode()


VERSIONS = "db/migrations/versions"
REVISIONS = {
    "a1b2c3d40001": revision(
        "a1b2c3d40001",
        None,
        "create users",
        'op.create_table(\n    "users",\n    sa.Column("id", sa.BigInteger, primary_key=True),\n'
        '    sa.Column("user_id", sa.Text),\n    sa.Column("email", sa.Text, nullable=False),\n)',
        'op.drop_table("users")',
    ),
    "b2c3d4e50002": revision(
        "b2c3d4e50002",
        "a1b2c3d40001",
        "add account id",
        'op.add_column("users", sa.Column("account_id", sa.Text, nullable=True))\n'
        'op.execute("UPDATE users SET account_id = user_id")',
        'op.drop_column("users", "account_id")',
    ),
    HEAD: revision(
        HEAD,
        "b2c3d4e50002",
        "drop user id",
        'op.drop_column("users", "user_id")',
        'op.add_column("users", sa.Column("user_id", sa.Text))',
    ),
}
# the code stops using user_id and says so, the way a SQL migration would
UNUSED = revision(
    "b3c4d5e60002",
    "b2c3d4e50002",
    "stop using user_id",
    'op.execute("-- conveyor: unused users.user_id")',
    "pass",
)
DECLARED = {"users.id", "users.user_id", "users.email", "users.account_id"}


def project(*revisions: str, **extra: bytes) -> dict[str, bytes]:
    """The bundle's files: the Alembic project under db/, the app's models at the top."""
    files = {
        "db/alembic.ini": ALEMBIC_INI.encode(),
        "db/migrations/env.py": ENV_PY.encode(),
        "app/__init__.py": b"",
        "app/models.py": MODELS,
    }
    files.update({f"{VERSIONS}/{rev}.py": REVISIONS[rev] for rev in revisions})
    files.update(extra)
    return files


def stored(home: Path, tmp: Path, files: dict[str, bytes]) -> str:
    """Store a bundle holding `files` in `home`'s artifact store as registering does; its digest."""
    path = bundle(tmp, uuid.uuid4().hex[:8], "account_id", files)
    digest = digest_file(path)
    target = blob_path(home / "artifacts", digest)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(path, target)
    return digest


def migrations(tmp: Path, files: dict[str, bytes]) -> list[Migration]:
    return bundle_migrations(tmp / "home", stored(tmp / "home", tmp, files), "db", "alembic")


def migrate(url: str, owner: str, found: list[Migration], release: str = "web 1.0.0") -> runner.Run:
    with _pg_connect(url) as conn:
        return runner.migrate(
            conn,
            owner,
            found,
            service="web",
            release=release,
            lock_timeout_ms=2000,
            statement_timeout_ms=30_000,
        )


def alembic_current(url: str) -> str | None:
    """What `alembic current` says: Alembic's own reading of the database."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def columns(url: str) -> set[str]:
    with _pg_connect(url) as conn:
        rows = conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'users'")
        return {r[0] for r in rows}


def test_revisions_render_apply_through_the_runner_and_alembic_current_names_the_head(
    database: tuple[str, str], tmp_path: Path
) -> None:
    url, owner = database
    files = project(*REVISIONS)
    found = migrations(tmp_path, files)
    assert [m.id for m in found] == ["0001_a1b2c3d40001", "0002_b2c3d4e50002", f"0003_{HEAD}"]
    assert [m.checksum for m in found] == [
        "sha256:" + hashlib.sha256(files[f"{VERSIONS}/{m.name}.py"]).hexdigest() for m in found
    ]  # the revision file's bytes, as for a SQL file
    assert not any(line.strip() in ("BEGIN;", "COMMIT;") for m in found for line in m.sql.splitlines())
    assert not [f.render() for f in lint(found) if f.refuses]  # squawk reads the rendered SQL

    run = migrate(url, owner, found)
    assert [a["id"] for a in run.applied] == [m.id for m in found]
    assert columns(url) == {"id", "email", "account_id"}
    assert alembic_current(url) == HEAD
    with _pg_connect(url) as conn:
        recorded = conn.execute("SELECT id, checksum FROM conveyor_schema_migrations ORDER BY id").fetchall()
    assert recorded == [(m.id, m.checksum) for m in found]

    # a different env.py renders different SQL (one transaction per revision) but edits no revision
    changed_env = ENV_PY.replace(
        "literal_binds=True,", "literal_binds=True,\n        transaction_per_migration=True,"
    )
    again = migrations(tmp_path, {**files, "db/migrations/env.py": changed_env.encode()})
    assert [m.checksum for m in again] == [m.checksum for m in found]
    assert migrate(url, owner, again, "web 1.0.1").already == 3


def test_an_edited_applied_revision_is_refused_before_anything_runs(
    database: tuple[str, str], tmp_path: Path
) -> None:
    url, owner = database
    first = project("a1b2c3d40001", "b2c3d4e50002")
    migrate(url, owner, migrations(tmp_path, first))
    name = f"{VERSIONS}/b2c3d4e50002.py"
    edited = {**project(*REVISIONS), name: first[name] + b"# tidied\n"}
    with pytest.raises(runner.ChecksumChanged, match=r"0002_b2c3d4e50002\.sql was applied with sha256:"):
        migrate(url, owner, migrations(tmp_path, edited), "web 2.0.0")
    assert alembic_current(url) == "b2c3d4e50002" and "user_id" in columns(url)  # the drop did not run


def test_a_premature_drop_is_refused_like_a_sql_migration_until_the_running_code_gives_the_column_up(
    tmp_path: Path,
) -> None:
    declared = lambda table, column: f"{table}.{column}" in DECLARED  # noqa: E731
    running_1 = migrations(tmp_path, project("a1b2c3d40001", "b2c3d4e50002"))
    dropping = migrations(tmp_path, project(*REVISIONS))
    (violation,) = check(
        dropping[2:], shape_of(running_1), [Running("production", "1.0.0", shape_of(running_1))], declared
    )
    assert violation.rule == "contract-drop-column" and violation.needed_by == ("1.0.0 in production",)
    assert violation.statement == "ALTER TABLE users DROP COLUMN user_id"
    lines = dropping[2].sql.splitlines()
    assert (
        lines[violation.line - 1] == "ALTER TABLE users DROP COLUMN user_id;"
    )  # as `alembic upgrade --sql` prints
    assert violation.render().startswith(f"0003_{HEAD}.sql, line {violation.line}: drops users.user_id")

    # and once the drop ran, going back to 1.0.0 is refused for the same reason
    assert rollback_problems(shape_of(running_1), shape_of(dropping), "1.0.0") == [
        "1.0.0 uses users.user_id, which a later migration dropped or renamed"
    ]

    # a release whose code no longer reads user_id says so in a revision; then the drop may follow
    marked = project("a1b2c3d40001", "b2c3d4e50002", **{f"{VERSIONS}/b3c4d5e60002_unused.py": UNUSED})
    running_2 = migrations(tmp_path, marked)
    contract = revision(
        "c4d5e6f70004", "b3c4d5e60002", "drop user id", 'op.drop_column("users", "user_id")', "pass"
    )
    later = migrations(tmp_path, {**marked, f"{VERSIONS}/c4d5e6f70004_drop.py": contract})
    assert (
        check(later[3:], shape_of(running_2), [Running("production", "1.1.0", shape_of(running_2))], declared)
        == []
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {f"{VERSIONS}/b9_fork.py": revision("b9f0rk000002", "a1b2c3d40001", "fork", "pass", "pass")},
            "does not have one linear history: branch point a1b2c3d40001 (revised by b2c3d4e50002, "
            "b9f0rk000002); several heads (b2c3d4e50002, b9f0rk000002)",
        ),
        (
            {
                f"{VERSIONS}/b9_fork.py": revision("b9f0rk000002", "a1b2c3d40001", "fork", "pass", "pass"),
                f"{VERSIONS}/m_merge.py": revision(
                    "m3rge0000003", ("b2c3d4e50002", "b9f0rk000002"), "merge", "pass", "pass"
                ),
            },
            "merge revision m3rge0000003 (revises b2c3d4e50002, b9f0rk000002)",
        ),
    ],
    ids=["two-heads", "merge"],
)
def test_a_history_that_is_not_one_line_is_refused_naming_its_heads_and_merges(
    tmp_path: Path, extra: dict[str, bytes], message: str
) -> None:
    with pytest.raises(AlembicProjectInvalid) as caught:
        migrations(tmp_path, project("a1b2c3d40001", "b2c3d4e50002", **extra))
    assert caught.value.detail.startswith("the Alembic project in db: ")
    assert message in caught.value.detail
    assert "down_revision" in (caught.value.hint or "")


def test_a_revision_that_reads_rows_offline_fails_with_where_and_why(tmp_path: Path) -> None:
    reads = revision(
        "b2c3d4e50002",
        "a1b2c3d40001",
        "backfill in python",
        'for row in op.get_bind().execute(sa.text("SELECT id FROM users")).fetchall():\n    pass',
        "pass",
    )
    with pytest.raises(AlembicProjectInvalid) as caught:
        migrations(tmp_path, project("a1b2c3d40001", **{f"{VERSIONS}/b2_backfill.py": reads}))
    detail = caught.value.detail
    assert detail.startswith(
        "the Alembic project in db: env.py failed offline rendering revision b2c3d4e50002 "
    )
    assert f"({VERSIONS}/b2_backfill.py, line 16)" in detail
    assert detail.endswith("AttributeError: 'NoneType' object has no attribute 'fetchall'")
    assert "op.get_bind()" in (caught.value.hint or "") and "offline" in (caught.value.hint or "")


def test_env_py_runs_without_conveyors_variables_and_its_failure_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_PROBE_SECRET", "s3cret")
    monkeypatch.setenv("PGPASSWORD", "s3cret")
    probing = (
        "import os\n"
        "leaked = sorted(k for k in os.environ if k.startswith('CONVEYOR_') or k == 'PGPASSWORD')\n"
        "url = context.config.get_main_option('sqlalchemy.url')\n"
        "raise RuntimeError(f\"DATABASE_URL={os.environ['DATABASE_URL']} url={url} leaked={leaked}\")\n"
    )
    env_py = ENV_PY.replace("if context.is_offline_mode():", probing + "if context.is_offline_mode():")
    with pytest.raises(AlembicProjectInvalid) as caught:
        migrations(tmp_path, project(*REVISIONS, **{"db/migrations/env.py": env_py.encode()}))
    dummy = "postgresql://render@localhost/render"
    assert caught.value.detail.endswith(f"RuntimeError: DATABASE_URL={dummy} url={dummy} leaked=[]")
    assert (
        "env.py failed offline rendering revision a1b2c3d40001 (db/migrations/env.py, line "
        in caught.value.detail
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"db/alembic.ini": None}, "the Alembic project in db: there is no alembic.ini in db"),
        (
            {"db/alembic.ini": ALEMBIC_INI.replace("%(here)s/migrations", "%(here)s/nope").encode()},
            "script_location 'db/nope' in db/alembic.ini cannot be used: Path doesn't exist: db/nope",
        ),
        (
            {f"{VERSIONS}/b2_broken.py": b"revision = 'x'\ndef upgrade(:\n"},
            f"revision file {VERSIONS}/b2_broken.py, line 2 does not import: SyntaxError",
        ),
        (
            {f"{VERSIONS}/b2_imports.py": b"import not_in_the_bundle\nrevision = 'x'\n"},
            f"revision file {VERSIONS}/b2_imports.py, line 1 does not import: ModuleNotFoundError: "
            "No module named 'not_in_the_bundle'",
        ),
    ],
    ids=["no-alembic-ini", "bad-script-location", "syntax-error", "missing-import"],
)
def test_a_project_that_cannot_be_read_is_refused_saying_what_to_fix(
    tmp_path: Path, change: dict[str, bytes | None], message: str
) -> None:
    files = project("a1b2c3d40001")
    for name, data in change.items():
        if data is None:
            del files[name]
        else:
            files[name] = data
    with pytest.raises(AlembicProjectInvalid) as caught:
        migrations(tmp_path, files)
    assert message in caught.value.detail
    assert caught.value.hint
    assert "/tmp" not in caught.value.detail  # paths are the bundle's, not the extraction's


def test_an_env_py_that_hangs_is_stopped_with_everything_it_started(tmp_path: Path) -> None:
    hanging = ENV_PY.replace(
        "if context.is_offline_mode():",
        "import subprocess, time\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        "open('../started.pid', 'w').write(str(child.pid))\n"
        "time.sleep(60)\n\n"
        "if context.is_offline_mode():",
    )
    root = tmp_path / "bundle"
    for name, data in project("a1b2c3d40001", **{"db/migrations/env.py": hanging.encode()}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    began = time.monotonic()
    with pytest.raises(
        AlembicProjectInvalid, match="rendering the Alembic project in db offline took longer than 3 s"
    ):
        render(root, "db", timeout=3)
    assert time.monotonic() - began < 10
    started = int((root / "started.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(started):
        assert time.monotonic() < deadline, "the process env.py started outlived the timeout"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie waiting for its new parent to reap it does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_forgetting_format_alembic_is_refused_rather_than_running_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    digest = stored(home, tmp_path, project(*REVISIONS))
    with pytest.raises(MigrationFilesInvalid, match=r"holds alembic\.ini and no NNNN_name\.sql") as caught:
        bundle_migrations(home, digest, "db")
    assert "format: alembic" in (caught.value.hint or "")


def test_a_tampered_bundle_is_refused_before_it_is_extracted(tmp_path: Path) -> None:
    home = tmp_path / "home"
    digest = stored(home, tmp_path, project(*REVISIONS))
    with blob_path(home / "artifacts", digest).open("ab") as blob:
        blob.write(b"\0")
    with pytest.raises(InvalidRequest, match="does not match its digest"):
        bundle_migrations(home, digest, "db", "alembic")


def test_the_rehearsal_applies_the_revisions_on_a_clone_and_rolls_them_back(
    source: tuple[str, str], tmp_path: Path
) -> None:
    name, owner = source
    outcome = rehearse(
        PG_ADMIN_URL, name, owner, migrations(tmp_path, project(*REVISIONS)),
        service="web", release="web 1.0.0", lock_timeout_ms=2000, statement_timeout_ms=60_000,
    )  # fmt: skip
    assert outcome.verdict == "passed", outcome.reason
    assert outcome.evidence["pending"] == ["0001_a1b2c3d40001", "0002_b2c3d4e50002", f"0003_{HEAD}"]
    assert outcome.evidence["rollback"]["result"] == "passed"  # alembic_version is gone again too
    assert {"users", "alembic_version"} <= set(outcome.evidence["touched"])
    assert outcome.evidence["rows_after"]["orders"] == 20_000  # the tables it does not name are intact


def test_seeding_keeps_alembics_version_table(database: tuple[str, str], tmp_path: Path) -> None:
    url, owner = database
    migrate(url, owner, migrations(tmp_path, project(*REVISIONS)))
    seeded = seed_database(url, 5, 1)
    assert seeded["tables"] == {"users": 5}
    assert alembic_current(url) == HEAD


SPEC = """
version: 1
project: {project}
services:
  web:
    command: python app.py
    health: {{path: /healthz, interval: 300ms, timeout: 250ms}}
    secrets: [POSTGRES_PASSWORD]
    migrations: {{path: db, format: alembic}}
    data:
      pii: [users.email]
      masking: {{users.email: email}}
      not_sensitive: [users.id, users.user_id, users.account_id]
environments:
  staging:
    tier: staging
    secrets:
      POSTGRES_PASSWORD: {{kind: database-password}}
    resources:
      database: {{engine: postgres, server: "{server}"}}
    router: {{port: {port}}}
    promotion: {{gates: [{{type: migration-rehearsal}}]}}
pipeline:
  stages: [staging]
"""


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_alembic_release_through_a_real_server(server: Server, tmp_path: Path) -> None:
    project_name = f"al{uuid.uuid4().hex[:8]}"
    spec = SPEC.format(project=project_name, server=PG_ADMIN_URL, port=free_port())
    (server.home.parent / "conveyor.yaml").write_text(spec)
    server.cli("apply", "--yes", check=True)
    database_name = f"{project_name}_staging"
    try:
        server.cli("secret", "set", "staging", "POSTGRES_PASSWORD", "--generate", check=True)
        server.cli("resource", "provision", "staging", check=True)
        register(server, tmp_path, "1.0.0", "user_id", project("a1b2c3d40001", "b2c3d4e50002"))
        register(server, tmp_path, "2.0.0", "account_id", project(*REVISIONS))
        plan = json.loads(
            server.cli("migrations", "plan", "staging", "web", "1.0.0", "-o", "json", check=True).stdout
        )
        assert plan["pending"] == ["0001_a1b2c3d40001", "0002_b2c3d4e50002"] and plan["ok"], plan
        server.cli("promote", "web", "1.0.0", "--to", "staging", "--wait", "90", check=True, timeout=120)

        url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{database_name}"
        assert alembic_current(url) == "b2c3d4e50002"
        status = json.loads(server.cli("migrations", "status", "staging", "-o", "json", check=True).stdout)
        assert [(a["id"], a["release"]) for a in status["applied"]] == [
            ("0001_a1b2c3d40001", "web 1.0.0"),
            ("0002_b2c3d4e50002", "web 1.0.0"),
        ]
        with server.admin() as http:
            (promotion,) = http.get("/api/v1/promotions", params={"environment": "staging"}).json()
            gates = http.get(f"/api/v1/promotions/{promotion['id']}").json()["gates"]
        (rehearsal,) = [g for g in gates if g["type"] == "migration-rehearsal"]
        assert rehearsal["state"] == "passed", rehearsal["reason"]
        assert rehearsal["evidence"]["rollback"]["result"] == "passed"

        # 1.0.0 still reads user_id: the release that drops it is refused, and nothing is recorded
        refused = server.cli("migrations", "plan", "staging", "web", "2.0.0", "-o", "json")
        assert refused.returncode == 1, refused.stderr
        assert [v["rule"] for v in json.loads(refused.stdout)["violations"]] == ["contract-drop-column"]
        promote = server.cli("promote", "web", "2.0.0", "--to", "staging")
        assert (
            promote.returncode == 1
            and "drops users.user_id, which it still reads or writes" in promote.stderr
        )
        assert alembic_current(url) == "b2c3d4e50002"
    finally:
        with _pg_connect(PG_ADMIN_URL) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database_name))
            )
            for role in (f"{database_name}_a", f"{database_name}_b", database_name):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))

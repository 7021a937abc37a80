"""Alembic edge: an artifact's Alembic project as the runner's `Migration` list (ADR 0018).

`service.bundle_migrations` calls `bundle_revisions` for `migrations.format: alembic`. The bundle is
extracted into a temporary directory and `conveyor.migrations.alembic_render` runs there in a
subprocess — env.py is the team's code and never runs inside the Conveyor server — with a stripped
environment, a dummy database URL (offline mode needs none) and a timeout. It renders each revision
of the single linear history to SQL offline, up and down. The pure parts map that to migrations:
version = position in the chain, name = the revision id made file-safe, checksum = the SHA-256 of the
revision file's bytes (so an edited applied revision is refused like an edited SQL file, and a newer
Alembic rendering the same file differently is not an edit), and the SQL without BEGIN/COMMIT (the
runner gives every migration its own transaction). The `alembic_version` statements stay, so
`alembic current` stays true; compat treats that table as bookkeeping.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.errors import InvalidRequest
from conveyor.migrations.compat import is_bookkeeping
from conveyor.migrations.files import Migration
from conveyor.migrations.schema import MigrationSqlInvalid, statements
from conveyor.runtime.local.bundle import BundleError, unpack

INI = "alembic.ini"
DUMMY_URL = "postgresql://render@localhost/render"
"""What env.py gets as `sqlalchemy.url` and DATABASE_URL: offline mode never connects to it."""
RENDER_TIMEOUT = 60.0
MAX_EXTRACT_BYTES = 1024**3
OFFLINE_HINT = (
    "offline mode (`alembic upgrade A:B --sql`) must not need a database connection: env.py must not "
    "connect when context.is_offline_mode(), and a revision cannot read rows (op.get_bind() data "
    "migrations that fetch results cannot be rendered; write the change as SQL with op.execute)"
)
LINEAR_HINT = (
    "Conveyor applies revisions one after another: make each new revision's down_revision the "
    "current head (re-point the newer branch's first revision) instead of branching or merging"
)
_KEPT_VARIABLES = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "SYSTEMROOT")
_NAME_MAX = 60
_UNUSED_WITH_SEMICOLON = re.compile(
    r"^([ \t]*--[ \t]*conveyor:[ \t]*unused[ \t]+\S+?)[ \t]*;[ \t]*$", re.MULTILINE | re.IGNORECASE
)


class AlembicProjectInvalid(InvalidRequest):
    """The artifact's Alembic project cannot be rendered: no alembic.ini, a bad script_location, a
    revision file that does not import, a history that is not one line, or env.py failing offline."""

    status = 422
    title = "Alembic project invalid"
    slug = "alembic-project-invalid"


@dataclass(frozen=True)
class Rendered:
    """One revision as `alembic_render` prints it: ids, its file, and its SQL up and down."""

    revision: str
    down_revision: str | None
    message: str
    file: str
    sha256: str
    up: str
    down: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rendered:
        """One item of the subprocess's `revisions`."""
        return cls(
            str(data["revision"]),
            None if data.get("down_revision") is None else str(data["down_revision"]),
            str(data.get("message") or ""),
            str(data["file"]),
            str(data["sha256"]),
            str(data["up"]),
            str(data["down"]),
        )


# ---- pure: the history, names and SQL ----------------------------------------------------------


def linear_order(revisions: Mapping[str, Sequence[str]], where: str = "the Alembic project") -> list[str]:
    """The revisions (id → the ids it revises) base first; AlembicProjectInvalid names every head,
    branch point and merge revision when the history is not a single line."""
    problems: list[str] = []
    children: dict[str, list[str]] = {rev: [] for rev in revisions}
    for rev, parents in sorted(revisions.items()):
        if len(parents) > 1:
            problems.append(f"merge revision {rev} (revises {', '.join(parents)})")
        for parent in parents:
            if parent not in revisions:
                problems.append(f"{rev} revises {parent}, which is not in the project")
            else:
                children[parent].append(rev)
    for rev, below in sorted(children.items()):
        if len(below) > 1:
            problems.append(f"branch point {rev} (revised by {', '.join(sorted(below))})")
    heads = sorted(rev for rev, below in children.items() if not below)
    bases = sorted(rev for rev, parents in revisions.items() if not parents)
    if len(heads) > 1:
        problems.append(f"several heads ({', '.join(heads)})")
    if len(bases) > 1:
        problems.append(f"several bases ({', '.join(bases)})")
    if revisions and not problems and (not heads or not bases):
        problems.append("a cycle: no revision starts or ends the history")
    if problems:
        raise AlembicProjectInvalid(
            f"{where} does not have one linear history: " + "; ".join(problems), hint=LINEAR_HINT
        )
    order = bases[:1]
    while order and children[order[-1]]:
        order.append(children[order[-1]][0])
    if len(order) != len(revisions):
        cycle = sorted(set(revisions) - set(order))
        raise AlembicProjectInvalid(
            f"{where} does not have one linear history: a cycle among {', '.join(cycle)}", hint=LINEAR_HINT
        )
    return order


def migration_name(revision: str) -> str:
    """The revision id as a migration name: lower-case letters, digits and '_' (files.py's rule)."""
    name = re.sub(r"[^a-z0-9]+", "_", revision.lower()).strip("_")[:_NAME_MAX].strip("_")
    return name or "revision"


def strip_transaction_control(sql: str, *, file: str) -> str:
    """`sql` without BEGIN/START TRANSACTION/COMMIT/END, each line kept where it was (reported line
    numbers stay those of `alembic upgrade --sql`). A ROLLBACK or a two-phase commit cannot run
    inside the runner's transaction and is refused; savepoints stay."""
    import pglast
    from pglast import ast, enums

    statements(sql, file=file)  # a parse error is reported with the file and line
    kinds = enums.TransactionStmtKind
    strip = {kinds.TRANS_STMT_BEGIN, kinds.TRANS_STMT_START, kinds.TRANS_STMT_COMMIT}
    refuse = {
        kinds.TRANS_STMT_ROLLBACK,
        kinds.TRANS_STMT_PREPARE,
        kinds.TRANS_STMT_COMMIT_PREPARED,
        kinds.TRANS_STMT_ROLLBACK_PREPARED,
    }
    # pglast reports statement and token positions in characters, not bytes
    tokens = [t for t in pglast.parser.scan(sql) if t.name not in ("SQL_COMMENT", "C_COMMENT")]
    cuts: list[tuple[int, int]] = []
    for raw in pglast.parse_sql(sql):
        if not isinstance(raw.stmt, ast.TransactionStmt):
            continue
        start = raw.stmt_location or 0
        end = start + (raw.stmt_len or len(sql) - start)
        if raw.stmt.kind in refuse:
            line = sql[:start].count("\n") + 1
            raise MigrationSqlInvalid(
                f"{file}, line {line}: {raw.stmt.kind.name.removeprefix('TRANS_STMT_')} cannot run inside "
                "the migration's own transaction",
                hint="remove it from the revision: Conveyor commits or rolls back each revision as a whole",
            )
        if raw.stmt.kind not in strip:
            continue
        inside = [t for t in tokens if start <= t.start < end]
        first = inside[0].start if inside else start
        after = next((t for t in tokens if t.start >= end), None)
        if after is not None and after.name == "ASCII_59":  # the statement's own ';'
            end = after.end + 1
        cuts.append((first, end))
    for first, end in reversed(cuts):
        sql = sql[:first] + sql[end:]
    return sql


def _unused_marks(sql: str) -> str:
    """`op.execute("-- conveyor: unused t.c")` renders with a trailing ';': the marker without it."""
    return _UNUSED_WITH_SEMICOLON.sub(r"\1", sql)


def _drops(sql: str, table: str, file: str) -> bool:
    return any(
        op.kind == "drop_table" and op.table == table
        for statement in statements(sql, file=file)
        for op in statement.ops
    )


def to_migrations(rendered: Sequence[Rendered], version_table: str) -> list[Migration]:
    """The runner's migrations for revisions rendered in order (base first).

    The first revision's SQL creates the version table; its way back drops it again (Alembic's
    offline downgrade to base leaves it empty), so a rehearsed rollback leaves no table behind.
    """
    if not is_bookkeeping(version_table):
        raise AlembicProjectInvalid(
            f"env.py configures the version table {version_table!r}",
            hint="keep Alembic's alembic_version, or name it alembic_version_SERVICE when several "
            "services share a database, so Conveyor treats it as history rather than application data",
        )
    migrations = []
    for version, revision in enumerate(rendered, start=1):
        name = migration_name(revision.revision)
        file = f"{version:04d}_{name}.sql"
        down_file = f"{version:04d}_{name}.down.sql"
        up = strip_transaction_control(_unused_marks(revision.up), file=file)
        down = strip_transaction_control(revision.down, file=down_file)
        if version == 1 and not _drops(down, version_table, down_file):
            down = down.rstrip("\n") + f"\n\nDROP TABLE {version_table};\n"
        migrations.append(Migration(version, name, up, "sha256:" + revision.sha256, down))
    return migrations


def render_environment(root: Path, home: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The subprocess's environment: the locale and PATH only — no CONVEYOR_* variable, no secret —
    with the bundle importable and a dummy database URL."""
    kept = {name: environ[name] for name in _KEPT_VARIABLES if name in environ}
    return {
        **kept,
        "HOME": str(home),
        "PYTHONPATH": str(root),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUTF8": "1",
        "DATABASE_URL": DUMMY_URL,
    }


# ---- the call ------------------------------------------------------------------------------------


def render(root: Path, directory: str, *, timeout: float = RENDER_TIMEOUT) -> tuple[list[Rendered], str]:
    """(each revision of the Alembic project at `root/directory` rendered, base first; the version
    table), from `python -m conveyor.migrations.alembic_render` run in a subprocess."""
    where = _where(directory)
    root = root.resolve()  # the subprocess reports resolved paths; they are shown relative to this
    project = root / directory
    if not project.is_dir():
        raise AlembicProjectInvalid(
            f"{where} is not a directory in the bundle",
            hint="set services.NAME.migrations.path to the directory holding alembic.ini",
        )
    command = [sys.executable, "-m", "conveyor.migrations.alembic_render", str(project)]
    process = subprocess.Popen(
        command,
        cwd=project,  # Alembic resolves a relative script_location and prepend_sys_path from here
        env=render_environment(root, root.parent, os.environ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so a timeout ends whatever env.py started too
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):  # it may have ended in the meantime
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise AlembicProjectInvalid(
            f"rendering {where} offline took longer than {timeout:.0f} s", hint=OFFLINE_HINT
        ) from None
    return _result(out, err, process.returncode, root, where)


def _result(out: str, err: str, code: int, root: Path, where: str) -> tuple[list[Rendered], str]:
    """What the subprocess printed, as revisions, or the error it reported (paths made bundle-relative)."""

    def relative(text: str) -> str:
        return text.replace(str(root) + os.sep, "").replace(str(root), ".")

    try:
        found = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    except json.JSONDecodeError:
        found = {}
    if code == 0 and "revisions" in found:
        revisions = [
            Rendered.from_json({**item, "file": relative(str(item["file"]))}) for item in found["revisions"]
        ]
        return revisions, str(found["version_table"])
    if "error" in found:
        raise AlembicProjectInvalid(f"{where}: {relative(found['error'])}", hint=found.get("hint"))
    last = next((line.strip() for line in reversed(err.splitlines()) if line.strip()), f"exit status {code}")
    failed = found.get("failed") or {}
    during = ""
    if failed.get("revision"):
        during = f" rendering revision {failed['revision']}"
        if failed.get("location"):
            during += f" ({relative(str(failed['location']))})"
    raise AlembicProjectInvalid(
        f"{where}: env.py failed offline{during}: {relative(last)}", hint=OFFLINE_HINT
    )


def _where(directory: str) -> str:
    return f"the Alembic project in {directory.strip('/') or '.'}"


def bundle_revisions(bundle: Path, digest: str, directory: str) -> list[Migration]:
    """The migrations of the Alembic project at `directory` of the bundle (verified against `digest`
    as it is extracted); the extraction is removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="conveyor-alembic-") as scratch:
        try:
            root = unpack(bundle, digest, Path(scratch) / "bundle", max_bytes=MAX_EXTRACT_BYTES)
        except BundleError as exc:
            raise AlembicProjectInvalid(
                f"cannot extract the bundle to render {_where(directory)}: {exc.detail}", hint=exc.hint
            ) from None
        rendered, version_table = render(root, directory)
    return to_migrations(rendered, version_table)

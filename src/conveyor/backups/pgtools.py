"""PostgreSQL edge for backups: pg_dump in an exported snapshot, pg_restore into a scratch database,
the inventory (row counts, constraints) a copy is checked against, and the swap that puts it in place.

Called by `backups.service` and `backups.restore`; nothing here reads or writes the state store.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from conveyor.errors import Conflict, first_line
from conveyor.resources import postgres

T = TypeVar("T")
HEARTBEAT_S = 5.0
"""How often a running tool's caller is called back (to record that the work is alive)."""
PARALLEL_FROM_BYTES = 64 * 1024 * 1024
"""Archives from this size restore with parallel jobs."""
_SCHEMAS = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'"


@dataclass(frozen=True)
class Inventory:
    """What a database holds, as a backup records it and a restored copy is checked against."""

    tables: dict[str, int]  # schema.table -> rows
    constraints: dict[str, bool]  # schema.table.constraint -> validated
    server_version: str


def tool(name: str) -> str:
    """The path of `pg_dump` or `pg_restore`: CONVEYOR_PG_BINDIR's, else the one on PATH."""
    bindir = os.environ.get("CONVEYOR_PG_BINDIR")
    found = str(Path(bindir) / name) if bindir else shutil.which(name)
    if not found or not os.access(found, os.X_OK):
        where = f"in CONVEYOR_PG_BINDIR={bindir}" if bindir else "on the server's PATH"
        raise Conflict(
            f"{name} is not installed {where}",
            hint="install PostgreSQL's client tools of at least the server's major version (e.g. "
            "apt-get install postgresql-client-15), or point CONVEYOR_PG_BINDIR at their directory",
        )
    return found


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def tool_target(url: str) -> tuple[str, dict[str, str]]:
    """How a tool reaches `url`: the URL for its argv, without a password, and the environment to run it in.

    Anyone on the machine can read a process's argv (`ps`); only its owner can read its environment.
    A password in the URL (user info or `password=` parameter) moves to PGPASSWORD; without one the
    tool authenticates as the server process does (its PGPASSWORD or ~/.pgpass).
    """
    parts = urlsplit(_libpq(url))
    password: str | None = None
    kept: list[str] = []
    for item in filter(None, parts.query.split("&")):  # kept as written: libpq decodes only %XX
        key, _, value = item.partition("=")
        if unquote(key) == "password":
            password = unquote(value)
        else:
            kept.append(item)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, secret = userinfo.partition(":")
        if colon:
            password = unquote(secret)
        netloc = f"{user}@{hostport}" if user else hostport
    safe = urlunsplit((parts.scheme, netloc, parts.path, "&".join(kept), ""))
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = password
    return safe, env


def inventory(conn: Any) -> Inventory:
    """Exact row counts of every user table and every constraint, read in `conn`'s transaction."""
    from psycopg import sql

    tables = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE c.relkind = 'r' AND {_SCHEMAS} AND NOT EXISTS "
        "(SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e') ORDER BY 1, 2"
    ).fetchall()
    counts: dict[str, int] = {}
    for schema, table in tables:
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        counts[f"{schema}.{table}"] = int(conn.execute(query).fetchone()[0])
    constraints = {
        f"{schema}.{table}.{name}": bool(valid)
        for schema, table, name, valid in conn.execute(
            "SELECT n.nspname, c.relname, co.conname, co.convalidated FROM pg_constraint co "
            "JOIN pg_class c ON c.oid = co.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE {_SCHEMAS} AND co.contype IN ('p', 'u', 'f', 'c', 'x') ORDER BY 1, 2, 3"
        ).fetchall()
    }
    version = str(conn.execute("SHOW server_version").fetchone()[0])
    return Inventory(counts, constraints, version)


def inspect(url: str, database: str) -> Inventory:
    """The inventory of `database` now (one REPEATABLE READ transaction)."""
    import psycopg

    try:
        with psycopg.connect(_libpq(postgres.with_database(url, database)), connect_timeout=5) as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            return inventory(conn)
    except psycopg.Error as exc:
        raise Conflict(f"cannot read database {database}: {first_line(exc)}") from None


_ROW_DATA = ("DETAIL:", "CONTEXT:", "Command was:", "LINE ", "HINT:", "QUERY:")


def tool_error(stderr: str) -> str:
    """What a failed pg_dump/pg_restore said, without the lines that can quote row values.

    PostgreSQL's DETAIL (`Key (email)=(alice@…) already exists`), CONTEXT and `Command was:` lines
    may carry production data; only the error lines themselves are kept, for logs and audit.
    """
    lines = [x.strip() for x in stderr.splitlines() if x.strip()]
    kept = [
        x for x in lines if not any(marker in x for marker in _ROW_DATA) and not x.startswith(("\t", "  "))
    ]
    errors = [x for x in kept if "error:" in x or x.startswith("ERROR:")]
    chosen = (errors or kept)[-2:]
    return " | ".join(chosen) if chosen else "no message"


def run(argv: list[str], alive: Callable[[], None], what: str, env: dict[str, str] | None = None) -> None:
    """Run a PostgreSQL tool, calling `alive` every HEARTBEAT_S; a Conflict with its stderr when it fails.

    `env` (from `tool_target`) carries the password the argv leaves out. The child is killed if we
    are interrupted, so no tool outlives the work it was doing.
    """
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=env
        )
        try:
            while True:
                try:
                    code = proc.wait(timeout=HEARTBEAT_S)
                    break
                except subprocess.TimeoutExpired:
                    alive()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if code != 0:
            stderr.seek(0)
            why = tool_error(stderr.read().decode(errors="replace"))
            how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            hint = (
                "use client tools of at least the server's major version: point CONVEYOR_PG_BINDIR at them"
                if "version mismatch" in why or "unsupported version" in why
                else None
            )
            raise Conflict(f"{what} failed ({how}): {why}", hint=hint)


@contextmanager
def exported_snapshot(url: str, database: str) -> Iterator[tuple[str, Any]]:
    """A REPEATABLE READ READ ONLY transaction on `database`: (its exported snapshot, its connection).

    `pg_dump --snapshot` dumps exactly what this transaction sees; the transaction stays open (and
    the snapshot valid) until the block ends.
    """
    import psycopg

    try:
        conn = psycopg.connect(_libpq(postgres.with_database(url, database)), connect_timeout=5)
    except psycopg.Error as exc:
        host, port = postgres.endpoint(url)
        raise Conflict(
            f"cannot connect to database {database} at {host}:{port}: {first_line(exc)}",
            hint="check the server is up and the database is provisioned (`conveyor resource show ENV`)",
        ) from None
    try:
        try:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            exported: Any = conn.execute("SELECT pg_export_snapshot()").fetchone()
        except psycopg.Error as exc:
            raise Conflict(f"cannot read database {database}: {first_line(exc)}") from None
        yield str(exported[0]), conn
    finally:
        conn.close()


def backup(url: str, database: str, path: Path, alive: Callable[[], None]) -> Inventory:
    """pg_dump -Fc of `database` into `path`, and the inventory of the very snapshot it dumps.

    While pg_dump dumps the exported snapshot, the exporting transaction counts every table's rows
    in it, side by side: the recorded counts describe the dump, however much the app writes meanwhile.
    """
    with (
        exported_snapshot(url, database) as (snapshot, conn),
        ThreadPoolExecutor(1, thread_name_prefix="conveyor-count") as pool,
    ):
        counting = pool.submit(_inventory_of, conn, database)
        try:
            dump(url, database, snapshot, path, alive)
            return keep_alive(counting, alive)
        except BaseException:
            conn.cancel_safe()  # a count still running is of no use any more
            raise


def _inventory_of(conn: Any, database: str) -> Inventory:
    import psycopg

    try:
        return inventory(conn)
    except psycopg.Error as exc:
        raise Conflict(f"cannot count the rows of database {database}: {first_line(exc)}") from None


def keep_alive(work: Future[T], alive: Callable[[], None]) -> T:
    """Wait for `work`, calling `alive` every HEARTBEAT_S; its result or its exception."""
    while True:
        try:
            return work.result(timeout=HEARTBEAT_S)
        except FutureTimeout:
            alive()


def call_alive(fn: Callable[[], T], alive: Callable[[], None]) -> T:
    """Run `fn` in a worker thread, calling `alive` every HEARTBEAT_S until it returns."""
    with ThreadPoolExecutor(1, thread_name_prefix="conveyor-work") as pool:
        return keep_alive(pool.submit(fn), alive)


def dump(url: str, database: str, snapshot: str, path: Path, alive: Callable[[], None]) -> None:
    """pg_dump -Fc of `database` as seen by `snapshot` into `path` (created 0600 before pg_dump writes)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    target, env = tool_target(postgres.with_database(url, database))
    run(
        [
            tool("pg_dump"),
            f"--dbname={target}",
            "--format=custom",
            f"--snapshot={snapshot}",
            "--lock-wait-timeout=60s",  # a table locked exclusively fails the backup instead of hanging it
            "--no-password",
            f"--file={path}",
        ],
        alive,
        "pg_dump",
        env,
    )
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def create_scratch(url: str, name: str, owner: str) -> None:
    """An empty database `name` owned by `owner`, closed to others; a leftover of that name is dropped."""
    from psycopg import sql

    with postgres.connect(url) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
                sql.Identifier(name), sql.Identifier(owner)
            )
        )
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))


def restore(url: str, database: str, owner: str, path: Path, alive: Callable[[], None]) -> None:
    """pg_restore `path` into `database`; every object belongs to `owner` (the environment's owner role)."""
    target, env = tool_target(postgres.with_database(url, database))
    run(
        [
            tool("pg_restore"),
            f"--dbname={target}",
            "--no-owner",
            "--no-acl",
            f"--role={owner}",
            "--exit-on-error",
            f"--jobs={jobs(path.stat().st_size)}",
            "--no-password",
            str(path),
        ],
        alive,
        "pg_restore",
        env,
    )


def jobs(size_bytes: int) -> int:
    """pg_restore's parallel jobs: one for a small archive (workers cost more than they save), else 2–4."""
    return 1 if size_bytes < PARALLEL_FROM_BYTES else max(1, min(4, os.cpu_count() or 1))


def drop(url: str, name: str) -> None:
    """Drop database `name` if it exists, ending its sessions."""
    from psycopg import sql

    with postgres.connect(url) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def exists(url: str, name: str) -> bool:
    """Whether database `name` exists on the server."""
    with postgres.connect(url) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def swap_in(url: str, target: str, scratch: str, old: str, owner: str, wait_s: float = 10.0) -> int:
    """Put `scratch` in place of `target` by renaming both in one transaction; returns sessions ended.

    New connections to the target are refused first, its open sessions are ended (they would keep
    reading the old data), then the renames commit together: at every moment the name `target`
    is either the old database or the restored one. The old database ends up as `old`.
    """
    from psycopg import sql

    ident = sql.Identifier
    with postgres.connect(url) as conn:
        grants = (
            sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident(scratch)),
            sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(ident(scratch), ident(owner)),
        )
        for statement in grants:
            conn.execute(statement)
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target,)).fetchone() is None:
            conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(scratch), ident(target)))
            return 0
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(ident(target)))
        try:
            ended = _end_sessions(conn, target, wait_s)
            with conn.transaction():
                conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(target), ident(old)))
                conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(scratch), ident(target)))
        except BaseException:
            conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(ident(target)))
            raise
    return ended


def _end_sessions(conn: Any, database: str, wait_s: float) -> int:
    """Terminate every session of `database` and wait until they are gone; returns how many there were."""
    ended: set[int] = set()
    deadline = time.monotonic() + wait_s
    while True:
        pids = [
            pid
            for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (database,)
            ).fetchall()
        ]
        if not pids:
            return len(ended)
        if time.monotonic() > deadline:
            raise Conflict(
                f"{len(pids)} session(s) of {database} did not end within {wait_s:.0f}s",
                hint="nothing was changed; retry, or stop what holds them",
            )
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            ended.add(pid)
        time.sleep(0.05)


def sha256_file(path: Path) -> tuple[str, int]:
    """The file's sha256 (hex) and size in bytes."""
    import hashlib

    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size

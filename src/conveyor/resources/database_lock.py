"""One operation at a time on an environment's database: restore, masked clone, seed and reset.

`backups/restore.py`, `data/service.py` and `data/reset.py` hold `hold(...)` for as long as they
change a target database. The lock is a session-level PostgreSQL advisory lock taken on the admin
database of the server that holds the target, so every worker and every Conveyor server using that
PostgreSQL shares it, and it goes away with its connection when the process holding it dies.

Its key is the two-int4 form `(LOCK_CLASS, hashtext(database))`. PostgreSQL keeps that key space
apart from the single-bigint keys, which the migration runner takes in the target database itself
(`migrations/runner.py`), so the two never collide. A second operation is refused at once (409),
naming the one running: the holder's connection carries its operation in `application_name`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from conveyor.errors import Conflict
from conveyor.resources import postgres

LOCK_CLASS = 0x63767972  # "cvyr": the first int4 of every target-database lock
Operation = Literal["restore", "clone", "seed", "reset"]
DESCRIBED: dict[str, str] = {
    "restore": "a restore",
    "clone": "a masked clone",
    "seed": "a seed",
    "reset": "a reset",
}
_APP = "conveyor: "


class DatabaseBusy(Conflict):
    """Another restore, clone, seed or reset holds the target database; nothing was changed."""

    title = "Database busy"
    slug = "database-busy"


@dataclass(frozen=True)
class Holder:
    """Who holds a target database's lock: the operation and when its connection started."""

    operation: str | None
    since: str


def application_name(operation: Operation, environment: str) -> str:
    """What the lock's connection calls itself (≤ 63 bytes, as PostgreSQL keeps it)."""
    return f"{_APP}{operation} of {environment}"[:63]


def holder(conn: Any, database: str) -> Holder | None:
    """The session holding `database`'s lock on the server `conn` is connected to, if any."""
    row = conn.execute(
        "SELECT a.application_name, to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') "
        "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.classid = %s::int4::oid AND l.objid = hashtext(%s)::oid",
        (LOCK_CLASS, database),
    ).fetchone()
    if row is None:
        return None
    name = str(row[0] or "")
    operation = name.removeprefix(_APP).split(" ", 1)[0] if name.startswith(_APP) else None
    return Holder(operation if operation in DESCRIBED else None, str(row[1]))


def busy(environment: str, found: Holder | None) -> DatabaseBusy:
    """The refusal of a second operation, naming the one that runs."""
    what = DESCRIBED.get(found.operation or "", "another operation") if found else "another operation"
    since = f" started at {found.since} UTC;" if found else ""
    return DatabaseBusy(
        f"{environment}'s database is busy: {what} is running; try again when it finishes",
        hint=f"{what[0].upper()}{what[1:]}{since} nothing was changed by this request",
        running=found.operation if found else None,
    )


@contextmanager
def hold(server: str, database: str, environment: str, operation: Operation) -> Iterator[None]:
    """Hold `database`'s lock on `server` for the block; DatabaseBusy at once when another holds it."""
    import psycopg

    with postgres.connect(server) as conn:
        conn.execute(
            "SELECT set_config('application_name', %s, false)", (application_name(operation, environment),)
        )
        conn.execute("SET idle_session_timeout = 0")  # the connection idles while the work runs
        taken = conn.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (LOCK_CLASS, database)
        ).fetchone()
        if not taken or not taken[0]:
            raise busy(environment, holder(conn, database))
        try:
            yield
        finally:
            with contextlib.suppress(psycopg.Error):  # a broken connection has released it already
                conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (LOCK_CLASS, database))

"""PostgreSQL edge: an environment's database, its owner role and two login roles (ADR 0013).

The app logs in as one of two login roles, both members of the owner role (objects they create
belong to the owner). A new password goes on the login the running release does not use, so the
old password keeps working until no instance needs it; then that login is retired (NOLOGIN).
Passwords reach the server as SCRAM-SHA-256 verifiers, never as plain text a statement log could
keep.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from conveyor.errors import Conflict, first_line

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
SCRAM_ITERATIONS = 4096


@dataclass(frozen=True)
class Names:
    """The database and roles of one environment."""

    database: str
    owner: str
    logins: tuple[str, str]


def names(project: str, environment: str, database: str | None = None) -> Names:
    """Pure: `shop_production`, its owner role of the same name, logins `…_a` and `…_b` (≤ 63 bytes)."""
    base = database or re.sub(r"[^a-z0-9_]", "_", f"{project}_{environment}".lower())[:50]
    if not re.match(r"[a-z_]", base):
        base = f"db_{base}"[:50]
    return Names(base, base, (f"{base}_a", f"{base}_b"))


def server_url(configured: str | None) -> str:
    """The server to provision on: conveyor.yaml's, else CONVEYOR_POSTGRES_URL, else local."""
    return configured or os.environ.get("CONVEYOR_POSTGRES_URL") or DEFAULT_SERVER


def endpoint(url: str) -> tuple[str, str]:
    """(host, port) the app connects to."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", str(parts.port or 5432)


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def as_login(url: str, login: str, password: str) -> str:
    """`url` signed in as `login` with `password` (any user or password it named is replaced)."""
    parts = urlsplit(url)
    hostport = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(login, safe='')}:{quote(password, safe='')}@{hostport}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802, RFC 7677)."""
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = base64.b64encode
    return (
        f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
        f"${b64(stored_key).decode()}:{b64(server_key).decode()}"
    )


@contextmanager
def connect(url: str) -> Iterator[Any]:
    """An autocommit admin connection; a clear error when the server cannot be reached."""
    import psycopg

    host, port = endpoint(url)
    try:
        conn = psycopg.connect(
            url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True, connect_timeout=5
        )
    except psycopg.Error as exc:
        first = first_line(exc)
        raise Conflict(
            f"cannot reach PostgreSQL at {host}:{port}: {first}",
            hint="start it, or point resources.database.server (or CONVEYOR_POSTGRES_URL) at a server "
            "Conveyor may create databases and roles on",
        ) from None
    try:
        yield conn
    finally:
        conn.close()


def _exists(conn: Any, query: str, name: str) -> bool:
    return conn.execute(query, (name,)).fetchone() is not None


def provision(url: str, n: Names) -> dict[str, Any]:
    """Create what is missing (idempotent): owner role, two login roles, the database, its grants."""
    from psycopg import sql

    created: list[str] = []
    with connect(url) as conn:
        if not _exists(conn, "SELECT 1 FROM pg_roles WHERE rolname = %s", n.owner):
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(n.owner)))
            created.append(f"role {n.owner}")
        for login in n.logins:
            if not _exists(conn, "SELECT 1 FROM pg_roles WHERE rolname = %s", login):
                conn.execute(
                    sql.SQL("CREATE ROLE {} NOLOGIN IN ROLE {}").format(
                        sql.Identifier(login), sql.Identifier(n.owner)
                    )
                )
                # what the app creates belongs to the owner, so either login can use it
                conn.execute(
                    sql.SQL("ALTER ROLE {} SET role = {}").format(sql.Identifier(login), sql.Literal(n.owner))
                )
                created.append(f"role {login}")
        if not _exists(conn, "SELECT 1 FROM pg_database WHERE datname = %s", n.database):
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(n.database), sql.Identifier(n.owner)
                )
            )
            created.append(f"database {n.database}")
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(n.database)))
        conn.execute(
            sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
                sql.Identifier(n.database), sql.Identifier(n.owner)
            )
        )
    return {"created": created}


def set_login(url: str, role: str, password: str) -> None:
    """Let `role` log in with `password` (sent as a SCRAM verifier)."""
    from psycopg import sql

    with connect(url) as conn:
        conn.execute(
            sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(scram_verifier(password))
            )
        )


def retire_login(url: str, role: str) -> None:
    """No new sessions for `role`; sessions already open finish their work."""
    from psycopg import sql

    with connect(url) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} WITH NOLOGIN PASSWORD NULL").format(sql.Identifier(role)))


def describe(url: str, n: Names) -> dict[str, Any]:
    """Whether the database exists, its size and sessions, and which logins may log in."""
    with connect(url) as conn:
        row = conn.execute(
            "SELECT pg_database_size(datname), "
            "(SELECT count(*) FROM pg_stat_activity WHERE datname = %s) FROM pg_database WHERE datname = %s",
            (n.database, n.database),
        ).fetchone()
        logins = dict(
            conn.execute(
                "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY(%s)", (list(n.logins),)
            ).fetchall()
        )
    return {
        "exists": row is not None,
        "size_bytes": row[0] if row else None,
        "sessions": row[1] if row else 0,
        "logins": {login: bool(logins.get(login, False)) for login in n.logins},
    }


def reset(url: str, n: Names) -> None:
    """Drop the database (ending its sessions) and create it empty again, owned by the owner role."""
    from psycopg import sql

    with connect(url) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(n.database)))
    provision(url, n)

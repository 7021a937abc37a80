"""Engines and transactions for the state store; the only place that knows SQLite from PostgreSQL.

Writes on SQLite take the database write lock up front (`BEGIN IMMEDIATE`) so two writers queue
instead of failing half-way; on PostgreSQL writers serialise on the audit chain head row instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from conveyor.errors import Conflict, StoreError


def normalize_url(url: str) -> str:
    """Accept `postgresql://` and `postgres://` as the psycopg 3 driver URL SQLAlchemy expects."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe for logs and API responses."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database url>"


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")


class Store:
    """An engine plus read and write transactions; one per process."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.dialect = make_url(self.url).get_backend_name()
        kwargs: dict[str, Any] = {"future": True}
        if self.dialect == "sqlite":
            database = make_url(self.url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 10}
        else:
            kwargs.update(pool_pre_ping=True, pool_size=5, max_overflow=10)
        self.engine = create_engine(self.url, **kwargs)
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only unit of work (rolled back at the end)."""
        # closing (not rolling back) keeps loaded attributes readable after the block
        with self._connect(write=False) as conn, Session(bind=conn, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One atomic transaction: committed when the block ends, rolled back on any exception."""
        try:
            with (
                self._connect(write=True) as conn,
                Session(bind=conn, expire_on_commit=False) as session,
                session.begin(),
            ):
                yield session
        except IntegrityError:
            # two requests created the same thing at the same moment; the loser's transaction is gone
            raise Conflict(
                "a concurrent change to the same object was committed first; nothing was changed",
                hint="look at the current state and run the command again",
            ) from None
        except OperationalError as exc:
            if "locked" not in str(exc.orig).lower():
                raise
            raise StoreError(
                "the state store stayed locked by another writer for too long; nothing was changed",
                hint="retry; on SQLite only one server process may write (use PostgreSQL for several)",
            ) from None

    @contextmanager
    def _connect(self, *, write: bool) -> Iterator[Any]:
        try:
            conn = self.engine.connect()
        except OperationalError as exc:
            raise StoreError(
                f"cannot connect to the state store at {redact_url(self.url)}: {exc.orig}",
                hint="check CONVEYOR_DATABASE_URL and that the database server is running",
            ) from None
        # info lives on the pooled DBAPI connection, so set it on every checkout
        conn.info["write"] = write
        try:
            yield conn
        finally:
            conn.close()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

"""Conveyor's own schema migrations (Alembic), and the check the server runs before it serves."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from conveyor.errors import StoreNotMigrated
from conveyor.store.db import Store, redact_url

_SCRIPTS = Path(__file__).parent / "migrations"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_SCRIPTS))
    return cfg


def head_revision() -> str:
    """The newest schema revision this Conveyor ships."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(store: Store) -> str | None:
    """The schema revision the store is at, or None when it was never migrated."""
    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(store: Store, target: str = "head") -> tuple[str | None, str]:
    """Migrate the store to `target` (the newest schema by default); returns (before, after)."""
    before = current_revision(store)
    cfg = _config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, target)
    return before, head_revision() if target == "head" else target


def is_empty(store: Store) -> bool:
    """True when the store holds no tables at all (a brand-new database)."""
    with store.engine.connect() as conn:
        return not inspect(conn).get_table_names()


def ensure_migrated(store: Store) -> str:
    """Raise StoreNotMigrated unless the store is at the newest schema; returns that revision."""
    current, head = current_revision(store), head_revision()
    if current == head:
        return head
    if current is None:
        detail = f"the state store at {redact_url(store.url)} has no Conveyor schema yet"
    else:
        detail = f"the state store is at schema revision {current}; this Conveyor needs {head}"
    raise StoreNotMigrated(detail, hint="run `conveyor db upgrade`, then start the server again")

"""The state store: SQLAlchemy 2 tables and transactions over SQLite (embedded) or PostgreSQL (teams)."""

from conveyor.store.db import Store, normalize_url, redact_url

__all__ = ["Store", "normalize_url", "redact_url"]

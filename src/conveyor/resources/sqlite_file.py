"""SQLite edge: an environment's database file under the server's home, for local development (ADR 0017).

The file is the record: it exists once provisioned. The directory is 0700 and the file 0600, so
only the account that runs Conveyor and its instances can read the data.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from conveyor.errors import Conflict
from conveyor.settings import conveyor_home

SUFFIXES = ("", "-wal", "-shm", "-journal")


def path_of(environment: str, home: Path | None = None) -> Path:
    """Pure given `home`: HOME/data/ENVIRONMENT.sqlite3 (the server's home by default)."""
    return (home or conveyor_home()) / "data" / f"{environment}.sqlite3"


def url_of(path: Path) -> str:
    """`sqlite:////absolute/path`: SQLAlchemy's form (three slashes, then the absolute path)."""
    return f"sqlite:///{path}"


def provision(path: Path) -> dict[str, Any]:
    """Create the directory (0700) and an empty database file (0600) when missing (idempotent)."""
    created = not path.exists()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        if created:
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        os.chmod(path, 0o600)
        with sqlite3.connect(path) as conn:  # an empty file is a database; this proves it opens
            conn.execute("PRAGMA user_version").fetchone()
        conn.close()
    except (OSError, sqlite3.Error) as exc:
        raise Conflict(
            f"cannot create the SQLite file {path}: {exc}",
            hint="check that the server's home is writable by the account running Conveyor",
        ) from None
    return {"created": [f"file {path}"] if created else []}


def describe(path: Path) -> dict[str, Any]:
    """Whether the file exists, its size and mode."""
    if not path.exists():
        return {"exists": False, "size_bytes": None}
    stat = path.stat()
    return {"exists": True, "size_bytes": stat.st_size, "mode": oct(stat.st_mode & 0o777)}


def reset(path: Path) -> None:
    """Remove the file (and its journal files) and create it empty again."""
    for suffix in SUFFIXES:
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    provision(path)

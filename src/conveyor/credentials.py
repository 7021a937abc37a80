"""The local credentials file (`.conveyor/credentials`, mode 0600): server URL, user and token."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_private(path: Path, content: str) -> None:
    """Atomically write a file that only its owner can read (0600 from the first byte)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, content.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_credentials(path: Path, *, url: str, user: str, token: str) -> None:
    """Store the CLI's credentials for `user` at `url`."""
    write_private(path, json.dumps({"url": url, "user": user, "token": token}, indent=2) + "\n")


def read_credentials(path: Path) -> dict[str, Any] | None:
    """The credentials file as a dict, or None when it does not exist."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data

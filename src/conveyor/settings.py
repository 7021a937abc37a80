"""Where Conveyor keeps its local files and which store it uses, read from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 8470
DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class Settings:
    """Resolved settings for one server or CLI process."""

    home: Path
    database_url: str

    @property
    def pid_file(self) -> Path:
        return self.home / "server.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "server.log"

    @property
    def credentials_file(self) -> Path:
        return self.home / "credentials"

    @property
    def server_file(self) -> Path:
        return self.home / "server.json"


def conveyor_home() -> Path:
    """`CONVEYOR_HOME`, or `.conveyor/` in the current directory."""
    return Path(os.environ.get("CONVEYOR_HOME") or Path.cwd() / ".conveyor").absolute()


def load_settings() -> Settings:
    """Settings from `CONVEYOR_HOME` and `CONVEYOR_DATABASE_URL` (default: SQLite under the home)."""
    home = conveyor_home()
    url = os.environ.get("CONVEYOR_DATABASE_URL") or f"sqlite:///{home / 'state.db'}"
    return Settings(home=home, database_url=url)

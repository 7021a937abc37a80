"""Fixtures shared by every tier: throwaway stores on SQLite and PostgreSQL, real server processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, settings

from tests.cli_forkserver import ForkServer

# shared, noisy machines: judge properties, not how fast examples are generated
settings.register_profile(
    "conveyor", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "conveyor"))

PG_ADMIN_URL = os.environ.get("CONVEYOR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).resolve().parent.parent

# the CLI runs in children forked from one warm process per worker (tests/cli_forkserver.py)
_FORK_SERVER = None if os.environ.get("CONVEYOR_TEST_CLI") == "spawn" else ForkServer()


@pytest.fixture(scope="session", autouse=True)
def _close_fork_server() -> Iterator[None]:
    yield
    if _FORK_SERVER is not None:
        _FORK_SERVER.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_connect(url: str):  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)


@pytest.fixture(scope="session")
def pg_available() -> bool:
    try:
        with _pg_connect(PG_ADMIN_URL):
            return True
    except Exception as exc:
        pytest.fail(f"PostgreSQL is required for the suite and is not reachable at {PG_ADMIN_URL}: {exc}")


def make_pg_database() -> tuple[str, str]:
    """Create a throwaway PostgreSQL database; returns (its URL, its name)."""
    name = f"conveyor_test_{uuid.uuid4().hex[:12]}"
    with _pg_connect(PG_ADMIN_URL) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}", name


def drop_pg_database(name: str) -> None:
    with _pg_connect(PG_ADMIN_URL) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty state store URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    request.getfixturevalue("pg_available")
    url, name = make_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(name)


@dataclass
class Cli:
    """Runs the real `conveyor` command in a subprocess against one home directory."""

    home: Path
    env: dict[str, str] = field(default_factory=dict)

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        token: str | None = None,
        check: bool = False,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        if "--wait" in args[:-1]:  # the command's own wait runs out first, and says why
            waited = args[args.index("--wait") + 1]
            timeout = max(timeout, float(waited) + 30) if waited.isdigit() else timeout
        env = {**os.environ, **self.env, "CONVEYOR_HOME": str(self.home), "NO_COLOR": "1", "COLUMNS": "200"}
        env.pop("CONVEYOR_TOKEN", None)
        self.home.parent.mkdir(parents=True, exist_ok=True)
        if token:
            env["CONVEYOR_TOKEN"] = token
        if _FORK_SERVER is not None:
            proc = _FORK_SERVER.run(list(args), cwd=self.home.parent, env=env, input=input, timeout=timeout)
        else:  # a fresh interpreter each time
            proc = subprocess.run(
                [sys.executable, "-m", "conveyor", *args],
                cwd=self.home.parent,
                env=env,
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"conveyor {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc


@dataclass
class Server:
    """A real background server started with `conveyor up`."""

    cli: Cli
    url: str
    admin_token: str
    database_url: str

    @property
    def home(self) -> Path:
        return self.cli.home

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def admin(self) -> httpx.Client:
        return self.http(self.admin_token)

    def pid(self) -> int:
        return int((self.home / "server.pid").read_text())

    def log(self) -> str:
        return (self.home / "server.log").read_text(errors="replace")


def start_server(workdir: Path, database_url: str, env: dict[str, str] | None = None) -> Server:
    """`conveyor up` on a free port in a fresh home under `workdir` (`env` reaches server and agent)."""
    home = workdir / ".conveyor"
    # the engine looks again at running gates and starting deployments every 0.2 s instead of 1 s, so
    # promotions in tests move as soon as their step is done (a test may set its own values)
    fast = {"CONVEYOR_ENGINE_TICK": "0.1", "CONVEYOR_ENGINE_POLL": "0.2"}
    cli = Cli(home, {"CONVEYOR_DATABASE_URL": database_url, **fast, **(env or {})})
    for attempt in range(3):
        port = free_port()
        started = cli("up", "--port", str(port), "--agent-port", str(free_port()))
        if started.returncode == 0:
            break
        cli("down")  # `up` leaves the agent it started running when the server fails to start
        # a free port can be taken by another test's process before ours binds it: try others
        taken = "already in use" in started.stderr or "could not listen there" in started.stderr
        if not taken or attempt == 2:
            raise AssertionError(
                f"conveyor up exited {started.returncode}\n{started.stdout}\n{started.stderr}"
            )
    creds = json.loads((home / "credentials").read_text())
    return Server(cli, f"http://127.0.0.1:{port}", creds["token"], database_url)


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    """A running server on a fresh store, on SQLite and on PostgreSQL."""
    srv = start_server(tmp_path / "project", database_url)
    try:
        yield srv
    finally:
        srv.cli("down")

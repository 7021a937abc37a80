"""kill -9 the server while a release's migration runs: nothing half-applied, and the release finishes later.

The migration's transaction dies with the server's connection; the next server takes the
promotion over when the lease runs out, waits for the migration lock, applies the migration once,
and only then starts the new version.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from psycopg import sql

from tests.conftest import PG_ADMIN_URL, Server, _pg_connect, free_port, start_server
from tests.integration.migrations.test_expand_contract import register, release_files

pytestmark = pytest.mark.integration

SPEC = """
version: 1
project: {project}
services:
  web:
    command: python app.py
    health: {{path: /healthz, interval: 300ms, timeout: 250ms}}
    secrets: [POSTGRES_PASSWORD]
    migrations: migrations
    data:
      pii: [users.email]
      masking: {{users.email: email}}
      not_sensitive: [users.id, users.user_id, users.account_id, users.note]
environments:
  staging:
    tier: staging
    secrets:
      POSTGRES_PASSWORD: {{kind: database-password}}
    resources:
      database: {{engine: postgres, server: "{server}"}}
    router: {{port: {port}}}
pipeline:
  stages: [staging]
"""
SLOW = b"SELECT pg_sleep(4);\nALTER TABLE users ADD COLUMN note text;\n"


def database_state(database: str) -> tuple[set[str], list[str]]:
    with _pg_connect(f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{database}") as conn:
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'users'"
            )
        }
        applied = [r[0] for r in conn.execute("SELECT id FROM conveyor_schema_migrations ORDER BY id")]
    return columns, applied


def sleeping(database: str) -> bool:
    with _pg_connect(PG_ADMIN_URL) as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND query LIKE 'SELECT pg_sleep%%'",
            (database,),
        ).fetchone()
    return row is not None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_server_killed_during_a_migration_leaves_nothing_half_done_and_the_next_one_finishes(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_ENGINE_LEASE", "3")
    server = start_server(tmp_path / "project", database_url)
    project = f"km{uuid.uuid4().hex[:8]}"
    database = f"{project}_staging"
    try:
        run(server, tmp_path, project, database)
    finally:
        server.cli("down")
        with _pg_connect(PG_ADMIN_URL) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
            for role in (f"{database}_a", f"{database}_b", database):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def run(server: Server, tmp_path: Path, project: str, database: str) -> None:
    port = free_port()
    (server.home.parent / "conveyor.yaml").write_text(
        SPEC.format(project=project, server=PG_ADMIN_URL, port=port)
    )
    server.cli("apply", "--yes", check=True)
    server.cli("secret", "set", "staging", "POSTGRES_PASSWORD", "--generate", check=True)
    server.cli("resource", "provision", "staging", check=True)
    register(server, tmp_path, "1.0.0", "user_id", release_files("1.0.0"))
    register(
        server, tmp_path, "1.1.0", "user_id", {**release_files("1.0.0"), "migrations/0002_note.sql": SLOW}
    )
    server.cli("promote", "web", "1.0.0", "--to", "staging", "--wait", "60", check=True, timeout=90)

    server.cli("promote", "web", "1.1.0", "--to", "staging", check=True)
    deadline = time.monotonic() + 30
    while not sleeping(database):
        assert time.monotonic() < deadline, "the migration never started"
        time.sleep(0.05)
    os.kill(int((server.home / "server.pid").read_text()), signal.SIGKILL)
    columns, applied = database_state(database)
    assert "note" not in columns and applied == ["0001_users"]  # nothing of 0002 is visible

    server.cli("up", "--port", server.url.rsplit(":", 1)[1], check=True)  # the agent kept running
    server.cli("promotion", "wait", "2", "--timeout", "50")
    final = json.loads(server.cli("promotion", "show", "2", "-o", "json", check=True).stdout)
    assert final["state"] == "succeeded", final
    columns, applied = database_state(database)
    assert "note" in columns and applied == ["0001_users", "0002_note"]  # applied once
    with server.admin() as http:
        events = http.get("/api/v1/audit/events", params={"action": "migrations.apply"}).json()
    audited = sorted(e["details"]["applied"][0]["id"] for e in events if e["details"]["applied"])
    assert audited == ["0001_users", "0002_note"]  # one audited application each

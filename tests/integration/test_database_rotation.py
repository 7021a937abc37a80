"""A PostgreSQL database per environment, and its password rotated under traffic with zero failed requests.

The app opens a new connection on every request, so any moment without a working password would
show up as a failed request.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from conveyor.resources.postgres import scram_verifier
from tests.conftest import PG_ADMIN_URL, Server, _pg_connect, free_port
from tests.integration.test_promotions import add_user, register

pytestmark = pytest.mark.integration

SPEC = """
version: 1
project: {project}
services:
  web:
    command: python app.py
    health: {{path: /healthz, interval: 1s, timeout: 500ms}}
    secrets: [POSTGRES_PASSWORD]
environments:
  staging:
    tier: staging
    access: {{secrets: [release-manager], deploy: [release-manager]}}
    scale: {{instances: 2}}
    secrets:
      POSTGRES_PASSWORD: {{kind: database-password, rotate_every: 30d}}
    resources:
      database: {{engine: postgres, server: "{server}"}}
    router: {{port: {port}}}
  production:
    tier: production
    secrets:
      POSTGRES_PASSWORD: {{kind: database-password}}
    resources:
      database: {{engine: postgres, server: "{server}"}}
pipeline:
  stages: [staging, production]
"""


class DatabaseLoad:
    """Requests to the app's /db endpoint from a few threads; who answered and every failure kept."""

    def __init__(self, port: int, threads: int = 3) -> None:
        self.port = port
        self.users: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> DatabaseLoad:
        for thread in self._threads:
            thread.start()
        return self

    def _run(self) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10) as http:
            while not self._stop.is_set():
                try:
                    response = http.get("/db")
                    if response.status_code == 200:
                        self.users[response.json()["user"]] += 1
                    else:
                        self.failures.append(f"{response.status_code} {response.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)


NEW_PASSWORD = "Rotated" + uuid.uuid4().hex


def verifier_matches(role: str, password: str) -> bool:
    """Whether the SCRAM verifier PostgreSQL stores for `role` was made from `password`."""
    with _pg_connect(PG_ADMIN_URL) as conn:
        stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()[0]
    method, _, rest = stored.partition("$")
    iterations_salt, _, _keys = rest.partition("$")
    iterations, _, salt = iterations_salt.partition(":")
    again = scram_verifier(password, base64.b64decode(salt), int(iterations))
    return method == "SCRAM-SHA-256" and again == stored


def can_login(role: str) -> bool:
    with _pg_connect(PG_ADMIN_URL) as conn:
        row = conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    return bool(row and row[0])


def drop(database: str) -> None:
    with _pg_connect(PG_ADMIN_URL) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        for role in (f"{database}_a", f"{database}_b", database):
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_rotated_database_password_rolls_over_with_zero_failed_requests(
    server: Server, tmp_path: Path
) -> None:
    project = f"rot{uuid.uuid4().hex[:8]}"
    database = f"{project}_staging"
    port = free_port()
    text = SPEC.format(project=project, server=PG_ADMIN_URL, port=port)
    (server.home.parent / "conveyor.yaml").write_text(text)
    server.cli("apply", "--yes", check=True)
    try:
        run(server, tmp_path, database, port)
    finally:
        drop(database)


def run(server: Server, tmp_path: Path, database: str, port: int) -> None:
    login_a, login_b = f"{database}_a", f"{database}_b"
    developer = add_user(server, "dana", "developer")
    denied = server.cli("resource", "provision", "staging", token=developer)
    assert denied.returncode == 1 and "environment:deploy" in denied.stderr

    server.cli("secret", "set", "staging", "POSTGRES_PASSWORD", "--generate", check=True)
    provisioned = server.cli("resource", "provision", "staging", "-o", "json", check=True).stdout
    shown = json.loads(provisioned)["database"]
    assert shown["live"]["exists"] and shown["password_login"] == login_a
    assert can_login(login_a) and not can_login(login_b)
    again = server.cli("resource", "provision", "staging", check=True)  # idempotent
    assert login_a in again.stdout

    refused = server.cli("resource", "reset", "production", "--yes")
    assert refused.returncode == 1 and "production environment: its database is never reset" in refused.stderr

    register(server, tmp_path, "1.0.0")
    server.cli("promote", "web", "1.0.0", "--to", "staging", "--wait", "60", check=True)
    first = httpx.get(f"http://127.0.0.1:{port}/db", timeout=10).json()
    assert first == {"user": login_a, "database": database, "version": "1.0.0"}

    load = DatabaseLoad(port).start()
    try:
        rotated = json.loads(
            server.cli(
                "secret", "rotate", "staging", "POSTGRES_PASSWORD", "--stdin", "-o", "json",
                input=NEW_PASSWORD, check=True,
            ).stdout
        )  # fmt: skip
        assert rotated["version"] == 2 and rotated["database_login"] == login_b
        assert verifier_matches(login_b, NEW_PASSWORD)  # the server keeps a SCRAM verifier, never the value
        assert can_login(login_a) and can_login(login_b)  # the running instances still use login a
        server.cli("promote", "web", "1.0.0", "--to", "staging", "--wait", "60", check=True)
        deadline = time.monotonic() + 60
        while can_login(login_a):  # retired once no instance needs it (after a short grace)
            assert time.monotonic() < deadline, "the old login was never retired"
            time.sleep(0.5)
        time.sleep(2)  # and requests keep working after it is gone
    finally:
        load.stop()
    total = sum(load.users.values())
    print(
        f"\n/db requests during the rotation: {total}, failed: {len(load.failures)}, "
        f"by login: {dict(load.users)}"
    )
    assert not load.failures, load.failures[:5]
    assert load.users[login_a] > 0 and load.users[login_b] > 0 and total > 100

    # the instances got the new password as PGPASSWORD (and under its own name)
    for name in ("PGPASSWORD", "POSTGRES_PASSWORD"):
        seen = httpx.get(f"http://127.0.0.1:{port}/settings/{name}", timeout=10).json()
        assert seen["sha256"] == hashlib.sha256(NEW_PASSWORD.encode()).hexdigest()

    # the old password opens nothing any more; the audit says what happened
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=5432, dbname=database, user=login_a, connect_timeout=3)
    with server.admin() as http:
        events: list[dict[str, Any]] = http.get(
            "/api/v1/audit/events", params={"action": "resource.*", "limit": 50}
        ).json()
    assert {e["action"] for e in events} >= {"resource.provision", "resource.retire_login"}
    listed = server.cli("secret", "list", "staging", "-o", "json", check=True).stdout
    assert json.loads(listed)["secrets"][0]["version"] == 2

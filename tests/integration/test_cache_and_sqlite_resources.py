"""A Redis namespace and a SQLite file provisioned for an environment and used by a real instance.

The example app's `/cache` speaks RESP over a socket as the environment's ACL user; the password
is rotated (both valid during the rollover, the old one removed after) and the namespace reset
without touching anybody else's keys (ADR 0017).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.conftest import Server, free_port, start_server
from tests.integration.test_promotions import register

pytestmark = pytest.mark.integration

SPEC = """
version: 1
project: {project}
services:
  web:
    command: python app.py
    health: {{path: /healthz, interval: 1s, timeout: 500ms}}
    secrets: [REDIS_PASSWORD]
environments:
  dev:
    tier: development
    secrets:
      REDIS_PASSWORD: {{kind: database-password}}
    resources:
      database: {{engine: sqlite}}
      cache: {{engine: redis, server: "redis://127.0.0.1:6379"}}
    router: {{port: {port}}}
  production:
    tier: production
    secrets:
      REDIS_PASSWORD: {{kind: database-password}}
    resources:
      cache: {{engine: redis}}
pipeline:
  stages: [dev, production]
"""

OLD, NEW = "Old" + uuid.uuid4().hex, "New" + uuid.uuid4().hex


def can_login(user: str, password: str) -> bool:
    client = redis.Redis(username=user, password=password, socket_timeout=5, retry=Retry(NoBackoff(), 0))
    try:
        return bool(client.ping())
    except redis.exceptions.AuthenticationError:
        return False
    finally:
        client.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A server whose waits are scaled down, so the old password goes 1 s after the release, not 10 s."""
    srv = start_server(
        tmp_path / "project", f"sqlite:///{tmp_path / 'state.db'}", {"CONVEYOR_TIME_SCALE": "0.1"}
    )
    try:
        yield srv
    finally:
        srv.cli("down")


def test_a_redis_namespace_and_a_sqlite_file_per_environment(server: Server, tmp_path: Path) -> None:
    project = f"cache{uuid.uuid4().hex[:8]}"
    port = free_port()
    (server.home.parent / "conveyor.yaml").write_text(SPEC.format(project=project, port=port))
    server.cli("apply", "--yes", check=True)
    try:
        run(server, tmp_path, project, port)
    finally:
        admin = redis.Redis(decode_responses=True)
        for user in (f"{project}.dev", f"{project}.production"):
            admin.acl_deluser(user)
        keys = list(admin.scan_iter(f"{project}:*"))
        if keys:
            admin.unlink(*keys)


def run(server: Server, tmp_path: Path, project: str, port: int) -> None:
    user, prefix = f"{project}.dev", f"{project}:dev:"
    api = server.admin()  # the CLI is used where it formats something; each run of it costs a second
    api.put("/api/v1/environments/dev/secrets/REDIS_PASSWORD", json={"value": OLD}).raise_for_status()
    shown = json.loads(server.cli("resource", "provision", "dev", "-o", "json", check=True).stdout)
    cache, database = shown["cache"], shown["database"]
    assert cache["user"] == user and cache["key_prefix"] == prefix and cache["live"]["exists"]
    assert cache["password_versions"] == [1] and can_login(user, OLD)
    path = server.home / "data" / "dev.sqlite3"
    assert database["path"] == str(path) and database["url"] == f"sqlite:///{path}"
    assert oct(path.stat().st_mode & 0o777) == "0o600" and oct(path.parent.stat().st_mode & 0o777) == "0o700"
    again = api.post("/api/v1/environments/dev/resources/provision").json()["cache"]  # idempotent
    assert again["password_versions"] == [1] and again["live"]["passwords"] == 1 and can_login(user, OLD)

    register(server, tmp_path, "1.0.0")
    server.cli("promote", "web", "1.0.0", "--to", "dev", "--wait", "60", check=True)
    app = f"http://127.0.0.1:{port}"
    first = httpx.get(f"{app}/cache", timeout=10).json()
    assert first == {"count": 1, "key": f"{prefix}counter", "user": user, "version": "1.0.0"}
    assert httpx.get(f"{app}/cache", timeout=10).json()["count"] == 2
    for name, value in (("DATABASE_URL", f"sqlite:///{path}"), ("SQLITE_PATH", str(path))):
        seen = httpx.get(f"{app}/settings/{name}", timeout=10).json()
        assert seen["sha256"] == hashlib.sha256(value.encode()).hexdigest(), name

    rotated = api.post("/api/v1/environments/dev/secrets/REDIS_PASSWORD/rotate", json={"value": NEW}).json()
    assert rotated["version"] == 2 and rotated["database_login"] == user
    assert can_login(user, OLD) and can_login(user, NEW)  # the running instance still has the old one
    rotated_at = time.monotonic()
    shown_text = server.cli("resource", "show", "dev", check=True).stdout
    assert user in shown_text and "REDIS_PASSWORD v2, held: v1, v2" in shown_text and str(path) in shown_text
    listed_text = server.cli("resource", "list", check=True).stdout
    assert prefix in listed_text and "sqlite" in listed_text
    # the environment is settled (grace 1 s) and the engine looks every 5 s: it must keep the new
    # password, which no release runs yet (it once removed it, and the next release was refused)
    time.sleep(max(0.0, 5.5 - (time.monotonic() - rotated_at)))
    assert can_login(user, NEW)
    server.cli("promote", "web", "1.0.0", "--to", "dev", "--wait", "60", check=True)
    assert httpx.get(f"{app}/cache", timeout=10).json()["count"] == 3
    seen = httpx.get(f"{app}/settings/REDIS_PASSWORD", timeout=10).json()
    assert seen["sha256"] == hashlib.sha256(NEW.encode()).hexdigest()
    deadline = time.monotonic() + 40
    while can_login(user, OLD):  # removed once nothing runs with it (after a short grace)
        assert time.monotonic() < deadline, "the old password was never removed"
        time.sleep(0.5)
    assert can_login(user, NEW) and httpx.get(f"{app}/cache", timeout=10).json()["count"] == 4

    # reset: the namespace's keys go, everybody else's stay; the file comes back empty
    admin = redis.Redis(decode_responses=True)
    admin.set(f"{project}:production:kept", "1")
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    refused = api.post("/api/v1/environments/production/resources/reset")
    assert refused.status_code == 409 and "its cache is never reset" in refused.json()["detail"]
    done = server.cli("resource", "reset", "dev", "--yes", check=True).stdout
    assert f"1 key(s) under {prefix} deleted" in done and "dropped and created empty" in done
    assert admin.get(f"{prefix}counter") is None and admin.get(f"{project}:production:kept") == "1"
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)
    conn.close()

    listed = api.get("/api/v1/resources").json()["resources"]
    dev = next(r for r in listed if r["environment"] == "dev")
    assert dev["cache_namespace"] == prefix and dev["cache_provisioned"] and dev["provisioned"]
    events = api.get("/api/v1/audit/events", params={"action": "resource.*", "limit": 50}).json()
    assert {e["action"] for e in events} >= {
        "resource.provision",
        "resource.retire_password",
        "resource.reset",
    }

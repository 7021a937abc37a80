"""Backups, restores and restore drills through the real CLI and server, against the real PostgreSQL.

One server for the module. Its engine takes the scheduled backup of production as soon as the database
is provisioned; the tests then back up, change the data, restore, tamper with files and drill.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.conftest import PG_ADMIN_URL, Server, _pg_connect, start_server
from tests.integration.test_promotions import add_user

SPEC = """
version: 1
project: {project}
services:
  web: {{command: python app.py}}
environments:
  qa:
    tier: testing
    secrets: {{POSTGRES_PASSWORD: {{kind: database-password}}}}
    resources: {{database: {{engine: postgres, server: "{server}"}}}}
    recovery: {{method: rebuild, rto: 1ms}}
  staging:
    tier: staging
    data: {{policy: masked, source: production}}
    secrets: {{POSTGRES_PASSWORD: {{kind: database-password}}}}
    resources: {{database: {{engine: postgres, server: "{server}"}}}}
  production:
    tier: production
    data: {{policy: real}}
    secrets: {{POSTGRES_PASSWORD: {{kind: database-password}}}}
    resources: {{database: {{engine: postgres, server: "{server}"}}}}
    backups: {{every: 1h, keep: 30d}}
    recovery: {{method: restore-backup, rto: 1h, rpo: 2h}}
pipeline:
  stages: [qa, staging, production]
"""


@dataclass
class World:
    server: Server
    project: str

    def db(self, environment: str) -> str:
        return f"{self.project}_{environment}"

    def url(self, environment: str) -> str:
        return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{self.db(environment)}"

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.server.cli(*args, "-o", "json", check=True).stdout)

    def api(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        """The API directly (a CLI process per call would cost a second each on a busy machine)."""
        with self.server.admin() as http:
            response = http.request(method, path, timeout=120, **kwargs)
        assert response.status_code == status, response.text
        return response.json()

    def count(self, environment: str, table: str) -> int:
        with _pg_connect(self.url(environment)) as conn:
            return int(
                conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
            )


def seed(url: str, owner: str) -> None:
    """Two related tables created by the environment's owner role, as the app would."""
    with _pg_connect(url) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
        conn.execute("CREATE TABLE customers (id int PRIMARY KEY, email text UNIQUE NOT NULL)")
        conn.execute(
            "INSERT INTO customers SELECT g, 'c' || g || '@example.com' FROM generate_series(1, 50) g"
        )
        conn.execute(
            "CREATE TABLE orders (id int PRIMARY KEY, customer int NOT NULL REFERENCES customers, "
            "total numeric CHECK (total > 0))"
        )
        conn.execute("INSERT INTO orders SELECT g, 1 + g % 50, g FROM generate_series(1, 120) g")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, pg_available: bool) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("backups")
    project = f"bk{uuid.uuid4().hex[:8]}"
    server = start_server(
        workdir / "project",
        f"sqlite:///{workdir / 'state.db'}",
        {"CONVEYOR_ENGINE_BACKUP_CHECK": "0.3"},
    )
    w = World(server, project)
    try:
        w.api(
            "POST", "/api/v1/spec/apply", json={"source": SPEC.format(project=project, server=PG_ADMIN_URL)}
        )
        for environment in ("qa", "production"):  # staging is only ever refused
            w.api("POST", f"/api/v1/environments/{environment}/resources/database/provision")
            seed(w.url(environment), w.db(environment))
        deadline = time.monotonic() + 30  # the engine's first scheduled backup of production
        listing = "/api/v1/environments/production/backups"
        while not [b for b in w.api("GET", listing)["backups"] if b["state"] == "succeeded"]:
            assert time.monotonic() < deadline, "no scheduled backup of production was taken"
            time.sleep(0.2)
        yield w
    finally:
        server.cli("down")
        with _pg_connect(PG_ADMIN_URL) as conn:
            for (name,) in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (project + "%",)
            ):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            for environment in ("qa", "staging", "production"):
                base = w.db(environment)
                for role in (f"{base}_a", f"{base}_b", base):
                    conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_backup_change_restore_brings_the_data_back_and_refuses_what_it_must(world: World) -> None:
    w, server = world, world.server
    scheduled = w.api("GET", "/api/v1/environments/production/backups")["backups"][-1]
    assert scheduled["trigger"] == "scheduled" and scheduled["created_by"] == "conveyor"

    taken = w.cli_json("backup", "production")
    assert taken["state"] == "succeeded" and taken["trigger"] == "manual" and taken["created_by"] == "admin"
    assert taken["tables"] == {"public.customers": 50, "public.orders": 120}
    path = server.home / taken["file"]
    assert path.parent == server.home / "backups" / "production"
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert taken["size_bytes"] == path.stat().st_size and len(taken["sha256"]) == 64

    # the data changes after the backup; an app holds a connection to the database
    with _pg_connect(w.url("production")) as conn:
        conn.execute("DELETE FROM orders WHERE id > 20")
        conn.execute("INSERT INTO customers VALUES (51, 'late@example.com')")
    app = psycopg.connect(w.url("production"), autocommit=True)

    refused = server.cli("restore", "production", "--from", str(taken["id"]))
    assert refused.returncode == 1 and "replaces its live database" in refused.stderr
    assert "hint: add --yes to confirm" in refused.stderr
    body = {"backup": taken["id"], "source": "production", "confirm": True}
    leak = w.api("POST", "/api/v1/environments/staging/restore", 409, json=body)
    assert "data policy is masked" in leak["detail"] and "data clone production --to staging" in leak["hint"]
    wrong = w.api("POST", "/api/v1/environments/staging/restore", 400, json={**body, "source": "staging"})
    assert f"backup {taken['id']} is a backup of production" in wrong["detail"]
    developer = add_user(server, "dev", "developer")
    with server.http(developer) as http:
        denied = http.post("/api/v1/environments/production/backups")
    assert denied.status_code == 403 and denied.json()["permission"] == "environment:deploy"

    # a tampered file is refused, then a missing one; nothing changes
    later = w.api("POST", "/api/v1/environments/production/backups")
    later_path = server.home / later["file"]
    with open(later_path, "ab") as handle:
        handle.write(b"\0")
    tampered = w.api(
        "POST", "/api/v1/environments/production/restore", 409, json={**body, "backup": later["id"]}
    )
    assert "was changed after it was taken" in tampered["detail"]
    assert "restore another backup" in tampered["hint"]
    later_path.unlink()
    missing = w.api(
        "POST", "/api/v1/environments/production/restore", 409, json={**body, "backup": later["id"]}
    )
    assert "is missing" in missing["detail"]
    assert (w.count("production", "orders"), w.count("production", "customers")) == (20, 51)

    restored = server.cli("restore", "production", "--from", str(taken["id"]), "--yes", check=True).stdout
    assert "1 open session(s) of the old database were ended" in restored, restored
    assert (w.count("production", "orders"), w.count("production", "customers")) == (120, 50)
    with pytest.raises(psycopg.OperationalError):
        app.execute("SELECT 1")  # the app's session was ended; a new one sees the restored data
    app.close()
    with _pg_connect(w.url("production")) as conn:
        owners = {r[0] for r in conn.execute("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")}
        assert owners == {w.db("production")}
        conn.execute("INSERT INTO orders VALUES (999, 1, 5)")  # constraints and data work as before
    runs = w.api("GET", "/api/v1/environments/production/restore-runs", params={"kind": "restore"})["runs"]
    assert runs[0]["state"] == "succeeded" and runs[0]["sessions_ended"] == 1
    print(
        f"\nrestore of {runs[0]['checks']['rows']} rows: {runs[0]['duration_s']}s in all (safety backup, "
        f"restore, verification, swap), {runs[0]['restore_s']}s restore + verification"
    )
    safety = w.api("GET", f"/api/v1/backups/{runs[0]['safety_backup']}")
    assert safety["trigger"] == "pre-restore" and safety["tables"]["public.orders"] == 20
    events = w.api("GET", "/api/v1/audit/events", params={"action": "backup.*", "limit": 100})
    outcomes = {(e["action"], e["outcome"]) for e in events}
    assert {
        ("backup.create", "success"),
        ("backup.restore", "refused"),
        ("backup.restore", "success"),
    } <= outcomes
    with _pg_connect(PG_ADMIN_URL) as conn:
        leftovers = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (w.db("production") + "\\_%",)
        ).fetchall()
    assert leftovers == []


def test_a_drill_records_its_time_against_the_rto_and_fails_when_it_must(world: World) -> None:
    w, server = world, world.server
    backup = w.api("POST", "/api/v1/environments/production/backups")
    result = w.api("POST", "/api/v1/environments/production/restore-drills", json={"backup": backup["id"]})
    assert result["passed"] and result["rto_met"] and result["rpo_met"] and result["rto_s"] == 3600
    assert 0 < result["restore_s"] < 60 and result["backup_age_s"] >= 0
    assert result["checks"]["tables"] == 2 and result["checks"]["constraints"] >= 5
    assert result["checks"]["scratch_dropped"]
    print(f"\ndrill: restore + verification {result['restore_s']}s, {result['duration_s']}s in all")

    # qa's RTO is 1 ms: the drill restores fine but misses it, and the command says so with its exit code
    qa = w.api("POST", "/api/v1/environments/qa/backups")
    slow = server.cli("restore-drill", "qa")
    assert slow.returncode == 1 and "FAIL" in slow.stdout and "longer than the RTO" in slow.stdout
    # a drill of a tampered backup fails and is recorded
    with open(server.home / qa["file"], "r+b") as handle:
        handle.seek(100)
        handle.write(b"tampered")
    bad = w.api("POST", "/api/v1/environments/qa/restore-drills", json={"backup": qa["id"]})
    assert not bad["passed"] and "was changed after it was taken" in bad["reason"]

    drills = w.api("GET", "/api/v1/environments/qa/restore-runs", params={"kind": "drill"})["runs"]
    assert [d["passed"] for d in drills] == [False, False] and drills[1]["rto_met"] is False
    table = server.cli("backup", "drills", "production", check=True).stdout
    assert "pass" in table and "1h met" in table
    with _pg_connect(PG_ADMIN_URL) as conn:
        leftovers = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (w.project + "%",))
        names = {name for (name,) in leftovers}
    assert names == {w.db("qa"), w.db("production")}  # every throwaway database is gone
    assert os.path.exists(server.home / backup["file"])

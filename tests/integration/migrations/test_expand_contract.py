"""The seed's expand/contract example, end to end: user_id becomes account_id over three releases.

The example app gains a schema. Each release ships its migrations in its artifact; Conveyor runs
them before the release's instances start, and every release walks dev → staging → production
(blue/green) while every environment serves reads and writes: no request may fail. A premature
release that drops user_id while a version that writes it still runs is refused with the rule and
the safe sequence; an edited applied migration is refused; an older build that needs the dropped
column cannot be deployed again.
"""

from __future__ import annotations

import json
import tarfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from psycopg import sql

from tests.conftest import PG_ADMIN_URL, ROOT, Server, _pg_connect, free_port

pytestmark = pytest.mark.integration

MIGRATIONS = ROOT / "examples" / "app" / "migrations"
ENVIRONMENTS = ("dev", "staging", "production")
TIERS = {"dev": "development", "staging": "staging", "production": "production"}
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
      not_sensitive: [users.id, users.user_id, users.account_id]
environments:
{environments}
pipeline:
  stages: [dev, staging, production]
"""
ENVIRONMENT = """  {name}:
    tier: {tier}
    strategy: {{type: bluegreen}}
    secrets:
      POSTGRES_PASSWORD: {{kind: database-password}}
    resources:
      database: {{engine: postgres, server: "{server}"}}
    router: {{port: {port}}}
{gates}"""
# production rehearses every release's migrations on a clone of its database first
REHEARSAL = "    promotion: {gates: [{type: migration-rehearsal}]}\n"
# release → (the columns its code uses, the migrations it ships)
RELEASES = {
    "1.0.0": ("user_id", ["0001_users.sql"]),
    "2.0.0": ("both", ["0001_users.sql", "0002_account_id.sql"]),
    "3.0.0": ("account_id", ["0001_users.sql", "0002_account_id.sql", "0003_account_id_required.sql"]),
    "4.0.0": ("account_id", [p.name for p in sorted(MIGRATIONS.glob("000[1-4]_*.sql"))]),
}


def bundle(tmp: Path, version: str, schema: str, files: dict[str, bytes]) -> Path:
    path = tmp / f"web-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(ROOT / "examples/app/app.py", arcname="app.py")
        for name, data in {"SCHEMA": schema.encode(), "VERSION": version.encode(), **files}.items():
            item = tmp / f"{version}-{name.replace('/', '_')}"
            item.write_bytes(data)
            tar.add(item, arcname=name)
    return path


def register(server: Server, tmp: Path, version: str, schema: str, files: dict[str, bytes]) -> None:
    server.cli(
        "artifact", "register", "web", version, "--bundle", str(bundle(tmp, version, schema, files)),
        "--branch", "main", "--commit", "a1b2c3d", check=True,
    )  # fmt: skip


def release_files(version: str) -> dict[str, bytes]:
    return {f"migrations/{name}": (MIGRATIONS / name).read_bytes() for name in RELEASES[version][1]}


class Traffic:
    """Writes and reads through every environment's router from one thread each; every failure kept."""

    def __init__(self, ports: dict[str, int]) -> None:
        self.ports = ports
        self.done: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(env,), daemon=True) for env in ports]

    def start(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def _run(self, environment: str) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{self.ports[environment]}", timeout=10) as http:
            while not self._stop.is_set():
                try:
                    made = http.post("/users", json={"email": f"{uuid.uuid4().hex[:8]}@example.test"})
                    if made.status_code != 201:
                        self.failures.append(f"{environment} POST {made.status_code} {made.text[:160]}")
                        continue
                    read = http.get(f"/users/{made.json()['id']}")
                    if read.status_code != 200 or read.json()["account"] != made.json()["account"]:
                        self.failures.append(f"{environment} GET {read.status_code} {read.text[:160]}")
                        continue
                    self.done[environment] += 2
                except httpx.HTTPError as exc:
                    self.failures.append(f"{environment} {exc!r}")
                time.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)


def promote_everywhere(server: Server, version: str) -> None:
    for environment in ENVIRONMENTS:
        server.cli("promote", "web", version, "--to", environment, "--wait", "90", check=True, timeout=120)


def columns(database: str) -> set[str]:
    with _pg_connect(f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{database}") as conn:
        rows = conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'users'")
        return {r[0] for r in rows}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_user_id_becomes_account_id_over_three_releases_without_a_failed_request(
    server: Server, tmp_path: Path
) -> None:
    project = f"ec{uuid.uuid4().hex[:8]}"
    ports = {env: free_port() for env in ENVIRONMENTS}
    text = SPEC.format(
        project=project,
        environments="".join(
            ENVIRONMENT.format(
                name=env,
                tier=TIERS[env],
                server=PG_ADMIN_URL,
                port=ports[env],
                gates=REHEARSAL if env == "production" else "",
            )
            for env in ENVIRONMENTS
        ),
    )
    (server.home.parent / "conveyor.yaml").write_text(text)
    server.cli("apply", "--yes", check=True)
    try:
        run(server, tmp_path, project, ports)
    finally:
        with _pg_connect(PG_ADMIN_URL) as conn:
            for env in ENVIRONMENTS:
                database = f"{project}_{env}"
                drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                conn.execute(drop.format(sql.Identifier(database)))
                for role in (f"{database}_a", f"{database}_b", database):
                    conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def run(server: Server, tmp_path: Path, project: str, ports: dict[str, int]) -> None:
    for env in ENVIRONMENTS:
        server.cli("secret", "set", env, "POSTGRES_PASSWORD", "--generate", check=True)
        server.cli("resource", "provision", env, check=True)
    for version, (schema, _) in RELEASES.items():
        register(server, tmp_path, version, schema, release_files(version))

    promote_everywhere(server, "1.0.0")
    assert columns(f"{project}_production") == {"id", "user_id", "email"}
    traffic = Traffic(ports).start()
    try:
        promote_everywhere(server, "2.0.0")  # expand
        assert columns(f"{project}_production") == {"id", "user_id", "email", "account_id"}

        # premature contract: 2.0.0 still writes user_id everywhere
        drop = b"ALTER TABLE users DROP COLUMN user_id;\n"
        premature = {**release_files("2.0.0"), "migrations/0003_drop_user_id.sql": drop}
        register(server, tmp_path, "2.9.0", "account_id", premature)
        plan = server.cli("migrations", "plan", "dev", "web", "2.9.0", "-o", "json")
        assert plan.returncode == 1, plan.stderr
        found = json.loads(plan.stdout)
        assert [v["rule"] for v in found["violations"]] == ["contract-drop-column"]
        assert set(found["violations"][0]["needed_by"]) == {f"2.0.0 in {env}" for env in ENVIRONMENTS}
        refused = server.cli("promote", "web", "2.9.0", "--to", "dev")
        assert refused.returncode == 1
        assert "drops users.user_id, which it still reads or writes" in refused.stderr
        assert "conveyor: unused users.user_id" in refused.stderr  # the safe sequence

        # an applied migration edited in a later build is refused too
        tidied = (MIGRATIONS / "0001_users.sql").read_bytes() + b"-- tidied\n"
        edited = {**release_files("3.0.0"), "migrations/0001_users.sql": tidied}
        register(server, tmp_path, "2.9.1", "account_id", edited)
        changed = server.cli("promote", "web", "2.9.1", "--to", "dev")
        assert changed.returncode == 1 and "0001_users.sql was applied with sha256:" in changed.stderr

        promote_everywhere(server, "3.0.0")  # migrate: account_id only, user_id marked unused
        promote_everywhere(server, "4.0.0")  # contract
        assert columns(f"{project}_production") == {"id", "email", "account_id"}
    finally:
        traffic.stop()
    total = sum(traffic.done.values())
    print(f"\nrequests during three releases: {dict(traffic.done)}, failed: {len(traffic.failures)}")
    assert not traffic.failures, traffic.failures[:5]
    assert all(traffic.done[env] > 50 for env in ENVIRONMENTS), traffic.done
    assert total > 300

    with server.admin() as http:
        promotions = http.get("/api/v1/promotions", params={"environment": "production"}).json()
        last = max(promotions, key=lambda p: p["id"])
        gates = http.get(f"/api/v1/promotions/{last['id']}").json()["gates"]
    (rehearsal,) = [g for g in gates if g["type"] == "migration-rehearsal"]
    assert rehearsal["state"] == "passed", rehearsal["reason"]
    assert rehearsal["evidence"]["pending"] == ["0004_drop_user_id"]
    assert rehearsal["evidence"]["applied"][0]["statements"][0]["ms"] >= 0
    assert rehearsal["evidence"]["rollback"]["result"] == "not declared"

    status = json.loads(server.cli("migrations", "status", "production", "-o", "json", check=True).stdout)
    assert [(a["id"], a["release"]) for a in status["applied"]] == [
        ("0001_users", "web 1.0.0"),
        ("0002_account_id", "web 2.0.0"),
        ("0003_account_id_required", "web 3.0.0"),
        ("0004_drop_user_id", "web 4.0.0"),
    ]

    # an older build cannot come back directly: 2.0.0 writes user_id, which 0004 dropped
    older = server.cli("deploy", "web", "2.0.0", "--env", "dev")
    assert older.returncode == 1
    assert "2.0.0 uses users.user_id, which a later migration dropped or renamed" in older.stderr
    assert columns(f"{project}_dev") == {"id", "email", "account_id"}

"""`conveyor resource reset ENV` recreates a database with its data policy, through the real server.

One server for the module, on the real PostgreSQL. The service `web` ships schema migrations in its
bundle and is deployed to development (synthetic), staging (masked from production) and production
(real, with customers). A reset drops the database, runs the deployed version's migrations and seeds
it, or clones production through the masking rules; the tests also make the steps after the drop
fail, and run two operations on one database at once.
"""

from __future__ import annotations

import json
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from conveyor.data.clone import checksums
from conveyor.resources import database_lock
from tests.conftest import PG_ADMIN_URL, ROOT, Server, _pg_connect, start_server

pytestmark = pytest.mark.integration

SPEC = """
version: 1
project: {project}
services:
  web:
    command: python app.py
    migrations: migrations
    data:
      pii: [customers.email, customers.full_name]
      masking:
        customers.email: {email_rule}
        customers.full_name: name
      not_sensitive: [customers.id, orders.id, orders.customer_id, orders.total, codes.id, codes.code]
      subset: {subset}
environments:
  development:
    tier: development
    secrets: {{POSTGRES_PASSWORD: {{kind: database-password}}}}
    resources: {{database: {{engine: postgres, server: "{server}"}}}}
  staging:
    tier: staging
    data: {{policy: masked, source: production}}
    secrets: {{POSTGRES_PASSWORD: {{kind: database-password}}}}
    resources: {{database: {{engine: postgres, server: "{server}"}}}}
  production:
    tier: production
    data: {{policy: real}}
    secrets:
      POSTGRES_PASSWORD: {{kind: database-password}}
      MASKING_KEY: {{kind: token}}
    resources: {{database: {{engine: postgres, server: "{server}"}}}}
"""
MIGRATIONS = {
    "0001_customers.sql": "CREATE TABLE customers (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, "
    "full_name text NOT NULL);\n",
    "0002_orders.sql": "CREATE TABLE orders (id bigserial PRIMARY KEY, "
    "customer_id bigint NOT NULL REFERENCES customers(id), total numeric(10,2) NOT NULL);\n",
}
# a table the seeder cannot fill: its CHECK wants a shape random text never has
UNSEEDABLE = {
    "0003_codes.sql": "CREATE TABLE codes (id serial PRIMARY KEY, "
    "code text NOT NULL CHECK (code ~ '^C-[0-9]{4}$'));\n"
}
REAL_ROWS = """
INSERT INTO customers (email, full_name)
  SELECT 'customer' || g || '@realmail.com', 'Real Person ' || g FROM generate_series(1, 60) g;
INSERT INTO orders (customer_id, total) SELECT 1 + g % 60, g * 1.5 FROM generate_series(1, 150) g;
"""


@dataclass
class World:
    server: Server
    project: str
    workdir: Path

    def db(self, environment: str) -> str:
        return f"{self.project}_{environment}"

    def url(self, environment: str) -> str:
        return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{self.db(environment)}"

    def api(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        with self.server.admin() as http:
            response = http.request(method, path, timeout=180, **kwargs)
        assert response.status_code == status, response.text
        return response.json()

    def apply(self, email_rule: str = "{transform: email, unique: true}", subset: str = "{}") -> None:
        text = SPEC.format(project=self.project, server=PG_ADMIN_URL, email_rule=email_rule, subset=subset)
        self.api("POST", "/api/v1/spec/apply", json={"source": text})

    def register_and_deploy(self, version: str, files: dict[str, str], *environments: str) -> None:
        path = self.workdir / f"web-{version}.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            tar.add(ROOT / "examples/app/app.py", arcname="app.py")
            for name, text in {
                "VERSION": version,
                **{f"migrations/{k}": v for k, v in files.items()},
            }.items():
                item = self.workdir / f"{version}-{name.replace('/', '_')}"
                item.write_text(text)
                tar.add(item, arcname=name)
        self.server.cli(
            "artifact", "register", "web", version, "--bundle", str(path), "--branch", "main",
            "--commit", "a1b2c3d", check=True,
        )  # fmt: skip
        for environment in environments:
            self.api(
                "POST",
                f"/api/v1/environments/{environment}/deploy",
                json={"service": "web", "version": version},
            )

    def sql(self, environment: str, statement: str) -> list[tuple[Any, ...]]:
        with _pg_connect(self.url(environment)) as conn:
            cur = conn.execute(statement)
            return cur.fetchall() if cur.description else []

    def tables(self, environment: str) -> set[str]:
        rows = self.sql(environment, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {name for (name,) in rows}

    def last_reset(self, environment: str) -> dict[str, Any]:
        events = self.api("GET", "/api/v1/audit/events", params={"action": "resource.reset", "limit": 50})
        return next(e for e in events if e["environment"] == environment)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, pg_available: bool) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("reset")
    server = start_server(workdir / "project", f"sqlite:///{workdir / 'state.db'}")
    w = World(server, f"rs{uuid.uuid4().hex[:8]}", workdir)
    try:
        w.apply()
        for environment in ("development", "staging", "production"):
            # migrations connect as the environment's login, which its password secret opens
            w.api(
                "PUT",
                f"/api/v1/environments/{environment}/secrets/POSTGRES_PASSWORD",
                json={"generate": True},
            )
            w.api("POST", f"/api/v1/environments/{environment}/resources/database/provision")
        w.api("PUT", "/api/v1/environments/production/secrets/MASKING_KEY", json={"generate": True})
        w.register_and_deploy("2.0.0", MIGRATIONS, "development", "staging", "production")
        w.sql("production", f'SET ROLE "{w.db("production")}";' + REAL_ROWS)
        yield w
    finally:
        server.cli("down")
        with _pg_connect(PG_ADMIN_URL) as conn:
            for (name,) in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (w.project + "%",)
            ).fetchall():
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            for environment in ("development", "staging", "production"):
                base = w.db(environment)
                for role in (f"{base}_a", f"{base}_b", base):
                    conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_a_synthetic_environment_is_recreated_migrated_and_seeded(world: World) -> None:
    w = world
    w.sql("development", "INSERT INTO customers (email, full_name) VALUES ('left@over.test', 'Left Over')")
    shown = w.server.cli("resource", "reset", "development", "--yes", check=True).stdout
    assert f"database {w.db('development')} dropped and created again" in shown
    assert "migrations of web 2.0.0: 0001_customers, 0002_orders" in shown
    assert f"Seeded {w.db('development')} (seed 0, 100 rows per table)" in shown, shown
    assert w.sql("development", "SELECT count(*) FROM customers WHERE email = 'left@over.test'") == [(0,)]
    assert w.sql("development", "SELECT count(*) FROM customers") == [(100,)]
    assert w.sql("development", "SELECT service, id FROM conveyor_schema_migrations ORDER BY id") == [
        ("web", "0001_customers"),
        ("web", "0002_orders"),
    ]
    event = w.last_reset("development")
    assert event["outcome"] == "success"
    details = event["details"]
    assert details["steps"] == ["recreate", "migrations", "seed"] and details["policy"] == "synthetic"
    assert details["migrations"] == [
        {
            "service": "web",
            "version": "2.0.0",
            "applied": ["0001_customers", "0002_orders"],
            "already_applied": 0,
        }
    ]
    assert details["seed"] == {
        "seed": 0,
        "rows_per_table": 100,
        "tables": {"customers": 100, "orders": 100},
        "rows": 200,
    }
    assert "@" not in json.dumps(details)  # counts and names, never a seeded value

    # --rows/--seed: the same rows `conveyor data seed` puts in with the same numbers
    done = w.api("POST", "/api/v1/environments/development/resources/reset", json={"rows": 7, "seed": 3})
    print(f"\nsynthetic reset (recreate, 2 migrations, seed of 2 x 7 rows): {done['database']['seconds']}s")
    assert done["database"]["seed"]["tables"] == {"customers": 7, "orders": 7}
    after_reset = checksums(w.url("development"))
    w.api("POST", "/api/v1/environments/development/data/seed", json={"rows": 7, "seed": 3})
    assert checksums(w.url("development")) == after_reset

    empty = json.loads(
        w.server.cli("resource", "reset", "development", "--yes", "--empty", "-o", "json").stdout
    )
    assert empty["database"]["steps"] == ["recreate"] and empty["database"]["migrations"] == []
    assert w.tables("development") == set()

    # what the policy does not take is refused before anything is dropped
    bad = w.server.cli("resource", "reset", "development", "--yes", "--empty", "--rows", "5")
    assert bad.returncode == 1 and "--empty leaves the database empty" in bad.stderr
    masked = w.api("POST", "/api/v1/environments/staging/resources/reset", 400, json={"seed": 4})
    assert "data policy is masked" in masked["detail"] and masked["hint"] == "drop --seed"
    w.api("POST", "/api/v1/environments/development/resources/reset", 422, json={"rows": 10**7})
    live = w.server.cli("resource", "reset", "production", "--yes")
    assert live.returncode == 1 and "production environment: its database is never reset" in live.stderr
    w.api("POST", "/api/v1/environments/development/resources/reset")  # leave it seeded for what follows


def _production_values(w: World) -> set[str]:
    rows = w.sql("production", "SELECT email, full_name FROM customers")
    return {value for row in rows for value in row}


def test_a_masked_environment_is_recreated_from_its_source_through_the_masking_rules(world: World) -> None:
    w = world
    done = w.api("POST", "/api/v1/environments/staging/resources/reset")["database"]
    print(f"\nmasked reset (recreate, clone of 212 rows, migrations): {done['seconds']}s")
    assert done["steps"] == ["recreate", "clone", "migrations"]
    assert done["clone"]["tables"] == {"customers": 60, "orders": 150, "conveyor_schema_migrations": 2}
    # production's history came with its schema: 2.0.0 has nothing left to apply on top
    assert done["migrations"] == [{"service": "web", "version": "2.0.0", "applied": [], "already_applied": 2}]
    real = _production_values(w)
    rows = w.sql("staging", "SELECT email, full_name FROM customers")
    cloned = {value for row in rows for value in row}
    assert len({email for email, _ in rows}) == 60 and not cloned & real
    assert w.sql("staging", "SELECT count(*) FROM orders o JOIN customers c ON c.id = o.customer_id") == [
        (150,)
    ]
    event = w.last_reset("staging")
    assert event["outcome"] == "success" and event["details"]["clone"]["report"]["cells"] > 0
    assert not any(value in json.dumps(event) for value in real)

    # the pre-flight refuses (a unique column under a transform that can collide): nothing is dropped
    before = checksums(w.url("staging"))
    w.apply(email_rule="email")
    refused = w.api("POST", "/api/v1/environments/staging/resources/reset", 400)
    assert "customers.email" in refused["detail"] and '"unique": true' in refused["hint"]
    assert checksums(w.url("staging")) == before
    assert w.last_reset("staging")["outcome"] == "refused"

    # the clone fails after the drop: the error names the step and how to finish; audited as failed
    w.apply(subset='{orders: "no_such_column > 1"}')
    failed = w.api("POST", "/api/v1/environments/staging/resources/reset", 409)
    assert failed["detail"].startswith("the reset of staging stopped at its clone step: ")
    assert "no_such_column" in failed["detail"]
    assert "`conveyor data clone production --to staging`" in failed["hint"]
    assert failed["reset"] == {"failed_step": "clone", "steps_done": ["recreate"]}
    assert w.tables("staging") == set()  # recreated, not filled: and nothing claims otherwise
    event = w.last_reset("staging")
    assert event["outcome"] == "failure" and event["details"]["failed_step"] == "clone"
    w.apply()
    assert w.api("POST", "/api/v1/environments/staging/resources/reset")["database"]["clone"]["rows"] == 212


def _holder(w: World, environment: str) -> str | None:
    with _pg_connect(PG_ADMIN_URL) as conn:
        found = database_lock.holder(conn, w.db(environment))
    return None if found is None else found.operation


def test_two_operations_on_one_database_at_once_one_is_refused_and_the_data_stays_whole(world: World) -> None:
    w = world
    backup = w.api("POST", "/api/v1/environments/development/backups")
    seeded: dict[str, Any] = {}

    def seed() -> None:
        with w.server.admin() as http:
            response = http.post(
                "/api/v1/environments/development/data/seed", json={"rows": 40, "seed": 9}, timeout=120
            )
        seeded["status"], seeded["body"] = response.status_code, response.json()

    # a transaction holds customers, so the seed (which truncates it) waits while holding the database
    blocker = _pg_connect(w.url("development"))
    worker = threading.Thread(target=seed)
    try:
        blocker.execute("BEGIN")
        blocker.execute("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
        worker.start()
        deadline = time.monotonic() + 30
        while _holder(w, "development") != "seed":
            assert time.monotonic() < deadline and worker.is_alive(), seeded
            time.sleep(0.05)
        busy = "development's database is busy: a seed is running; try again when it finishes"
        restore = w.api(
            "POST", "/api/v1/environments/development/restore", 409, json={"backup": backup["id"]}
        )
        assert restore["detail"] == busy and restore["running"] == "seed"
        reset = w.server.cli("resource", "reset", "development", "--yes")
        assert reset.returncode == 1 and busy in reset.stderr
        # one lock per database: another environment's reset goes ahead meanwhile
        other = w.api("POST", "/api/v1/environments/staging/resources/database/reset", json={"empty": True})
        assert other["steps"] == ["recreate"]
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        worker.join(timeout=120)
    assert seeded["status"] == 200, seeded
    assert seeded["body"]["tables"] == {"customers": 40, "orders": 40}
    # the database holds the seed's rows, whole: the same as seeding again with the same numbers
    whole = checksums(w.url("development"))
    counts = {table: count for table, (count, _) in whole.items()}
    assert counts == {"customers": 40, "orders": 40, "conveyor_schema_migrations": 2}
    w.api("POST", "/api/v1/environments/development/data/seed", json={"rows": 40, "seed": 9})
    assert checksums(w.url("development")) == whole
    runs = w.api("GET", "/api/v1/environments/development/restore-runs")["runs"]
    assert runs == []  # the refused restore never started
    with _pg_connect(PG_ADMIN_URL) as conn:
        scratch = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (w.db("development") + "\\_%",)
        ).fetchall()
    assert scratch == []


def test_a_seed_that_fails_after_the_drop_is_reported_with_the_way_to_finish(world: World) -> None:
    w = world
    w.register_and_deploy("2.1.0", {**MIGRATIONS, **UNSEEDABLE}, "development")
    failed = w.server.cli("resource", "reset", "development", "--yes", "--rows", "12", "--seed", "5")
    assert failed.returncode == 1
    assert "the reset of development stopped at its seed step: seeding failed in codes" in failed.stderr
    assert "`conveyor data seed development --rows 12 --seed 5`" in failed.stderr
    # the drop and the migrations happened (all three files replayed, although production and staging
    # run 2.0.0: a fresh database is nobody else's); no rows went in, and the store says so
    assert w.tables("development") == {"customers", "orders", "codes", "conveyor_schema_migrations"}
    assert w.sql("development", "SELECT count(*) FROM customers") == [(0,)]
    event = w.last_reset("development")
    assert event["outcome"] == "failure"
    assert event["details"]["failed_step"] == "seed" and event["details"]["steps"] == [
        "recreate",
        "migrations",
    ]
    assert event["details"]["migrations"][0]["applied"] == ["0001_customers", "0002_orders", "0003_codes"]
    assert event["details"]["seed"] is None
    assert w.api("GET", "/api/v1/environments/development/resources")["database"]["provisioned"]

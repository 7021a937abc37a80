"""Data policies on the real PostgreSQL: synthetic seeding and masked clones through a real server.

One server and one set of environment databases serve the module; production holds a small shop
with personal data (customers, orders with card numbers, a self-referencing order, items).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from psycopg import sql

from conveyor.data.clone import checksums
from conveyor.resources import database_lock
from tests.conftest import PG_ADMIN_URL, Server, _pg_connect, start_server
from tests.integration.test_promotions import add_user

pytestmark = pytest.mark.integration

EMAIL_RULE = "{transform: email, unique: true}"
SPEC = """
version: 1
project: {project}
services:
  web:
    command: python app.py
    data:
      pii: [customers.email, customers.full_name, customers.phone, customers.birth_date,
            orders.billing_email, orders.card_number]
      masking:
        customers.email: {email_rule}
        customers.full_name: name
        customers.phone: phone
        customers.birth_date: {{transform: date_shift, days: 60}}
        customers.notes: redact
        orders.billing_email: {email_rule}
        orders.card_number: {{transform: card_number, keep_last: 4}}
      not_sensitive: [orders.status, products.title, products.price]
      subset:
        {subset}
environments:
  development:
    tier: development
    secrets: {{POSTGRES_PASSWORD: {{kind: database-password}}}}
    resources: {{database: {{engine: postgres, server: "{server}"}}}}
  staging:
    tier: staging
    data: {{policy: masked, source: production}}
    access: {{deploy: [release-manager]}}
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

SCHEMA = """
CREATE TABLE customers (
  id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, full_name text NOT NULL, phone varchar(20),
  birth_date date, notes text, created_at timestamptz NOT NULL DEFAULT '2024-06-01');
CREATE TABLE products (id serial PRIMARY KEY, sku varchar(12) NOT NULL UNIQUE, title text NOT NULL,
  price numeric(10,2) NOT NULL CHECK (price >= 0));
CREATE TABLE orders (
  id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers(id),
  billing_email text, card_number varchar(19), status text NOT NULL,
  created_at timestamptz NOT NULL, referrer_id bigint REFERENCES orders(id));
CREATE TABLE order_items (order_id bigint NOT NULL REFERENCES orders(id),
  product_id int NOT NULL REFERENCES products(id), quantity int NOT NULL CHECK (quantity > 0),
  PRIMARY KEY (order_id, product_id));
"""
ROWS = """
INSERT INTO customers (email, full_name, phone, birth_date, notes)
  SELECT 'customer' || g || '@realmail.com', 'Real Person ' || g, '+4420795' || lpad(g::text, 5, '0'),
         date '1970-01-01' + g * 9, CASE WHEN g % 4 = 0 THEN 'prefers calls after 6pm' END
  FROM generate_series(1, 300) g;
INSERT INTO products (sku, title, price)
  SELECT 'SKU-' || g, 'Product ' || g, g * 2.5 FROM generate_series(1, 40) g;
INSERT INTO orders (customer_id, billing_email, card_number, status, created_at, referrer_id)
  SELECT 1 + g % 300, 'customer' || (1 + g % 300) || '@realmail.com',
         '4929 ' || lpad((g * 7919 % 10000)::text, 4, '0') || ' 5521 ' || lpad(g::text, 4, '0'),
         CASE WHEN g % 5 = 0 THEN 'refunded' ELSE 'paid' END,
         timestamptz '2025-01-01' - g * interval '3 hours', CASE WHEN g % 50 = 7 THEN g - 5 END
  FROM generate_series(1, 900) g;
INSERT INTO order_items
  SELECT o, 1 + (o * 7 + k) % 40, 1 + k FROM generate_series(1, 900) o, generate_series(0, 1) k;
"""
PII = (
    ("customers", "email"),
    ("customers", "full_name"),
    ("customers", "phone"),
    ("customers", "birth_date"),
    ("orders", "billing_email"),
    ("orders", "card_number"),
)


@dataclass
class World:
    server: Server
    project: str

    def database(self, environment: str) -> str:
        return f"{self.project}_{environment}"

    def url(self, environment: str) -> str:
        return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + self.database(environment)

    def apply(self, email_rule: str = EMAIL_RULE, subset: str = "{}") -> None:
        text = SPEC.format(project=self.project, server=PG_ADMIN_URL, email_rule=email_rule, subset=subset)
        with self.server.admin() as http:
            applied = http.post("/api/v1/spec/apply", json={"source": text})
        assert applied.status_code == 200, applied.text

    def post(self, path: str, body: dict[str, Any] | None = None, status: int = 200) -> Any:
        with self.server.admin() as http:
            response = http.post(path, json=body or {}, timeout=120)
        assert response.status_code == status, response.text
        return response.json()

    def seed(self, rows: int, seed: int) -> Any:
        return self.post("/api/v1/environments/development/data/seed", {"rows": rows, "seed": seed})

    def masking_key(self) -> None:
        """Give production's MASKING_KEY a value unless an earlier test did (tests may run apart)."""
        with self.server.admin() as http:
            listed = http.get("/api/v1/environments/production/secrets").json()["secrets"]
            if not any(s["name"] == "MASKING_KEY" and s.get("version") for s in listed):
                key = http.put("/api/v1/environments/production/secrets/MASKING_KEY", json={"generate": True})
                assert key.status_code == 200, key.text

    def clone(self, status: int = 200, check: bool = False) -> Any:
        body = {"source": "production", "check": check}
        return self.post("/api/v1/environments/staging/data/clone", body, status)

    def sql(self, environment: str, statement: str) -> list[tuple[Any, ...]]:
        with _pg_connect(self.url(environment)) as conn:
            cur = conn.execute(statement)
            return cur.fetchall() if cur.description else []


def _drop_all(project: str) -> None:
    with _pg_connect(PG_ADMIN_URL) as conn:
        databases = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{project}\\_%",)
        ).fetchall()
        for (name,) in databases:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        for environment in ("development", "staging", "production"):
            base = f"{project}_{environment}"
            for role in (f"{base}_a", f"{base}_b", base):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, pg_available: bool) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("data-policies")
    server = start_server(workdir / "project", f"sqlite:///{workdir / 'state.db'}")
    project = f"dp{uuid.uuid4().hex[:8]}"
    w = World(server, project)
    try:
        w.apply()
        for environment in ("development", "staging", "production"):
            w.post(f"/api/v1/environments/{environment}/resources/database/provision")
        # the app's migrations create its tables as the environment's owner role, as here
        w.sql("production", f'SET ROLE "{project}_production";' + SCHEMA + ROWS)
        w.sql("development", SCHEMA)
        w.sql("staging", "CREATE TABLE before_clone (marker text); INSERT INTO before_clone VALUES ('old')")
        yield w
    finally:
        server.cli("down")
        _drop_all(project)


def test_seeding_is_deterministic_and_refused_outside_synthetic_environments(world: World) -> None:
    first = json.loads(
        world.server.cli(
            "data", "seed", "development", "--rows", "40", "--seed", "7", "-o", "json", check=True
        ).stdout
    )
    assert first["tables"] == {"customers": 40, "products": 40, "orders": 40, "order_items": 40}
    once = checksums(world.url("development"))
    world.seed(40, 7)
    assert checksums(world.url("development")) == once
    world.seed(40, 8)
    other = checksums(world.url("development"))
    assert all(other[t][1] != once[t][1] for t in once)
    # the seeded rows respect the keys: every order's customer exists, e-mails are distinct and safe
    orphans = world.sql(
        "development",
        "SELECT count(*) FROM orders o LEFT JOIN customers c ON c.id = o.customer_id WHERE c.id IS NULL",
    )
    assert orphans == [(0,)]
    emails = [e for (e,) in world.sql("development", "SELECT email FROM customers")]
    assert len(set(emails)) == 40 and all(e.rsplit("@", 1)[1].startswith("example.") for e in emails)

    before = checksums(world.url("production"))
    refused = world.post("/api/v1/environments/production/data/seed", {"rows": 5}, status=409)
    assert "production environment" in refused["detail"]
    masked = world.post("/api/v1/environments/staging/data/seed", {"rows": 5}, status=409)
    assert "data policy is masked" in masked["detail"]
    assert "conveyor data clone production --to staging" in masked["hint"]
    shown = world.server.cli("data", "show", "staging", check=True).stdout
    assert "staging (staging): masked data from production" in shown and "customers.email" in shown
    assert checksums(world.url("production")) == before


def _staging_state(world: World) -> tuple[dict[str, Any], list[str]]:
    leftovers = [
        name
        for (name,) in world.sql("production", "SELECT datname FROM pg_database")
        if name.startswith(world.project) and "_clone_" in name
    ]
    return dict(checksums(world.url("staging"))), leftovers


def test_a_clone_the_preflight_or_the_copy_refuses_changes_nothing(world: World) -> None:
    before, _ = _staging_state(world)
    no_key = world.clone(status=409)
    assert "MASKING_KEY has no value" in no_key["detail"] and "--generate" in no_key["hint"]
    with world.server.admin() as http:
        key = http.put("/api/v1/environments/production/secrets/MASKING_KEY", json={"generate": True})
    assert key.status_code == 200, key.text

    world.apply(email_rule="email")  # a unique column under a transform that can collide
    verdict = world.clone(check=True)
    assert not verdict["ok"]
    assert {(p["kind"], p["column"]) for p in verdict["problems"]} == {
        ("unique-collision", "customers.email")
    }
    assert "customers.created_at" in verdict["unreviewed_columns"]
    # nothing in the source looks personal beyond what is declared
    assert verdict["suspected_pii"] == []
    refused = world.server.cli("data", "clone", "production", "--to", "staging")
    assert refused.returncode == 1 and "customers.email is in unique (email)" in refused.stderr
    assert '"unique": true' in refused.stderr  # the fix names the rule to write
    assert _staging_state(world) == (before, [])

    world.apply(subset='{orders: "no_such_column > 1"}')  # fails inside the copy, after the pre-flight
    failed = world.clone(status=409)
    assert "no_such_column" in failed["detail"] and "left as it was" in failed["hint"]
    assert _staging_state(world) == (before, [])
    assert world.sql("staging", "SELECT marker FROM before_clone") == [("old",)]
    # one operation on a target database at a time: a clone waits for nothing and is refused
    with database_lock.hold(PG_ADMIN_URL, world.database("staging"), "staging", "restore"):
        busy = world.clone(status=409)
    assert busy["detail"] == "staging's database is busy: a restore is running; try again when it finishes"
    # a subset condition may only look at the row: conveyor.yaml with a file-reading call is refused
    reading = "{customers: \"length(pg_read_file('/etc/hostname')) > 0\"}"
    text = SPEC.format(project=world.project, server=PG_ADMIN_URL, email_rule=EMAIL_RULE, subset=reading)
    with world.server.admin() as http:
        refused_spec = http.post("/api/v1/spec/apply", json={"source": text})
    assert refused_spec.status_code == 422 and "the function pg_read_file()" in refused_spec.text
    assert _staging_state(world) == (before, [])
    with world.server.http(add_user(world.server, "dev", "developer")) as http:
        denied = http.post("/api/v1/environments/staging/data/clone", json={"source": "production"})
    assert denied.status_code == 403 and denied.json()["permission"] == "environment:deploy"
    with world.server.admin() as http:
        events = http.get("/api/v1/audit/events", params={"action": "data.clone", "limit": 20}).json()
    assert {e["outcome"] for e in events} == {"refused", "failure"}  # each refusal is audited


def _source_pii(world: World) -> set[str]:
    values: set[str] = set()
    for table, column in PII:
        values |= {str(v) for (v,) in world.sql("production", f"SELECT DISTINCT {column} FROM {table}") if v}
    return values


def test_a_masked_clone_holds_no_source_pii_keeps_every_key_and_is_the_same_twice(world: World) -> None:
    world.apply()
    world.masking_key()
    shown = world.server.cli("data", "clone", "production", "--to", "staging", check=True).stdout
    assert "masking report:" in shown and "(PII)" in shown
    first = checksums(world.url("staging"))
    result = world.clone()
    assert checksums(world.url("staging")) == first  # the same source and key give the same clone
    assert result["tables"] == {"customers": 300, "products": 40, "orders": 900, "order_items": 1800}
    assert "before_clone" not in first  # the clone replaced the database whole
    by_column = {f"{c['table']}.{c['column']}": c for c in result["report"]["columns"]}
    assert by_column["customers.email"]["rows"] == 300 and by_column["customers.email"]["pii"]
    assert by_column["orders.card_number"]["transform"] == "card_number(keep_last=4)"

    # scan every cell of every table of the clone for every declared PII value of the source
    pii = _source_pii(world)
    assert len(pii) > 1000
    hits: list[tuple[str, str, int]] = []
    for table in first:
        cursor_rows = world.sql("staging", f"SELECT * FROM {table}")
        names = [c for (c,) in world.sql("staging", f"SELECT attname FROM pg_attribute WHERE attrelid = "
                                          f"'{table}'::regclass AND attnum > 0 ORDER BY attnum")]  # fmt: skip
        for row in cursor_rows:
            for name, cell in zip(names, row, strict=True):
                text = "" if cell is None else str(cell)
                if text in pii or "@realmail.com" in text:
                    hits.append((table, name, row[0]))
    # a shifted birth date may land on *another* customer's real one (a date has little entropy and
    # no link to that person); it never stays on its own row, and nothing else matches at all
    own = {(i, str(d)) for i, d in world.sql("production", "SELECT id, birth_date FROM customers")}
    births = dict(world.sql("staging", "SELECT id, birth_date::text FROM customers"))
    assert [h for h in hits if h[:2] != ("customers", "birth_date")] == []
    assert not any((h[2], births[h[2]]) in own for h in hits)

    # every key holds: PostgreSQL re-created the constraints over the copied rows, all validated
    constraints = world.sql(
        "staging", "SELECT contype, count(*) FROM pg_constraint WHERE connamespace = 'public'::regnamespace "
        "AND convalidated GROUP BY contype ORDER BY contype",
    )  # fmt: skip
    assert dict(constraints) == {"c": 2, "f": 4, "p": 4, "u": 2}
    # relationships survive: a customer's orders carry the customer's masked e-mail
    mismatched = world.sql(
        "staging",
        "SELECT count(*) FROM orders o JOIN customers c ON c.id = o.customer_id "
        "WHERE o.billing_email <> c.email",
    )
    assert mismatched == [(0,)]
    assert world.sql("staging", "SELECT count(*) FROM orders WHERE right(card_number, 4) ~ '^[0-9]{4}$'") == [
        (900,)
    ]
    assert world.sql("staging", "SELECT nextval('customers_id_seq')") == [(301,)]

    with world.server.admin() as http:
        events = http.get("/api/v1/audit/events", params={"action": "data.clone", "limit": 10}).json()
    assert events[0]["outcome"] == "success" and events[0]["details"]["report"]["cells"] > 0
    assert not any(value in json.dumps(events) for value in ("@realmail.com", "Real Person"))


def test_a_subset_keeps_what_its_rule_asks_and_every_row_a_kept_row_references(world: World) -> None:
    world.apply(subset='{customers: 10%, products: "price < 20"}')
    world.masking_key()
    result = world.clone()
    kept = result["tables"]
    assert 0 < kept["customers"] < 300 and kept["orders"] < 900 and kept["order_items"] < 1800
    assert result["subset"]["customers"]["rule"] == "10%"
    assert set(result["kept_by_reference"]) == {"orders", "order_items"}
    assert world.sql("staging", "SELECT count(*) FROM products WHERE price >= 20") == [(0,)]
    # the rule's rows are all there, plus the customers of orders that kept orders refer to
    sampled = {
        i for (i,) in world.sql(
            "production",
            "SELECT id FROM customers WHERE abs(hashtextextended(ROW(id)::text, 0) % 1000000) < 100000",
        )
    }  # fmt: skip
    cloned = {i for (i,) in world.sql("staging", "SELECT id FROM customers")}
    assert sampled <= cloned and len(sampled) < 300
    orphans = world.sql(
        "staging",
        "SELECT count(*) FROM orders o "
        "WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE c.id = o.customer_id)"
        " OR (o.referrer_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM orders r WHERE r.id = o.referrer_id))",
    )  # fmt: skip
    assert orphans == [(0,)]

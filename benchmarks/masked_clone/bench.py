"""Masked-clone benchmark: rows/s of Conveyor's masked clone vs a plain `pg_dump -Fc | pg_restore`.

`make bench-masked-clone` runs it (README.md next to this file says what and why). It builds a
source database of a shop's shape on the local PostgreSQL (customers with five personal columns,
products, orders with a card number and a shipping address, order items; `--rows` in total), then,
interleaved `--repeat` times, copies it (a) with `pg_dump -Fc | pg_restore` into a fresh database and
(b) with Conveyor's masked-clone pipeline (`conveyor.data.clone.build` + `swap`: the code
`conveyor data clone` runs on the server, without the HTTP round trip) into a fresh database, and
reports medians and the ratio. Both end with the same indexes and constraints in place. It
appends the numbers to benchmarks/RESULTS.md and drops every database it made.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

import psycopg  # noqa: E402

from conveyor.data import clone as cloning  # noqa: E402
from conveyor.data.masking import Masker  # noqa: E402
from conveyor.data.rules import parse_rules, preflight  # noqa: E402
from conveyor.data.subset import plan_subset  # noqa: E402
from conveyor.resources.postgres import Names  # noqa: E402

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SERVER = os.environ.get("CONVEYOR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PREFIX = "bench_masked"
SHARES = {"customers": 0.10, "products": 0.01, "orders": 0.40, "order_items": 0.49}
RULES = {
    "customers.email": {"transform": "email", "unique": True},
    "customers.full_name": "name",
    "customers.phone": "phone",
    "customers.street": "address",
    "customers.birth_date": {"transform": "date_shift", "days": 90},
    "orders.shipping_street": "address",
}
PII = list(RULES)
SCHEMA = """
CREATE TABLE customers (
  id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, full_name text NOT NULL, phone varchar(20),
  street text, city text NOT NULL, birth_date date, created_at timestamptz NOT NULL,
  marketing boolean NOT NULL);
CREATE TABLE products (
  id serial PRIMARY KEY, sku varchar(16) NOT NULL UNIQUE, title text NOT NULL, price numeric(10,2) NOT NULL);
CREATE TABLE orders (
  id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers(id), status text NOT NULL,
  total numeric(12,2) NOT NULL, card_last4 char(4), shipping_street text, created_at timestamptz NOT NULL);
CREATE TABLE order_items (
  id bigserial PRIMARY KEY, order_id bigint NOT NULL REFERENCES orders(id),
  product_id int NOT NULL REFERENCES products(id), quantity int NOT NULL, unit_price numeric(10,2) NOT NULL);
CREATE INDEX orders_customer ON orders (customer_id);
CREATE INDEX items_order ON order_items (order_id);
"""
FILL = """
INSERT INTO customers (email, full_name, phone, street, city, birth_date, created_at, marketing)
  SELECT 'user' || g || '@mail' || (g % 7) || '.com', 'Customer ' || md5(g::text),
         '+1' || (200 + g % 700) || lpad((g % 10000000)::text, 7, '0'),
         (g % 9000 + 1) || ' ' || md5((g * 3)::text),
         (ARRAY['Leeds','Lyon','Porto','Oslo','Austin'])[1 + g % 5], date '1950-01-01' + (g % 20000)::int,
         timestamptz '2020-01-01' + g * interval '7 minutes', g % 3 = 0
  FROM generate_series(1::bigint, {customers}) g;
INSERT INTO products (sku, title, price)
  SELECT 'SKU-' || g, 'Product ' || md5(g::text), (g % 500) + 0.99
  FROM generate_series(1::bigint, {products}) g;
INSERT INTO orders (customer_id, status, total, card_last4, shipping_street, created_at)
  SELECT 1 + (g * 7919) % {customers}, (ARRAY['paid','shipped','refunded'])[1 + g % 3], (g % 100000) / 100.0,
         lpad(((g * 104729) % 10000)::text, 4, '0'), (g % 9000 + 1) || ' ' || md5(g::text),
         timestamptz '2021-01-01' + g * interval '1 minute'
  FROM generate_series(1::bigint, {orders}) g;
INSERT INTO order_items (order_id, product_id, quantity, unit_price)
  SELECT 1 + (g * 31) % {orders}, (1 + g % {products})::int, (1 + g % 5)::int, (g % 500) + 0.99
  FROM generate_series(1::bigint, {order_items}) g;
VACUUM ANALYZE;
"""


def url(database: str) -> str:
    return SERVER.rsplit("/", 1)[0] + "/" + database


def admin(statement: str) -> None:
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(statement)


def drop(database: str) -> None:
    admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def build_source(total: int) -> dict[str, int]:
    counts = {table: max(1, round(total * share)) for table, share in SHARES.items()}
    source = f"{PREFIX}_source"
    drop(source)
    admin(f'CREATE DATABASE "{source}"')
    with psycopg.connect(url(source), autocommit=True) as conn:
        conn.execute(SCHEMA)
        for statement in FILL.format(**counts).split(";\n"):
            if statement.strip():
                conn.execute(statement)
    return counts


def plain_copy(source: str, target: str) -> float:
    """`pg_dump -Fc | pg_restore` into a new database, timed from creating it to the last index."""
    drop(target)
    started = time.perf_counter()
    admin(f'CREATE DATABASE "{target}"')
    dump = subprocess.Popen(["pg_dump", "-Fc", "-d", url(source)], stdout=subprocess.PIPE)
    restore = subprocess.run(["pg_restore", "--no-owner", "-d", url(target)], stdin=dump.stdout, check=False)
    assert dump.stdout is not None
    dump.stdout.close()
    if dump.wait() != 0 or restore.returncode != 0:
        raise SystemExit("pg_dump | pg_restore failed")
    return time.perf_counter() - started


def masked_clone(source: str, target: str, owner: str) -> tuple[float, dict[str, float]]:
    """Conveyor's masked clone into `target` (built aside, swapped in), timed end to end."""
    drop(target)
    admin(f'CREATE DATABASE "{target}" OWNER "{owner}"')
    rules = parse_rules(RULES)
    masker = Masker("benchmark-masking-key-0123456789")
    started = time.perf_counter()
    catalog = cloning.inspect(url(source))
    preflight(catalog.for_rules(), rules, PII).raise_for_problems()
    name, built, _ = cloning.build(
        url(source), cloning.Target(SERVER, Names(target, owner, (f"{owner}_a", f"{owner}_b"))),
        rules, masker,
        lambda found: plan_subset(found, {}),
    )  # fmt: skip
    cloning.swap(SERVER, target, name)
    return time.perf_counter() - started, built.seconds


def machine() -> dict[str, str]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/meminfo").read_text().splitlines()
            if "MemTotal" in line
        ),
        "?",
    )
    with psycopg.connect(SERVER) as conn:
        server = conn.execute("SHOW server_version").fetchone()
    dump = subprocess.run(["pg_dump", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"`nproc` {os.cpu_count()}, {model}",
        "memory": memory,
        "kernel": platform.release(),
        "software": f"Python {platform.python_version()}, "
        f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}), "
        f"PostgreSQL {server[0] if server else '?'}, {dump}",
        "load_before": f"{os.getloadavg()[0]:.2f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the source, all tables")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs of each copy")
    parser.add_argument(
        "--no-append", action="store_true", help=f"print only, do not append to {RESULTS.name}"
    )
    args = parser.parse_args()
    for tool in ("pg_dump", "pg_restore"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed: install the PostgreSQL client tools")
    info = machine()
    owner = f"{PREFIX}_owner"
    admin(
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{owner}') "
        f"THEN CREATE ROLE {owner} NOLOGIN; END IF; END $$"
    )
    print(f"building a source of {args.rows:,} rows …", flush=True)
    began = time.perf_counter()
    counts = build_source(args.rows)
    total = sum(counts.values())
    print(f"source built in {time.perf_counter() - began:.1f} s: {counts}", flush=True)
    plain: list[float] = []
    masked: list[float] = []
    phases: list[dict[str, float]] = []
    try:
        for run in range(args.repeat):
            plain.append(plain_copy(f"{PREFIX}_source", f"{PREFIX}_plain"))
            seconds, phase = masked_clone(f"{PREFIX}_source", f"{PREFIX}_masked", owner)
            masked.append(seconds)
            phases.append(phase)
            print(f"run {run + 1}: plain {plain[-1]:.2f} s, masked {masked[-1]:.2f} s {phase}", flush=True)
    finally:
        for database in ("source", "plain", "masked"):
            drop(f"{PREFIX}_{database}")
        admin(f"DROP ROLE IF EXISTS {owner}")
    info["load_after"] = f"{os.getloadavg()[0]:.2f}"
    text = report(info, args, counts, total, plain, masked, phases)
    print(text)
    if not args.no_append:
        with RESULTS.open("a") as out:
            out.write("\n" + text)
        print(f"appended to {RESULTS.relative_to(ROOT)}")


def report(
    info: dict[str, str],
    args: Any,
    counts: dict[str, int],
    total: int,
    plain: list[float],
    masked: list[float],
    phases: list[dict[str, float]],
) -> str:
    p, m = statistics.median(plain), statistics.median(masked)
    ratio = (total / m) / (total / p)
    masked_cells = counts["customers"] * 5 + counts["orders"]
    phase_medians = {k: statistics.median(ph[k] for ph in phases) for k in phases[0]}
    command = "make bench-masked-clone" + ("" if args.rows == 1_000_000 else f" ROWS={args.rows}")
    lines = [
        f"## Masked clone benchmark — {info['date']}",
        "",
        f"- Machine: {info['cpu']}, {info['memory']} memory, kernel {info['kernel']}.",
        f"- Software: {info['software']}.",
        f"- Command: `{command}` "
        f"(`benchmarks/masked_clone/bench.py --rows {args.rows} --repeat {args.repeat}`).",
        f"- Source: {total:,} rows ({', '.join(f'{t} {n:,}' for t, n in counts.items())}); "
        f"{len(RULES)} masked columns, {masked_cells:,} masked values per clone.",
        f"- Each run: a new target database, everything copied, every index and constraint built; "
        f"{args.repeat} interleaved runs, medians shown.",
        f"- 1-minute load average before / after: {info['load_before']} / {info['load_after']}.",
        "",
        "| copy | seconds (median) | rows/s | each run (s) |",
        "|---|---:|---:|---|",
        f"| `pg_dump -Fc \\| pg_restore` | {p:.2f} | {total / p:,.0f} | {_each(plain)} |",
        f"| `conveyor data clone` (masked) | {m:.2f} | {total / m:,.0f} | {_each(masked)} |",
        "",
        f"- **Masked clone throughput = {ratio:.0%} of the plain copy's** (target ≥ 50%).",
        "- Masked clone phases (medians, s): "
        + ", ".join(f"{k} {v:.2f}" for k, v in phase_medians.items())
        + " (the rest is the swap and the pre-flight).",
        "",
    ]
    return "\n".join(lines)


def _each(seconds: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in seconds)


if __name__ == "__main__":
    main()

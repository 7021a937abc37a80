"""Rehearse migrations on a 1,000,000-row table, and apply the same migrations directly, side by side.

    make bench-rehearsal   (.venv/bin/python benchmarks/migration_rehearsal/bench.py --rows 1000000)

A throwaway source database gets `events` (ROWS rows) and `accounts` (ROWS / 20 rows) through the
runner; the pending migrations add a column, backfill half the rows, and build an index
concurrently, each with a declared way back. The rehearsal gate's code (conveyor.migrations.
rehearsal) clones the source (pg_dump | pg_restore), applies, checks integrity and rolls back;
then the same migrations are applied to a second copy of the source directly, for the cost of the
clone and the checks next to the cost of the migration itself. Appends a section to
benchmarks/RESULTS.md. Needs PostgreSQL (CONVEYOR_TEST_DATABASE_URL, default the local one).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from conveyor.migrations import runner
from conveyor.migrations.files import parse_files
from conveyor.migrations.rehearsal import rehearse

SERVER = os.environ.get("CONVEYOR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
RESULTS = Path(__file__).resolve().parent.parent / "RESULTS.md"
BASE = {
    "0001_events.sql": b"CREATE TABLE accounts (id bigint PRIMARY KEY, name text NOT NULL);\n"
    b"CREATE TABLE events (id bigint PRIMARY KEY, account_id bigint NOT NULL REFERENCES accounts, "
    b"kind text NOT NULL, payload text, created_at timestamptz NOT NULL DEFAULT now());\n",
}
PENDING = {
    **BASE,
    "0002_events_source.sql": b"ALTER TABLE events ADD COLUMN source text;\n"
    b"UPDATE events SET source = 'web' WHERE id % 2 = 0;\n",
    "0002_events_source.down.sql": b"ALTER TABLE events DROP COLUMN source;\n",
    "0003_events_source_index.sql": b"CREATE INDEX CONCURRENTLY IF NOT EXISTS events_source "
    b"ON events (source);\n",
    "0003_events_source_index.down.sql": b"DROP INDEX IF EXISTS events_source;\n",
}


def url(database: str) -> str:
    return f"{SERVER.rsplit('/', 1)[0]}/{database}"


def admin() -> psycopg.Connection:
    return psycopg.connect(SERVER, autocommit=True)


def make_source(name: str, owner: str, rows: int) -> float:
    with admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(owner)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner))
        )
    began = time.perf_counter()
    with psycopg.connect(url(name), autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(owner)))
        runner.migrate(
            conn,
            owner,
            parse_files(BASE),
            service="bench",
            release="bench 1",
            lock_timeout_ms=5000,
            statement_timeout_ms=0,
        )
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
        conn.execute(
            "INSERT INTO accounts SELECT g, 'account ' || g FROM generate_series(1, %s) g",
            (max(1, rows // 20),),
        )
        conn.execute(
            "INSERT INTO events (id, account_id, kind, payload) SELECT g, 1 + g %% %s, "
            "(ARRAY['view','click','buy'])[1 + g %% 3], md5(g::text) FROM generate_series(1, %s) g",
            (max(1, rows // 20), rows),
        )
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - began


def drop(name: str, owner: str | None = None) -> None:
    with admin() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if owner:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(owner)))


def direct(name: str, owner: str) -> float:
    """The same pending migrations applied to a copy of the source (made with CREATE DATABASE … TEMPLATE)."""
    copy = f"{name}_direct"
    with admin() as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
                sql.Identifier(copy), sql.Identifier(name), sql.Identifier(owner)
            )
        )
    try:
        with psycopg.connect(url(copy), autocommit=True) as conn:
            began = time.perf_counter()
            runner.migrate(
                conn,
                owner,
                parse_files(PENDING),
                service="bench",
                release="bench 2",
                lock_timeout_ms=5000,
                statement_timeout_ms=0,
            )
            return time.perf_counter() - began
    finally:
        drop(copy)


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = next(
        line.split()[1]
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    server = subprocess.run(
        ["psql", SERVER, "-Atc", "SHOW server_version"], capture_output=True, text=True
    ).stdout.strip()
    gib = int(memory) // 1024 // 1024
    return f"`nproc` {os.cpu_count()}, {cpu}, {gib} GiB; PostgreSQL {server} on the same machine"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the events table")
    parser.add_argument("--no-append", action="store_true", help="print only, do not append to RESULTS.md")
    args = parser.parse_args()
    name = f"bench_rehearsal_{uuid.uuid4().hex[:6]}"
    owner = name
    load = os.getloadavg()[0]
    try:
        built = make_source(name, owner, args.rows)
        outcome = rehearse(
            SERVER,
            name,
            owner,
            parse_files(PENDING),
            service="bench",
            release="bench 2",
            lock_timeout_ms=5000,
            statement_timeout_ms=0,
        )
        applied_directly = direct(name, owner)
    finally:
        drop(name, owner)
    evidence = outcome.evidence
    statements = [
        (a["id"], s["line"], s["ms"], s["sql"].splitlines()[0][:70])
        for a in evidence.get("applied", [])
        for s in a["statements"]
    ]
    rehearsal_migrate_s = sum(a["duration_ms"] for a in evidence.get("applied", [])) / 1000
    rollback = evidence.get("rollback", {})
    lines = [
        f"## Migration rehearsal on {args.rows:,} rows — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- Machine: {machine()}; 1-minute load average at the start {load:.2f} "
        "(a shared machine: other work shows as noise).",
        f"- Command: `make bench-rehearsal` "
        f"(`.venv/bin/python benchmarks/migration_rehearsal/bench.py --rows {args.rows}`).",
        f"- Source: `events` {args.rows:,} rows, `accounts` {max(1, args.rows // 20):,} rows, "
        f"built in {built:.1f} s.",
        f"- Verdict: **{outcome.verdict}** — {outcome.reason}",
        "",
        "| step | seconds |",
        "|---|---:|",
        f"| clone (pg_dump in one snapshot, pg_restore into a scratch database) "
        f"| {evidence.get('clone_seconds', 0):.2f} |",
        f"| pending migrations on the clone (runner: lock, timeouts, records) | {rehearsal_migrate_s:.2f} |",
        f"| declared rollback on the clone | {rollback.get('seconds', 0):.2f} |",
        f"| whole rehearsal, integrity checks and drop included | {evidence.get('total_seconds', 0):.2f} |",
        f"| the same migrations applied directly to a copy of the source | {applied_directly:.2f} |",
        "",
        f"- The rehearsal took {evidence.get('total_seconds', 0) / applied_directly:.1f}× the time of "
        "the migrations it rehearses (the clone is most of the difference).",
        "",
        "| migration | line | ms | statement |",
        "|---|---:|---:|---|",
        *[f"| {m} | {line} | {ms:.1f} | `{text}` |" for m, line, ms, text in statements],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_append:
        with RESULTS.open("a") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()

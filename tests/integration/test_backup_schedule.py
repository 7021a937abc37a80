"""Scheduled backups, retention and a killed restore, against the real PostgreSQL with an injected clock.

The engine's backup task runs in this process on a SQLite store; only the clock is ours, so hours of
schedule and retention pass in a second. pg_dump and pg_restore are the real ones, except where a
test puts a pg_restore in front that is killed halfway through its work.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from psycopg import sql

from conveyor.audit.log import SYSTEM
from conveyor.backups import restore as restores
from conveyor.backups import service as backups
from conveyor.environments.service import apply
from conveyor.errors import Conflict
from conveyor.pipeline.engine import Engine
from conveyor.resources import service as resources
from conveyor.secrets.keys import load_keyring
from conveyor.store.db import Store
from conveyor.store.migrate import upgrade
from conveyor.store.tables import AuditEvent, Backup, RestoreRun
from tests.conftest import PG_ADMIN_URL, _pg_connect

T0 = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)

SPEC = """
version: 1
project: {project}
services:
  web: {{command: python app.py}}
environments:
  staging:
    tier: staging
    secrets:
      POSTGRES_PASSWORD: {{kind: database-password}}
    resources:
      database: {{engine: postgres, server: "{server}"}}
    backups: {{every: 1h, keep: 2h}}
"""


class Clock:
    """A clock the test moves."""

    def __init__(self, now: datetime) -> None:
        self.at = now

    def now(self) -> datetime:
        return self.at


@dataclass
class Setup:
    store: Store
    home: Path
    clock: Clock
    engine: Engine
    database: str
    owner: str


@pytest.fixture
def setup(tmp_path: Path, pg_available: bool, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    monkeypatch.delenv("CONVEYOR_TIME_SCALE", raising=False)
    monkeypatch.delenv("CONVEYOR_PG_BINDIR", raising=False)
    project = f"bks{uuid.uuid4().hex[:8]}"
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    upgrade(store)
    clock = Clock(T0)
    home = tmp_path / "home"
    home.mkdir()
    with store.write() as session:
        apply(session, SYSTEM, SPEC.format(project=project, server=PG_ADMIN_URL), "conveyor.yaml", T0)
    with store.write() as session:
        from conveyor.deployments.service import current_spec

        resources.provision(
            session, SYSTEM, current_spec(session), load_keyring(home, create=True), "staging", T0
        )
    database = f"{project}_staging"
    with _pg_connect(f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{database}") as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(database)))
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 500) g")
        conn.execute("CREATE TABLE notes (id int PRIMARY KEY, item int REFERENCES items, body text)")
        conn.execute("INSERT INTO notes SELECT g, g, repeat('x', 50) FROM generate_series(1, 300) g")
    engine = Engine(store, clock, cast(Any, None), home)
    try:
        yield Setup(store, home, clock, engine, database, database)
    finally:
        store.dispose()
        with _pg_connect(PG_ADMIN_URL) as conn:
            for (name,) in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (database + "%",)
            ):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            for role in (f"{database}_a", f"{database}_b", database):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def listed(s: Setup) -> list[Backup]:
    with s.store.read() as session:
        return list(reversed(backups.rows(session, "staging")))


def test_the_engine_backs_up_on_schedule_and_prunes_all_but_the_last_good_backup(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = setup
    assert s.engine.run_backups() == ["staging: backup 1"]  # none yet: due at once
    first = listed(s)[0]
    assert first.trigger == "scheduled" and first.created_by == "conveyor" and first.state == "succeeded"
    assert json.loads(first.tables or "{}") == {"public.items": 500, "public.notes": 300}
    first_file = s.home / str(first.file)
    assert first_file.stat().st_mode & 0o777 == 0o600 and first_file.parent.stat().st_mode & 0o777 == 0o700

    s.clock.at = T0 + timedelta(minutes=59)
    assert s.engine.run_backups() == []  # not due yet
    s.clock.at = T0 + timedelta(hours=1)
    assert s.engine.run_backups() == ["staging: backup 2"]
    s.clock.at = T0 + timedelta(hours=2)
    assert s.engine.run_backups() == ["staging: backup 3", "staging: pruned 1"]  # 1 is 2h old
    assert [b.id for b in listed(s)] == [2, 3] and not first_file.exists()

    # pg_dump gone: the scheduled backup fails and is recorded; the last good one outlives keep
    monkeypatch.setenv("CONVEYOR_PG_BINDIR", str(tmp_path / "empty"))
    s.clock.at = T0 + timedelta(hours=10)
    assert s.engine.run_backups() == ["staging: backup failed", "staging: pruned 2"]
    s.clock.at = T0 + timedelta(hours=10, minutes=1)
    assert s.engine.run_backups() == []  # a failure is retried after a pause, not at every look
    s.clock.at = T0 + timedelta(hours=13)
    assert s.engine.run_backups() == ["staging: backup failed", "staging: pruned 4"]
    states = [(b.id, b.state) for b in listed(s)]
    assert states == [(3, "succeeded"), (5, "failed")]
    assert "pg_dump is not installed" in str(listed(s)[1].error)
    assert (s.home / str(listed(s)[0].file)).exists()
    with s.store.read() as session:
        actions = [e.action for e in session.query(AuditEvent).filter(AuditEvent.action.like("backup.%"))]
    assert actions.count("backup.prune") == 3 and actions.count("backup.create") == 5


KILLED_RESTORE = """#!{python}
# pg_restore that restores the schema and one table's data, then dies by SIGKILL: a restore killed midway
import os, signal, subprocess, sys, tempfile
real, args = {real!r}, sys.argv[1:]
toc = subprocess.run([real, "-l", args[-1]], capture_output=True, text=True, check=True).stdout.splitlines()
keep, data = [], 0
for line in toc:
    data += " TABLE DATA " in line
    if data <= 1 and " CONSTRAINT " not in line and " FK " not in line:
        keep.append(line)
listing = tempfile.NamedTemporaryFile("w", suffix=".list", delete=False)
listing.write("\\n".join(keep) + "\\n")
listing.close()
subprocess.run([real, *args[:-1], "-L", listing.name, args[-1]], check=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_restore_killed_midway_leaves_the_target_as_it_was(
    setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = setup
    taken = backups.take(s.store, s.home, SYSTEM, s.clock, "staging")
    assert taken is not None
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{s.database}"
    with _pg_connect(url) as conn:
        conn.execute("INSERT INTO items VALUES (9999, 'written after the backup')")

    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "pg_dump").symlink_to(str(shutil.which("pg_dump")))
    wrapper = bindir / "pg_restore"
    wrapper.write_text(KILLED_RESTORE.format(python=sys.executable, real=shutil.which("pg_restore")))
    wrapper.chmod(0o755)
    monkeypatch.setenv("CONVEYOR_PG_BINDIR", str(bindir))

    with pytest.raises(Conflict) as refused:
        restores.restore(s.store, s.home, SYSTEM, s.clock, "staging", taken["id"], "staging", confirmed=False)
    assert "pg_restore failed (killed by signal 9)" in refused.value.detail

    with _pg_connect(url) as conn:  # the target still has what it had, the write after the backup too
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (501,)
        assert conn.execute("SELECT name FROM items WHERE id = 9999").fetchone() == (
            "written after the backup",
        )
    with _pg_connect(PG_ADMIN_URL) as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (s.database + "\\_%",)
        ).fetchall()
    assert left == []  # the half-restored scratch database was dropped
    with s.store.read() as session:
        run = session.query(RestoreRun).one()
        assert run.state == "failed" and "killed by signal 9" in str(run.reason)
        assert run.safety_backup_id is not None  # the current data was backed up before anything else
        event = session.query(AuditEvent).filter(AuditEvent.action == "backup.restore").one()
        assert event.outcome == "failure"

    # with the real pg_restore the same restore goes through, and the write after the backup is gone
    monkeypatch.delenv("CONVEYOR_PG_BINDIR")
    done = restores.restore(
        s.store, s.home, SYSTEM, s.clock, "staging", taken["id"], "staging", confirmed=False
    )
    assert done["state"] == "succeeded" and done["checks"]["rows"] == 800
    with _pg_connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (500,)
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'items'").fetchone()
    assert owner == (s.owner,)


def test_the_recorded_row_counts_are_those_of_the_dumped_snapshot_under_concurrent_writes(
    setup: Setup,
) -> None:
    s = setup
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{s.database}"
    stop = threading.Event()
    written = [0]

    def write() -> None:
        with _pg_connect(url) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO notes VALUES (%s, 1, 'during the backup')", (1000 + written[0],))
                written[0] += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        time.sleep(0.05)
        taken = backups.take(s.store, s.home, SYSTEM, s.clock, "staging")
        time.sleep(0.05)
    finally:
        stop.set()
        writer.join()
    assert taken is not None
    during = taken["tables"]["public.notes"] - 300
    assert 0 < during < written[0]  # rows landed before, during and after the snapshot
    drill = restores.drill(s.store, s.home, SYSTEM, s.clock, "staging", taken["id"])
    assert drill["passed"], drill["reason"]  # the dump holds exactly the rows that were counted
    assert drill["checks"]["rows"] == 500 + 300 + during

    # a dump that lacks rows its record promises fails verification, naming the table
    with s.store.write() as session:
        row = session.get(Backup, taken["id"])
        assert row is not None
        row.tables = json.dumps({**taken["tables"], "public.items": 501})
    short = restores.drill(s.store, s.home, SYSTEM, s.clock, "staging", taken["id"])
    assert (
        not short["passed"] and "table public.items has 500 rows, the backup recorded 501" in short["reason"]
    )
    assert short["checks"]["scratch_dropped"]


def test_two_engines_looking_at_once_take_one_scheduled_backup(setup: Setup) -> None:
    s = setup
    other = Engine(s.store, s.clock, cast(Any, None), s.home)
    results: list[list[str]] = []
    threads = [
        threading.Thread(target=lambda e=e: results.append(e.run_backups())) for e in (s.engine, other)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [[], ["staging: backup 1"]]
    assert [b.state for b in listed(s)] == ["succeeded"]

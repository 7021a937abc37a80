"""Backups of an environment's PostgreSQL database: take one, list and show them, prune by retention,
and the schedule the engine runs. Called by the API (`api/routes/backups.py`) and the engine.

A backup is a row that moves running → succeeded | failed. pg_dump runs outside any state-store
transaction; the row's heartbeat says the work is alive, so a backup whose server died is marked
failed (and its partial file removed) by whoever looks next.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from conveyor.audit.log import AuditContext, record
from conveyor.backups import pgtools, policy
from conveyor.clock import Clock, isoformat
from conveyor.deployments.service import current_spec
from conveyor.environments.service import lock_environment
from conveyor.errors import Conflict, ConveyorError, NotFound
from conveyor.resources import service as resources
from conveyor.rollout.policy import time_scale
from conveyor.spec import Spec
from conveyor.store.db import Store
from conveyor.store.tables import Backup, RestoreRun

log = logging.getLogger("conveyor.backups")

INTERRUPTED = "interrupted: the server running it stopped before it finished"


def parse_time(stamp: str) -> datetime:
    """A stored ISO 8601 UTC time as an aware datetime."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def backup_dir(home: Path, environment: str) -> Path:
    """`HOME/backups/ENV`, created 0700 (so is `HOME/backups`)."""
    root = home / "backups"
    for directory in (root, root / environment):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
    return root / environment


def facts(row: Backup) -> policy.BackupFacts:
    """What the pure schedule and retention rules see of a row."""
    return policy.BackupFacts(
        row.id,
        row.state,
        parse_time(row.started_at),
        parse_time(row.finished_at) if row.finished_at else None,
        parse_time(row.heartbeat_at),
    )


def rows(session: Session, environment: str) -> list[Backup]:
    """Every recorded backup of `environment`, newest first."""
    return list(
        session.execute(
            select(Backup).where(Backup.environment == environment).order_by(Backup.id.desc())
        ).scalars()
    )


def get_backup(session: Session, backup_id: int) -> Backup:
    """One backup, or NotFound with the way to list them."""
    row = session.get(Backup, backup_id)
    if row is None:
        raise NotFound(f"backup {backup_id} does not exist", hint="`conveyor backup list ENV` lists them")
    return row


def to_dict(row: Backup, detail: bool = False) -> dict[str, Any]:
    """The public view of a backup (with its per-table row counts when `detail`)."""
    tables = json.loads(row.tables) if row.tables else {}
    data: dict[str, Any] = {
        "id": row.id,
        "environment": row.environment,
        "database": row.database,
        "state": row.state,
        "trigger": row.trigger,
        "file": row.file,
        "size_bytes": row.size_bytes,
        "sha256": row.sha256,
        "table_count": len(tables),
        "row_count": sum(tables.values()),
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "duration_s": row.duration_s,
        "created_by": row.created_by,
        "error": row.error,
    }
    if detail:
        data["server"] = row.server
        data["server_version"] = row.server_version
        data["tables"] = tables
        data["constraints"] = len(json.loads(row.constraints)) if row.constraints else 0
    return data


def listing(session: Session, spec: Spec, environment: str) -> dict[str, Any]:
    """The environment's backups, newest first, with its schedule and retention."""
    spec.environment(environment)
    declared = spec.environments[environment].backups
    return {
        "environment": environment,
        "every": None if declared is None else str(declared.every),
        "keep": None if declared is None else str(declared.keep),
        "backups": [to_dict(r) for r in rows(session, environment)],
    }


class Heartbeat:
    """Records now and then that a running row's work is alive (at most every HEARTBEAT_S)."""

    def __init__(self, store: Store, clock: Clock, table: Any, row_id: int) -> None:
        self.store, self.clock, self.table, self.row_id = store, clock, table, row_id
        self._last = time.monotonic()

    def __call__(self) -> None:
        if time.monotonic() - self._last < pgtools.HEARTBEAT_S:
            return
        self._last = time.monotonic()
        with self.store.write() as session:
            row = session.get(self.table, self.row_id)
            if row is not None and row.state == "running":
                row.heartbeat_at = isoformat(self.clock.now())


def take(
    store: Store,
    home: Path,
    ctx: AuditContext,
    clock: Clock,
    environment: str,
    trigger: str = "manual",
    only_if_due: timedelta | None = None,
    prune_after: bool = True,
) -> dict[str, Any] | None:
    """pg_dump the environment's database in one snapshot and record it; returns the backup.

    Then prunes the environment's expired backups (unless `prune_after` is false: the caller will).

    With `only_if_due` (the schedule's interval), returns None instead when, under the environment's
    lock, a backup is no longer due (another server took it).
    """
    started = clock.now()
    with store.write() as session:
        spec = current_spec(session)
        declared = resources.declared(spec, environment)
        if resources.resource(session, environment) is None:
            raise NotFound(
                f"{environment}'s database was never provisioned, so there is nothing to back up",
                hint=f"`conveyor resource provision {environment}`",
            )
        lock_environment(session, environment)
        existing = rows(session, environment)
        mark_interrupted(session, home, existing, started)
        if only_if_due is not None and not policy.is_due([facts(r) for r in existing], only_if_due, started):
            return None
        running = next((r for r in existing if r.state == "running"), None)
        if running is not None:
            raise Conflict(
                f"backup {running.id} of {environment} is already running "
                f"(started {running.started_at[:19]})",
                hint=f"wait for it: `conveyor backup show {running.id}`",
            )
        row = Backup(
            environment=environment,
            server=declared.server,
            database=declared.names.database,
            state="running",
            trigger=trigger,
            created_by=ctx.actor,
            started_at=isoformat(started),
            heartbeat_at=isoformat(started),
        )
        session.add(row)
        session.flush()
        backup_id = row.id
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    path = backup_dir(home, environment) / f"{environment}-{backup_id:06d}-{stamp}.dump"
    beat = Heartbeat(store, clock, Backup, backup_id)
    try:
        inventory = pgtools.backup(declared.server, declared.names.database, path, beat)
        sha256, size = pgtools.sha256_file(path)
    except BaseException as exc:
        path.unlink(missing_ok=True)
        _fail(store, ctx, clock, backup_id, exc)
        raise
    finished = clock.now()
    with store.write() as session:
        row = get_backup(session, backup_id)
        if row.state != "running":  # declared dead while it stalled: its record says why, its file goes
            path.unlink(missing_ok=True)
            raise Conflict(
                f"backup {backup_id} of {environment} was marked {row.state} while it ran: {row.error}",
                hint=f"take another: `conveyor backup {environment}`",
            )
        row.state, row.file = "succeeded", str(path.relative_to(home))
        row.sha256, row.size_bytes = sha256, size
        row.tables = json.dumps(inventory.tables, sort_keys=True)
        row.constraints = json.dumps(inventory.constraints, sort_keys=True)
        row.server_version = inventory.server_version
        row.finished_at = row.heartbeat_at = isoformat(finished)
        row.duration_s = round((finished - started).total_seconds(), 3)
        record(
            session,
            ctx,
            "backup.create",
            now=finished,
            environment=environment,
            target=f"backup:{backup_id}",
            details={
                "database": row.database,
                "trigger": trigger,
                "file": row.file,
                "size_bytes": size,
                "sha256": sha256,
                "tables": len(inventory.tables),
                "rows": sum(inventory.tables.values()),
                "duration_s": row.duration_s,
            },
        )
        result = to_dict(row, detail=True)
    result["pruned"] = prune(store, home, ctx, clock, environment) if prune_after else []
    return result


def _fail(store: Store, ctx: AuditContext, clock: Clock, backup_id: int, exc: BaseException) -> None:
    why = exc.detail if isinstance(exc, ConveyorError) else f"{type(exc).__name__}: {exc}"
    now = clock.now()
    with store.write() as session:
        row = get_backup(session, backup_id)
        row.state, row.error = "failed", why
        row.finished_at = row.heartbeat_at = isoformat(now)
        row.duration_s = round((now - parse_time(row.started_at)).total_seconds(), 3)
        record(
            session,
            ctx,
            "backup.create",
            now=now,
            environment=row.environment,
            target=f"backup:{backup_id}",
            outcome="failure",
            details={"database": row.database, "trigger": row.trigger, "error": why},
        )


def mark_interrupted(session: Session, home: Path, existing: list[Backup], now: datetime) -> None:
    """Fail running backups whose worker stopped reporting, and remove their partial files."""
    for row in existing:
        if policy.is_stale(facts(row), now):
            row.state, row.error, row.finished_at = "failed", INTERRUPTED, isoformat(now)
            for leftover in backup_dir(home, row.environment).glob(f"{row.environment}-{row.id:06d}-*.dump"):
                leftover.unlink(missing_ok=True)


def prune(store: Store, home: Path, ctx: AuditContext, clock: Clock, environment: str) -> list[int]:
    """Delete backups (file and record) kept longer than `backups.keep`; never the last good one."""
    now = clock.now()
    files: list[Path] = []
    with store.write() as session:
        spec = current_spec(session)
        env = spec.environments.get(environment)
        if env is None or env.backups is None:
            return []
        keep = timedelta(seconds=env.backups.keep.seconds * time_scale())
        existing = rows(session, environment)
        # a backup being restored or drilled stays until that work ends
        busy = set(
            session.execute(select(RestoreRun.backup_id).where(RestoreRun.state == "running")).scalars()
        )
        gone = set(policy.expired([facts(r) for r in existing], keep, now)) - busy
        for row in existing:
            if row.id not in gone:
                continue
            if row.file:
                files.append(home / row.file)
            record(
                session,
                ctx,
                "backup.prune",
                now=now,
                environment=environment,
                target=f"backup:{row.id}",
                details={
                    "file": row.file,
                    "state": row.state,
                    "started_at": row.started_at,
                    "keep": str(keep),
                },
            )
            session.delete(row)
    for path in files:  # after the commit: a rolled-back prune keeps every file its records name
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("pruned backup file %s could not be removed: %s", path, exc)
    return sorted(gone)


def due_environments(store: Store, clock: Clock) -> list[tuple[str, timedelta]]:
    """Environments that declare backups, are provisioned, and whose next scheduled backup is due."""
    now = clock.now()
    found = []
    with store.read() as session:
        spec = current_spec(session)
        for name, env in spec.environments.items():
            database = env.resources.database
            if env.backups is None or database is None or database.engine != "postgres":
                continue
            if resources.resource(session, name) is None:
                continue
            every = timedelta(seconds=env.backups.every.seconds * time_scale())
            if policy.is_due([facts(r) for r in rows(session, name)], every, now):
                found.append((name, every))
    return found


def run_schedule(store: Store, home: Path, ctx: AuditContext, clock: Clock) -> list[str]:
    """Take every due scheduled backup and prune every environment's expired ones; returns what it did."""
    done: list[str] = []
    for environment, every in due_environments(store, clock):
        try:
            taken = take(
                store,
                home,
                ctx,
                clock,
                environment,
                trigger="scheduled",
                only_if_due=every,
                prune_after=False,
            )
        except ConveyorError as exc:
            log.warning("%s: scheduled backup failed: %s", environment, exc.detail)
            done.append(f"{environment}: backup failed")
            continue
        if taken is not None:
            done.append(f"{environment}: backup {taken['id']}")
    with store.read() as session:
        spec = current_spec(session)
        declared = [n for n, e in spec.environments.items() if e.backups is not None]
    for environment in declared:
        pruned = prune(store, home, ctx, clock, environment)
        if pruned:
            done.append(f"{environment}: pruned {', '.join(map(str, pruned))}")
    return done


def file_problem(home: Path, row: Backup) -> str | None:
    """Why a backup's file cannot be trusted (missing, or its sha256 differs), or None when it verifies."""
    if row.state != "succeeded" or not row.file or not row.sha256:
        return f"backup {row.id} is {row.state}" + (f" ({row.error})" if row.error else "")
    path = home / row.file
    if not path.is_file():
        return f"backup {row.id}'s file {row.file} is missing"
    sha256, size = pgtools.sha256_file(path)
    if sha256 != row.sha256:
        return (
            f"backup {row.id}'s file {row.file} was changed after it was taken "
            f"(sha256 {sha256[:12]}…, {size} bytes; recorded {row.sha256[:12]}…, {row.size_bytes} bytes)"
        )
    return None


def untrusted(row: Backup, problem: str) -> Conflict:
    """The refusal of a backup whose file did not verify: what is wrong with it, and what to do."""
    return Conflict(
        f"{problem}; it is not restored",
        hint=f"restore another backup (`conveyor backup list {row.environment}`)",
    )

"""Restores and restore drills: a verified backup file goes into a scratch database beside the target,
is checked against the backup's record, and only then takes the target's place (or, in a drill, is
measured and dropped). Called by the API (`api/routes/backups.py`).

A failed or killed restore never touches the target: until the swap, all work happens in the scratch
database, which is dropped on failure; the swap itself is two renames in one transaction. A restore
holds the target database's lock (`resources.database_lock`), so no clone, seed or reset of it runs
meanwhile; a drill never touches the target and does not take it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from conveyor.audit.log import AuditContext, record
from conveyor.backups import pgtools, policy
from conveyor.backups.service import (
    INTERRUPTED,
    Heartbeat,
    file_problem,
    get_backup,
    parse_time,
    take,
    untrusted,
)
from conveyor.clock import Clock, isoformat
from conveyor.deployments.service import current_spec
from conveyor.environments.service import lock_environment
from conveyor.errors import Conflict, ConveyorError, InvalidRequest, NotFound
from conveyor.resources import database_lock
from conveyor.resources import service as resources
from conveyor.spec import Spec
from conveyor.store.db import Store
from conveyor.store.tables import Backup, Environment, RestoreRun

log = logging.getLogger("conveyor.backups")


def _tier(session: Session, spec: Spec, name: str) -> str:
    """An environment's tier, also for one removed from conveyor.yaml since its backup was taken."""
    if name in spec.environments:
        return spec.environments[name].tier
    row = session.get(Environment, name)
    return row.tier if row is not None else "production"  # unknown: treat its data as live


def _start(
    store: Store,
    ctx: AuditContext,
    clock: Clock,
    kind: str,
    backup: Backup,
    target: resources.Declared,
) -> RestoreRun:
    """Record a running restore or drill (one at a time per target environment)."""
    now = clock.now()
    stale: list[tuple[str, str]] = []
    with store.write() as session:
        lock_environment(session, target.environment)
        for other in session.execute(
            select(RestoreRun).where(
                RestoreRun.environment == target.environment, RestoreRun.state == "running"
            )
        ).scalars():
            seen = parse_time(other.heartbeat_at)
            if now - seen < policy.STALE_AFTER:
                raise Conflict(
                    f"a {other.kind} into {target.environment} is already running (#{other.id}, started "
                    f"{other.started_at[:19]})",
                    hint="wait for it to finish, then try again",
                )
            other.state, other.reason, other.finished_at = "failed", INTERRUPTED, isoformat(now)
            if other.scratch_database:
                stale.append((other.server, other.scratch_database))
        run = RestoreRun(
            kind=kind,
            backup_id=backup.id,
            source_environment=backup.environment,
            environment=target.environment,
            server=target.server,
            database=target.names.database,
            state="running",
            created_by=ctx.actor,
            started_at=isoformat(now),
            heartbeat_at=isoformat(now),
        )
        session.add(run)
        session.flush()
        run.scratch_database = policy.scratch_name(target.names.database, kind, run.id)
    for server, name in stale:  # an interrupted run's scratch database is never the target: drop it
        _drop_quietly(server, name)
    return run


def _drop_quietly(server: str, name: str) -> bool:
    try:
        pgtools.drop(server, name)
        return True
    except Exception as exc:  # the restore's own outcome matters more than a cleanup that failed
        log.warning("could not drop scratch database %s: %s", name, pgtools.tool_error(str(exc)))
        return False


def _restore_and_verify(
    run: RestoreRun, owner: str, path: Path, backup: Backup, alive: Heartbeat
) -> tuple[float, dict[str, Any]]:
    """pg_restore into the run's scratch database and check it; (seconds, checks) or a Conflict."""
    assert run.scratch_database is not None
    began = time.monotonic()
    pgtools.create_scratch(run.server, run.scratch_database, owner)
    pgtools.restore(run.server, run.scratch_database, owner, path, alive)
    restored = time.monotonic() - began
    scratch = run.scratch_database
    got = pgtools.call_alive(lambda: pgtools.inspect(run.server, scratch), alive)
    expected_tables = json.loads(backup.tables or "{}")
    expected_constraints = json.loads(backup.constraints or "{}")
    problems = policy.compare_tables(expected_tables, got.tables)
    problems += policy.compare_constraints(expected_constraints, got.constraints)
    checks = {
        "pg_restore_s": round(restored, 3),
        "tables": len(got.tables),
        "rows": sum(got.tables.values()),
        "constraints": len(got.constraints),
        "problems": problems,
    }
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise Conflict(
            f"the restored copy does not match backup {backup.id}: {shown}",
            hint=f"try another backup (`conveyor backup drills {backup.environment}` shows which restore "
            "cleanly)",
            checks=checks,
        )
    return time.monotonic() - began, checks


def restore(
    store: Store,
    home: Path,
    ctx: AuditContext,
    clock: Clock,
    source: str,
    backup_id: int,
    target: str,
    confirmed: bool,
    safety_backup: bool = True,
) -> dict[str, Any]:
    """Restore backup `backup_id` of `source` into `target`'s database, swapping it in once verified."""
    with store.read() as session:
        spec = current_spec(session)
        backup = get_backup(session, backup_id)
        if backup.environment != source:
            raise InvalidRequest(
                f"backup {backup_id} is a backup of {backup.environment}, not of {source}",
                hint=f"`conveyor restore {backup.environment} --from {backup_id}`",
            )
        declared = resources.declared(spec, target)
        request = policy.RestoreRequest(
            source,
            _tier(session, spec, source),
            target,
            spec.environments[target].tier,
            spec.environments[target].data.policy,
            confirmed,
        )
        refusal = policy.check_restore(request)
        if refusal is not None:
            raise Conflict(refusal.reason, hint=refusal.hint, rule=refusal.rule)
        if resources.resource(session, target) is None:
            raise NotFound(
                f"{target}'s database was never provisioned",
                hint=f"`conveyor resource provision {target}` first",
            )
    problem = file_problem(home, backup)
    if problem is not None:
        with store.write() as session:
            record(
                session,
                ctx,
                "backup.restore",
                now=clock.now(),
                environment=target,
                target=f"backup:{backup_id}",
                outcome="refused",
                details={"source": source, "reason": problem},
            )
        raise untrusted(backup, problem)
    with database_lock.hold(declared.server, declared.names.database, target, "restore"):
        return _restore_locked(store, home, ctx, clock, backup, declared, safety_backup)


def _restore_locked(
    store: Store,
    home: Path,
    ctx: AuditContext,
    clock: Clock,
    backup: Backup,
    declared: resources.Declared,
    safety_backup: bool,
) -> dict[str, Any]:
    """The restore itself, under the target database's lock: safety backup, restore, verify, swap."""
    target, path = declared.environment, home / str(backup.file)
    run = _start(store, ctx, clock, "restore", backup, declared)
    assert run.scratch_database is not None
    alive = Heartbeat(store, clock, RestoreRun, run.id)
    safety_id: int | None = None
    swapped = False
    try:
        if safety_backup and pgtools.exists(declared.server, declared.names.database):
            safety = pgtools.call_alive(
                lambda: take(store, home, ctx, clock, target, trigger="pre-restore"), alive
            )
            safety_id = safety["id"] if safety else None
        seconds, checks = _restore_and_verify(run, declared.names.owner, path, backup, alive)
        old = policy.scratch_name(declared.names.database, "old", run.id)
        sessions = pgtools.swap_in(
            declared.server, declared.names.database, run.scratch_database, old, declared.names.owner
        )
        swapped = True
        checks["previous_dropped"] = _drop_quietly(declared.server, old)
    except BaseException as exc:
        if not swapped:
            _drop_quietly(declared.server, run.scratch_database)
        _finish(store, ctx, clock, run.id, None, exc, safety_id=safety_id)
        if isinstance(exc, ConveyorError):
            note = "the target database is unchanged" + (
                f" (safety backup {safety_id} holds it as it was)" if safety_id is not None else ""
            )
            exc.hint = f"{exc.hint}; {note}" if exc.hint else note
        raise
    return _finish(store, ctx, clock, run.id, (seconds, checks, sessions), None, safety_id=safety_id)


def _close(
    store: Store,
    ctx: AuditContext,
    clock: Clock,
    run_id: int,
    passed: bool,
    fill: Callable[[RestoreRun], dict[str, Any]],
) -> dict[str, Any]:
    """End a restore or drill: its state and times, what `fill` sets (it returns the audit's details),
    audited as `backup.restore` (target: the database) or `backup.drill` (target: the backup)."""
    now = clock.now()
    with store.write() as session:
        run = session.get(RestoreRun, run_id)
        assert run is not None
        run.state = "succeeded" if passed else "failed"
        run.finished_at = run.heartbeat_at = isoformat(now)
        run.duration_s = round((now - parse_time(run.started_at)).total_seconds(), 3)
        details = fill(run)
        record(
            session,
            ctx,
            f"backup.{run.kind}",
            now=now,
            environment=run.environment,
            target=f"database:{run.database}" if run.kind == "restore" else f"backup:{run.backup_id}",
            outcome="success" if passed else "failure",
            details=details,
        )
        return run_dict(run)


def _finish(
    store: Store,
    ctx: AuditContext,
    clock: Clock,
    run_id: int,
    done: tuple[float, dict[str, Any], int] | None,
    exc: BaseException | None,
    safety_id: int | None,
) -> dict[str, Any]:
    """Record how a restore ended (`done`: seconds, checks, sessions ended; else `exc`), audited."""

    def fill(run: RestoreRun) -> dict[str, Any]:
        run.safety_backup_id = safety_id
        if done is not None:
            seconds, checks, sessions = done
            run.restore_s, run.sessions_ended = round(seconds, 3), sessions
            run.checks = json.dumps(checks, sort_keys=True)
        else:
            run.reason = exc.detail if isinstance(exc, ConveyorError) else f"{type(exc).__name__}: {exc}"
            if isinstance(exc, ConveyorError) and "checks" in exc.extra:
                run.checks = json.dumps(exc.extra["checks"], sort_keys=True)
        return {
            "backup": run.backup_id,
            "source": run.source_environment,
            "safety_backup": safety_id,
            "sessions_ended": run.sessions_ended,
            "restore_s": run.restore_s,
            "reason": run.reason,
        }

    return _close(store, ctx, clock, run_id, done is not None, fill)


def drill(
    store: Store, home: Path, ctx: AuditContext, clock: Clock, environment: str, backup_id: int | None
) -> dict[str, Any]:
    """Restore a backup into a throwaway database, verify and time it, judge it against RTO and RPO."""
    with store.read() as session:
        spec = current_spec(session)
        declared = resources.declared(spec, environment)
        backup = _drill_backup(session, environment, backup_id)
        recovery = spec.environments[environment].recovery
    run = _start(store, ctx, clock, "drill", backup, declared)
    assert run.scratch_database is not None
    alive = Heartbeat(store, clock, RestoreRun, run.id)
    began = clock.now()
    problems: list[str] = []
    checks: dict[str, Any] = {}
    seconds = 0.0
    try:
        problem = file_problem(home, backup)
        if problem is not None:
            problems.append(problem)
        else:
            seconds, checks = _restore_and_verify(
                run, declared.names.owner, home / str(backup.file), backup, alive
            )
    except ConveyorError as exc:
        checks = dict(exc.extra.get("checks") or checks)
        problems.extend(checks.get("problems") or [exc.detail])
        seconds = (clock.now() - began).total_seconds()
    except Exception as exc:  # a raw database error still ends the drill as failed, recorded
        problems.append(f"the drill failed: {pgtools.tool_error(str(exc))}")
        seconds = (clock.now() - began).total_seconds()
    finally:
        checks["scratch_dropped"] = _drop_quietly(declared.server, run.scratch_database)
    rto = timedelta(seconds=recovery.rto.seconds) if recovery and recovery.rto else None
    rpo = timedelta(seconds=recovery.rpo.seconds) if recovery and recovery.rpo else None
    age = began - parse_time(backup.finished_at or backup.started_at)
    verdict = policy.judge_drill(problems, timedelta(seconds=seconds), rto, age, rpo)
    return _record_drill(store, ctx, clock, run.id, verdict, seconds, checks, rto, rpo, age)


def _drill_backup(session: Session, environment: str, backup_id: int | None) -> Backup:
    if backup_id is not None:
        backup = get_backup(session, backup_id)
        if backup.environment != environment:
            raise InvalidRequest(
                f"backup {backup_id} is a backup of {backup.environment}, not of {environment}",
                hint=f"`conveyor restore-drill {backup.environment} --from {backup_id}`",
            )
        if backup.state != "succeeded":
            raise Conflict(
                f"backup {backup_id} is {backup.state}: there is nothing to restore",
                hint=f"drill the latest good backup: `conveyor restore-drill {environment}`",
            )
        return backup
    latest = session.execute(
        select(Backup)
        .where(Backup.environment == environment, Backup.state == "succeeded")
        .order_by(Backup.started_at.desc(), Backup.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if latest is None:
        raise NotFound(
            f"{environment} has no backup to drill", hint=f"take one first: `conveyor backup {environment}`"
        )
    return latest


def _record_drill(
    store: Store,
    ctx: AuditContext,
    clock: Clock,
    run_id: int,
    verdict: policy.DrillVerdict,
    seconds: float,
    checks: dict[str, Any],
    rto: timedelta | None,
    rpo: timedelta | None,
    age: timedelta,
) -> dict[str, Any]:
    """Record a drill's verdict and measures, audited."""

    def fill(run: RestoreRun) -> dict[str, Any]:
        run.reason = "; ".join(verdict.reasons) or None
        run.restore_s = round(seconds, 3)
        run.rto_s = None if rto is None else rto.total_seconds()
        run.rto_met = verdict.rto_met
        run.rpo_s = None if rpo is None else rpo.total_seconds()
        run.rpo_met = verdict.rpo_met
        run.backup_age_s = round(age.total_seconds(), 3)
        run.checks = json.dumps(checks, sort_keys=True)
        return {
            "restore_s": run.restore_s,
            "rto_s": run.rto_s,
            "rto_met": run.rto_met,
            "backup_age_s": run.backup_age_s,
            "rpo_s": run.rpo_s,
            "rpo_met": run.rpo_met,
            "reason": run.reason,
        }

    return _close(store, ctx, clock, run_id, verdict.passed, fill)


def run_dict(run: RestoreRun) -> dict[str, Any]:
    """The public view of a restore or drill."""
    return {
        "id": run.id,
        "kind": run.kind,
        "backup": run.backup_id,
        "source": run.source_environment,
        "environment": run.environment,
        "database": run.database,
        "scratch_database": run.scratch_database,
        "state": run.state,
        "passed": run.state == "succeeded",
        "reason": run.reason,
        "safety_backup": run.safety_backup_id,
        "sessions_ended": run.sessions_ended,
        "restore_s": run.restore_s,
        "rto_s": run.rto_s,
        "rto_met": run.rto_met,
        "backup_age_s": run.backup_age_s,
        "rpo_s": run.rpo_s,
        "rpo_met": run.rpo_met,
        "checks": json.loads(run.checks) if run.checks else None,
        "created_by": run.created_by,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_s": run.duration_s,
    }


def runs(
    session: Session, environment: str, kind: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """The environment's restores and drills, newest first."""
    query = select(RestoreRun).where(RestoreRun.environment == environment)
    if kind is not None:
        query = query.where(RestoreRun.kind == kind)
    found = session.execute(query.order_by(RestoreRun.id.desc()).limit(limit)).scalars()
    return [run_dict(r) for r in found]

"""Backups, restores and restore drills of each environment's PostgreSQL database (ADR 0016).

Each write route does the whole job in the request (the CLI waits with a spinner); the work is a row
with a heartbeat, so a server that dies midway leaves a record that the next look marks interrupted.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from conveyor.api.deps import AuditDep, PrincipalDep, StateDep, guarded, guarded_environment
from conveyor.backups import restore as restores
from conveyor.backups import service as backups
from conveyor.deployments.service import check_environment_action, current_spec
from conveyor.environments.service import get_environment
from conveyor.errors import InvalidRequest

router = APIRouter(tags=["backups"])


class RestoreBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backup: int = Field(..., ge=1, description="the backup to restore (`conveyor backup list ENV`)")
    source: str | None = Field(
        None, description="the environment the backup was taken of (checked); default: this one"
    )
    confirm: bool = Field(False, description="required to replace a production or dr database")
    safety_backup: bool = Field(True, description="back up the current data first (default)")


class DrillBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backup: int | None = Field(None, ge=1, description="the backup to drill; default: the latest good one")


@router.get("/api/v1/environments/{name}/backups", **guarded("environments:read"))
def list_backups(name: str, state: StateDep) -> dict[str, Any]:
    """The environment's backups, newest first, with its schedule (`backups.every`) and retention."""
    with state.store.read() as session:
        get_environment(session, name)
        return backups.listing(session, current_spec(session), name)


@router.post("/api/v1/environments/{name}/backups", **guarded_environment("deploy"))
def take_backup(name: str, state: StateDep, ctx: AuditDep) -> dict[str, Any]:
    """pg_dump the environment's database now (custom format, one snapshot); prunes expired backups."""
    taken = backups.take(state.store, state.settings.home, ctx, state.clock, name)
    assert taken is not None  # only a scheduled backup can be skipped
    return taken


@router.post("/api/v1/environments/{name}/backups/prune", **guarded_environment("deploy"))
def prune_backups(name: str, state: StateDep, ctx: AuditDep) -> dict[str, Any]:
    """Delete backups older than `backups.keep` (file and record); the last good one always stays."""
    with state.store.read() as session:
        get_environment(session, name)
        if current_spec(session).environments[name].backups is None:
            raise InvalidRequest(
                f"{name} declares no backups block, so no retention applies to its backups",
                hint=f"add backups: {{every: 24h, keep: 30d}} under environments.{name} in conveyor.yaml",
            )
    pruned = backups.prune(state.store, state.settings.home, ctx, state.clock, name)
    return {"environment": name, "pruned": pruned}


@router.get("/api/v1/backups/{backup_id}", **guarded("environments:read"))
def show_backup(backup_id: int, state: StateDep) -> dict[str, Any]:
    """One backup: file, size, sha256, per-table row counts, timing, who took it."""
    with state.store.read() as session:
        return backups.to_dict(backups.get_backup(session, backup_id), detail=True)


@router.post("/api/v1/environments/{name}/restore", **guarded_environment("deploy"))
def restore_backup(
    name: str, body: RestoreBody, state: StateDep, principal: PrincipalDep, ctx: AuditDep
) -> dict[str, Any]:
    """Restore a backup into this environment's database: verified in a new database, then swapped in."""
    source = body.source or name
    if source != name:  # taking data out of an environment needs the right to deploy there too
        with state.store.read() as session:
            check_environment_action(current_spec(session), principal, source, "deploy")
    return restores.restore(
        state.store,
        state.settings.home,
        ctx,
        state.clock,
        source,
        body.backup,
        name,
        body.confirm,
        body.safety_backup,
    )


@router.post("/api/v1/environments/{name}/restore-drills", **guarded_environment("deploy"))
def run_drill(name: str, body: DrillBody, state: StateDep, ctx: AuditDep) -> dict[str, Any]:
    """Restore a backup into a throwaway database, verify it, time it against the RTO, and drop it."""
    return restores.drill(state.store, state.settings.home, ctx, state.clock, name, body.backup)


@router.get("/api/v1/environments/{name}/restore-runs", **guarded("environments:read"))
def list_runs(
    name: str,
    state: StateDep,
    kind: Literal["restore", "drill"] | None = Query(None, description="only restores or only drills"),
    limit: int = Query(50, ge=1, le=500),
) -> dict[str, Any]:
    """The environment's restores and restore drills, newest first."""
    with state.store.read() as session:
        get_environment(session, name)
        return {"environment": name, "runs": restores.runs(session, name, kind, limit)}

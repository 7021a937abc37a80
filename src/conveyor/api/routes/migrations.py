"""Schema migrations: what an environment's database has applied, and what a release would apply."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from conveyor.api.deps import StateDep, guarded
from conveyor.deployments.service import current_spec
from conveyor.environments.service import get_environment
from conveyor.migrations import service as migrations

router = APIRouter(tags=["migrations"])


@router.get("/api/v1/environments/{name}/migrations", **guarded("environments:read"))
def migration_status(name: str, state: StateDep) -> dict[str, Any]:
    """The migrations the environment's database records as applied, with checksums and timings."""
    with state.store.read() as session:
        get_environment(session, name)
        return migrations.status(session, current_spec(session), name)


@router.get("/api/v1/environments/{name}/migrations/plan", **guarded("environments:read"))
def migration_plan(
    name: str,
    state: StateDep,
    service: str = Query(..., max_length=64),
    version: str = Query(..., max_length=128),
) -> dict[str, Any]:
    """What promoting SERVICE VERSION here would apply, squawk's findings, and the expand/contract check."""
    with state.store.read() as session:
        get_environment(session, name)
        return migrations.plan(
            session, state.settings.home, current_spec(session), name, service, version
        ).to_json()

"""Environments of the applied spec."""

from __future__ import annotations

import json

from fastapi import APIRouter

from conveyor.api.deps import StateDep, guarded
from conveyor.api.schemas import EnvironmentPublic
from conveyor.environments import service as envs
from conveyor.store.tables import Environment

router = APIRouter(prefix="/api/v1/environments", tags=["environments"])


def _public(row: Environment) -> EnvironmentPublic:
    return EnvironmentPublic(
        name=row.name,
        tier=row.tier,
        created_revision=row.created_revision,
        updated_revision=row.updated_revision,
        removed_revision=row.removed_revision,
        spec=json.loads(row.spec),
    )


@router.get("", **guarded("environments:read"))
def list_environments(state: StateDep, include_removed: bool = False) -> list[EnvironmentPublic]:
    """Environments in pipeline-file order."""
    with state.store.read() as session:
        return [_public(r) for r in envs.list_environments(session, include_removed)]


@router.get("/{name}", **guarded("environments:read"))
def get_environment(name: str, state: StateDep) -> EnvironmentPublic:
    """One environment with its applied policy."""
    with state.store.read() as session:
        return _public(envs.get_environment(session, name))

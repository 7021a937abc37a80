"""Data policies: an environment's declared personal data, synthetic seeding and masked clones."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from conveyor.api.deps import AuditDep, PrincipalDep, StateDep, guarded, guarded_environment
from conveyor.data import service as data
from conveyor.deployments.service import check_environment_action, current_spec
from conveyor.environments.service import get_environment

router = APIRouter(tags=["data"])


class SeedBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows: int = Field(data.DEFAULT_ROWS, ge=1, le=data.MAX_SEED_ROWS, description="rows per table")
    seed: int = Field(data.DEFAULT_SEED, ge=0, le=2**63 - 1, description="the same seed gives the same rows")


class CloneBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str = Field(..., min_length=1, max_length=100, description="the environment copied from")
    check: bool = Field(False, description="run the pre-flight only; nothing is copied")


@router.get("/api/v1/environments/{name}/data", **guarded("environments:read"))
def show_data(name: str, state: StateDep) -> dict[str, Any]:
    """The environment's data policy, and the personal columns, masking and subset rules declared."""
    with state.store.read() as session:
        get_environment(session, name)
        return data.status(current_spec(session), name)


@router.post("/api/v1/environments/{name}/data/seed", **guarded_environment("deploy"))
def seed_data(name: str, body: SeedBody, state: StateDep, ctx: AuditDep) -> dict[str, Any]:
    """Replace the database's rows with deterministic synthetic ones (synthetic environments only)."""
    with state.store.read() as session:
        get_environment(session, name)
        spec = current_spec(session)
    return data.seed(state.store.write, ctx, spec, name, body.rows, body.seed, state.clock.now)


@router.post("/api/v1/environments/{name}/data/clone", **guarded_environment("deploy"))
def clone_data(
    name: str, body: CloneBody, state: StateDep, principal: PrincipalDep, ctx: AuditDep
) -> dict[str, Any]:
    """Copy the source's database into this one through the masking rules, or only check that it may.

    It reads the source's schema and rows and opens the source's masking key, so it needs deploy
    in the source as well as in this environment.
    """
    with state.store.read() as session:
        get_environment(session, name)
        spec = current_spec(session)
        if body.source in spec.environments:
            check_environment_action(spec, principal, body.source, "deploy")
        if body.check:
            return data.check_clone(session, spec, state.keyring, body.source, name)
    return data.clone(state.store.write, ctx, spec, state.keyring, body.source, name, state.clock.now)

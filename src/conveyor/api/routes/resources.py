"""Backing resources: the database (PostgreSQL or SQLite) and Redis namespace each environment declares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from conveyor.api.deps import AppState, AuditDep, PrincipalDep, StateDep, guarded, guarded_environment
from conveyor.audit.log import AuditContext
from conveyor.auth.service import Principal
from conveyor.data import reset as resetting
from conveyor.data.service import DEFAULT_ROWS, DEFAULT_SEED, MAX_SEED_ROWS
from conveyor.deployments.service import check_environment_action, current_spec
from conveyor.environments.service import get_environment
from conveyor.resources import service as resources
from conveyor.spec import Spec

router = APIRouter(tags=["resources"])


class ResetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    empty: bool = Field(False, description="drop and recreate only: no migrations, no data")
    rows: int | None = Field(
        None, ge=1, le=MAX_SEED_ROWS, description=f"synthetic policy: rows per table (default {DEFAULT_ROWS})"
    )
    seed: int | None = Field(
        None, ge=0, le=2**63 - 1, description=f"synthetic policy: the seed (default {DEFAULT_SEED})"
    )


def _options(body: ResetBody | None) -> resetting.Options:
    return resetting.Options() if body is None else resetting.Options(body.empty, body.rows, body.seed)


def _check_source(spec: Spec, principal: Principal, name: str, options: resetting.Options) -> None:
    """A masked environment is refilled from its source: that needs deploy there too, as a clone does."""
    data = spec.environment(name).data
    if data.policy == "masked" and not options.empty and data.source in spec.environments:
        check_environment_action(spec, principal, data.source, "deploy")


def _reset(
    run: Callable[..., dict[str, Any]],
    name: str,
    state: AppState,
    principal: Principal,
    ctx: AuditContext,
    body: ResetBody | None,
) -> dict[str, Any]:
    """Both reset routes: check the environment and the clone source's permission, then `run` it
    without holding a state-store transaction (a reset runs for minutes)."""
    options = _options(body)
    with state.store.read() as session:
        get_environment(session, name)
        spec = current_spec(session)
    _check_source(spec, principal, name, options)
    return run(state.store, state.settings.home, ctx, spec, state.keyring, name, state.clock.now, options)


@router.get("/api/v1/resources", **guarded("environments:read"))
def list_resources(state: StateDep) -> dict[str, Any]:
    """Each environment's declared database and cache, and whether Conveyor provisioned the database."""
    with state.store.read() as session:
        return {"resources": resources.listing(session, current_spec(session))}


@router.get("/api/v1/environments/{name}/resources", **guarded("environments:read"))
def show_resources(name: str, state: StateDep) -> dict[str, Any]:
    """The environment's database and cache: names, server, and what the servers report now."""
    with state.store.read() as session:
        get_environment(session, name)
        return resources.show_all(session, current_spec(session), name)


@router.post("/api/v1/environments/{name}/resources/provision", **guarded_environment("deploy"))
def provision_resources(name: str, state: StateDep, ctx: AuditDep) -> dict[str, Any]:
    """Provision every declared resource (idempotent): the database or SQLite file, the Redis namespace."""
    with state.store.write() as session:
        get_environment(session, name)
        return resources.provision_all(
            session, ctx, current_spec(session), state.keyring, name, state.clock.now()
        )


@router.post("/api/v1/environments/{name}/resources/reset", **guarded_environment("deploy"))
def reset_resources(
    name: str, state: StateDep, principal: PrincipalDep, ctx: AuditDep, body: ResetBody | None = None
) -> dict[str, Any]:
    """Reset every resource by the data policy: database refilled, SQLite file emptied, keys deleted.

    The PostgreSQL database is dropped, created again, migrated to what is deployed and seeded
    (synthetic) or cloned from its source (masked); `empty` stops after the drop. Refused for
    production and dr.
    """
    return _reset(resetting.reset_environment, name, state, principal, ctx, body)


@router.get("/api/v1/environments/{name}/resources/database", **guarded("environments:read"))
def show_database(name: str, state: StateDep) -> dict[str, Any]:
    """The environment's database: names, server, logins, and what the server reports now."""
    with state.store.read() as session:
        get_environment(session, name)
        return resources.show(session, current_spec(session), name)


@router.post("/api/v1/environments/{name}/resources/database/provision", **guarded_environment("deploy"))
def provision_database(name: str, state: StateDep, ctx: AuditDep) -> dict[str, Any]:
    """Create the database, its owner and its two logins (idempotent); set the current password on one."""
    with state.store.write() as session:
        get_environment(session, name)
        return resources.provision(
            session, ctx, current_spec(session), state.keyring, name, state.clock.now()
        )


@router.post("/api/v1/environments/{name}/resources/database/reset", **guarded_environment("deploy"))
def reset_database(
    name: str, state: StateDep, principal: PrincipalDep, ctx: AuditDep, body: ResetBody | None = None
) -> dict[str, Any]:
    """Drop and recreate the database, then refill it by its data policy; refused for production and dr.

    `empty` leaves it empty; otherwise as the environment-wide reset does for its database.
    """
    return _reset(resetting.reset_database, name, state, principal, ctx, body)

"""Backing resources: the database (PostgreSQL or SQLite) and Redis namespace each environment declares."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from conveyor.api.deps import AuditDep, StateDep, guarded, guarded_environment
from conveyor.deployments.service import current_spec
from conveyor.environments.service import get_environment
from conveyor.resources import service as resources

router = APIRouter(tags=["resources"])


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
def reset_resources(name: str, state: StateDep, ctx: AuditDep) -> dict[str, Any]:
    """Empty every resource: recreate the database or file, delete the namespace's keys; not production."""
    with state.store.write() as session:
        get_environment(session, name)
        return resources.reset_all(session, ctx, current_spec(session), name, state.clock.now())


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
def reset_database(name: str, state: StateDep, ctx: AuditDep) -> dict[str, Any]:
    """Drop the database and create it empty again; refused for production and dr."""
    with state.store.write() as session:
        get_environment(session, name)
        return resources.reset(session, ctx, current_spec(session), name, state.clock.now())

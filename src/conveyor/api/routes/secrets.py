"""Secrets: set, rotate, list, history, delete, what is due, and re-wrapping under a new master key.

No route returns a value: a value goes in (set, rotate) and comes out only to the runtime, with a
release (ADR 0010).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from conveyor.api.deps import AppState, AuditDep, StateDep, guarded, guarded_environment
from conveyor.audit.log import AuditContext
from conveyor.deployments.service import current_release, current_spec
from conveyor.environments.service import get_environment
from conveyor.errors import Conflict, InvalidRequest
from conveyor.resources import service as resources
from conveyor.runtime.desired import EnvironmentDesired
from conveyor.secrets import service as secrets
from conveyor.secrets.service import MAX_BYTES
from conveyor.store.tables import SecretVersion

router = APIRouter(tags=["secrets"])

_MAX_CHARS = MAX_BYTES  # a character is at least one byte; the byte limit is checked again on store


class SetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: str | None = Field(
        None,
        max_length=_MAX_CHARS,
        description="the value; omit it with generate=true to have Conveyor make one",
    )
    generate: bool = Field(
        False, description="generate a value (database-password, password, signing-key, …)"
    )
    reason: str = Field("", max_length=2000)


class RotateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: str | None = Field(None, max_length=_MAX_CHARS, description="the new value; omitted: generated")
    reason: str = Field("", max_length=2000)


def _bind(session: Session, state: AppState, environment: str, row: SecretVersion) -> str | None:
    """A provisioned database's password goes on a free login now, in this transaction (ADR 0013)."""
    spec = current_spec(session)
    if not resources.is_bound(session, spec, environment, row.name):
        return None
    return resources.bind(session, spec, state.keyring, environment, row)


def _version_json(row: SecretVersion, login: str | None = None) -> dict[str, Any]:
    return {
        "database_login": login,
        "environment": row.environment,
        "name": row.name,
        "version": row.version,
        "kind": row.kind,
        "set_by": row.created_by,
        "set_at": row.created_at,
        "expires_at": row.expires_at,
    }


def _writable(session: Session, state: AppState) -> None:
    """Refuse writes while stored secrets are sealed under a master key the server lacks."""
    missing = secrets.check_keyring(session, state.keyring)
    if missing:
        raise Conflict(
            f"stored secrets are sealed under master key {', '.join(missing)}, "
            "which this server does not have",
            hint="restart the server with that key (CONVEYOR_MASTER_KEY or .conveyor/master.key); "
            "new secrets are refused until then so the store never mixes keys by mistake",
        )


@router.get("/api/v1/environments/{name}/secrets", **guarded("environments:read"))
def list_secrets(name: str, state: StateDep) -> dict[str, Any]:
    """Names, kinds, versions, ages and next rotation of the environment's secrets (never values)."""
    with state.store.read() as session:
        get_environment(session, name)
        rows = secrets.listing(session, current_spec(session), name, state.clock.now())
    return {"environment": name, "secrets": rows}


def _new_version(
    store: Callable[..., SecretVersion],
    environment: str,
    secret: str,
    value: str | None,
    reason: str,
    state: AppState,
    ctx: AuditContext,
) -> dict[str, Any]:
    """Store a version with `store` (set or rotate) and bind it to a provisioned database's free login."""
    with state.store.write() as session:
        get_environment(session, environment)
        _writable(session, state)
        spec = current_spec(session)
        row = store(session, ctx, spec, state.keyring, environment, secret, value, reason, state.clock.now())
        session.flush()
        return _version_json(row, _bind(session, state, environment, row))


@router.put("/api/v1/environments/{name}/secrets/{secret}", **guarded_environment("secrets"))
def set_secret(name: str, secret: str, body: SetBody, state: StateDep, ctx: AuditDep) -> dict[str, Any]:
    """Store a new version of a secret; the next release of the environment runs with it."""
    if (body.value is None) == (not body.generate):
        raise InvalidRequest("give either a value or generate=true", hint="not both, and not neither")
    return _new_version(secrets.set_secret, name, secret, body.value, body.reason, state, ctx)


@router.post("/api/v1/environments/{name}/secrets/{secret}/rotate", **guarded_environment("secrets"))
def rotate_secret(name: str, secret: str, body: RotateBody, state: StateDep, ctx: AuditDep) -> dict[str, Any]:
    """A new version (generated when no value is given); the old one stays readable for running instances."""
    return _new_version(secrets.rotate, name, secret, body.value, body.reason, state, ctx)


@router.get("/api/v1/environments/{name}/secrets/{secret}/history", **guarded("environments:read"))
def secret_history(name: str, secret: str, state: StateDep) -> dict[str, Any]:
    """Every version: who set it, when and why, and when it was deleted."""
    with state.store.read() as session:
        get_environment(session, name)
        return {"environment": name, "name": secret, "versions": secrets.history(session, name, secret)}


@router.delete("/api/v1/environments/{name}/secrets/{secret}", **guarded_environment("secrets"))
def delete_secret(
    name: str,
    secret: str,
    state: StateDep,
    ctx: AuditDep,
    reason: str = Query("", max_length=2000),
    force: bool = Query(False, description="delete even though the running release uses it"),
) -> dict[str, Any]:
    """Destroy every stored version of a secret (its history stays)."""
    with state.store.write() as session:
        get_environment(session, name)
        running = current_release(session, name)
        in_use = False
        if running is not None and running.desired is not None:
            refs = EnvironmentDesired.from_json(json.loads(running.desired)).secret_refs()
            in_use = any((r.environment, r.name) == (name, secret) for r in map(secrets.Ref.parse, refs))
        count = secrets.delete(session, ctx, name, secret, reason, state.clock.now(), in_use, force)
    return {"environment": name, "name": secret, "destroyed_versions": count}


@router.get("/api/v1/secrets/due", **guarded("environments:read"))
def due(state: StateDep, environment: str | None = Query(None, max_length=64)) -> dict[str, Any]:
    """Secrets that are missing, overdue, due or due within a week, most urgent first."""
    with state.store.read() as session:
        if environment is not None:
            get_environment(session, environment)
        return {"secrets": secrets.due(session, current_spec(session), state.clock.now(), environment)}


@router.post("/api/v1/secrets/rewrap", **guarded("secrets:rewrap"))
def rewrap(state: StateDep, ctx: AuditDep) -> dict[str, Any]:
    """Re-wrap every data key under the server's current master key (values are not re-encrypted)."""
    with state.store.write() as session:
        return secrets.rewrap_all(session, ctx, state.keyring, state.clock.now())

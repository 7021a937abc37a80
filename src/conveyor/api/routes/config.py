"""Configuration: an environment's resolved values with their sources, overrides, and diffs."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from conveyor.api.deps import AuditDep, StateDep, guarded, guarded_environment
from conveyor.audit.log import record
from conveyor.config import service as config
from conveyor.config.export import FORMATS, export
from conveyor.deployments.service import current_spec
from conveyor.environments.service import get_environment
from conveyor.errors import InvalidRequest, NotFound
from conveyor.runtime.desired import EnvironmentDesired
from conveyor.secrets import service as secrets
from conveyor.store.tables import Deployment

router = APIRouter(tags=["config"])


class SetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    values: dict[str, str] = Field(description="KEY → value as text; typed by the service's config_schema")
    reason: str = Field("", max_length=2000)


@router.get("/api/v1/environments/{name}/config", **guarded("environments:read"))
def show(name: str, state: StateDep, service: str | None = Query(None, max_length=64)) -> dict[str, Any]:
    """Every key the next release would run with: value, layer, origin, the values it shadows, problems."""
    with state.store.read() as session:
        get_environment(session, name)
        resolved = config.resolution(session, current_spec(session), name, service)
    return {"environment": name, **resolved.to_json()}


@router.put("/api/v1/environments/{name}/config", **guarded_environment("config"))
def set_values(name: str, body: SetBody, state: StateDep, ctx: AuditDep) -> dict[str, Any]:
    """Override keys for the environment's next release (a config-only release, promoted like code)."""
    with state.store.write() as session:
        get_environment(session, name)
        spec = current_spec(session)
        config.set_override(session, ctx, spec, name, body.values, body.reason, state.clock.now())
        resolved = config.resolution(session, spec, name)
    return {"environment": name, **resolved.to_json()}


@router.delete("/api/v1/environments/{name}/config/{key}", **guarded_environment("config"))
def unset_value(
    name: str, key: str, state: StateDep, ctx: AuditDep, reason: str = Query("", max_length=2000)
) -> dict[str, Any]:
    """Remove an override; the next release falls back to the layers below."""
    with state.store.write() as session:
        get_environment(session, name)
        config.unset_override(session, ctx, name, key, reason, state.clock.now())
        resolved = config.resolution(session, current_spec(session), name)
    return {"environment": name, **resolved.to_json()}


@router.get(
    "/api/v1/environments/{name}/config/export",
    response_class=PlainTextResponse,
    **guarded("environments:read"),
)
def export_values(
    name: str,
    state: StateDep,
    format: str = Query("dotenv", description="dotenv, json or tfvars"),
    service: str | None = Query(None, max_length=64),
) -> str:
    """The next release's configuration as a .env file, JSON, or Terraform variables (no secrets)."""
    _check_format(format)
    with state.store.read() as session:
        get_environment(session, name)
        resolved = config.resolution(session, current_spec(session), name, service)
    return export(config.plain(resolved), format)  # type: ignore[arg-type]


def _check_format(format: str) -> None:
    if format not in FORMATS:
        raise InvalidRequest(f"'{format}' is not an export format", hint=f"use one of: {', '.join(FORMATS)}")


@router.get(
    "/api/v1/environments/{name}/config/export/with-secrets",
    response_class=PlainTextResponse,
    **guarded_environment("secrets"),
)
def export_with_secrets(
    name: str,
    state: StateDep,
    ctx: AuditDep,
    format: str = Query("dotenv", description="dotenv, json or tfvars"),
    service: str | None = Query(None, max_length=64),
) -> str:
    """The next release's configuration with its secrets' values; audited as a read of each secret."""
    _check_format(format)
    with state.store.write() as session:
        get_environment(session, name)
        resolved, refs = config.resolution_and_refs(session, current_spec(session), name, service)
        config.refuse_problems(name, resolved)
        opened = secrets.values(session, state.keyring, set(refs.values()))
        record(
            session,
            ctx,
            "secret.read",
            now=state.clock.now(),
            environment=name,
            target=f"export:{name}",
            details={"secrets": sorted(refs.values()), "purpose": "export", "format": format},
        )
    typed = config.plain(resolved)
    typed.update({key: opened[ref] for key, ref in refs.items()})
    return export(dict(sorted(typed.items())), format)  # type: ignore[arg-type]


@router.get("/api/v1/config/diff", **guarded("environments:read"))
def diff(
    state: StateDep,
    a: str = Query(..., max_length=64, description="an environment"),
    b: str = Query(..., max_length=64, description="another environment"),
) -> dict[str, Any]:
    """What differs between two environments' configuration, key by key."""
    with state.store.read() as session:
        spec = current_spec(session)
        left, right = config.resolution(session, spec, a), config.resolution(session, spec, b)
    return {"a": a, "b": b, "differences": config.diff(left, right)}


@router.get("/api/v1/environments/{name}/config/since/{deployment_id}", **guarded("environments:read"))
def since_release(name: str, deployment_id: int, state: StateDep) -> dict[str, Any]:
    """What the next release's configuration changes compared with an earlier release (a deployment)."""
    with state.store.read() as session:
        get_environment(session, name)
        row = session.get(Deployment, deployment_id)
        if row is None or row.environment != name:
            raise NotFound(
                f"{name} has no release {deployment_id}",
                hint=f"see `conveyor history {name}` for its releases",
            )
        if row.desired is None:
            raise InvalidRequest(f"release {deployment_id} predates configuration snapshots")
        released = EnvironmentDesired.from_json(json.loads(row.desired))
        before = {**released.env, **{k: config.masked(ref) for k, ref in released.secrets.items()}}
        now = config.resolution(session, current_spec(session), name, row.service).env()
    return {
        "environment": name,
        "release": deployment_id,
        "version": row.version,
        "changes": config.env_diff(before, now),
    }

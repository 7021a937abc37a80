"""Health, readiness, version, status and identity."""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from conveyor import __version__
from conveyor.api.deps import PrincipalDep, StateDep, guarded
from conveyor.environments import service as envs
from conveyor.errors import ConveyorError
from conveyor.store.db import redact_url
from conveyor.store.migrate import ensure_migrated

router = APIRouter()


@router.get("/healthz", tags=["system"], openapi_extra={"x-permission": "public"})
def healthz() -> dict[str, str]:
    """Liveness: the process answers. Public, for probes."""
    return {"status": "ok"}


@router.get("/readyz", tags=["system"], openapi_extra={"x-permission": "public"})
def readyz(state: StateDep) -> JSONResponse:
    """Readiness: the store answers and is migrated. Public, for probes."""
    try:
        ensure_migrated(state.store)
    except ConveyorError as exc:
        return JSONResponse({"status": "not ready", "reason": exc.detail}, status_code=503)
    except Exception:
        return JSONResponse({"status": "not ready", "reason": "state store unreachable"}, status_code=503)
    # the pid lets `conveyor up` tell its own server from another process answering on the port
    return JSONResponse({"status": "ready", "pid": os.getpid()})


@router.get("/version", tags=["system"], **guarded("status:read"))
def version(state: StateDep) -> dict[str, str]:
    """Server and schema versions."""
    return {"version": __version__, "schema_revision": state.schema_revision}


@router.get("/api/v1/whoami", tags=["system"], **guarded("status:read"))
def whoami(principal: PrincipalDep) -> dict[str, str]:
    """The caller's user, role and token id."""
    return {"user": principal.name, "role": principal.role, "token_id": principal.token_id}


@router.get("/api/v1/status", tags=["system"], **guarded("status:read"))
def status(state: StateDep) -> dict[str, Any]:
    """Server, store and environments at a glance."""
    with state.store.read() as session:
        latest = envs.latest_revision(session)
        environments = [
            {"name": e.name, "tier": e.tier, "updated_revision": e.updated_revision}
            for e in envs.list_environments(session)
        ]
    return {
        "server": {"version": __version__, "started_at": state.started_at, "home": str(state.settings.home)},
        "store": {
            "dialect": state.store.dialect,
            "url": redact_url(state.store.url),
            "schema_revision": state.schema_revision,
        },
        "spec": {
            "revision": latest.number if latest else 0,
            "applied_at": latest.created_at if latest else None,
            "applied_by": latest.created_by if latest else None,
        },
        "environments": environments,
    }

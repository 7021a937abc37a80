"""Artifacts: register a bundle (streamed upload), list and show."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from conveyor.api.deps import AuditDep, StateDep, guarded
from conveyor.artifacts import service as artifacts
from conveyor.store.tables import Artifact

router = APIRouter(prefix="/api/v1/artifacts", tags=["artifacts"])
_BINARY = {"schema": {"type": "string", "format": "binary"}}


def public(row: Artifact) -> dict[str, Any]:
    """The JSON form of an artifact."""
    return {
        "service": row.service,
        "version": row.version,
        "digest": row.digest,
        "kind": row.kind,
        "size": row.size,
        "registered_at": row.registered_at,
        "registered_by": row.registered_by,
    }


@router.post(
    "",
    **guarded(
        "artifacts:write",
        {
            "requestBody": {
                "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}}
            }
        },
    ),
)
async def register(
    request: Request,
    state: StateDep,
    ctx: AuditDep,
    service: str = Query(min_length=1, max_length=64),
    version: str = Query(min_length=1, max_length=128),
) -> JSONResponse:
    """Register the request body (a .tar.gz bundle) as SERVICE VERSION; 201 new, 200 already there."""
    root = state.settings.home / "artifacts"
    writer = await run_in_threadpool(artifacts.UploadWriter, root)
    try:
        async for chunk in request.stream():
            writer.write(chunk)
    except BaseException:
        writer.discard()
        raise
    staged = writer.finish()

    def save() -> tuple[dict[str, Any], bool]:
        with state.store.write() as session:
            result = artifacts.register_bundle(
                session, ctx, root, service, version, staged, state.clock.now()
            )
            return public(result.artifact), result.created

    body, created = await run_in_threadpool(save)
    return JSONResponse({**body, "created": created}, status_code=201 if created else 200)


@router.get("", **guarded("artifacts:read"))
def list_artifacts(state: StateDep, service: str | None = None) -> list[dict[str, Any]]:
    """Registered artifacts, newest first."""
    with state.store.read() as session:
        return [public(a) for a in artifacts.list_artifacts(session, service)]


@router.get("/{service}/{version}", **guarded("artifacts:read"))
def show(service: str, version: str, state: StateDep) -> dict[str, Any]:
    """One artifact."""
    with state.store.read() as session:
        return public(artifacts.get_artifact(session, service, version))

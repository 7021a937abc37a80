"""Artifacts: register a bundle (streamed upload), list and show."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from conveyor.api.deps import AuditDep, StateDep, guarded
from conveyor.artifacts import service as artifacts
from conveyor.artifacts.provenance import Provenance
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
        "image": row.image,
        "registered_at": row.registered_at,
        "registered_by": row.registered_by,
        "provenance": {
            "source_commit": row.source_commit,
            "source_branch": row.source_branch,
            "build_url": row.build_url,
            "builder": row.builder,
        },
    }


class ImageRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service: str = Field(min_length=1, max_length=64)
    version: str = Field(min_length=1, max_length=128)
    image: str = Field(min_length=1, max_length=512, description="registry/app@sha256:<64 hex>")
    source_commit: str | None = Field(default=None, max_length=64)
    source_branch: str | None = Field(default=None, max_length=255)
    build_url: str | None = Field(default=None, max_length=1024)
    builder: str | None = Field(default=None, max_length=255)


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
    commit: str | None = Query(None, max_length=64, description="source commit SHA"),
    branch: str | None = Query(None, max_length=255, description="source branch"),
    build_url: str | None = Query(None, max_length=1024, description="the CI run that built it"),
    builder: str | None = Query(None, max_length=255, description="who or what built it"),
) -> JSONResponse:
    """Register the request body (a .tar.gz bundle) as SERVICE VERSION; 201 new, 200 already there."""
    provenance = Provenance(commit, branch, build_url, builder).validate()  # before reading the body
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
                session, ctx, root, service, version, staged, state.clock.now(), provenance
            )
            return public(result.artifact), result.created

    body, created = await run_in_threadpool(save)
    return JSONResponse({**body, "created": created}, status_code=201 if created else 200)


@router.post("/images", **guarded("artifacts:write"))
def register_image(body: ImageRegistration, state: StateDep, ctx: AuditDep) -> JSONResponse:
    """Register an OCI image, pinned by digest, as SERVICE VERSION; 201 new, 200 already there."""
    provenance = Provenance(body.source_commit, body.source_branch, body.build_url, body.builder)
    with state.store.write() as session:
        result = artifacts.register_image(
            session, ctx, body.service, body.version, body.image, state.clock.now(), provenance
        )
        data = public(result.artifact)
    return JSONResponse({**data, "created": result.created}, status_code=201 if result.created else 200)


@router.get("", **guarded("artifacts:read"))
def list_artifacts(state: StateDep, service: str | None = None) -> list[dict[str, Any]]:
    """Registered artifacts, newest first."""
    with state.store.read() as session:
        return [public(a) for a in artifacts.list_artifacts(session, service)]


@router.get("/{service}/{version}", **guarded("artifacts:read"))
def show(service: str, version: str, state: StateDep) -> dict[str, Any]:
    """One artifact."""
    with state.store.read() as session:
        row = artifacts.get_artifact(session, service, version)
        return {**public(row), "deployed_in": artifacts.deployed_in(session, row)}

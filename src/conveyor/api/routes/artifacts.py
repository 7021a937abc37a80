"""Artifacts: register a bundle (streamed upload), list and show; attach scan/test reports and signatures."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from conveyor.api.deps import AuditDep, StateDep, guarded
from conveyor.artifacts import attachments
from conveyor.artifacts import service as artifacts
from conveyor.artifacts.attachments import AttachmentKind
from conveyor.artifacts.provenance import Provenance
from conveyor.errors import InvalidRequest
from conveyor.pipeline import records
from conveyor.pipeline import service as promotions
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
            return _registered(session, ctx, result, state.clock.now()), result.created

    body, created = await run_in_threadpool(save)
    state.wake_engine()
    return JSONResponse(body, status_code=201 if created else 200)


def _registered(
    session: Session, ctx: AuditDep, result: artifacts.Registration, now: datetime
) -> dict[str, Any]:
    """The artifact's JSON, with the promotions a new build of a followed branch started by itself."""
    body = {**public(result.artifact), "created": result.created}
    if result.created:
        body["auto_promotions"] = promotions.auto_promote(session, ctx, result.artifact, now)
    return body


@router.post("/images", **guarded("artifacts:write"))
def register_image(body: ImageRegistration, state: StateDep, ctx: AuditDep) -> JSONResponse:
    """Register an OCI image, pinned by digest, as SERVICE VERSION; 201 new, 200 already there."""
    provenance = Provenance(body.source_commit, body.source_branch, body.build_url, body.builder)
    with state.store.write() as session:
        result = artifacts.register_image(
            session, ctx, body.service, body.version, body.image, state.clock.now(), provenance
        )
        data = _registered(session, ctx, result, state.clock.now())
    state.wake_engine()
    return JSONResponse(data, status_code=201 if result.created else 200)


@router.get("", **guarded("artifacts:read"))
def list_artifacts(state: StateDep, service: str | None = None) -> list[dict[str, Any]]:
    """Registered artifacts, newest first, each with the environments its promotions succeeded in."""
    with state.store.read() as session:
        passed = records.succeeded_by_digest(session, service)
        return [
            {**public(a), "succeeded_in": sorted(passed.get(f"{a.service}@{a.digest}", ()))}
            for a in artifacts.list_artifacts(session, service)
        ]


@router.get("/{service}/{version}", **guarded("artifacts:read"))
def show(service: str, version: str, state: StateDep) -> dict[str, Any]:
    """One artifact: where it is deployed, the promotions it went through, its attachments and signer."""
    with state.store.read() as session:
        row = artifacts.get_artifact(session, service, version)
        passed = [
            {
                "promotion": p.id,
                "environment": p.environment,
                "state": p.state,
                "at": p.finished_at or p.updated_at,
            }
            for p in records.list_promotions(session, service=service, limit=500)
            if p.digest == row.digest
        ]
        return {
            **public(row),
            "deployed_in": artifacts.deployed_in(session, row),
            "promotions": passed,
            **_evidence(session, row),
        }


def _evidence(session: Session, row: Artifact) -> dict[str, Any]:
    """An artifact's attachments and the trusted key whose signature of it verifies (or None)."""
    return {
        "attachments": [attachments.describe(a) for a in attachments.list_attachments(session, row.id)],
        "signed_by": attachments.signature_key(session, row.id),
    }


_ATTACHMENT_BODY = {
    "requestBody": {
        "content": {
            "application/sarif+json": _BINARY,
            "application/xml": _BINARY,
            "text/plain": _BINARY,
        }
    }
}


@router.post("/{service}/{version}/attachments", **guarded("artifacts:write", _ATTACHMENT_BODY))
async def attach(
    service: str,
    version: str,
    request: Request,
    state: StateDep,
    ctx: AuditDep,
    kind: AttachmentKind = Query(description="sarif (scan report), junit (test report) or signature"),
    name: str | None = Query(
        None,
        min_length=1,
        max_length=64,
        description="report name (e.g. sast, unit); for a signature, the trusted key to check",
    ),
) -> JSONResponse:
    """Attach a SARIF report, a JUnit report or an Ed25519 signature (the body); 201 new, 200 known."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > attachments.MAX_ATTACHMENT_BYTES:
            raise InvalidRequest(
                f"the attachment is larger than {attachments.MAX_ATTACHMENT_BYTES >> 20} MiB",
                hint="attach a smaller report (e.g. only the results of this build)",
            )
    root = state.settings.home / "artifacts"

    def save() -> tuple[dict[str, Any], bool]:
        with state.store.write() as session:
            artifact = artifacts.get_artifact(session, service, version)
            result = attachments.attach(
                session, ctx, root, artifact, kind, name, bytes(body), state.clock.now()
            )
            data = {
                "service": artifact.service,
                "version": artifact.version,
                "digest": artifact.digest,
                **attachments.describe(result.attachment),
            }
            return data, result.created

    data, created = await run_in_threadpool(save)
    state.wake_engine()  # a gate may be waiting for this report
    return JSONResponse({**data, "created": created}, status_code=201 if created else 200)


_MEDIA_TYPES = {"sarif": "application/sarif+json", "junit": "application/xml", "signature": "text/plain"}
_DOWNLOAD = {"responses": {"200": {"content": {"application/octet-stream": _BINARY}}}}


@router.get(
    "/{service}/{version}/attachments/{kind}/{name}",
    response_class=Response,
    **guarded("artifacts:read", _DOWNLOAD),
)
def download_attachment(
    service: str, version: str, kind: AttachmentKind, name: str, state: StateDep
) -> Response:
    """The attached file itself, byte for byte as attached (a signature as its base64 text)."""
    with state.store.read() as session:
        artifact = artifacts.get_artifact(session, service, version)
        sha256 = attachments.get_attachment(session, artifact, kind, name).sha256
    path = attachments.attachment_path(state.settings.home / "artifacts", sha256)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise InvalidRequest(
            f"the bytes of {kind} attachment '{name}' are missing from the artifact store",
            hint=f"restore {path} (sha256 {sha256}) from a backup of the Conveyor home",
        ) from None
    return Response(content, media_type=_MEDIA_TYPES[kind])

"""Register and look up artifacts; the bundle bytes live content-addressed under the Conveyor home."""

from __future__ import annotations

import hashlib
import os
import tarfile
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from conveyor.artifacts.provenance import Provenance, image_digest
from conveyor.artifacts.versions import semver_problem
from conveyor.audit.log import AuditContext, record
from conveyor.clock import isoformat
from conveyor.environments.service import applied_spec
from conveyor.errors import Conflict, InvalidRequest, NotFound
from conveyor.store.tables import Artifact, Deployment

MAX_BUNDLE_BYTES = 1 << 30


@dataclass(frozen=True)
class StagedUpload:
    """Bytes received into a temporary file, with their digest."""

    path: Path
    digest: str
    size: int


class UploadWriter:
    """Streams an upload to a temporary file under the artifact store while hashing it."""

    def __init__(self, root: Path) -> None:
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        self.path = root / "tmp" / f"upload-{os.getpid()}-{os.urandom(6).hex()}"
        self._file = self.path.open("wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        """Append a chunk; refuse uploads past MAX_BUNDLE_BYTES."""
        self.size += len(chunk)
        if self.size > MAX_BUNDLE_BYTES:
            self.discard()
            raise InvalidRequest(
                f"the bundle is larger than {MAX_BUNDLE_BYTES >> 20} MiB", hint="ship a smaller bundle"
            )
        self._hash.update(chunk)
        self._file.write(chunk)

    def finish(self) -> StagedUpload:
        """Close the file and return what was received."""
        self._file.close()
        return StagedUpload(self.path, f"sha256:{self._hash.hexdigest()}", self.size)

    def discard(self) -> None:
        """Drop the partial upload."""
        self._file.close()
        self.path.unlink(missing_ok=True)


def blob_path(root: Path, digest: str) -> Path:
    """Where the bundle with `digest` is stored."""
    return root / "sha256" / f"{digest.removeprefix('sha256:')}.tar.gz"


def _require_service(session: Session, service: str) -> None:
    spec = applied_spec(session)
    if spec is None:
        raise InvalidRequest(
            f"service '{service}' is unknown: no conveyor.yaml has been applied",
            hint="declare the service under `services:` and run `conveyor apply`",
        )
    if service not in spec.services:
        known = ", ".join(spec.services) or "none"
        raise NotFound(
            f"service '{service}' is not declared in conveyor.yaml (services: {known})",
            hint="add it under `services:` and run `conveyor apply`",
        )


@dataclass(frozen=True)
class Registration:
    """The outcome of a registration: the artifact, and whether this call created it."""

    artifact: Artifact
    created: bool


def _existing(session: Session, service: str, version: str) -> Artifact | None:
    return session.execute(
        select(Artifact).where(Artifact.service == service, Artifact.version == version)
    ).scalar_one_or_none()


def _check_inputs(session: Session, service: str, version: str, provenance: Provenance) -> None:
    problem = semver_problem(version)
    if problem:
        raise InvalidRequest(problem, hint="versions are SemVer so that promotion order is clear")
    provenance.validate()
    _require_service(session, service)


def _refuse_second_name(session: Session, service: str, version: str, digest: str) -> None:
    """One build, one version: the same bytes under a second version would let it skip stages."""
    other = session.execute(
        select(Artifact).where(Artifact.service == service, Artifact.digest == digest).limit(1)
    ).scalar_one_or_none()
    if other is not None:
        raise Conflict(
            f"these bytes ({digest}) are already registered as {service} {other.version}, "
            f"so they cannot also be {service} {version}",
            hint=f"promote {service} {other.version}, or build {version} anew (its bundle should differ)",
        )


def _same_build(existing: Artifact, digest: str, provenance: Provenance) -> bool:
    """True for a repeated registration; Conflict when the version would change meaning."""
    if existing.digest != digest:
        raise Conflict(
            f"{existing.service} {existing.version} is already registered with digest {existing.digest}; "
            f"this build is {digest}",
            hint="artifacts are immutable: give the new build a new version",
        )
    for field, given in (
        ("source_commit", provenance.source_commit),
        ("source_branch", provenance.source_branch),
    ):
        recorded = getattr(existing, field)
        if given is not None and recorded is not None and given != recorded:
            raise Conflict(
                f"{existing.service} {existing.version} was registered with {field} {recorded}, not {given}",
                hint="the same bytes cannot come from two different sources; check the CI job",
            )
    return True


def _insert(
    session: Session,
    ctx: AuditContext,
    *,
    service: str,
    version: str,
    kind: str,
    digest: str,
    size: int,
    provenance: Provenance,
    image: str | None,
    now: datetime,
) -> Artifact:
    artifact = Artifact(
        service=service,
        version=version,
        digest=digest,
        kind=kind,
        size=size,
        registered_at=isoformat(now),
        registered_by=ctx.actor,
        image=image,
        source_commit=provenance.source_commit,
        source_branch=provenance.source_branch,
        build_url=provenance.build_url,
        builder=provenance.builder,
    )
    session.add(artifact)
    session.flush()
    record(
        session,
        ctx,
        "artifact.register",
        now=now,
        target=f"artifact:{service}@{version}",
        details={"digest": digest, "kind": kind, "size": size, "image": image, **asdict(provenance)},
    )
    return artifact


def register_bundle(
    session: Session,
    ctx: AuditContext,
    root: Path,
    service: str,
    version: str,
    staged: StagedUpload,
    now: datetime,
    provenance: Provenance | None = None,
) -> Registration:
    """Register `staged` as SERVICE VERSION; idempotent for the same build, 409 for another one."""
    provenance = provenance or Provenance()
    try:
        _check_inputs(session, service, version, provenance)
        if staged.size == 0 or not tarfile.is_tarfile(staged.path):
            raise InvalidRequest(
                "the upload is not a tar archive", hint="a bundle is a .tar.gz of the app's files"
            )
        existing = _existing(session, service, version)
        if existing is not None and _same_build(existing, staged.digest, provenance):
            return Registration(existing, created=False)
        _refuse_second_name(session, service, version, staged.digest)
        target = blob_path(root, staged.digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged.path, target)  # same content under the same name: replacing is harmless
        artifact = _insert(
            session,
            ctx,
            service=service,
            version=version,
            kind="bundle",
            digest=staged.digest,
            size=staged.size,
            provenance=provenance,
            image=None,
            now=now,
        )
        return Registration(artifact, created=True)
    finally:
        staged.path.unlink(missing_ok=True)


def register_image(
    session: Session,
    ctx: AuditContext,
    service: str,
    version: str,
    image: str,
    now: datetime,
    provenance: Provenance | None = None,
) -> Registration:
    """Register an OCI image pinned by digest as SERVICE VERSION (the bytes stay in the registry)."""
    provenance = provenance or Provenance()
    digest = image_digest(image)
    _check_inputs(session, service, version, provenance)
    existing = _existing(session, service, version)
    if existing is not None and _same_build(existing, digest, provenance):
        return Registration(existing, created=False)
    _refuse_second_name(session, service, version, digest)
    artifact = _insert(
        session,
        ctx,
        service=service,
        version=version,
        kind="oci",
        digest=digest,
        size=0,
        provenance=provenance,
        image=image,
        now=now,
    )
    return Registration(artifact, created=True)


def get_artifact(session: Session, service: str, version: str) -> Artifact:
    """SERVICE VERSION, or NotFound listing the versions that exist."""
    row = session.execute(
        select(Artifact).where(Artifact.service == service, Artifact.version == version)
    ).scalar_one_or_none()
    if row is None:
        versions = [a.version for a in list_artifacts(session, service)][:10]
        have = f"registered versions: {', '.join(versions)}" if versions else "none is registered"
        raise NotFound(
            f"no artifact {service} {version} ({have})",
            hint=f"register it with `conveyor artifact register {service} {version} --bundle PATH`",
        )
    return row


def list_artifacts(session: Session, service: str | None = None) -> list[Artifact]:
    """Artifacts, newest first, optionally of one service."""
    query = select(Artifact).order_by(Artifact.id.desc())
    if service:
        query = query.where(Artifact.service == service)
    return list(session.execute(query).scalars())


def deployed_in(session: Session, artifact: Artifact) -> list[str]:
    """Environments whose latest applied deployment of the service is this artifact."""
    latest: dict[str, Deployment] = {}
    rows = session.execute(
        select(Deployment)
        .where(Deployment.service == artifact.service, Deployment.state == "applied")
        .order_by(Deployment.id)
    ).scalars()
    for row in rows:
        latest[row.environment] = row
    return sorted(env for env, row in latest.items() if row.digest == artifact.digest)

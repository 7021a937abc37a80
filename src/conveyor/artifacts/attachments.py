"""Attach evidence to an artifact (SARIF scans, JUnit reports, Ed25519 signatures) and read it back.

The API calls `attach`; the promotion engine calls `scan_summaries`, `test_summaries` and
`signature_key` and hands the results to `pipeline.report_gates`. A file is parsed and checked
before anything is stored, so a bad one changes nothing. The bytes live content-addressed under
`<home>/artifacts/attachments/sha256/`, the parsed summary in the `artifact_attachments` row.
Attachments are evidence: the same kind and name never change content.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args

from sqlalchemy import select
from sqlalchemy.orm import Session

from conveyor.artifacts.junit import TestSummary, summarize_junit
from conveyor.artifacts.sarif import ScanSummary, summarize_sarif
from conveyor.artifacts.signatures import decode_signature, encode_signature, verify
from conveyor.audit.log import AuditContext, record
from conveyor.clock import isoformat
from conveyor.environments.service import applied_spec
from conveyor.errors import Conflict, InvalidRequest, NotFound
from conveyor.spec.fields import NAME_RULE, is_valid_name
from conveyor.store.tables import Artifact, ArtifactAttachment

AttachmentKind = Literal["sarif", "junit", "signature"]
KINDS: tuple[str, ...] = get_args(AttachmentKind)
MAX_ATTACHMENT_BYTES = 64 << 20
_NOUNS = {"sarif": "scan report", "junit": "test report", "signature": "signature"}
_FLAGS = {"sarif": "--sarif", "junit": "--junit", "signature": "--signature"}


@dataclass(frozen=True)
class Attached:
    """The outcome of an attach: the row, and whether this call created it."""

    attachment: ArtifactAttachment
    created: bool


def attachment_path(root: Path, sha256: str) -> Path:
    """Where the attachment bytes with this sha256 (hex) are stored, under the artifact store `root`."""
    return root / "attachments" / "sha256" / sha256


def trusted_keys(session: Session) -> dict[str, str]:
    """The public keys (by name) of the applied conveyor.yaml's `signing.trusted_keys`."""
    spec = applied_spec(session)
    return dict(spec.signing.trusted_keys) if spec is not None else {}


def _label(artifact: Artifact) -> str:
    return f"{artifact.service} {artifact.version}"


def _check_name(name: str) -> None:
    if not is_valid_name(name):
        raise InvalidRequest(f"'{name}' is not a valid report name", hint=NAME_RULE)


def _default_name(kind: str, summary: ScanSummary | None) -> str:
    if kind == "sarif" and summary is not None and summary.tools:
        slug = re.sub(r"[^a-z0-9]+", "-", summary.tools[0].lower()).strip("-")[:40].strip("-")
        if slug and is_valid_name(slug):
            return slug
        return "scan"
    return "tests"


def _prepare(
    session: Session, artifact: Artifact, kind: str, name: str | None, data: bytes
) -> tuple[str, bytes, dict[str, Any]]:
    """(name, bytes to store, summary) of a valid attachment; InvalidRequest for anything else."""
    if kind == "signature":
        keys = trusted_keys(session)
        if name is not None:
            if name not in keys:
                raise InvalidRequest(
                    f"conveyor.yaml trusts no key named '{name}' (trusted keys: {', '.join(keys) or 'none'})",
                    hint="leave out --name to check every trusted key, or add the key under "
                    "signing.trusted_keys and run `conveyor apply`",
                )
            keys = {name: keys[name]}
        signer = verify(artifact.digest, data, keys)
        canonical = encode_signature(decode_signature(data))
        summary = {"key": signer, "algorithm": "ed25519", "signed": artifact.digest, "signature": canonical}
        return signer, (canonical + "\n").encode(), summary
    if name is not None:
        _check_name(name)
    if kind == "sarif":
        scan = summarize_sarif(name or "scan", data)
        chosen = name or _default_name(kind, scan)
        return chosen, data, scan.to_json()
    tests = summarize_junit(name or "tests", data)
    return name or _default_name(kind, None), data, tests.to_json()


def _store_bytes(root: Path, sha256: str, data: bytes) -> None:
    target = attachment_path(root, sha256)
    if target.exists():
        return  # content-addressed: the same bytes are already there
    target.parent.mkdir(parents=True, exist_ok=True)
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    staging = root / "tmp" / f"attachment-{os.getpid()}-{os.urandom(6).hex()}"
    try:
        staging.write_bytes(data)
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)


def _audit_summary(kind: str, summary: dict[str, Any]) -> dict[str, Any]:
    if kind == "sarif":
        return {"counts": summary["counts"], "tools": summary["tools"]}
    if kind == "junit":
        return {key: summary[key] for key in ("tests", "failures", "errors", "skipped")}
    return {"key": summary["key"]}


def attach(
    session: Session,
    ctx: AuditContext,
    root: Path,
    artifact: Artifact,
    kind: str,
    name: str | None,
    content: bytes | Path,
    now: datetime,
) -> Attached:
    """Check, store and record one attachment; idempotent for the same bytes, 409 for other bytes.

    `name` is the report name (default: the scanner's name for SARIF, `tests` for JUnit); for a
    signature it is the trusted key to check (default: every trusted key), and the key that
    verified it becomes the name.
    """
    if kind not in KINDS:
        raise InvalidRequest(f"unknown attachment kind '{kind}'", hint=f"use one of: {', '.join(KINDS)}")
    data = content.read_bytes() if isinstance(content, Path) else content
    if not data:
        raise InvalidRequest(f"the {_NOUNS[kind]} file is empty", hint="check the path CI wrote it to")
    if len(data) > MAX_ATTACHMENT_BYTES:
        raise InvalidRequest(
            f"the {_NOUNS[kind]} is larger than {MAX_ATTACHMENT_BYTES >> 20} MiB",
            hint="attach a smaller report (e.g. only the results of this build)",
        )
    chosen, stored, summary = _prepare(session, artifact, kind, name, data)
    sha256 = hashlib.sha256(stored).hexdigest()
    existing = session.execute(
        select(ArtifactAttachment).where(
            ArtifactAttachment.artifact_id == artifact.id,
            ArtifactAttachment.kind == kind,
            ArtifactAttachment.name == chosen,
        )
    ).scalar_one_or_none()
    if existing is not None:
        if existing.sha256 == sha256:
            return Attached(existing, created=False)
        raise Conflict(
            f"{_label(artifact)} already has a {_NOUNS[kind]} '{chosen}' with other content "
            f"(sha256 {existing.sha256[:12]}…, this file {sha256[:12]}…)",
            hint="attachments are immutable evidence: attach the new file under another --name, "
            "or register the new build as a new version",
        )
    _store_bytes(root, sha256, stored)
    row = ArtifactAttachment(
        artifact_id=artifact.id,
        kind=kind,
        name=chosen,
        sha256=sha256,
        size=len(stored),
        summary=json.dumps(summary),
        attached_at=isoformat(now),
        attached_by=ctx.actor,
    )
    session.add(row)
    session.flush()
    record(
        session,
        ctx,
        "artifact.attach",
        now=now,
        target=f"artifact:{artifact.service}@{artifact.version}",
        details={
            "kind": kind,
            "name": chosen,
            "sha256": sha256,
            "size": len(stored),
            **_audit_summary(kind, summary),
        },
    )
    return Attached(row, created=True)


def list_attachments(session: Session, artifact_id: int, kind: str | None = None) -> list[ArtifactAttachment]:
    """An artifact's attachments by kind and name (optionally of one kind)."""
    query = select(ArtifactAttachment).where(ArtifactAttachment.artifact_id == artifact_id)
    if kind is not None:
        query = query.where(ArtifactAttachment.kind == kind)
    return list(session.execute(query.order_by(ArtifactAttachment.kind, ArtifactAttachment.name)).scalars())


def get_attachment(session: Session, artifact: Artifact, kind: str, name: str) -> ArtifactAttachment:
    """One attachment of an artifact, or NotFound listing what is attached."""
    for row in list_attachments(session, artifact.id):
        if row.kind == kind and row.name == name:
            return row
    attached = [f"{row.kind}/{row.name}" for row in list_attachments(session, artifact.id)]
    flag = _FLAGS.get(kind, "--sarif")
    raise NotFound(
        f"{_label(artifact)} has no {kind} attachment '{name}' (attached: {', '.join(attached) or 'none'})",
        hint=f"attach it with `conveyor artifact attach {_label(artifact)} {flag} FILE`",
    )


def scan_summaries(session: Session, artifact_id: int) -> list[ScanSummary]:
    """The summaries of the SARIF reports attached to an artifact, by name."""
    return [
        ScanSummary.from_json(row.name, json.loads(row.summary))
        for row in list_attachments(session, artifact_id, "sarif")
    ]


def test_summaries(session: Session, artifact_id: int) -> list[TestSummary]:
    """The summaries of the JUnit reports attached to an artifact, by name."""
    return [
        TestSummary.from_json(row.name, json.loads(row.summary))
        for row in list_attachments(session, artifact_id, "junit")
    ]


test_summaries.__test__ = False  # type: ignore[attr-defined]  # a store function, not a pytest test


def signature_key(session: Session, artifact_id: int) -> str | None:
    """The trusted key whose signature of the artifact verifies now, or None.

    Checked again against the applied conveyor.yaml every time, so removing a key from
    `signing.trusted_keys` revokes the signatures it made.
    """
    rows = list_attachments(session, artifact_id, "signature")
    if not rows:
        return None
    artifact = session.get(Artifact, artifact_id)
    keys = trusted_keys(session)
    if artifact is None or not keys:
        return None
    for row in rows:
        summary = json.loads(row.summary)
        try:
            return verify(artifact.digest, summary["signature"], keys)
        except InvalidRequest:
            continue
    return None


def describe(row: ArtifactAttachment) -> dict[str, Any]:
    """The public JSON form of an attachment."""
    return {
        "kind": row.kind,
        "name": row.name,
        "sha256": row.sha256,
        "size": row.size,
        "summary": json.loads(row.summary),
        "attached_at": row.attached_at,
        "attached_by": row.attached_by,
    }

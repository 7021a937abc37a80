"""Plan and apply conveyor.yaml as numbered spec revisions; list environments and revision history.

An apply is one transaction: the new revision, the environment rows it adds, changes or removes,
and its audit event commit together or not at all.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from conveyor.audit.chain import canonical_json
from conveyor.audit.log import AuditContext, lock_chain, record
from conveyor.auth.permissions import role_permissions
from conveyor.clock import isoformat
from conveyor.errors import Conflict, NotFound
from conveyor.faults import pause_point
from conveyor.spec import Spec, diff_documents, load_spec_text
from conveyor.spec.fields import suggest
from conveyor.store.tables import Environment, SpecRevision


@dataclass(frozen=True)
class PlanResult:
    """What applying a spec would change, relative to `base_revision` (0: nothing applied yet)."""

    base_revision: int
    changes: list[dict[str, Any]]
    added: list[str]
    changed: dict[str, list[dict[str, Any]]]
    removed: list[str]
    other: list[dict[str, Any]]

    @property
    def is_empty(self) -> bool:
        return not self.changes

    def to_dict(self) -> dict[str, Any]:
        """JSON form returned by the API."""
        return {
            "base_revision": self.base_revision,
            "empty": self.is_empty,
            "environments": {"added": self.added, "changed": self.changed, "removed": self.removed},
            "other": self.other,
            "changes": self.changes,
        }


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def latest_revision(session: Session) -> SpecRevision | None:
    """The newest applied revision, or None before the first apply."""
    return session.execute(
        select(SpecRevision).order_by(SpecRevision.number.desc()).limit(1)
    ).scalar_one_or_none()


def get_revision(session: Session, number: int) -> SpecRevision:
    """Revision `number`, or NotFound."""
    row = session.get(SpecRevision, number)
    if row is None:
        latest = latest_revision(session)
        have = f"revisions are 1–{latest.number}" if latest else "nothing has been applied yet"
        raise NotFound(f"spec revision {number} does not exist ({have})", hint="see `conveyor spec history`")
    return row


def _document(row: SpecRevision | None) -> dict[str, Any] | None:
    return json.loads(row.document) if row else None


def compare(old: dict[str, Any] | None, new: dict[str, Any], base_revision: int) -> PlanResult:
    """Group the field-level differences of two spec documents the way `conveyor plan` shows them."""
    changes = [
        {"op": c.op, "path": list(c.path), "old": c.old, "new": c.new} for c in diff_documents(old, new)
    ]
    old_envs = (old or {}).get("environments") or {}
    new_envs = new.get("environments") or {}
    added = [name for name in new_envs if name not in old_envs]
    removed = [name for name in old_envs if name not in new_envs]
    changed: dict[str, list[dict[str, Any]]] = {}
    other: list[dict[str, Any]] = []
    for change in changes:
        path = change["path"]
        if path and path[0] == "environments":
            if len(path) == 1:
                continue
            name = path[1]
            if name in added or name in removed:
                continue
            changed.setdefault(name, []).append({**change, "path": path[2:]})
        else:
            other.append(change)
    return PlanResult(base_revision, changes, added, changed, removed, other)


def plan(session: Session, source: str, filename: str) -> tuple[Spec, PlanResult]:
    """Validate `source` and compare it with the newest applied revision; writes nothing."""
    spec = load_spec_text(source, filename)
    latest = latest_revision(session)
    return spec, compare(_document(latest), spec.to_document(), latest.number if latest else 0)


@dataclass(frozen=True)
class ApplyResult:
    """The outcome of an apply: the revision now current and what changed to reach it."""

    applied: bool
    revision: int
    plan: PlanResult


def apply(
    session: Session,
    ctx: AuditContext,
    source: str,
    filename: str,
    now: datetime,
    *,
    expected_revision: int | None = None,
    message: str | None = None,
) -> ApplyResult:
    """Validate and apply `source` as the next revision in `session`'s transaction; audited."""
    spec = load_spec_text(source, filename)  # invalid input fails before any write
    lock_chain(session)  # serialise concurrent applies (PostgreSQL row lock; SQLite holds the write lock)
    latest = latest_revision(session)
    base = latest.number if latest else 0
    if expected_revision is not None and expected_revision != base:
        who = f" by {latest.created_by} at {latest.created_at}" if latest else ""
        raise Conflict(
            f"the plan was made against revision {expected_revision}, "
            f"but revision {base} was applied since{who}",
            hint="run `conveyor plan` again to see the current changes, then apply",
        )
    document = spec.to_document()
    result = compare(_document(latest), document, base)
    if result.is_empty:
        return ApplyResult(False, base, result)
    number = base + 1
    document_json = canonical_json(document)
    session.add(
        SpecRevision(
            number=number,
            created_at=isoformat(now),
            created_by=ctx.actor,
            filename=filename,
            source_sha256=_sha256(source),
            document_sha256=_sha256(document_json),
            source=source,
            document=document_json,
            message=message,
        )
    )
    _project_environments(session, document, number)
    record(
        session,
        ctx,
        "spec.apply",
        now=now,
        target=f"revision:{number}",
        details={
            "revision": number,
            "base_revision": base,
            "filename": filename,
            "document_sha256": _sha256(document_json),
            "environments_added": result.added,
            "environments_changed": sorted(result.changed),
            "environments_removed": result.removed,
            "changes": len(result.changes),
            "message": message,
        },
    )
    # one event per touched environment, so `audit list --env production` shows what changed there
    per_env = [
        *(("environment.create", name, {}) for name in result.added),
        *(
            ("environment.update", name, {"fields": [".".join(map(str, c["path"])) for c in changes]})
            for name, changes in result.changed.items()
        ),
        *(("environment.remove", name, {}) for name in result.removed),
    ]
    for action, name, details in per_env:
        record(
            session,
            ctx,
            action,
            now=now,
            environment=name,
            target=f"revision:{number}",
            details={"revision": number, **details},
        )
    session.flush()
    pause_point("apply.before_commit")
    return ApplyResult(True, number, result)


def _project_environments(session: Session, document: dict[str, Any], number: int) -> None:
    envs: dict[str, Any] = document.get("environments") or {}
    existing = {row.name: row for row in session.execute(select(Environment)).scalars()}
    for position, (name, block) in enumerate(envs.items()):
        block_json = canonical_json(block)
        row = existing.get(name)
        if row is None:
            session.add(
                Environment(
                    name=name,
                    tier=block["tier"],
                    spec=block_json,
                    position=position,
                    created_revision=number,
                    updated_revision=number,
                )
            )
            continue
        if row.spec != block_json or row.removed_revision is not None or row.position != position:
            row.tier, row.spec, row.position = block["tier"], block_json, position
            row.updated_revision, row.removed_revision = number, None
    for name, row in existing.items():
        if name not in envs and row.removed_revision is None:
            row.removed_revision = number


def history(session: Session, limit: int = 50) -> list[SpecRevision]:
    """Applied revisions, newest first."""
    return list(
        session.execute(select(SpecRevision).order_by(SpecRevision.number.desc()).limit(limit)).scalars()
    )


def diff_revisions(session: Session, old: int, new: int) -> PlanResult:
    """What changed from revision `old` to revision `new` (0 means the empty state)."""
    old_doc = _document(get_revision(session, old)) if old else None
    new_row = get_revision(session, new)
    return compare(old_doc, json.loads(new_row.document), old)


def list_environments(session: Session, include_removed: bool = False) -> list[Environment]:
    """Environments of the applied spec, in pipeline-file order."""
    query = select(Environment).order_by(Environment.position, Environment.name)
    if not include_removed:
        query = query.where(Environment.removed_revision.is_(None))
    return list(session.execute(query).scalars())


def lock_environment(session: Session, name: str) -> None:
    """Hold environment `name`'s row until commit, so deployments into it take turns (PostgreSQL).

    On SQLite a write transaction already holds the database's write lock.
    """
    session.execute(select(Environment.name).where(Environment.name == name).with_for_update())


def get_environment(session: Session, name: str) -> Environment:
    """One live environment, or NotFound naming the close matches."""
    row = session.get(Environment, name)
    if row is None or row.removed_revision is not None:
        names = [e.name for e in list_environments(session)]
        close = suggest(name, names)
        hint = (
            f"did you mean '{close}'?"
            if close
            else (f"environments: {', '.join(names)}" if names else "apply a conveyor.yaml first")
        )
        raise NotFound(f"environment '{name}' is not in the applied conveyor.yaml", hint=hint)
    return row


# the newest applied spec, parsed once per revision: every request's permission check needs it
_parsed: dict[str, Spec] = {}


def applied_spec(session: Session) -> Spec | None:
    """The newest applied spec, or None before the first apply (parsed once per revision)."""
    head = session.execute(
        select(SpecRevision.number, SpecRevision.document_sha256)
        .order_by(SpecRevision.number.desc())
        .limit(1)
    ).first()
    if head is None:
        return None
    spec = _parsed.get(head.document_sha256)
    if spec is None:
        document = session.execute(
            select(SpecRevision.document).where(SpecRevision.number == head.number)
        ).scalar_one()
        spec = Spec.from_document(json.loads(document))
        _parsed.clear()  # only the newest revision is ever asked for
        _parsed[head.document_sha256] = spec
    return spec


def current_role_table(session: Session) -> dict[str, frozenset[str]]:
    """Roles and their global permissions under the newest applied spec (built-ins before any apply)."""
    spec = applied_spec(session)
    return role_permissions() if spec is None else spec.role_table()


def revision_count(session: Session) -> int:
    """How many revisions have been applied."""
    return session.execute(select(func.count()).select_from(SpecRevision)).scalar_one()

"""conveyor.yaml as applied state: plan, apply, current spec, revision history and diffs."""

from __future__ import annotations

import json

from fastapi import APIRouter, Query

from conveyor.api.deps import AuditDep, StateDep, guarded
from conveyor.api.schemas import ApplyOutcome, RevisionDetail, RevisionSummary, SpecApply, SpecSubmit
from conveyor.environments import service as envs
from conveyor.errors import NotFound
from conveyor.store.tables import SpecRevision

router = APIRouter(prefix="/api/v1/spec", tags=["spec"])


def _summary(row: SpecRevision) -> RevisionSummary:
    return RevisionSummary(
        number=row.number,
        created_at=row.created_at,
        created_by=row.created_by,
        filename=row.filename,
        source_sha256=row.source_sha256,
        document_sha256=row.document_sha256,
        message=row.message,
    )


def _detail(row: SpecRevision) -> RevisionDetail:
    return RevisionDetail(**_summary(row).model_dump(), source=row.source, document=json.loads(row.document))


@router.post("/plan", **guarded("spec:plan"))
def plan(body: SpecSubmit, state: StateDep) -> dict[str, object]:
    """What applying this conveyor.yaml would change; writes nothing."""
    with state.store.read() as session:
        _, result = envs.plan(session, body.source, body.filename)
    return result.to_dict()


@router.post("/apply", **guarded("spec:apply"))
def apply(body: SpecApply, state: StateDep, ctx: AuditDep) -> ApplyOutcome:
    """Apply this conveyor.yaml as one new revision, atomically and audited."""
    with state.store.write() as session:
        result = envs.apply(
            session,
            ctx,
            body.source,
            body.filename,
            state.clock.now(),
            expected_revision=body.expected_revision,
            message=body.message,
        )
    return ApplyOutcome(applied=result.applied, revision=result.revision, plan=result.plan.to_dict())


@router.get("", **guarded("spec:read"))
def current(state: StateDep) -> RevisionDetail:
    """The newest applied revision, with its source and normalised document."""
    with state.store.read() as session:
        latest = envs.latest_revision(session)
        if latest is None:
            raise NotFound("no conveyor.yaml has been applied yet", hint="run `conveyor apply`")
        return _detail(latest)


@router.get("/revisions", **guarded("spec:read"))
def revisions(state: StateDep, limit: int = Query(50, ge=1, le=1000)) -> list[RevisionSummary]:
    """Applied revisions, newest first."""
    with state.store.read() as session:
        return [_summary(r) for r in envs.history(session, limit)]


@router.get("/revisions/{number}", **guarded("spec:read"))
def revision(number: int, state: StateDep) -> RevisionDetail:
    """One revision with its source and normalised document."""
    with state.store.read() as session:
        return _detail(envs.get_revision(session, number))


@router.get("/diff", **guarded("spec:read"))
def diff(
    state: StateDep,
    from_: int = Query(alias="from", ge=0, description="older revision (0: empty state)"),
    to: int = Query(ge=1, description="newer revision"),
) -> dict[str, object]:
    """Field-by-field differences between two revisions."""
    with state.store.read() as session:
        return envs.diff_revisions(session, from_, to).to_dict()

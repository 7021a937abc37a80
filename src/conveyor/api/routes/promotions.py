"""Promotions: request, list, show, explain, approve, reject, cancel, re-run gates, override a freeze."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from conveyor.api.deps import (
    AuditDep,
    PrincipalDep,
    StateDep,
    guarded,
    guarded_environment,
    guarded_promotion,
)
from conveyor.deployments.service import current_spec
from conveyor.errors import ConveyorError, InvalidRequest, NotFound
from conveyor.migrations import service as migrations
from conveyor.pipeline import gate_exec, records
from conveyor.pipeline import service as promotions
from conveyor.pipeline.decide import STATES, TERMINAL_STATES, decide
from conveyor.pipeline.engine import readiness_of
from conveyor.pipeline.explain import evidence_of, explain
from conveyor.pipeline.observe import observe
from conveyor.store.tables import GateRun, Promotion

router = APIRouter(tags=["promotions"])


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service: str = Field(min_length=1, max_length=64)
    version: str = Field(min_length=1, max_length=128)


class ReviewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str = Field("", max_length=2000)


class ReasonBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


class RerunBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gate: str | None = Field(None, max_length=128, description="one gate; default: every failed gate")


def public(row: Promotion) -> dict[str, Any]:
    """The JSON form of a promotion."""
    return {
        "id": row.id,
        "service": row.service,
        "version": row.version,
        "digest": row.digest,
        "environment": row.environment,
        "state": row.state,
        "trigger": row.trigger,
        "requested_by": row.requested_by,
        "requested_at": row.requested_at,
        "updated_at": row.updated_at,
        "finished_at": row.finished_at,
        "reason": row.reason,
        "config_sha256": row.config_sha256,
        "release": records.release_of(row),
        "override": {"by": row.override_by, "reason": row.override_reason} if row.override_by else None,
        "deployment": row.deployment_id,
    }


def run_json(run: GateRun) -> dict[str, Any]:
    """The JSON form of one gate run."""
    return {
        "id": run.id,
        "name": run.name,
        "type": run.type,
        "phase": run.phase,
        "attempt": run.attempt,
        "state": run.state,
        "reason": run.reason,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "evidence": evidence_of(run.evidence),
        "requested_by": run.requested_by,
    }


@router.post("/api/v1/environments/{name}/promotions", status_code=201, **guarded_environment("deploy"))
def promote(
    name: str, body: PromoteRequest, state: StateDep, principal: PrincipalDep, ctx: AuditDep
) -> dict[str, Any]:
    """Ask to move SERVICE VERSION into the environment through its gates, approvals and window."""
    with state.store.read() as session:
        spec = current_spec(session)
        if name in spec.environments and body.service in spec.services:
            # lint and the expand/contract check before anything is recorded (ADR 0014)
            migrations.refuse(
                migrations.plan(session, state.settings.home, spec, name, body.service, body.version)
            )
    with state.store.write() as session:
        row = promotions.request(session, ctx, principal, body.service, body.version, name, state.clock.now())
        data = public(row)
    state.wake_engine()
    return data


@router.get("/api/v1/promotions", **guarded("promotions:read"))
def list_promotions(
    state: StateDep,
    environment: str | None = Query(None, max_length=64),
    status: str | None = Query(None, description="a state, or `active`"),
    service: str | None = Query(None, max_length=64),
    limit: int = Query(50, ge=1, le=500),
) -> list[dict[str, Any]]:
    """Promotions, newest first."""
    if status is not None and status not in (*STATES, "active"):
        raise InvalidRequest(
            f"'{status}' is not a promotion state", hint=f"states: active, {', '.join(STATES)}"
        )
    with state.store.read() as session:
        return [public(r) for r in records.list_promotions(session, environment, status, service, limit)]


def _explanation(session: Session, state: StateDep, row: Promotion) -> dict[str, Any]:
    latest = [run_json(r) for r in records.latest_runs(session, row.id).values()]
    spec = current_spec(session)
    if row.state in TERMINAL_STATES or row.environment not in spec.environments:
        return explain(public(row), None, None, latest)
    readiness = None
    if row.state == "deploying":
        try:
            readiness = readiness_of(state.driver.observe(row.environment), row.version)
        except ConveyorError:
            readiness = None
    observations = observe(session, row, spec, state.clock.now(), readiness)
    return explain(public(row), observations, decide(observations), latest)


@router.get("/api/v1/promotions/{promotion_id}", **guarded("promotions:read"))
def show(promotion_id: int, state: StateDep) -> dict[str, Any]:
    """One promotion: its transitions, every gate run with evidence, reviews, and the explanation."""
    with state.store.read() as session:
        row = records.get_promotion(session, promotion_id)
        return {
            **public(row),
            "transitions": [
                {"from": t.from_state, "to": t.to_state, "at": t.at, "actor": t.actor, "reason": t.reason}
                for t in records.transitions_of(session, row.id)
            ],
            "gates": [run_json(r) for r in records.gate_runs(session, row.id)],
            "reviews": [
                {
                    "user": r.user,
                    "role": r.role,
                    "decision": r.decision,
                    "at": r.at,
                    "comment": r.comment,
                    "release": r.release,
                    "current_release": r.release == records.release_of(row),
                }
                for r in records.reviews_of(session, row.id)
            ],
            "explain": _explanation(session, state, row),
        }


@router.get("/api/v1/promotions/{promotion_id}/explain", **guarded("promotions:read"))
def explain_promotion(promotion_id: int, state: StateDep) -> dict[str, Any]:
    """Why the promotion is where it is, in plain words: gates, approvals, window, what comes next."""
    with state.store.read() as session:
        return _explanation(session, state, records.get_promotion(session, promotion_id))


@router.get(
    "/api/v1/promotions/{promotion_id}/gates/{run_id}/output",
    response_class=PlainTextResponse,
    **guarded("promotions:read"),
)
def gate_output(promotion_id: int, run_id: int, state: StateDep) -> str:
    """The whole output of one command gate run."""
    with state.store.read() as session:
        run = session.get(GateRun, run_id)
        if run is None or run.promotion_id != promotion_id:
            raise NotFound(
                f"promotion {promotion_id} has no gate run {run_id}", hint="see `conveyor promotion show`"
            )
    path = gate_exec.run_dir(state.settings.home, run_id) / "output.log"
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        raise NotFound(f"gate run {run_id} ({run.type}) kept no output file") from None


def _review(
    promotion_id: int, decision: str, comment: str, state: StateDep, principal: PrincipalDep, ctx: AuditDep
) -> dict[str, Any]:
    with state.store.write() as session:
        promotions.review(session, ctx, principal, promotion_id, decision, comment, state.clock.now())
        data = public(records.get_promotion(session, promotion_id))
    state.wake_engine()
    return data


@router.post("/api/v1/promotions/{promotion_id}/approve", **guarded_promotion("approve"))
def approve(
    promotion_id: int, body: ReviewBody, state: StateDep, principal: PrincipalDep, ctx: AuditDep
) -> dict[str, Any]:
    """Approve the promotion's current release (artifact digest + configuration)."""
    return _review(promotion_id, "approve", body.comment, state, principal, ctx)


@router.post("/api/v1/promotions/{promotion_id}/reject", **guarded_promotion("approve"))
def reject(
    promotion_id: int, body: ReasonBody, state: StateDep, principal: PrincipalDep, ctx: AuditDep
) -> dict[str, Any]:
    """Reject the promotion; one rejection ends it."""
    return _review(promotion_id, "reject", body.reason, state, principal, ctx)


@router.post("/api/v1/promotions/{promotion_id}/cancel", **guarded_promotion("deploy"))
def cancel(
    promotion_id: int, body: ReasonBody, state: StateDep, principal: PrincipalDep, ctx: AuditDep
) -> dict[str, Any]:
    """Cancel a promotion that has not started deploying; its running gates are stopped."""
    with state.store.write() as session:
        row = promotions.cancel(session, ctx, principal, promotion_id, body.reason, state.clock.now())
        commands = records.stop_open_runs(session, row, "cancelled", state.clock.now())
        data = public(row)
    gate_exec.stop_runs(state.settings.home, commands)
    return data


@router.post("/api/v1/promotions/{promotion_id}/rerun", **guarded_promotion("deploy"))
def rerun(
    promotion_id: int, body: RerunBody, state: StateDep, principal: PrincipalDep, ctx: AuditDep
) -> dict[str, Any]:
    """Run failed gates (or one named gate) again; a promotion a gate rejected goes back to gating."""
    with state.store.write() as session:
        names = promotions.rerun(session, ctx, principal, promotion_id, body.gate, state.clock.now())
        data = public(records.get_promotion(session, promotion_id))
    state.wake_engine()
    return {**data, "rerun": names}


@router.post("/api/v1/promotions/{promotion_id}/override", **guarded("promotions:override"))
def override(
    promotion_id: int, body: ReasonBody, state: StateDep, principal: PrincipalDep, ctx: AuditDep
) -> dict[str, Any]:
    """Let a promotion out during a freeze or outside its change window (audited, shown everywhere)."""
    with state.store.write() as session:
        row = promotions.override(session, ctx, principal, promotion_id, body.reason, state.clock.now())
        data = public(row)
    state.wake_engine()
    return data

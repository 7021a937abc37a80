"""Promotion actions: request, review, cancel, re-run gates, override, and automatic promotion.

The API and the engine call these inside their transaction; each writes its audit event there,
so a change and its record commit together or not at all. A refusal is an exception that names
the rule and the fix, raised before anything is written.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from conveyor.artifacts.service import get_artifact
from conveyor.audit.log import AuditContext, record
from conveyor.auth.service import Principal
from conveyor.clock import isoformat
from conveyor.deployments.service import (
    check_environment_action,
    current_release,
    current_spec,
)
from conveyor.environments.service import get_environment
from conveyor.errors import Conflict, Forbidden, InvalidRequest, NotFound
from conveyor.pipeline.approvals import ApprovalPolicy
from conveyor.pipeline.decide import (
    HOLDING_STATES,
    TERMINAL_STATES,
    Decision,
)
from conveyor.pipeline.guards import require_previous_stage
from conveyor.pipeline.observe import environment_config_hash, gate_plans, rebind, stages_of
from conveyor.pipeline.records import (
    active_in,
    get_promotion,
    latest_runs,
    release_of,
    succeeded_in,
    transition,
)
from conveyor.spec import Spec
from conveyor.store.tables import Artifact, GateRun, Promotion, PromotionTransition
from conveyor.store.tables import Review as ReviewRow

REVIEWABLE_STATES = ("requested", "gating", "awaiting_approval")


CANCELLABLE_STATES = ("requested", "gating", "awaiting_approval", "queued")


def request(
    session: Session,
    ctx: AuditContext,
    requester: Principal | None,
    service: str,
    version: str,
    environment: str,
    now: datetime,
    *,
    trigger: str = "manual",
    reason: str | None = None,
) -> Promotion:
    """Create a promotion of SERVICE VERSION into ENVIRONMENT, or refuse with the rule and the fix.

    `requester` None means Conveyor itself (automatic promotion) on behalf of `ctx.actor`.
    """
    get_environment(session, environment)
    spec = current_spec(session)
    if requester is not None:
        check_environment_action(spec, requester, environment, "deploy")
    if service not in spec.services:
        known = ", ".join(spec.services) or "none"
        raise NotFound(
            f"service '{service}' is not declared in conveyor.yaml (services: {known})",
            hint="add it under `services:` and run `conveyor apply`",
        )
    artifact = get_artifact(session, service, version)
    if artifact.kind != "bundle":  # the only runtime today is the local one
        raise InvalidRequest(
            f"{service} {version} is an OCI image ({artifact.image}); the local runtime runs bundles",
            hint="register a .tar.gz bundle for local environments, or use the Kubernetes runtime",
        )
    order = require_previous_stage(
        stages_of(spec), environment, succeeded_in(session, service, artifact.digest)
    )
    if not order.allowed:
        raise Conflict(
            f"cannot promote {service} {version} to {environment}: {order.reason}",
            hint="an artifact moves through the pipeline stage by stage; see `conveyor artifact show "
            f"{service} {version}` for where it has succeeded",
            rule="pipeline-order",
        )
    config = environment_config_hash(session, spec, environment, service)
    _refuse_duplicates(session, spec, artifact, environment, config)
    stamp = isoformat(now)
    row = Promotion(
        service=service,
        version=version,
        digest=artifact.digest,
        environment=environment,
        config_sha256=config,
        state="requested",
        trigger=trigger,
        requested_by=ctx.actor,
        requested_at=stamp,
        reason=reason or f"requested by {ctx.actor}",
        decision="{}",
        next_run_at=stamp,
        step_token=0,
        updated_at=stamp,
    )
    session.add(row)
    session.flush()
    session.add(
        PromotionTransition(
            promotion_id=row.id,
            from_state=None,
            to_state="requested",
            at=stamp,
            actor=ctx.actor,
            reason=row.reason,
        )
    )
    record(
        session,
        ctx,
        "promotion.request",
        now=now,
        environment=environment,
        target=f"promotion:{row.id}",
        details={
            "promotion": row.id,
            "artifact": f"{service}@{version}",
            "digest": artifact.digest,
            "config_sha256": config,
            "trigger": trigger,
            "reason": row.reason,
        },
    )
    return row


def _refuse_duplicates(
    session: Session, spec: Spec, artifact: Artifact, environment: str, config: str
) -> None:
    active = active_in(session, environment)
    same = next((p for p in active if p.digest == artifact.digest), None)
    if same is not None:
        raise Conflict(
            f"promotion {same.id} already moves {artifact.service} {artifact.version} to {environment} "
            f"(state {same.state})",
            hint=f"follow it with `conveyor promotion show {same.id}`",
            promotion=same.id,
        )
    if active and spec.environments[environment].promotion.when_busy == "refuse":
        busy = active[0]
        raise Conflict(
            f"{environment} already has an active promotion: {busy.id} ({busy.service} {busy.version}, "
            f"{busy.state}), and its policy refuses a second one",
            hint=f"wait for it, or cancel it with `conveyor promotion cancel {busy.id} --reason …`",
            promotion=busy.id,
        )
    running = current_release(session, environment)
    if running is not None and running.digest == artifact.digest and running.config_sha256 == config:
        raise Conflict(
            f"{artifact.service} {artifact.version} already runs in {environment} with this configuration",
            hint=f"to run it again use `conveyor redeploy {environment}`",
        )


def _reviewable(row: Promotion) -> None:
    if row.state not in REVIEWABLE_STATES:
        raise Conflict(
            f"promotion {row.id} is {row.state}; reviews are taken only before it is queued to deploy",
            hint=f"see `conveyor explain {row.id}`",
        )


def review(
    session: Session,
    ctx: AuditContext,
    principal: Principal,
    promotion_id: int,
    decision: str,
    comment: str,
    now: datetime,
) -> ReviewRow:
    """Record an approval or rejection by `principal`, bound to the promotion's current release."""
    row = get_promotion(session, promotion_id, lock=True)
    spec = current_spec(session)
    env = spec.environments.get(row.environment)
    if env is None:
        raise Conflict(f"environment '{row.environment}' was removed from conveyor.yaml")
    _reviewable(row)
    policy = ApprovalPolicy.from_spec(env.approvals)
    if policy.required == 0:
        raise Conflict(
            f"{row.environment} needs no approvals, so promotion {row.id} cannot be reviewed",
            hint=f"cancel it instead: `conveyor promotion cancel {row.id} --reason …`"
            if decision == "reject"
            else None,
        )
    if principal.name not in policy.approvers:  # a reviewer named in the policy needs no role
        check_environment_action(spec, principal, row.environment, "approve")
    if principal.name == row.requested_by and not policy.allow_self_approval:
        raise Forbidden(
            f"you requested promotion {row.id}, and the requester never counts as a reviewer "
            f"in {row.environment}",
            hint="ask another eligible reviewer; `conveyor explain` names them",
            permission="environment:approve",
        )
    if not policy.eligible(principal.name, principal.role):
        raise Forbidden(
            f"user '{principal.name}' (role {principal.role}) may not review promotions "
            f"into {row.environment}",
            hint="approvers are listed under approvals in conveyor.yaml",
            permission="environment:approve",
        )
    if decision == "reject" and not comment.strip():
        raise InvalidRequest("a rejection needs a reason", hint="pass --reason 'what is wrong'")
    # the release may have changed since the request (config applied since): bind to the current one
    rebind(session, row, spec, now)
    release = release_of(row)
    earlier = session.execute(
        select(ReviewRow).where(
            ReviewRow.promotion_id == row.id, ReviewRow.user == principal.name, ReviewRow.release == release
        )
    ).scalar_one_or_none()
    if earlier is not None:
        raise Conflict(
            f"you already {earlier.decision}d promotion {row.id} at {earlier.at}; a person counts once",
            hint=f"see `conveyor explain {row.id}`",
        )
    stamp = isoformat(now)
    review_row = ReviewRow(
        promotion_id=row.id,
        user=principal.name,
        role=principal.role,
        decision=decision,
        release=release,
        at=stamp,
        comment=comment.strip(),
    )
    session.add(review_row)
    row.next_run_at = stamp  # wake the engine
    session.flush()
    record(
        session,
        ctx,
        f"promotion.{decision}",
        now=now,
        environment=row.environment,
        target=f"promotion:{row.id}",
        details={"promotion": row.id, "release": release, "comment": comment.strip()},
    )
    return review_row


def cancel(
    session: Session, ctx: AuditContext, principal: Principal, promotion_id: int, reason: str, now: datetime
) -> Promotion:
    """Cancel a promotion that has not started deploying; its running gates are stopped by the engine."""
    row = get_promotion(session, promotion_id, lock=True)
    spec = current_spec(session)
    if principal.name != row.requested_by:
        check_environment_action(spec, principal, row.environment, "deploy")
    if not reason.strip():
        raise InvalidRequest("cancelling needs a reason", hint="pass --reason 'why'")
    if row.state not in CANCELLABLE_STATES:
        hint = (
            f"it owns {row.environment}'s runtime now; `conveyor rollout abort {row.environment}` sends all "
            f"traffic back to the stable version (it also rolls back by itself when the new version is not "
            f"ready within 5 minutes, fails verification or fails analysis)"
            if row.state in HOLDING_STATES
            else None
        )
        raise Conflict(f"promotion {row.id} is {row.state} and cannot be cancelled", hint=hint)
    transition(session, ctx, row, Decision("cancelled", f"cancelled by {ctx.actor}: {reason.strip()}"), now)
    return row


def rerun(
    session: Session,
    ctx: AuditContext,
    principal: Principal,
    promotion_id: int,
    gate: str | None,
    now: datetime,
) -> list[str]:
    """Run failed gates (or one named gate) again; a promotion rejected by a gate returns to gating."""
    row = get_promotion(session, promotion_id, lock=True)
    spec = current_spec(session)
    check_environment_action(spec, principal, row.environment, "deploy")
    plans = {g.name: g for g in gate_plans(spec, row.environment)}
    latest = latest_runs(session, row.id)
    if gate is not None and gate not in plans:
        raise NotFound(
            f"promotion {row.id} has no gate '{gate}' (gates: {', '.join(plans) or 'none'})",
            hint="gate names come from promotion.gates in conveyor.yaml",
        )
    names = [gate] if gate else [n for n, r in latest.items() if r.state == "failed" and n in plans]
    if not names:
        raise Conflict(
            f"promotion {row.id} has no failed gate to run again", hint=f"see `conveyor explain {row.id}`"
        )
    rejected_by_gate = row.state == "rejected" and not _has_rejection(session, row)
    if not (row.state in ("gating", "verifying") or rejected_by_gate):
        raise Conflict(
            f"promotion {row.id} is {row.state}; gates can be re-run while gating or verifying, "
            "or after a gate rejected it",
            hint=f"see `conveyor explain {row.id}`",
        )
    phases = {plans[n].phase for n in names}
    if (row.state == "gating" and "after" in phases) or (row.state == "verifying" and "before" in phases):
        raise Conflict(f"promotion {row.id} is {row.state}; gate(s) {', '.join(names)} run in another phase")
    stamp = isoformat(now)
    for name in names:
        previous = latest.get(name)
        if previous is not None and previous.state in ("running", "waiting"):
            raise Conflict(f"gate {name} of promotion {row.id} is still {previous.state}")
        session.add(
            GateRun(
                promotion_id=row.id,
                name=name,
                type=plans[name].type,
                phase=plans[name].phase,
                attempt=(previous.attempt if previous else 0) + 1,
                state="pending",
                started_at=stamp,
                reason=f"re-run requested by {ctx.actor}",
                evidence="{}",
                requested_by=ctx.actor,
            )
        )
    if row.state == "rejected":
        if row.environment not in spec.environments:
            raise Conflict(f"environment '{row.environment}' was removed from conveyor.yaml")
        _reopen(session, ctx, row, f"gate(s) {', '.join(names)} re-run by {ctx.actor}", now)
    row.next_run_at = stamp
    session.flush()
    record(
        session,
        ctx,
        "promotion.gate.rerun",
        now=now,
        environment=row.environment,
        target=f"promotion:{row.id}",
        details={"promotion": row.id, "gates": names},
    )
    return names


def _has_rejection(session: Session, row: Promotion) -> bool:
    return (
        session.execute(
            select(func.count()).where(ReviewRow.promotion_id == row.id, ReviewRow.decision == "reject")
        ).scalar_one()
        > 0
    )


def _reopen(session: Session, ctx: AuditContext, row: Promotion, reason: str, now: datetime) -> None:
    others = [p for p in active_in(session, row.environment) if p.digest == row.digest]
    if others:
        raise Conflict(f"promotion {others[0].id} already moves this artifact to {row.environment}")
    row.finished_at = None
    transition(session, ctx, row, Decision("gating", reason), now)


def override(
    session: Session, ctx: AuditContext, principal: Principal, promotion_id: int, reason: str, now: datetime
) -> Promotion:
    """Let a promotion out during a freeze or outside the change window (admins by default); audited."""
    row = get_promotion(session, promotion_id, lock=True)
    if not reason.strip():
        raise InvalidRequest("an override needs a reason", hint="pass --reason 'why this cannot wait'")
    if row.state in TERMINAL_STATES or row.state in HOLDING_STATES:
        raise Conflict(f"promotion {row.id} is {row.state}; an override only helps before it deploys")
    row.override_by, row.override_reason = ctx.actor, reason.strip()
    row.next_run_at = isoformat(now)
    record(
        session,
        ctx,
        "promotion.override",
        now=now,
        environment=row.environment,
        target=f"promotion:{row.id}",
        details={"promotion": row.id, "reason": reason.strip()},
    )
    return row


def auto_promote(
    session: Session, ctx: AuditContext, artifact: Artifact, now: datetime
) -> list[dict[str, Any]]:
    """Start promotions into environments that follow the artifact's branch; say what was skipped."""
    spec = current_spec(session)
    started: list[dict[str, Any]] = []
    if not artifact.source_branch:
        return started
    for name, env in spec.environments.items():
        policy = env.promotion
        if not (policy.automatic and policy.branch == artifact.source_branch):
            continue
        started.append(
            _auto(
                session, ctx, artifact, name, now, f"{artifact.source_branch} build registered by {ctx.actor}"
            )
        )
    return started


def follow_success(
    session: Session, ctx: AuditContext, row: Promotion, now: datetime
) -> list[dict[str, Any]]:
    """After a success, start promotions into automatic environments whose previous stage this was."""
    spec = current_spec(session)
    started = []
    for name, env in spec.environments.items():
        policy = env.promotion
        if not policy.automatic or policy.branch is not None or name == row.environment:
            continue
        required = [
            s.environment for s in stages_of(spec) if not s.optional or s.environment == row.environment
        ]
        if (
            name in required
            and required.index(name) > 0
            and required[required.index(name) - 1] == row.environment
        ):
            artifact = get_artifact(session, row.service, row.version)
            started.append(
                _auto(session, ctx, artifact, name, now, f"follows {row.environment} (promotion {row.id})")
            )
    return started


def _auto(
    session: Session, ctx: AuditContext, artifact: Artifact, environment: str, now: datetime, why: str
) -> dict[str, Any]:
    try:
        with session.begin_nested():
            promotion = request(
                session,
                ctx,
                None,
                artifact.service,
                artifact.version,
                environment,
                now,
                trigger="auto",
                reason=why,
            )
        return {"environment": environment, "promotion": promotion.id}
    except (Conflict, InvalidRequest, NotFound) as exc:
        record(
            session,
            ctx,
            "promotion.auto.skip",
            now=now,
            environment=environment,
            target=f"artifact:{artifact.service}@{artifact.version}",
            outcome="failure",
            details={"reason": exc.detail},
        )
        return {"environment": environment, "skipped": exc.detail}

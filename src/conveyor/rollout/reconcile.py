"""The rollout's edges for the promotion engine: start a rollout, record each action, measure, retire.

The engine calls these inside its transactions (record) or between them (measure, apply). Decisions
stay in `plan` and `judge`; this module only turns them into rows, audit events and desired states.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from conveyor.audit.log import AuditContext, record
from conveyor.clock import isoformat
from conveyor.deployments import service as deployments
from conveyor.deployments.desired import instance_count
from conveyor.environments.service import lock_environment
from conveyor.errors import ConveyorError
from conveyor.pipeline.decide import Decision
from conveyor.rollout import records as rollouts
from conveyor.rollout.analysis import Verdict, VersionStats, judge
from conveyor.rollout.desired import (
    Retirement,
    at_step,
    first_retirement,
    following_retirement,
    main_version,
    retirement_length,
    retiring,
)
from conveyor.rollout.plan import analysis_due, weights
from conveyor.rollout.policy import compile_policy, time_scale
from conveyor.runtime.desired import EnvironmentDesired
from conveyor.runtime.driver import RuntimeDriver
from conveyor.spec import Spec
from conveyor.store.tables import Deployment, Promotion, Rollout

log = logging.getLogger("conveyor.rollout")


def start(
    session: Session,
    ctx: AuditContext,
    row: Promotion,
    spec: Spec,
    release: EnvironmentDesired,
    now: datetime,
) -> EnvironmentDesired | None:
    """Create the rollout of a weighted strategy; returns the runtime's first desired state.

    None when the release simply replaces what runs: a recreate strategy, the environment's first
    release (nothing to shift traffic from), or the same version with a new configuration.
    """
    environment = spec.environments[row.environment]
    policy = compile_policy(environment, instance_count(environment.scale.instances), time_scale())
    if policy is None:
        return None
    current = deployments.current_release(session, row.environment)
    if current is None or current.desired is None:
        return None
    stable = EnvironmentDesired.from_json(json.loads(current.desired))
    if main_version(stable).version == row.version:
        return None
    stamp = isoformat(now)
    reason = f"starting {row.version} beside {current.version} with no public traffic"
    rollout = Rollout(
        promotion_id=row.id,
        environment=row.environment,
        service=row.service,
        new_version=row.version,
        stable_version=current.version,
        policy=json.dumps(policy.to_json(), sort_keys=True),
        stable_desired=current.desired,
        phase="preview",
        step=-1,
        reason=reason,
        started_at=stamp,
        updated_at=stamp,
        paused=False,
        promote_requested=False,
        failures=0,
        inconclusive=0,
        passed=False,
    )
    session.add(rollout)
    session.flush()
    steps = ", ".join(f"{s.weight_bp / 100:g}%" for s in policy.steps)
    _audit(session, ctx, rollout, "rollout.start", now, reason, {"strategy": policy.kind, "steps": steps})
    return at_step(stable, release, policy, -1)


def runtime_desired(session: Session, rollout: Rollout) -> EnvironmentDesired:
    """What the runtime should run now for this rollout (its step, or its retirement phase)."""
    promotion = session.get(Promotion, rollout.promotion_id)
    assert promotion is not None and promotion.deployment_id is not None
    deployment = session.get(Deployment, promotion.deployment_id)
    assert deployment is not None and deployment.desired is not None
    release = EnvironmentDesired.from_json(json.loads(deployment.desired))
    policy, stable = rollouts.policy_of(rollout), rollouts.stable_of(rollout)
    if rollout.phase in ("hot", "standby", "retired"):
        return retiring(stable, release, policy, rollout.phase)  # type: ignore[arg-type]
    return at_step(stable, release, policy, rollout.step)


def wanted(rollout: Rollout) -> str:
    """The `applied` marker of the rollout's current desired state."""
    return f"step:{rollout.step}" if rollout.phase in rollouts.MOVING else rollout.phase


def measure(session_rollout: Rollout, driver: RuntimeDriver, now: datetime) -> Verdict | None:
    """Read both versions' metrics and judge them, when analysis is due; None otherwise."""
    policy = rollouts.policy_of(session_rollout)
    state = rollouts.state_of(session_rollout)
    if session_rollout.phase != "progressing" or not analysis_due(policy, state, now):
        return None
    assert policy.analysis is not None and state.step_started_at is not None
    since = (now - state.step_started_at).total_seconds()
    window = max(1.0, min(policy.analysis.window_s, since))
    try:
        data = driver.metrics(session_rollout.environment, window)
    except ConveyorError as exc:
        log.warning("rollout %s: no metrics: %s", session_rollout.id, exc.detail)
        return None
    new = VersionStats.from_window(session_rollout.new_version, data.get(session_rollout.new_version) or {})
    stable = VersionStats.from_window(
        session_rollout.stable_version, data.get(session_rollout.stable_version) or {}
    )
    return judge(policy.analysis, new, stable, round(window, 3))


def record_action(
    session: Session,
    ctx: AuditContext,
    row: Promotion,
    decision: Decision,
    verdict: Verdict | None,
    now: datetime,
) -> EnvironmentDesired | None:
    """Store the planner's action on the rollout row; returns the desired state to apply, if it changed."""
    rollout = rollouts.rollout_of(session, row.id)
    if rollout is None:
        return None
    if verdict is not None:
        rollouts.add_analysis(session, rollout, verdict, now)
    action = decision.rollout
    if action is None:
        if decision.roll_back:
            finish_aborted(session, ctx, rollout, decision.reason, now)
        return None
    before = rollout.step
    rollouts.save_state(rollout, action.state, action.reason, now)
    if action.kind == "abort":
        finish_aborted(session, ctx, rollout, action.reason, now)
        return None
    if action.kind == "advance":
        new_bp, stable_bp = weights(rollouts.policy_of(rollout), rollout.step)
        details = {"from_step": before, "to_step": rollout.step, "new_bp": new_bp, "stable_bp": stable_bp}
        _audit(session, ctx, rollout, "rollout.step", now, action.reason, details)
        return runtime_desired(session, rollout)
    if action.kind == "pause":
        _audit(session, ctx, rollout, "rollout.pause", now, action.reason, {"step": rollout.step})
    if action.kind == "complete":
        return complete(session, ctx, rollout, now)
    return None


def complete(session: Session, ctx: AuditContext, rollout: Rollout, now: datetime) -> EnvironmentDesired:
    """The new version has all traffic: keep the old one as the policy says, then retire it."""
    policy = rollouts.policy_of(rollout)
    phase = first_retirement(policy)
    _enter(rollout, phase, now)
    rollout.finished_at = isoformat(now)
    words = _retire_words(rollout, phase)
    _audit(session, ctx, rollout, "rollout.complete", now, words, {"old": phase})
    return runtime_desired(session, rollout)


def finish_aborted(session: Session, ctx: AuditContext, rollout: Rollout, why: str, now: datetime) -> None:
    """Traffic went back to the stable version (the rollback deployment applies it)."""
    if rollout.phase == "aborted":
        return
    rollout.phase = "aborted"
    rollout.reason = why
    rollout.finished_at = isoformat(now)
    rollout.updated_at = isoformat(now)
    rollout.applied = "aborted"
    _audit(session, ctx, rollout, "rollout.abort", now, why, {"step": rollout.step}, outcome="failure")


def _enter(rollout: Rollout, phase: Retirement, now: datetime) -> None:
    rollout.phase = phase
    length = retirement_length(rollouts.policy_of(rollout), phase)
    rollout.retire_at = isoformat(now + timedelta(seconds=length)) if phase != "retired" else None
    rollout.updated_at = isoformat(now)


def _retire_words(rollout: Rollout, phase: Retirement) -> str:
    old, new = rollout.stable_version, rollout.new_version
    length = retirement_length(rollouts.policy_of(rollout), phase)
    if phase == "hot":
        return f"{new} takes all traffic; {old} stays hot for {length:g} s"
    if phase == "standby":
        return f"{old} goes to standby (kept, no instances) for {length:g} s"
    return f"{old} is removed"


def retire_step(
    session: Session, ctx: AuditContext, rollout_id: int, now: datetime
) -> tuple[Rollout, EnvironmentDesired] | None:
    """Move a kept old version on when its time is up; returns the desired state to apply under the lock.

    Runs with the environment locked: a later release, deploy or rollback supersedes the rollout, and
    the check and the apply happen under the same lock so a stale state never overwrites a newer one.
    """
    rollout = session.get(Rollout, rollout_id, with_for_update=True)
    if rollout is None or rollout.phase not in (*rollouts.KEEPING, "retired"):
        return None
    lock_environment(session, rollout.environment)
    promotion = session.get(Promotion, rollout.promotion_id)
    current = deployments.current_release(session, rollout.environment)
    if promotion is None or current is None or current.id != promotion.deployment_id:
        rollout.phase, rollout.retire_at = "superseded", None
        rollout.reason = f"superseded: {rollout.environment} runs another release now"
        rollout.updated_at = isoformat(now)
        return None
    due = rollout.retire_at is not None and rollout.retire_at <= isoformat(now)
    if rollout.phase in rollouts.KEEPING and due:
        phase = following_retirement(rollouts.policy_of(rollout), rollout.phase)  # type: ignore[arg-type]
        _enter(rollout, phase, now)
        words = _retire_words(rollout, phase)
        rollout.reason = words
        _audit(session, ctx, rollout, f"rollout.{phase}", now, words, {"old": rollout.stable_version})
    return rollout, runtime_desired(session, rollout)


def _audit(
    session: Session,
    ctx: AuditContext,
    rollout: Rollout,
    action: str,
    now: datetime,
    reason: str,
    details: Mapping[str, object],
    outcome: str = "success",
) -> None:
    record(
        session,
        ctx,
        action,
        now=now,
        environment=rollout.environment,
        target=f"promotion:{rollout.promotion_id}",
        outcome=outcome,
        details={"rollout": rollout.id, "version": rollout.new_version, "reason": reason, **details},
    )

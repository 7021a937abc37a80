"""People acting on a rollout: pause, resume, promote, abort (checked, audited), and its status.

An action only sets a flag on the rollout row, under the promotion's row lock, and wakes the engine;
the engine's next step (the pure planner) carries it out, so a person and the engine never race.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from conveyor.audit.log import AuditContext, record
from conveyor.auth.service import Principal
from conveyor.clock import isoformat
from conveyor.deployments.service import check_environment_action, current_spec
from conveyor.environments.service import get_environment
from conveyor.errors import Conflict, InvalidRequest
from conveyor.pipeline.records import get_promotion
from conveyor.rollout import records as rollouts
from conveyor.rollout.plan import next_analysis_at, step_words, weights
from conveyor.store.tables import Rollout

RolloutAction = Literal["pause", "resume", "promote", "abort"]
ACTIONS: tuple[str, ...] = ("pause", "resume", "promote", "abort")


def _moving(session: Session, environment: str) -> Rollout:
    """The environment's rollout while traffic is still moving, or a clear error."""
    get_environment(session, environment)
    rollout = rollouts.latest_in(session, environment)
    if rollout is None or rollout.phase not in rollouts.MOVING:
        strategy = current_spec(session).environments[environment].strategy.type
        last = f"; the last one ({rollout.new_version}) is {rollout.phase}" if rollout is not None else ""
        if strategy == "recreate":
            hint = (
                f"{environment} deploys with `recreate`, which has no traffic steps; `conveyor rollback "
                f"{environment}` returns to the previous release"
            )
        elif rollout is not None and rollout.phase == "hot":
            hint = (
                f"{rollout.stable_version} is still running (hot), so `conveyor rollback {environment}` "
                "sends traffic back to it at once"
            )
        else:
            hint = f"see `conveyor rollout status {environment}` and `conveyor history {environment}`"
        raise InvalidRequest(f"no rollout is in progress in {environment}{last}", hint=hint)
    return rollout


def act(
    session: Session,
    ctx: AuditContext,
    principal: Principal,
    environment: str,
    action: RolloutAction,
    reason: str,
    now: datetime,
) -> Rollout:
    """Ask the engine to pause, resume, promote or abort the environment's rollout."""
    if action not in ACTIONS:
        raise InvalidRequest(f"unknown rollout action '{action}'", hint=f"use one of: {', '.join(ACTIONS)}")
    spec = current_spec(session)
    if environment in spec.environments:
        check_environment_action(spec, principal, environment, "rollout")
    rollout = _moving(session, environment)
    promotion = get_promotion(session, rollout.promotion_id, lock=True)
    session.refresh(rollout, with_for_update=True)
    if rollout.phase not in rollouts.MOVING:
        raise Conflict(f"the rollout of {rollout.new_version} in {environment} just ended ({rollout.phase})")
    if rollout.abort_requested:
        raise Conflict(
            f"the rollout of {rollout.new_version} in {environment} is being aborted "
            f"(asked by {rollout.abort_requested})"
        )
    who = principal.name + (f": {reason.strip()}" if reason.strip() else "")
    _flag(rollout, action, who)
    promotion.next_run_at = isoformat(now)
    rollout.updated_at = isoformat(now)
    record(
        session,
        ctx,
        f"rollout.{action}",
        now=now,
        environment=environment,
        target=f"promotion:{rollout.promotion_id}",
        details={
            "rollout": rollout.id,
            "version": rollout.new_version,
            "step": rollout.step,
            "reason": reason,
        },
    )
    return rollout


def _flag(rollout: Rollout, action: RolloutAction, who: str) -> None:
    if action == "pause":
        if rollout.paused:
            raise Conflict(f"the rollout is already paused ({rollout.pause_reason})", hint="resume it first")
        rollout.paused, rollout.pause_reason = True, f"paused by {who}"
    elif action == "resume":
        if not rollout.paused:
            raise Conflict("the rollout is not paused", hint="`promote` moves it to the next step now")
        rollout.paused, rollout.pause_reason, rollout.inconclusive = False, None, 0
    elif action == "promote":
        rollout.promote_requested = True
        rollout.paused, rollout.pause_reason = False, None
    else:
        rollout.abort_requested = who


def status(session: Session, environment: str, analysis_limit: int = 20) -> dict[str, Any]:
    """The environment's latest rollout: step, weights, timers, flags and recent analysis runs."""
    get_environment(session, environment)
    rollout = rollouts.latest_in(session, environment)
    if rollout is None:
        return {"environment": environment, "rollout": None}
    return {"environment": environment, "rollout": describe(session, rollout, analysis_limit)}


def describe(session: Session, rollout: Rollout, analysis_limit: int = 20) -> dict[str, Any]:
    """JSON form of a rollout for the API."""
    policy = rollouts.policy_of(rollout)
    state = rollouts.state_of(rollout)
    new_bp, stable_bp = weights(policy, rollout.step)
    if rollout.phase not in rollouts.MOVING:
        new_bp, stable_bp = (0, 10_000) if rollout.phase == "aborted" else (10_000, 0)
    step = policy.steps[rollout.step] if 0 <= rollout.step < len(policy.steps) else None
    due = next_analysis_at(policy, state)
    promotion = get_promotion(session, rollout.promotion_id)
    return {
        "id": rollout.id,
        "promotion": rollout.promotion_id,
        "promotion_state": promotion.state,
        "service": rollout.service,
        "new_version": rollout.new_version,
        "stable_version": rollout.stable_version,
        "strategy": policy.kind,
        "phase": rollout.phase,
        "step": rollout.step,
        "step_words": step_words(policy, rollout.step) if rollout.phase in rollouts.MOVING else rollout.phase,
        "steps": [{"weight_bp": s.weight_bp, "pause_s": s.pause_s, "manual": s.manual} for s in policy.steps],
        "weights": {rollout.new_version: new_bp, rollout.stable_version: stable_bp},
        "step_started_at": rollout.step_started_at,
        "step_pause_s": step.pause_s if step else None,
        "paused": rollout.paused,
        "pause_reason": rollout.pause_reason,
        "promote_requested": rollout.promote_requested,
        "abort_requested": rollout.abort_requested,
        "next_analysis_at": isoformat(due) if due and rollout.phase == "progressing" else None,
        "analysis": policy.analysis.to_json() if policy.analysis else None,
        "reason": rollout.reason,
        "started_at": rollout.started_at,
        "finished_at": rollout.finished_at,
        "retire_at": rollout.retire_at,
        "analysis_runs": [
            {
                "id": run.id,
                "step": run.step,
                "weight_bp": run.weight_bp,
                "at": run.at,
                "outcome": run.outcome,
                "reason": run.reason,
                "window_s": run.window_s,
                "numbers": json.loads(run.numbers),
            }
            for run in rollouts.analysis_runs(session, rollout.id, analysis_limit)
        ],
    }

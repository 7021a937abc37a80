"""Rollout rows in the store: load and save the planner's state, record analysis runs, find due work."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from conveyor.clock import isoformat
from conveyor.pipeline.records import parse_time
from conveyor.rollout.analysis import Verdict
from conveyor.rollout.plan import RolloutPolicy, RolloutState, weights
from conveyor.runtime.desired import EnvironmentDesired
from conveyor.store.tables import AnalysisRun, Rollout

# phases in which traffic is still moving (the promotion holds the environment)
MOVING = ("preview", "progressing")
# phases in which the old version is kept after the switch
KEEPING = ("hot", "standby")


def rollout_of(session: Session, promotion_id: int, lock: bool = False) -> Rollout | None:
    """The rollout a promotion started, if its strategy is weighted."""
    query = select(Rollout).where(Rollout.promotion_id == promotion_id)
    if lock:
        query = query.with_for_update()
    return session.execute(query).scalar_one_or_none()


def latest_in(session: Session, environment: str) -> Rollout | None:
    """The newest rollout in an environment."""
    query = select(Rollout).where(Rollout.environment == environment).order_by(Rollout.id.desc()).limit(1)
    return session.execute(query).scalar_one_or_none()


def policy_of(row: Rollout) -> RolloutPolicy:
    return RolloutPolicy.from_json(json.loads(row.policy))


def stable_of(row: Rollout) -> EnvironmentDesired:
    return EnvironmentDesired.from_json(json.loads(row.stable_desired))


def state_of(row: Rollout) -> RolloutState:
    """The planner's view of a stored rollout."""
    return RolloutState(
        step=row.step,
        step_started_at=parse_time(row.step_started_at),
        paused=row.paused,
        pause_reason=row.pause_reason,
        promote_requested=row.promote_requested,
        failures=row.failures,
        inconclusive=row.inconclusive,
        passed=row.passed,
        last_analysis_at=parse_time(row.last_analysis_at),
    )


def save_state(row: Rollout, state: RolloutState, reason: str, now: datetime) -> None:
    """Store the planner's state after an action (the step's weights are applied separately)."""
    row.step = state.step
    row.step_started_at = isoformat(state.step_started_at) if state.step_started_at else None
    row.paused = state.paused
    row.pause_reason = state.pause_reason
    row.promote_requested = state.promote_requested
    row.failures = state.failures
    row.inconclusive = state.inconclusive
    row.passed = state.passed
    row.last_analysis_at = isoformat(state.last_analysis_at) if state.last_analysis_at else None
    row.reason = reason
    row.updated_at = isoformat(now)
    if row.phase == "preview" and state.step >= 0:
        row.phase = "progressing"


def add_analysis(session: Session, row: Rollout, verdict: Verdict, now: datetime) -> AnalysisRun:
    """Record one interval's verdict with every number behind it."""
    run = AnalysisRun(
        rollout_id=row.id,
        step=row.step,
        weight_bp=weights(policy_of(row), row.step)[0],
        at=isoformat(now),
        outcome=verdict.outcome,
        reason=verdict.reason,
        window_s=verdict.window_s,
        numbers=json.dumps(verdict.to_json(), sort_keys=True),
    )
    session.add(run)
    return run


def analysis_runs(session: Session, rollout_id: int, limit: int = 50) -> list[AnalysisRun]:
    """The newest analysis runs of a rollout, oldest first."""
    query = (
        select(AnalysisRun)
        .where(AnalysisRun.rollout_id == rollout_id)
        .order_by(AnalysisRun.id.desc())
        .limit(limit)
    )
    return list(reversed(list(session.execute(query).scalars())))


def due_retirements(session: Session, now: datetime) -> list[int]:
    """Rollouts whose old version must move on (hot → standby → retired) or whose last move is unapplied."""
    stamp = isoformat(now)
    query = select(Rollout.id).where(
        (Rollout.phase.in_(KEEPING) & (Rollout.retire_at <= stamp))
        | (
            Rollout.phase.in_((*KEEPING, "retired"))
            & ((Rollout.applied.is_(None)) | (Rollout.applied != Rollout.phase))
        )
    )
    return [rid for (rid,) in session.execute(query)]

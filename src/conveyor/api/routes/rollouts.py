"""Rollouts: the environment's traffic steps and analysis; pause, resume, promote or abort them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from conveyor.api.deps import AuditDep, PrincipalDep, StateDep, guarded, guarded_environment
from conveyor.errors import ConveyorError
from conveyor.rollout import service as rollouts
from conveyor.rollout.analysis import VersionStats

router = APIRouter(tags=["rollouts"])


class ActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=2000)


@router.get("/api/v1/environments/{name}/rollout", **guarded("promotions:read"))
def show(
    name: str,
    state: StateDep,
    live: float = Query(
        0, ge=0, le=900, description="also read both versions' traffic over this many seconds"
    ),
    analysis: int = Query(20, ge=0, le=500, description="how many recent analysis runs to include"),
) -> dict[str, Any]:
    """The environment's latest rollout: step, weights, timers, flags, recent analysis runs, live traffic."""
    with state.store.read() as session:
        data = rollouts.status(session, name, analysis)
    rollout = data["rollout"]
    if live and rollout is not None:
        data["live"] = _live(state, name, live, [rollout["new_version"], rollout["stable_version"]])
    return data


def _live(state: StateDep, environment: str, window: float, versions: list[str]) -> dict[str, Any]:
    try:
        metrics = state.driver.metrics(environment, window)
    except ConveyorError as exc:
        return {"error": exc.detail}
    out: dict[str, Any] = {"window_s": window}
    for version in versions:
        data = metrics.get(version) or {}
        stats = VersionStats.from_window(version, data)
        out[version] = {**stats.to_json(), "rps": data.get("rps", 0.0)}
    return out


def _act(
    name: str,
    action: rollouts.RolloutAction,
    body: ActionBody,
    state: StateDep,
    principal: PrincipalDep,
    ctx: AuditDep,
) -> dict[str, Any]:
    with state.store.write() as session:
        rollouts.act(session, ctx, principal, name, action, body.reason, state.clock.now())
    state.wake_engine()
    with state.store.read() as session:
        return rollouts.status(session, name, 0)


@router.post("/api/v1/environments/{name}/rollout/pause", **guarded_environment("rollout"))
def pause(
    name: str, body: ActionBody, state: StateDep, principal: PrincipalDep, ctx: AuditDep
) -> dict[str, Any]:
    """Hold the current step: traffic stays where it is; analysis still runs and can still abort."""
    return _act(name, "pause", body, state, principal, ctx)


@router.post("/api/v1/environments/{name}/rollout/resume", **guarded_environment("rollout"))
def resume(
    name: str, body: ActionBody, state: StateDep, principal: PrincipalDep, ctx: AuditDep
) -> dict[str, Any]:
    """Let a paused rollout go on with its steps."""
    return _act(name, "resume", body, state, principal, ctx)


@router.post("/api/v1/environments/{name}/rollout/promote", **guarded_environment("rollout"))
def promote(
    name: str, body: ActionBody, state: StateDep, principal: PrincipalDep, ctx: AuditDep
) -> dict[str, Any]:
    """Move to the next step now: skips the rest of the pause, a manual hold or an inconclusive analysis
    (never a failed one)."""
    return _act(name, "promote", body, state, principal, ctx)


@router.post("/api/v1/environments/{name}/rollout/abort", **guarded_environment("rollout"))
def abort(
    name: str, body: ActionBody, state: StateDep, principal: PrincipalDep, ctx: AuditDep
) -> dict[str, Any]:
    """Send all traffic back to the stable version now and end the promotion as rolled back."""
    return _act(name, "abort", body, state, principal, ctx)

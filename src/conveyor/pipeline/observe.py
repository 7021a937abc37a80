"""What the engine observes about a promotion before it decides: read from the store, never written.

(`rebind` is the one write: it follows a configuration applied since the request, which changes
the release that approvals bind to.)
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from conveyor.clock import isoformat
from conveyor.config.service import release_config
from conveyor.deployments.desired import config_sha256
from conveyor.deployments.service import previous_release
from conveyor.pipeline.approvals import ApprovalPolicy, Review
from conveyor.pipeline.decide import (
    HOLDING_STATES,
    POLL,
    TERMINAL_STATES,
    GatePlan,
    GateStatus,
    Observations,
    Readiness,
    RolloutView,
)
from conveyor.pipeline.guards import Override, Stage, WindowPolicy
from conveyor.pipeline.records import active_in, latest_runs, parse_time, release_of, reviews_of, succeeded_in
from conveyor.rollout import records as rollouts
from conveyor.rollout.analysis import Verdict
from conveyor.rollout.plan import RolloutObservation
from conveyor.spec import Spec
from conveyor.store.tables import Deployment, GateRun, Promotion

# gates that judge the deployed new version run after the deployment, the rest before it
AFTER_DEPLOY_GATES = frozenset({"smoke", "load", "chaos"})


def environment_config_hash(session: Session, spec: Spec, environment: str, service: str) -> str:
    """Hash of the configuration a release of `service` in `environment` resolves to now."""
    return config_sha256(*release_config(session, spec, environment, service))


def gate_plans(spec: Spec, environment: str) -> list[GatePlan]:
    """The environment's gates in policy order, each with the phase it runs in."""
    plans = []
    if spec.environments[environment].promotion.require_signature:
        plans.append(GatePlan("signature", "signature", "before"))
    for gate in spec.environments[environment].promotion.gates:
        phase = (
            "after"
            if gate.type in AFTER_DEPLOY_GATES or getattr(gate, "when", "before") == "after"
            else "before"
        )
        plans.append(GatePlan(gate.name, gate.type, phase))  # type: ignore[arg-type]
    return plans


def stages_of(spec: Spec) -> list[Stage]:
    """The pipeline as guard stages."""
    return [Stage(s.environment, s.optional) for s in spec.pipeline.stages]


def rebind(session: Session, row: Promotion, spec: Spec, now: datetime) -> None:
    """Follow a configuration change applied since the request (before deploying only)."""
    if row.state in (*HOLDING_STATES, *TERMINAL_STATES):
        return
    config = environment_config_hash(session, spec, row.environment, row.service)
    if config != row.config_sha256:
        row.config_sha256 = config
        row.updated_at = isoformat(now)


def blocked_by(session: Session, row: Promotion) -> str | None:
    for other in active_in(session, row.environment):
        if other.id == row.id:
            continue
        if other.state in HOLDING_STATES:
            return f"promotion {other.id} ({other.service} {other.version}) is {other.state}"
        if other.state == "queued" and other.id < row.id:
            return f"promotion {other.id} ({other.service} {other.version}) is queued ahead of it"
    return None


def _gate_status(run: GateRun) -> GateStatus | None:
    if run.state in ("pending", "lost", "stopped"):
        return None  # asked for again, interrupted, or stopped without a verdict: start it
    evidence = json.loads(run.evidence or "{}")
    return GateStatus(run.state, run.reason, run.attempt, parse_time(evidence.get("retry_at")))  # type: ignore[arg-type]


def rollout_view(
    session: Session, row: Promotion, now: datetime, readiness: Readiness | None, verdict: Verdict | None
) -> RolloutView | None:
    """The weighted rollout of `row` while traffic is still moving, with this tick's observation."""
    found = rollouts.rollout_of(session, row.id)
    if found is None or found.phase not in rollouts.MOVING:
        return None
    crashed = readiness.crashed if readiness is not None and row.state == "rolling_out" else None
    observation = RolloutObservation(now, verdict, crashed, found.abort_requested)
    return RolloutView(rollouts.policy_of(found), rollouts.state_of(found), observation)


def observe(
    session: Session,
    row: Promotion,
    spec: Spec,
    now: datetime,
    readiness: Readiness | None = None,
    verdict: Verdict | None = None,
    poll: timedelta = POLL,
) -> Observations:
    """What `decide` needs about `row`, read from the store (runtime readiness and analysis passed in)."""
    env = spec.environments[row.environment]
    rebind(session, row, spec, now)
    runs = {
        name: status for name, run in latest_runs(session, row.id).items() if (status := _gate_status(run))
    }
    deployment_started = None
    has_previous = False
    if row.deployment_id is not None:
        deployment = session.get(Deployment, row.deployment_id)
        deployment_started = parse_time(deployment.created_at) if deployment else None
        has_previous = previous_release(session, row.environment, row.deployment_id) is not None
    return Observations(
        state=row.state,
        environment=row.environment,
        service=row.service,
        version=row.version,
        requested_by=row.requested_by,
        release=release_of(row),
        now=now,
        stages=stages_of(spec),
        succeeded_in=frozenset(succeeded_in(session, row.service, row.digest)),
        gates=gate_plans(spec, row.environment),
        runs=runs,
        approvals=ApprovalPolicy.from_spec(env.approvals),
        reviews=[
            Review(r.user, r.role, r.decision, r.release, parse_time(r.at) or now, r.comment)  # type: ignore[arg-type]
            for r in reviews_of(session, row.id)
        ],
        windows=WindowPolicy.from_spec(env.windows),
        override=Override(row.override_by, row.override_reason or "") if row.override_by else None,
        blocked_by=None if row.state in (*HOLDING_STATES, *TERMINAL_STATES) else blocked_by(session, row),
        deploy_started_at=deployment_started,
        readiness=readiness,
        has_previous_release=has_previous,
        rollout=rollout_view(session, row, now, readiness, verdict),
        poll=poll,
    )

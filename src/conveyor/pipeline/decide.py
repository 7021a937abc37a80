"""Pure: where a promotion goes next, given what the engine observed and the time. No I/O here.

The engine gathers `Observations` (gate runs, reviews, the environment's windows, who holds the
environment, the runtime's readiness), calls `decide`, carries out the `Decision`'s effects
idempotently and persists the new state. `explain` calls the same function without effects, so
the words a person reads are the words the engine acted on.

    requested → gating → awaiting_approval → queued → deploying → verifying [→ rolling_out] → succeeded
    exits: rejected (gate or reviewer), cancelled, failed, rolled_back

A weighted strategy (blue/green, canary) starts the new version beside the stable one with no public
traffic; after-deploy gates test it there; `rolling_out` then moves traffic in steps, each decided by
the pure rollout planner (conveyor.rollout.plan).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from conveyor.pipeline.approvals import ApprovalPolicy, Review, tally
from conveyor.pipeline.guards import (
    Override,
    Stage,
    Verdict,
    WindowPolicy,
    change_window,
    require_previous_stage,
)
from conveyor.rollout.plan import Action, RolloutObservation, RolloutPolicy, RolloutState, plan

ACTIVE_STATES = (
    "requested",
    "gating",
    "awaiting_approval",
    "queued",
    "deploying",
    "verifying",
    "rolling_out",
)
TERMINAL_STATES = ("succeeded", "rejected", "cancelled", "failed", "rolled_back")
STATES = ACTIVE_STATES + TERMINAL_STATES
# states in which the environment's runtime belongs to this promotion
HOLDING_STATES = ("deploying", "verifying", "rolling_out")

# how long a new version may take to become ready before the release is rolled back
READY_DEADLINE = timedelta(minutes=5)
# how often to look again while something runs (a gate, a deployment)
POLL = timedelta(seconds=1)
# how often to look again while waiting for people (an approve or reject wakes it at once)
IDLE = timedelta(seconds=30)

GateState = Literal["running", "waiting", "passed", "failed"]
Phase = Literal["before", "after"]


@dataclass(frozen=True)
class GatePlan:
    """A gate from the environment's policy: its name, type and when it runs."""

    name: str
    type: str
    phase: Phase


@dataclass(frozen=True)
class GateStatus:
    """The latest run of one gate."""

    state: GateState
    reason: str
    attempt: int
    retry_at: datetime | None = None


@dataclass(frozen=True)
class Readiness:
    """What the runtime reports about the new version after its deployment was applied."""

    ready: int
    wanted: int
    crashed: str | None = None  # why, with the output tail, when an instance is crash-looping
    error: str | None = None  # the runtime could not be asked


@dataclass(frozen=True)
class RolloutView:
    """A weighted rollout's policy, stored state and this tick's observation."""

    policy: RolloutPolicy
    state: RolloutState
    observation: RolloutObservation


@dataclass(frozen=True)
class Observations:
    """Everything `decide` needs; built by the engine from the store and the runtime."""

    state: str
    environment: str
    service: str
    version: str
    requested_by: str
    release: str
    now: datetime
    stages: Sequence[Stage] = ()
    succeeded_in: frozenset[str] = frozenset()
    gates: Sequence[GatePlan] = ()
    runs: Mapping[str, GateStatus] = field(default_factory=dict)
    approvals: ApprovalPolicy = field(default_factory=lambda: ApprovalPolicy(required=0))
    reviews: Sequence[Review] = ()
    windows: WindowPolicy = field(default_factory=WindowPolicy)
    override: Override | None = None
    blocked_by: str | None = None  # words naming the promotion that holds the environment
    deploy_started_at: datetime | None = None
    readiness: Readiness | None = None
    has_previous_release: bool = False
    rollout: RolloutView | None = None  # set when the environment's strategy shifts traffic in steps
    poll: timedelta = POLL  # how soon to look again while something runs (the engine's setting)


@dataclass(frozen=True)
class Check:
    """One rule's verdict in words, kept with the decision so `explain` can show it."""

    rule: str
    ok: bool | None  # None: still open (running, waiting)
    reason: str
    retry_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form stored with the promotion."""
        return {
            "rule": self.rule,
            "ok": self.ok,
            "reason": self.reason,
            "retry_at": self.retry_at.isoformat() if self.retry_at else None,
        }


@dataclass(frozen=True)
class Decision:
    """The next state, why, the checks behind it, the effects to carry out, and when to look again."""

    state: str
    reason: str
    checks: tuple[Check, ...] = ()
    run_gates: tuple[str, ...] = ()  # gates to start, or to evaluate again (waiting ones)
    deploy: bool = False
    roll_back: bool = False
    retry_at: datetime | None = None
    rollout: Action | None = None  # the rollout planner's action this step, if one ran

    def to_json(self) -> dict[str, Any]:
        """JSON form stored with the promotion."""
        return {
            "state": self.state,
            "reason": self.reason,
            "checks": [c.to_json() for c in self.checks],
            "retry_at": self.retry_at.isoformat() if self.retry_at else None,
        }


def decide(o: Observations) -> Decision:
    """The next step of a promotion in state `o.state`; pure and total over every state."""
    if o.state in TERMINAL_STATES:
        return Decision(o.state, f"the promotion has ended ({o.state})")
    step = {
        "requested": _requested,
        "gating": _gating,
        "awaiting_approval": _awaiting_approval,
        "queued": _queued,
        "deploying": _deploying,
        "verifying": _verifying,
        "rolling_out": _rolling_out,
    }[o.state]
    return step(o)


def _order(o: Observations) -> Check:
    verdict = require_previous_stage(o.stages, o.environment, set(o.succeeded_in))
    return Check("pipeline-order", verdict.allowed, verdict.reason)


def _requested(o: Observations) -> Decision:
    order = _order(o)
    if not order.ok:
        return Decision("rejected", order.reason, (order,))
    before = [g.name for g in o.gates if g.phase == "before"]
    if not before:
        return _after_gates(o, (order,))
    return Decision(
        "gating", f"checking {len(before)} gate(s): {', '.join(before)}", (order,), run_gates=tuple(before)
    )


def _gate_checks(o: Observations, phase: Phase) -> tuple[list[Check], list[str], GatePlan | None]:
    """Each gate's check, the gates to (re)start, and the first failed gate."""
    checks: list[Check] = []
    to_run: list[str] = []
    failed: GatePlan | None = None
    for gate in (g for g in o.gates if g.phase == phase):
        run = o.runs.get(gate.name)
        rule = f"gate {gate.name}"
        if run is None:
            checks.append(Check(rule, None, "starting"))
            to_run.append(gate.name)
        elif run.state == "passed":
            checks.append(Check(rule, True, run.reason))
        elif run.state == "failed":
            checks.append(Check(rule, False, run.reason))
            failed = failed or gate
        elif run.state == "waiting":
            checks.append(Check(rule, None, run.reason, run.retry_at))
            to_run.append(gate.name)
        else:
            checks.append(Check(rule, None, f"running (attempt {run.attempt})"))
    return checks, to_run, failed


def _earliest(checks: Sequence[Check], now: datetime, default: timedelta) -> datetime:
    times = [c.retry_at for c in checks if c.ok is None and c.retry_at is not None]
    return min([now + default, *times])


def _open_words(checks: Sequence[Check]) -> str:
    return "; ".join(f"{c.rule}: {c.reason}" for c in checks if c.ok is None)


def _rejected(o: Observations, checks: tuple[Check, ...] = ()) -> Decision | None:
    """A valid rejection ends the promotion in any state before it deploys."""
    if o.approvals.required == 0 or not any(r.decision == "reject" for r in o.reviews):
        return None
    result = tally(o.approvals, o.requested_by, o.release, o.reviews, o.now)
    if result.status != "rejected":
        return None
    review = next(r for r in o.reviews if r.user == result.rejected_by and r.decision == "reject")
    why = f": {review.comment}" if review.comment else ""
    words = result.explain(o.approvals)
    return Decision(
        "rejected", f"rejected by {result.rejected_by}{why}", (*checks, Check("approvals", False, words))
    )


def _gating(o: Observations) -> Decision:
    rejected = _rejected(o)
    if rejected is not None:
        return rejected
    checks, to_run, failed = _gate_checks(o, "before")
    if failed is not None:
        reason = next(c.reason for c in checks if c.rule == f"gate {failed.name}")
        return Decision("rejected", f"gate {failed.name} failed: {reason}", tuple(checks))
    if to_run or any(c.ok is None for c in checks):
        return Decision(
            "gating",
            f"waiting for gates: {_open_words(checks)}",
            tuple(checks),
            run_gates=tuple(to_run),
            retry_at=_earliest(checks, o.now, o.poll),
        )
    return _after_gates(o, tuple(checks))


def _after_gates(o: Observations, checks: tuple[Check, ...]) -> Decision:
    if o.approvals.required > 0:
        return _awaiting_approval(o, checks)
    return _queued(o, checks)


def _awaiting_approval(o: Observations, checks: tuple[Check, ...] = ()) -> Decision:
    rejected = _rejected(o, checks)
    if rejected is not None:
        return rejected
    result = tally(o.approvals, o.requested_by, o.release, o.reviews, o.now)
    words = result.explain(o.approvals)
    if result.status == "approved":
        return _queued(o, (*checks, Check("approvals", True, words)))
    ignored = "; ".join(f"{user}: {why}" for user, why in result.ignored)
    detail = f" (not counted: {ignored})" if ignored else ""
    check = Check("approvals", None, words + detail)
    return Decision("awaiting_approval", words + detail, (*checks, check), retry_at=o.now + IDLE)


def _window(o: Observations) -> Check:
    verdict: Verdict = change_window(o.windows, o.now, o.override)
    return Check("window", True if verdict.allowed else None, verdict.reason, verdict.retry_at)


def _queued(o: Observations, checks: tuple[Check, ...] = ()) -> Decision:
    if o.approvals.required > 0 and not any(c.rule == "approvals" for c in checks):
        # approvals are counted again right before deploying: they may have expired or been voided
        result = tally(o.approvals, o.requested_by, o.release, o.reviews, o.now)
        if result.status != "approved":
            return _awaiting_approval(o, checks)
        checks = (*checks, Check("approvals", True, result.explain(o.approvals)))
    order = _order(o)
    if not order.ok:  # never deploy out of order, whatever happened since the request
        return Decision("rejected", order.reason, (*checks, order))
    if o.blocked_by:
        busy = Check("environment", None, f"{o.environment} is busy: {o.blocked_by}")
        return Decision("queued", busy.reason, (*checks, busy), retry_at=o.now + o.poll)
    window = _window(o)
    if not window.ok:
        retry = window.retry_at or o.now + IDLE
        return Decision(
            "queued", f"waiting: {window.reason}", (*checks, window), retry_at=min(retry, o.now + IDLE)
        )
    return Decision(
        "deploying",
        f"deploying {o.service} {o.version} to {o.environment}",
        (*checks, window),
        deploy=True,
        retry_at=o.now + o.poll,
    )


def _roll_back(o: Observations, why: str, checks: tuple[Check, ...]) -> Decision:
    if o.has_previous_release:
        return Decision(
            "rolled_back", f"{why}; returned {o.environment} to its previous release", checks, roll_back=True
        )
    return Decision("failed", f"{why}; {o.environment} had no earlier release to return to", checks)


def _aborted(o: Observations) -> Decision | None:
    """`conveyor rollout abort` before traffic moved: go back to the stable release."""
    if o.rollout is None or not o.rollout.observation.abort_requested:
        return None
    why = f"aborted before any traffic moved by {o.rollout.observation.abort_requested}"
    return _roll_back(o, why, (Check("rollout", False, why),))


def _deploying(o: Observations) -> Decision:
    aborted = _aborted(o)
    if aborted is not None:
        return aborted
    r = o.readiness
    started = o.deploy_started_at or o.now
    late = o.now - started > READY_DEADLINE
    if r is None or r.error:
        why = r.error if r and r.error else "no answer from the runtime yet"
        if late:
            check = Check("ready", False, why)
            return _roll_back(
                o, f"{o.version} was not confirmed ready within {_words(READY_DEADLINE)}: {why}", (check,)
            )
        check = Check("ready", None, why)
        return Decision("deploying", f"waiting for the runtime: {why}", (check,), retry_at=o.now + o.poll)
    if r.crashed:
        check = Check("ready", False, r.crashed)
        return _roll_back(o, f"{o.version} crashed in {o.environment}: {r.crashed}", (check,))
    if r.ready >= r.wanted > 0:
        check = Check("ready", True, f"{r.ready}/{r.wanted} instance(s) of {o.version} ready")
        return _verifying(o, (check,))
    if late:
        check = Check("ready", False, f"{r.ready}/{r.wanted} ready after {READY_DEADLINE}")
        return _roll_back(o, f"{o.version} did not become ready within {_words(READY_DEADLINE)}", (check,))
    check = Check("ready", None, f"{r.ready}/{r.wanted} instance(s) of {o.version} ready")
    return Decision("deploying", f"starting {o.version}: {check.reason}", (check,), retry_at=o.now + o.poll)


def _verifying(o: Observations, checks: tuple[Check, ...] = ()) -> Decision:
    aborted = _aborted(o)
    if aborted is not None:
        return aborted
    gate_checks, to_run, failed = _gate_checks(o, "after")
    all_checks = (*checks, *gate_checks)
    if failed is not None:
        reason = next(c.reason for c in gate_checks if c.rule == f"gate {failed.name}")
        return _roll_back(o, f"verification gate {failed.name} failed: {reason}", all_checks)
    if to_run or any(c.ok is None for c in gate_checks):
        return Decision(
            "verifying",
            f"verifying the new version: {_open_words(gate_checks)}",
            all_checks,
            run_gates=tuple(to_run),
            retry_at=_earliest(gate_checks, o.now, o.poll),
        )
    if o.rollout is not None:
        return _rolling_out(o, all_checks)
    return Decision("succeeded", f"{o.service} {o.version} runs in {o.environment}", all_checks)


def _rolling_out(o: Observations, checks: tuple[Check, ...] = ()) -> Decision:
    """Traffic steps: the planner's action becomes the promotion's decision."""
    if o.rollout is None:  # the strategy changed to recreate mid-flight: the new version already serves
        return Decision("succeeded", f"{o.service} {o.version} runs in {o.environment}", checks)
    view = o.rollout
    action = plan(view.policy, view.state, view.observation)
    if action.kind == "abort":
        decision = _roll_back(o, action.reason, (*checks, Check("rollout", False, action.reason)))
        return replace(decision, rollout=action)
    if action.kind == "complete":
        words = f"{o.service} {o.version} runs in {o.environment}: {action.reason}"
        return Decision("succeeded", words, (*checks, Check("rollout", True, action.reason)), rollout=action)
    check = Check("rollout", None, action.reason, action.next_at)
    retry = action.next_at or o.now + o.poll
    return Decision("rolling_out", action.reason, (*checks, check), retry_at=retry, rollout=action)


def _words(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 60 == 0:
        return f"{seconds // 60} minutes"
    return f"{seconds} seconds"

"""Pure: the next action of a weighted rollout (blue/green or canary), given its state and what was observed.

The engine stores a `RolloutState` per promotion, gathers a `RolloutObservation` (the time, a fresh
analysis verdict when one was due, a crashing new version, an abort asked for), calls `plan`, and
carries out the `Action`: hold, advance to the next traffic step, complete, pause, or abort. Weights
and instance counts for a step come from `weights` and `instances`, also pure. No I/O here.

    step -1 (new version ready, 0% public traffic, after-deploy gates ran through the override header)
      → step 0 → … → last step (100%) → complete;  abort from anywhere → stable 100%
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any, Literal

from conveyor.rollout.analysis import AnalysisPolicy, Verdict

FULL = 10_000  # basis points
# how often to look again while a rollout waits for a person (promote, resume)
IDLE = timedelta(seconds=30)

ActionKind = Literal["hold", "advance", "complete", "pause", "abort"]


@dataclass(frozen=True)
class StepPolicy:
    """One traffic step: the new version's share, how long to hold it, and whether a person must promote."""

    weight_bp: int
    pause_s: float | None = None
    manual: bool = False


@dataclass(frozen=True)
class RolloutPolicy:
    """A weighted strategy with every duration already scaled (CONVEYOR_TIME_SCALE), in seconds."""

    kind: Literal["bluegreen", "canary"]
    steps: tuple[StepPolicy, ...]
    instances: int
    analysis: AnalysisPolicy | None = None
    auto_rollback: bool = True
    max_surge: int | None = None
    keep_hot_s: float = 0.0
    keep_standby_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.steps or self.steps[-1].weight_bp != FULL:
            raise ValueError("a rollout's last step sends 100% of traffic to the new version")
        weights = [s.weight_bp for s in self.steps]
        if any(b <= a for a, b in pairwise(weights)) or weights[0] <= 0:
            raise ValueError(f"step weights must increase from above 0: {weights}")
        if self.instances < 1:
            raise ValueError("a rollout needs at least one instance")

    @property
    def last(self) -> int:
        return len(self.steps) - 1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RolloutPolicy:
        analysis = data.get("analysis")
        return cls(
            kind=data["kind"],
            steps=tuple(StepPolicy(**s) for s in data["steps"]),
            instances=int(data["instances"]),
            analysis=AnalysisPolicy(**analysis) if analysis else None,
            auto_rollback=bool(data.get("auto_rollback", True)),
            max_surge=data.get("max_surge"),
            keep_hot_s=float(data.get("keep_hot_s", 0.0)),
            keep_standby_s=float(data.get("keep_standby_s", 0.0)),
        )

    def analysed(self, step: int) -> bool:
        """Whether a step must show a passing verdict before moving on.

        Every step is, except a final 100% step without a pause: reaching it is the end.
        """
        if self.analysis is None or step < 0:
            return False
        return not (step == self.last and self.steps[step].pause_s is None)


@dataclass(frozen=True)
class RolloutState:
    """Where a rollout is; persisted by the engine after every action."""

    step: int = -1
    step_started_at: datetime | None = None
    paused: bool = False
    pause_reason: str | None = None
    promote_requested: bool = False
    failures: int = 0  # failed verdicts in a row
    inconclusive: int = 0  # inconclusive verdicts in a row once the step's pause is over
    passed: bool = False  # the latest verdict in this step passed
    last_analysis_at: datetime | None = None


@dataclass(frozen=True)
class RolloutObservation:
    """What the engine saw this tick."""

    now: datetime
    verdict: Verdict | None = None  # a fresh verdict, when analysis was due
    crashed: str | None = None  # why the new version is not healthy, when it is not
    abort_requested: str | None = None  # who asked, in words


@dataclass(frozen=True)
class Action:
    """What to do now, the state after it, why, and when to look again."""

    kind: ActionKind
    state: RolloutState
    reason: str
    next_at: datetime | None = None


def weights(policy: RolloutPolicy, step: int) -> tuple[int, int]:
    """(new, stable) traffic in basis points at `step` (-1: before the first step); they sum to 10,000."""
    new = 0 if step < 0 else policy.steps[min(step, policy.last)].weight_bp
    return new, FULL - new


def instances(policy: RolloutPolicy, step: int) -> tuple[int, int]:
    """(new, stable) instance counts at `step`.

    Blue/green runs a full set of each. A canary runs the new version in proportion to its traffic
    (at least one); the stable set stays whole unless `max_surge` limits the extra instances, and
    never drops below what its share of traffic needs.
    """
    n = policy.instances
    new_bp, stable_bp = weights(policy, step)
    if policy.kind == "bluegreen":
        return n, n
    new = max(1, math.ceil(new_bp * n / FULL))
    if policy.max_surge is None:
        return new, n
    needed = math.ceil(stable_bp * n / FULL)
    stable = max(needed, min(n, n + policy.max_surge - new))
    return new, stable


def next_analysis_at(policy: RolloutPolicy, state: RolloutState) -> datetime | None:
    """When analysis is next due (None: this rollout runs none now)."""
    if policy.analysis is None or state.step < 0 or state.step_started_at is None:
        return None
    base = max(state.step_started_at, state.last_analysis_at or state.step_started_at)
    return base + timedelta(seconds=policy.analysis.interval_s)


def analysis_due(policy: RolloutPolicy, state: RolloutState, now: datetime) -> bool:
    """Whether the engine should read metrics and judge them before planning this tick."""
    due = next_analysis_at(policy, state)
    return due is not None and now >= due and policy.analysed(state.step)


def step_words(policy: RolloutPolicy, step: int) -> str:
    """`step 2 (10%)`: steps are counted from 1 for people."""
    if step < 0:
        return "preview (0%)"
    return f"step {step + 1} ({policy.steps[step].weight_bp / 100:g}%)"


def _fold(policy: RolloutPolicy, state: RolloutState, o: RolloutObservation) -> RolloutState:
    """The state with this tick's verdict counted in."""
    v = o.verdict
    if v is None:
        return state
    s = replace(state, last_analysis_at=o.now)
    if v.outcome == "fail":
        return replace(s, failures=s.failures + 1, passed=False)
    if v.outcome == "pass":
        return replace(s, failures=0, inconclusive=0, passed=True)
    timer_over = _timer_over(policy, s, o.now)
    return replace(s, failures=0, passed=False, inconclusive=s.inconclusive + (1 if timer_over else 0))


def _timer_over(policy: RolloutPolicy, state: RolloutState, now: datetime) -> bool:
    pause = policy.steps[state.step].pause_s if state.step >= 0 else None
    if not pause or state.step_started_at is None:
        return True
    return now >= state.step_started_at + timedelta(seconds=pause)


def _step_end(policy: RolloutPolicy, state: RolloutState) -> datetime | None:
    pause = policy.steps[state.step].pause_s
    if not pause or state.step_started_at is None:
        return None
    return state.step_started_at + timedelta(seconds=pause)


def _soonest(now: datetime, *moments: datetime | None) -> datetime:
    later = [m for m in moments if m is not None and m > now]
    return min(later) if later else now + IDLE


def _stop(policy: RolloutPolicy, state: RolloutState, why: str) -> Action:
    """Abort when the strategy rolls back by itself, else pause for a person."""
    if policy.auto_rollback:
        return Action("abort", state, why)
    paused = replace(state, paused=True, pause_reason=why)
    return Action("pause", paused, f"{why}; paused (auto_rollback is off): abort or resume", None)


def plan(policy: RolloutPolicy, state: RolloutState, o: RolloutObservation) -> Action:
    """The next action; pure and total. Abort and failures come first, then pauses, then time."""
    s = _fold(policy, state, o)
    where = step_words(policy, s.step)
    if o.abort_requested:
        return Action("abort", s, f"aborted at {where} by {o.abort_requested}")
    if o.crashed:
        return _stop(policy, s, f"the new version is unhealthy at {where}: {o.crashed}")
    analysis = policy.analysis
    if analysis is not None and s.failures >= analysis.failure_limit:
        why = o.verdict.reason if o.verdict is not None else "analysis failed"
        return _stop(policy, s, f"{why} at {where}")
    if s.step < 0:
        return _advance(policy, s, o.now, 0)
    nxt = next_analysis_at(policy, s) if policy.analysed(s.step) else None
    if s.paused:
        return Action("hold", s, f"paused at {where}: {s.pause_reason or 'paused'}", _soonest(o.now, nxt))
    if not s.promote_requested:
        waiting = _waiting(policy, s, o, where, nxt)
        if waiting is not None:
            return waiting
    if s.step == policy.last:
        done = replace(s, promote_requested=False)
        return Action("complete", done, f"{where}: the new version takes all traffic")
    return _advance(policy, s, o.now, s.step + 1)


def _waiting(
    policy: RolloutPolicy, s: RolloutState, o: RolloutObservation, where: str, nxt: datetime | None
) -> Action | None:
    """Hold (or pause) while the step's timer, analysis or manual promotion is not satisfied yet."""
    end = _step_end(policy, s)
    if end is not None and o.now < end:
        left = (end - o.now).total_seconds()
        return Action("hold", s, f"{where}: holding {left:.0f} s more", _soonest(o.now, end, nxt))
    analysis = policy.analysis
    if policy.analysed(s.step) and not s.passed:
        assert analysis is not None
        if s.inconclusive >= analysis.inconclusive_limit:
            reason = o.verdict.reason if o.verdict else "no verdict"
            why = (
                f"analysis stayed inconclusive for {s.inconclusive} checks at {where} ({reason}); "
                "`conveyor rollout promote` goes on without it, `conveyor rollout abort` goes back"
            )
            return Action("pause", replace(s, paused=True, pause_reason=why), why)
        reason = o.verdict.reason if o.verdict else "waiting for the first analysis"
        return Action("hold", s, f"{where}: waiting for a passing analysis ({reason})", _soonest(o.now, nxt))
    if policy.steps[s.step].manual:
        return Action("hold", s, f"{where}: waiting for `conveyor rollout promote`", _soonest(o.now, nxt))
    return None


def _advance(policy: RolloutPolicy, s: RolloutState, now: datetime, step: int) -> Action:
    fresh = replace(
        s,
        step=step,
        step_started_at=now,
        promote_requested=False,
        failures=0,
        inconclusive=0,
        passed=False,
        last_analysis_at=None,
    )
    new_bp, _ = weights(policy, step)
    verb = "switching" if policy.kind == "bluegreen" and new_bp == FULL else "moving"
    words = f"{verb} {new_bp / 100:g}% of traffic to the new version ({step_words(policy, step)})"
    after = plan_wake(policy, fresh, now)
    return Action("advance", fresh, words, after)


def plan_wake(policy: RolloutPolicy, state: RolloutState, now: datetime) -> datetime:
    """When to look at a rollout again after it entered `state` at `now`."""
    nxt = next_analysis_at(policy, state) if policy.analysed(state.step) else None
    end = _step_end(policy, state) if state.step >= 0 else None
    if nxt is None and end is None:
        return now  # nothing to wait for: the next tick moves on
    return _soonest(now, end, nxt)

"""Pure: replay a metric series through the rollout planner and analysis on a simulated clock, no processes.

`conveyor rollout simulate` (cli/rollout_simulate.py) calls `simulate` to run an environment's policy
against request rates, error rates and p99 latencies over time, and `worst_case_abort` to ask, step by
step, how long a release that starts failing would hurt users before analysis rolls it back. The same
`plan` and `judge` the engine calls decide; this module stands in only for the router's traffic, its
per-second metrics and the clock (ADR 0008):

    Series → requests per tick, split by the step's weights → per-second counts per version
           → window as the engine reads it → judge → plan → next state, timeline event
"""

from __future__ import annotations

import json
import math
import random
from bisect import bisect_left, bisect_right
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any, Literal

from conveyor.errors import InvalidRequest
from conveyor.rollout.analysis import Verdict, VersionStats, judge
from conveyor.rollout.plan import (
    FULL,
    Action,
    ActionKind,
    RolloutObservation,
    RolloutPolicy,
    RolloutState,
    analysis_due,
    plan,
    step_words,
    weights,
)
from conveyor.runtime.local.metrics import BOUNDS, percentile_from_histogram

Outcome = Literal["completed", "aborted", "paused", "timeout"]
EventKind = ActionKind | Literal["promote"]

# the versions' names in verdict reasons ("12 of the 50 requests needed have reached the new version")
NEW, STABLE = "the new version", "the stable version"
# the simulated clock's origin: only differences matter, and a fixed one keeps results reproducible
T0 = datetime(2000, 1, 1, tzinfo=UTC)
# share of requests put in the p99's bucket: twice the 1% above a p99, so the nearest-rank 99th
# percentile lands inside that bucket rather than on its lower edge
TAIL_SHARE = 0.02
# above this variance a binomial draw uses the normal approximation (exact draws cost n·p steps)
NORMAL_VARIANCE = 100.0
_STOPS: dict[str, Outcome] = {"complete": "completed", "abort": "aborted", "pause": "paused"}


# --- the metric series -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """Traffic from `start_s` (seconds after the rollout started) until the next segment; rates are fractions.

    `rps` is the whole environment's traffic: the current step's weights split it between the versions.
    """

    start_s: float
    rps: float
    new_error_rate: float = 0.0
    stable_error_rate: float = 0.0
    new_p99_ms: float = 50.0
    stable_p99_ms: float = 50.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start_s) and self.start_s >= 0):
            raise ValueError(f"a segment starts at 0 s or later, not {self.start_s}")
        if not (math.isfinite(self.rps) and self.rps >= 0):
            raise ValueError(f"requests per second must be 0 or more, not {self.rps}")
        for rate in (self.new_error_rate, self.stable_error_rate):
            if not 0 <= rate <= 1:
                raise ValueError(f"an error rate is a fraction from 0 to 1, not {rate}")
        for p99 in (self.new_p99_ms, self.stable_p99_ms):
            if not (math.isfinite(p99) and p99 > 0):
                raise ValueError(f"a p99 latency is over 0 ms, not {p99}")

    def healthy(self) -> Segment:
        """This segment with the new version behaving exactly like the stable one."""
        return replace(self, new_error_rate=self.stable_error_rate, new_p99_ms=self.stable_p99_ms)

    def to_json(self) -> dict[str, Any]:
        """The JSON Lines object this segment would be written as."""
        return {
            "t": self.start_s,
            "rps": self.rps,
            "new": {"error_rate": self.new_error_rate, "p99_ms": self.new_p99_ms},
            "stable": {"error_rate": self.stable_error_rate, "p99_ms": self.stable_p99_ms},
        }


@dataclass(frozen=True)
class Series:
    """Piecewise-constant traffic: each segment holds from its start until the next one's."""

    segments: tuple[Segment, ...]

    def __post_init__(self) -> None:
        if not self.segments or self.segments[0].start_s != 0:
            raise ValueError("a series starts with a segment at 0 s")
        starts = [s.start_s for s in self.segments]
        if any(b <= a for a, b in pairwise(starts)):
            raise ValueError(f"segment starts must increase: {starts}")

    @classmethod
    def steady(cls, segment: Segment) -> Series:
        """One segment for the whole rollout."""
        return cls((replace(segment, start_s=0.0),))

    def at(self, t: float) -> Segment:
        """The segment in force at `t` seconds."""
        starts = [s.start_s for s in self.segments]
        return self.segments[max(0, bisect_right(starts, t) - 1)]

    def healthy(self) -> Series:
        """The same traffic with the new version behaving like the stable one throughout."""
        return Series(tuple(s.healthy() for s in self.segments))

    def failing_from(self, t: float, error_rate: float) -> Series:
        """This series with the new version failing `error_rate` of its requests from `t` on."""
        before = tuple(s for s in self.segments if s.start_s < t)
        later = tuple(s for s in self.segments if s.start_s > t)
        pivot = replace(self.at(t), start_s=t)
        return Series((*before, *(replace(s, new_error_rate=error_rate) for s in (pivot, *later))))

    def to_json(self) -> list[dict[str, Any]]:
        """One JSON Lines object per segment."""
        return [s.to_json() for s in self.segments]


_TOP_KEYS = ("t", "rps", "new", "stable")
_VERSION_KEYS = ("error_rate", "p99_ms")
_EXAMPLE = '{"t": 60, "rps": 100, "new": {"error_rate": 0.05, "p99_ms": 40}, "stable": {"error_rate": 0.001}}'


def parse_series(text: str, base: Segment, source: str = "metrics") -> Series:
    """A series from JSON Lines; each line overrides the one before (`base` first) from its `t` on.

    Keys a line leaves out keep their previous value; `base` holds from 0 s until the first line's `t`.
    Raises InvalidRequest naming `source:line` and the field for anything that is not a sensible value.
    """
    segments = [replace(base, start_s=0.0)]
    last_t: float | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{source}:{number}"
        segment = _parse_line(raw, where, segments[-1])
        if last_t is not None and segment.start_s <= last_t:
            raise _bad(
                where,
                "t",
                f"{segment.start_s:g} does not come after the previous line's t = {last_t:g}",
                "list lines in time order, each with a later t (seconds after the rollout started)",
            )
        last_t = segment.start_s
        if segment.start_s == 0:
            segments[0] = segment
        else:
            segments.append(segment)
    return Series(tuple(segments))


def _bad(where: str, key: str | None, problem: str, hint: str | None = None) -> InvalidRequest:
    """The error for one bad value: `file:line: key: problem`, with the fix."""
    return InvalidRequest(f"{where}: {key + ': ' if key else ''}{problem}", hint=hint or f"e.g. {_EXAMPLE}")


def _parse_line(raw: str, where: str, previous: Segment) -> Segment:
    """One JSON Lines object as the segment it starts, on top of `previous`."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _bad(where, None, f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise _bad(where, None, f"expected a JSON object, got {type(data).__name__}")
    for key in data:
        if key not in _TOP_KEYS:
            raise _bad(where, key, "unknown key", f"a line's keys are {', '.join(_TOP_KEYS)}")
    if "t" not in data:
        raise _bad(where, "t", "missing", "every line needs t: seconds after the rollout started")
    t = _number(data["t"], where, "t")
    rps = _number(data["rps"], where, "rps") if "rps" in data else previous.rps
    new_rate, new_p99 = _version(data, "new", where, previous.new_error_rate, previous.new_p99_ms)
    old_rate, old_p99 = _version(data, "stable", where, previous.stable_error_rate, previous.stable_p99_ms)
    return Segment(t, rps, new_rate, old_rate, new_p99, old_p99)


def _version(data: dict[str, Any], name: str, where: str, rate: float, p99: float) -> tuple[float, float]:
    """(error rate, p99 ms) of one version's object on a line, keeping what it leaves out."""
    if name not in data:
        return rate, p99
    block = data[name]
    if not isinstance(block, dict):
        raise _bad(where, name, f"expected an object with {' and '.join(_VERSION_KEYS)}")
    for key in block:
        if key not in _VERSION_KEYS:
            raise _bad(
                where, f"{name}.{key}", "unknown key", f"a version's keys are {', '.join(_VERSION_KEYS)}"
            )
    if "error_rate" in block:
        rate = _number(block["error_rate"], where, f"{name}.error_rate")
        if rate > 1:
            raise _bad(
                where, f"{name}.error_rate", f"{rate:g} is more than 1", "a rate is a fraction: 0.05 is 5%"
            )
    if "p99_ms" in block:
        p99 = _number(block["p99_ms"], where, f"{name}.p99_ms")
        if p99 == 0:
            raise _bad(where, f"{name}.p99_ms", "must be over 0 ms")
    return rate, p99


def _number(value: Any, where: str, key: str) -> float:
    """A finite, non-negative JSON number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(where, key, f"expected a number, got {json.dumps(value)}")
    if not math.isfinite(value):
        raise _bad(where, key, f"expected a finite number, got {value}")
    if value < 0:
        raise _bad(where, key, f"{value:g} is negative")
    return float(value)


# --- simulated traffic -------------------------------------------------------------------------------


def binomial(rng: random.Random, n: int, p: float) -> int:
    """A Binomial(n, p) draw: exact by geometric gaps between successes when cheap, else normal."""
    if n <= 0 or p <= 0:
        return 0
    if p >= 1:
        return n
    if p > 0.5:
        return n - binomial(rng, n, 1 - p)
    variance = n * p * (1 - p)
    if variance > NORMAL_VARIANCE:
        return min(n, max(0, round(rng.gauss(n * p, math.sqrt(variance)))))
    log_q = math.log1p(-p)
    count, position = 0, 0
    while True:
        # the next success is floor(gap) + 1 trials on; a rate too small for a float never succeeds
        gap = math.log(1.0 - rng.random()) / log_q if log_q else math.inf
        if gap >= n - position:
            return count
        position += int(gap) + 1
        count += 1


def bucket(ms: float) -> int:
    """The latency histogram bucket (see runtime/local/metrics.py BOUNDS) that holds `ms`."""
    return bisect_left(BOUNDS, ms / 1000)


@dataclass
class _Second:
    """One second of one version, as the router's metrics ring keeps it."""

    requests: int = 0
    errors: int = 0
    histogram: dict[int, int] = field(default_factory=dict)


class _Version:
    """One version's simulated traffic: per-second counts, and the latency tail carried between ticks."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seconds: dict[int, _Second] = {}
        self._tail = 0.0

    def serve(self, rng: random.Random, second: int, requests: int, error_rate: float, p99_ms: float) -> int:
        """Record `requests` in `second`; returns how many failed (a seeded binomial draw)."""
        if requests <= 0:
            return 0
        errors = binomial(rng, requests, error_rate)
        # a deterministic share of TAIL_SHARE in the p99's bucket, the rest at half the p99
        self._tail += requests * TAIL_SHARE
        tail = min(requests, int(self._tail))
        self._tail -= tail
        slot = self.seconds.setdefault(second, _Second())
        slot.requests += requests
        slot.errors += errors
        for index, count in ((bucket(p99_ms / 2), requests - tail), (bucket(p99_ms), tail)):
            if count:
                slot.histogram[index] = slot.histogram.get(index, 0) + count
        return errors

    def window(self, now_s: float, window_s: float) -> VersionStats:
        """The last `window_s` (rounded up) one-second slots up to the current partial one, as the router."""
        last = math.floor(now_s)
        hist = [0] * (len(BOUNDS) + 1)
        requests = errors = 0
        for second in range(last - math.ceil(window_s) + 1, last + 1):
            slot = self.seconds.get(second)
            if slot is None:
                continue
            requests += slot.requests
            errors += slot.errors
            for index, count in slot.histogram.items():
                hist[index] += count
        p99 = percentile_from_histogram(hist, 0.99)
        histogram = {i: c for i, c in enumerate(hist) if c}
        return VersionStats(self.name, requests, errors, None if p99 is None else p99 * 1000, histogram)

    def forget_before(self, second: int) -> None:
        """Drop slots no window can reach any more."""
        for old in [s for s in self.seconds if s < second]:
            del self.seconds[old]


# --- results -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One line of the timeline: what the planner did at `t`, where traffic stands after it, and why."""

    t: float
    kind: EventKind
    step: int
    words: str
    new_bp: int
    reason: str
    verdict: Verdict | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form, with the verdict's numbers."""
        return {
            "t": self.t,
            "kind": self.kind,
            "step": self.step,
            "step_words": self.words,
            "new_bp": self.new_bp,
            "stable_bp": FULL - self.new_bp,
            "reason": self.reason,
            "verdict": self.verdict.to_json() if self.verdict else None,
        }


@dataclass(frozen=True)
class StepTotals:
    """What the new version served during one step."""

    step: int
    started_s: float
    new_requests: int = 0
    new_failed: int = 0


@dataclass(frozen=True)
class SimulationResult:
    """How a simulated rollout ended, when, what users saw, and the timeline that led there."""

    outcome: Outcome
    reason: str
    ended_s: float
    seed: int
    tick_s: float
    requests: int
    failed: int
    analyses: int
    steps: tuple[StepTotals, ...]
    timeline: tuple[Event, ...]

    @property
    def completed_s(self) -> float | None:
        """Time to full promotion: when the rollout completed (None when it did not)."""
        return self.ended_s if self.outcome == "completed" else None

    @property
    def new_requests(self) -> int:
        """Requests that reached the new version."""
        return sum(s.new_requests for s in self.steps)

    @property
    def new_failed(self) -> int:
        """Requests the new version failed: users saw these errors because of the release."""
        return sum(s.new_failed for s in self.steps)

    def started_s(self, step: int) -> float | None:
        """When `step` started (None: the rollout never reached it)."""
        return self.steps[step].started_s if step < len(self.steps) else None

    def to_json(self) -> dict[str, Any]:
        """JSON form for `--output json`."""
        return {
            "outcome": self.outcome,
            "reason": self.reason,
            "ended_s": self.ended_s,
            "completed_s": self.completed_s,
            "seed": self.seed,
            "tick_s": self.tick_s,
            "requests": self.requests,
            "failed": self.failed,
            "new_requests": self.new_requests,
            "new_failed": self.new_failed,
            "analyses": self.analyses,
            "steps": [asdict(s) for s in self.steps],
            "timeline": [e.to_json() for e in self.timeline],
        }


# --- the simulation ----------------------------------------------------------------------------------


def tick_s(policy: RolloutPolicy) -> float:
    """The simulated clock's step: one second, or the analysis interval when that is shorter."""
    return min(1.0, policy.analysis.interval_s) if policy.analysis else 1.0


def horizon_s(policy: RolloutPolicy) -> float:
    """A time by which any rollout of `policy` has completed, aborted or paused (the default `max_s`)."""
    a = policy.analysis
    # inconclusive checks count once a step's pause is over; a failure below the limit delays the count
    per_step = 0.0 if a is None else (a.inconclusive_limit + 2) * a.failure_limit * a.interval_s
    return sum((s.pause_s or 0.0) + per_step + 2 * tick_s(policy) for s in policy.steps)


def simulate(
    policy: RolloutPolicy, series: Series, seed: int = 1, max_s: float | None = None
) -> SimulationResult:
    """Run `policy` against `series` until it completes, aborts, pauses or `max_s` (default: `horizon_s`)."""
    return _Simulator(policy, series, seed).run(horizon_s(policy) if max_s is None else max_s)


class _Simulator:
    """The mutable run behind `simulate`: the clock, both versions' traffic, the state and the timeline."""

    def __init__(self, policy: RolloutPolicy, series: Series, seed: int) -> None:
        self.policy, self.series, self.seed = policy, series, seed
        self.rng = random.Random(seed)
        self.dt = tick_s(policy)
        self.new, self.stable = _Version(NEW), _Version(STABLE)
        self.state = RolloutState()
        self.events: list[Event] = []
        self.steps: list[StepTotals] = []
        self.arrivals = 0.0
        self.requests = self.failed = self.analyses = 0
        self.last_outcome: str | None = None

    def run(self, max_s: float) -> SimulationResult:
        """Tick until the rollout stops or the time is up."""
        k = 0
        while True:
            t = round(k * self.dt, 6)
            if k:
                self._serve(round(t - self.dt, 6))
            action, verdict = self._decide(t)
            stopped = self._apply(t, action, verdict)
            if stopped is not None:
                return self._result(stopped, t, action.reason)
            if t >= max_s:
                where = step_words(self.policy, self.state.step)
                return self._result("timeout", t, f"still at {where} after {max_s:g} s of simulated time")
            k += 1

    def _serve(self, start: float) -> None:
        """The requests of the tick from `start`, split by the weights in force during it."""
        segment = self.series.at(start)
        self.arrivals += segment.rps * self.dt
        total = int(self.arrivals)
        self.arrivals -= total
        new_bp, _ = weights(self.policy, self.state.step)
        to_new = binomial(self.rng, total, new_bp / FULL)
        second = math.floor(start)
        new_failed = self.new.serve(self.rng, second, to_new, segment.new_error_rate, segment.new_p99_ms)
        old_failed = self.stable.serve(
            self.rng, second, total - to_new, segment.stable_error_rate, segment.stable_p99_ms
        )
        self.requests += total
        self.failed += new_failed + old_failed
        if self.steps:
            now = self.steps[-1]
            self.steps[-1] = replace(
                now, new_requests=now.new_requests + to_new, new_failed=now.new_failed + new_failed
            )

    def _decide(self, t: float) -> tuple[Action, Verdict | None]:
        """The planner's action at `t`, with a fresh verdict when analysis is due."""
        now = T0 + timedelta(seconds=t)
        verdict = self._measure(t, now) if analysis_due(self.policy, self.state, now) else None
        return plan(self.policy, self.state, RolloutObservation(now, verdict)), verdict

    def _measure(self, t: float, now: datetime) -> Verdict:
        """Judge both versions over the same window, as the engine does: since the step started, capped."""
        analysis, started = self.policy.analysis, self.state.step_started_at
        assert analysis is not None and started is not None
        window = max(1.0, min(analysis.window_s, (now - started).total_seconds()))
        self.analyses += 1
        for version in (self.new, self.stable):
            version.forget_before(math.floor(t) - math.ceil(analysis.window_s))
        return judge(analysis, self.new.window(t, window), self.stable.window(t, window), round(window, 3))

    def _apply(self, t: float, action: Action, verdict: Verdict | None) -> Outcome | None:
        """Take the action's state, record it when it tells something new; the outcome when it stops."""
        self.state = action.state
        if action.kind == "advance":
            self.steps.append(StepTotals(self.state.step, t))
        if action.kind != "hold" or (verdict is not None and verdict.outcome != self.last_outcome):
            self._record(t, action.kind, action.reason, verdict)
        if action.kind == "advance":
            self.last_outcome = None
        elif verdict is not None:
            self.last_outcome = verdict.outcome
        if action.kind == "hold" and self._awaiting_promotion(t):
            self.state = replace(self.state, promote_requested=True)
            why = "a manual step: assuming a person runs `conveyor rollout promote` at once"
            self._record(t, "promote", why, None)
        return _STOPS.get(action.kind)

    def _awaiting_promotion(self, t: float) -> bool:
        """Whether the planner now waits only for a person to promote a manual step."""
        s, steps = self.state, self.policy.steps
        if s.step < 0 or s.paused or s.promote_requested or not steps[s.step].manual:
            return False
        timer_over = t - self.steps[-1].started_s >= (steps[s.step].pause_s or 0.0)
        return timer_over and (s.passed or not self.policy.analysed(s.step))

    def _record(self, t: float, kind: EventKind, reason: str, verdict: Verdict | None) -> None:
        step = self.state.step
        new_bp = 0 if kind == "abort" else weights(self.policy, step)[0]
        words = step_words(self.policy, step)
        self.events.append(Event(t, kind, step, words, new_bp, reason, verdict))

    def _result(self, outcome: Outcome, t: float, reason: str) -> SimulationResult:
        return SimulationResult(
            outcome=outcome,
            reason=reason,
            ended_s=t,
            seed=self.seed,
            tick_s=self.dt,
            requests=self.requests,
            failed=self.failed,
            analyses=self.analyses,
            steps=tuple(self.steps),
            timeline=tuple(self.events),
        )


# --- worst case per step -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Exposure:
    """A release that starts failing when one step starts: how long until the abort, and what users saw."""

    step: int
    words: str
    weight_bp: int
    starts_s: float | None  # when the step starts in the healthy run; None: never reached
    outcome: Outcome | None  # of the run with the failure; None when not run
    aborted_after_s: float | None  # failure start → abort; None when it never aborted
    new_requests: int
    new_failed: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        """JSON form for `--output json`."""
        return asdict(self)


@dataclass(frozen=True)
class WorstCase:
    """Per step, how long a release failing `bad_error_rate` of requests from that step on hurts users."""

    bad_error_rate: float
    seed: int
    steps: tuple[Exposure, ...]

    @property
    def worst(self) -> Exposure | None:
        """The watched step that takes longest to abort; one that never aborts is the worst of all."""
        watched = [e for e in self.steps if e.outcome is not None]
        if not watched:
            return None
        return max(watched, key=lambda e: math.inf if e.aborted_after_s is None else e.aborted_after_s)

    @property
    def worst_s(self) -> float | None:
        """The longest time to abort over the watched steps (None: one never aborts, or none is watched)."""
        worst = self.worst
        return worst.aborted_after_s if worst else None

    def to_json(self) -> dict[str, Any]:
        """JSON form for `--output json`."""
        worst = self.worst
        return {
            "bad_error_rate": self.bad_error_rate,
            "seed": self.seed,
            "steps": [e.to_json() for e in self.steps],
            "worst_step": worst.step if worst else None,
            "worst_s": self.worst_s,
        }


def worst_case_abort(
    policy: RolloutPolicy, healthy: Series, bad_error_rate: float, seed: int = 1, max_s: float | None = None
) -> WorstCase:
    """For each step, run the rollout with the new version failing `bad_error_rate` from that step's start.

    The healthy run fixes when each step starts; with the same seed, every failing run is identical to it
    until its failure starts, so the time to abort is measured from the same moment.
    """
    base = simulate(policy, healthy, seed, max_s)
    return WorstCase(
        bad_error_rate,
        seed,
        tuple(
            _exposure(policy, healthy, base, step, bad_error_rate, max_s) for step in range(len(policy.steps))
        ),
    )


def _exposure(
    policy: RolloutPolicy,
    healthy: Series,
    base: SimulationResult,
    step: int,
    bad_error_rate: float,
    max_s: float | None,
) -> Exposure:
    """One row of the worst-case table."""
    words, weight = step_words(policy, step), policy.steps[step].weight_bp
    start = base.started_s(step)
    if start is None:
        where = step_words(policy, base.steps[-1].step) if base.steps else "the start"
        why = f"not reached: the healthy run {base.outcome} at {where}"
        return Exposure(step, words, weight, None, None, None, 0, 0, why)
    if not policy.analysed(step):
        why = (
            "no analysis configured: the rollout never rolls back on metrics"
            if policy.analysis is None
            else "not analysed: reaching 100% with no pause completes the rollout"
        )
        return Exposure(step, words, weight, start, None, None, 0, 0, why)
    run = simulate(policy, healthy.failing_from(start, bad_error_rate), base.seed, max_s)
    exposed = run.steps[step:]
    aborted = run.ended_s - start if run.outcome == "aborted" else None
    return Exposure(
        step,
        words,
        weight,
        start,
        run.outcome,
        aborted,
        sum(s.new_requests for s in exposed),
        sum(s.new_failed for s in exposed),
        run.reason,
    )

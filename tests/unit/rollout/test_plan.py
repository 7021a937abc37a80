"""The rollout planner: weights, abort, analysis and pauses, as properties over any state."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from conveyor.rollout.analysis import AnalysisPolicy, Verdict, VersionStats
from conveyor.rollout.plan import (
    FULL,
    RolloutObservation,
    RolloutPolicy,
    RolloutState,
    StepPolicy,
    instances,
    plan,
    weights,
)

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SEED = RolloutPolicy(
    kind="bluegreen",
    steps=(StepPolicy(100, 300.0), StepPolicy(1_000, 600.0), StepPolicy(5_000, 900.0), StepPolicy(FULL)),
    instances=4,
    analysis=AnalysisPolicy(interval_s=5.0),
    keep_hot_s=3600.0,
    keep_standby_s=86_400.0,
)
NEW, STABLE = VersionStats("1.1.0", 500, 0, 10.0), VersionStats("1.0.0", 50_000, 2, 10.0)


def verdict(outcome: str) -> Verdict:
    return Verdict(outcome, f"analysis {outcome}", 5.0, NEW, STABLE)  # type: ignore[arg-type]


@st.composite
def policies(draw: st.DrawFn) -> RolloutPolicy:
    cuts = sorted(draw(st.sets(st.integers(1, FULL - 1), max_size=5)))
    steps = tuple(
        StepPolicy(w, draw(st.one_of(st.none(), st.floats(0.5, 3600))), draw(st.booleans()))
        for w in [*cuts, FULL]
    )
    analysed = draw(st.booleans())
    return RolloutPolicy(
        kind=draw(st.sampled_from(["bluegreen", "canary"])),
        steps=steps,
        instances=draw(st.integers(1, 20)),
        analysis=AnalysisPolicy(failure_limit=draw(st.integers(1, 3))) if analysed else None,
        auto_rollback=draw(st.booleans()),
        max_surge=draw(st.one_of(st.none(), st.integers(1, 10))),
    )


@st.composite
def states(draw: st.DrawFn, policy: RolloutPolicy) -> RolloutState:
    step = draw(st.integers(-1, policy.last))
    started = T0 - timedelta(seconds=draw(st.floats(0, 7200))) if step >= 0 else None
    return RolloutState(
        step=step,
        step_started_at=started,
        paused=draw(st.booleans()),
        pause_reason="paused by sam",
        promote_requested=draw(st.booleans()),
        failures=draw(st.integers(0, 2)),
        inconclusive=draw(st.integers(0, 20)),
        passed=draw(st.booleans()),
        last_analysis_at=started,
    )


@st.composite
def situations(draw: st.DrawFn) -> tuple[RolloutPolicy, RolloutState, RolloutObservation]:
    policy = draw(policies())
    state = draw(states(policy))
    outcome = draw(st.sampled_from([None, "pass", "inconclusive", "fail"]))
    observation = RolloutObservation(
        now=T0 + timedelta(seconds=draw(st.floats(0, 7200))),
        verdict=verdict(outcome) if outcome and policy.analysis else None,
        crashed=draw(st.sampled_from([None, "exits with code 70"])),
        abort_requested=draw(st.sampled_from([None, "sam"])),
    )
    return policy, state, observation


@given(policies(), st.integers(-1, 10))
def test_weights_always_sum_to_100_percent(policy: RolloutPolicy, step: int) -> None:
    new, stable = weights(policy, step)
    assert new + stable == FULL and new >= 0 and stable >= 0


@given(policies(), st.integers(-1, 10))
def test_a_version_with_traffic_always_has_instances(policy: RolloutPolicy, step: int) -> None:
    (_, stable_bp), (new_n, stable_n) = weights(policy, step), instances(policy, step)
    assert new_n >= 1 and (stable_bp == 0 or stable_n >= 1)
    if policy.max_surge is not None and policy.kind == "canary":
        needed = -(-stable_bp * policy.instances // FULL)
        assert new_n + stable_n <= max(policy.instances + policy.max_surge, new_n + needed)


@given(situations())
def test_abort_from_any_state_puts_all_traffic_on_stable_in_one_action(
    situation: tuple[RolloutPolicy, RolloutState, RolloutObservation],
) -> None:
    policy, state, observation = situation
    action = plan(policy, state, replace(observation, abort_requested="sam"))
    assert action.kind == "abort"
    assert "sam" in action.reason
    assert weights(policy, -1) == (0, FULL)  # what the rollback returns the runtime to


@given(situations())
def test_never_advances_without_a_passing_verdict_where_analysis_is_required(
    situation: tuple[RolloutPolicy, RolloutState, RolloutObservation],
) -> None:
    policy, state, observation = situation
    action = plan(policy, state, observation)
    if action.kind in ("advance", "complete") and state.step >= 0 and policy.analysed(state.step):
        fresh_pass = observation.verdict is not None and observation.verdict.outcome == "pass"
        assert fresh_pass or state.passed or state.promote_requested
        assert (
            observation.verdict is None
            or observation.verdict.outcome != "fail"
            or state.failures + 1 < (policy.analysis.failure_limit if policy.analysis else 1)
        )


@given(situations(), st.floats(0, 10_000))
def test_a_paused_rollout_never_advances_by_time(
    situation: tuple[RolloutPolicy, RolloutState, RolloutObservation], later: float
) -> None:
    policy, state, observation = situation
    paused = replace(state, paused=True, step=max(state.step, 0), step_started_at=state.step_started_at or T0)
    quiet = replace(
        observation, abort_requested=None, crashed=None, now=observation.now + timedelta(seconds=later)
    )
    action = plan(policy, paused, quiet)
    assert action.kind in ("hold", "abort", "pause")


@given(situations())
def test_a_failed_verdict_at_the_limit_aborts_or_pauses(
    situation: tuple[RolloutPolicy, RolloutState, RolloutObservation],
) -> None:
    policy, state, observation = situation
    if policy.analysis is None or state.step < 0:
        return
    at_limit = replace(state, failures=policy.analysis.failure_limit - 1)
    action = plan(
        policy, at_limit, replace(observation, verdict=verdict("fail"), abort_requested=None, crashed=None)
    )
    assert action.kind == ("abort" if policy.auto_rollback else "pause")


def test_the_seed_s_production_release_step_by_step() -> None:
    state, now = RolloutState(), T0
    action = plan(SEED, state, RolloutObservation(now))
    assert action.kind == "advance" and weights(SEED, action.state.step) == (100, 9_900)
    state = action.state
    # within the 5 minutes, a passing verdict does not move traffic
    now += timedelta(minutes=1)
    action = plan(SEED, state, RolloutObservation(now, verdict("pass")))
    assert action.kind == "hold" and "holding 240 s more" in action.reason
    state = action.state
    now += timedelta(minutes=4, seconds=1)
    action = plan(SEED, state, RolloutObservation(now))
    assert action.kind == "advance" and action.state.step == 1
    assert "moving 10% of traffic" in action.reason
    # a failed verdict at 10% aborts with the step in the reason
    action = plan(SEED, action.state, RolloutObservation(now + timedelta(seconds=5), verdict("fail")))
    assert action.kind == "abort" and action.reason == "analysis fail at step 2 (10%)"


def test_inconclusive_past_the_limit_pauses_and_says_what_to_do() -> None:
    state = RolloutState(step=0, step_started_at=T0, last_analysis_at=T0, inconclusive=11)
    action = plan(SEED, state, RolloutObservation(T0 + timedelta(minutes=6), verdict("inconclusive")))
    assert action.kind == "pause"
    assert "conveyor rollout promote" in action.reason and action.state.paused


def test_promote_skips_the_pause_and_a_manual_hold_but_not_a_failure() -> None:
    state = RolloutState(step=0, step_started_at=T0, promote_requested=True)
    assert plan(SEED, state, RolloutObservation(T0 + timedelta(seconds=1))).kind == "advance"
    failed = plan(SEED, state, RolloutObservation(T0 + timedelta(seconds=1), verdict("fail")))
    assert failed.kind == "abort"

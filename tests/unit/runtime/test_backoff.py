"""Restart backoff: the schedule grows, is capped and starts over; repeated early exits are a crash loop."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.errors import InvalidRequest
from conveyor.runtime.local.backoff import BackoffPolicy, RestartHistory

T0 = 1000.0
DEFAULT = BackoffPolicy()

policies = st.builds(
    BackoffPolicy,
    initial=st.floats(min_value=0.01, max_value=5),
    factor=st.one_of(st.just(1.0), st.floats(min_value=1.1, max_value=4)),
    cap=st.floats(min_value=5, max_value=120),
    # quarter seconds add up exactly, so "ready for exactly reset_after" means what it says
    reset_after=st.integers(min_value=0, max_value=1200).map(lambda q: q / 4),
    crash_limit=st.integers(min_value=1, max_value=10),
    crash_window=st.integers(min_value=4, max_value=1200).map(lambda q: q / 4),
)
# with a crash limit of one, every exit is a crash loop: these policies restart at least once
restarting = policies.filter(lambda policy: policy.crash_limit > 1)


class TestSchedule:
    def test_default_schedule_doubles_from_half_a_second_to_thirty(self) -> None:
        delays = [DEFAULT.delay(attempt) for attempt in range(1, 10)]
        assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]

    @given(policies, st.integers(min_value=1, max_value=10_000))
    def test_delays_never_shrink(self, policy: BackoffPolicy, attempt: int) -> None:
        assert policy.delay(attempt) <= policy.delay(attempt + 1)

    @given(policies, st.integers(min_value=-5, max_value=10**9))
    def test_delays_stay_between_initial_and_cap(self, policy: BackoffPolicy, attempt: int) -> None:
        assert policy.initial <= policy.delay(attempt) <= policy.cap

    @given(policies)
    def test_a_huge_attempt_count_waits_the_cap(self, policy: BackoffPolicy) -> None:
        assert policy.delay(10**12) == (policy.cap if policy.factor > 1 else policy.initial)

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"initial": 0},
            {"initial": 40, "cap": 30},
            {"factor": 0.5},
            {"crash_limit": 0},
            {"crash_window": 0},
        ],
        ids=["zero-initial", "initial-over-cap", "shrinking-factor", "no-crash-limit", "no-crash-window"],
    )
    def test_nonsense_policies_are_refused(self, kwargs: dict[str, float]) -> None:
        with pytest.raises(InvalidRequest):
            BackoffPolicy(**kwargs)  # type: ignore[arg-type]


def _exits(history: RestartHistory, policy: BackoffPolicy, times: list[float]) -> list[tuple[float, bool]]:
    """(delay, crash_loop) after each exit at `times`, threading the history through."""
    decisions = []
    for now in times:
        after = history.after_exit(policy, now)
        history = after.history
        decisions.append((after.delay, after.crash_loop))
    return decisions


class TestRestartHistory:
    def test_each_early_exit_waits_longer(self) -> None:
        decisions = _exits(RestartHistory(), DEFAULT, [T0, T0 + 1, T0 + 3])
        assert decisions == [(0.5, False), (1, False), (2, False)]

    def test_fifth_exit_within_a_minute_without_ready_is_a_crash_loop(self) -> None:
        decisions = _exits(RestartHistory(), DEFAULT, [T0 + s for s in (0, 1, 3, 7, 15)])
        assert [crash for _, crash in decisions] == [False, False, False, False, True]

    def test_exits_spread_over_more_than_the_window_are_not_a_crash_loop(self) -> None:
        decisions = _exits(RestartHistory(), DEFAULT, [T0 + s for s in (0, 20, 40, 61, 81, 101)])
        assert not any(crash for _, crash in decisions)

    def test_becoming_ready_clears_the_crash_count_but_not_the_schedule(self) -> None:
        history = RestartHistory()
        for now in (T0, T0 + 1, T0 + 2, T0 + 3):
            history = history.after_exit(DEFAULT, now).history
        history = history.became_ready(T0 + 4)
        after = history.after_exit(DEFAULT, T0 + 5)
        assert not after.crash_loop
        assert after.delay == DEFAULT.delay(5)

    def test_ready_for_reset_after_starts_the_schedule_over(self) -> None:
        history = RestartHistory()
        for now in (T0, T0 + 1, T0 + 2):
            history = history.after_exit(DEFAULT, now).history
        history = history.became_ready(T0 + 10)
        assert history.after_exit(DEFAULT, T0 + 10 + DEFAULT.reset_after).delay == DEFAULT.initial
        assert history.after_exit(DEFAULT, T0 + 9 + DEFAULT.reset_after).delay == DEFAULT.delay(4)

    def test_unready_time_does_not_count_towards_the_reset(self) -> None:
        history = RestartHistory().after_exit(DEFAULT, T0).history.after_exit(DEFAULT, T0 + 1).history
        history = history.became_ready(T0 + 2).became_unready()
        assert history.after_exit(DEFAULT, T0 + 500).delay == DEFAULT.delay(3)

    def test_became_ready_twice_keeps_the_first_instant(self) -> None:
        assert RestartHistory().became_ready(T0).became_ready(T0 + 5).ready_since == T0

    @given(policies, st.lists(st.floats(min_value=0, max_value=30), min_size=1, max_size=40))
    def test_verdict_matches_a_count_of_exits_in_the_window(
        self, policy: BackoffPolicy, gaps: list[float]
    ) -> None:
        history, now, times = RestartHistory(), T0, []
        for gap in gaps:
            now += gap
            times.append(now)
            after = history.after_exit(policy, now)
            history = after.history
            in_window = [t for t in times if now - t < policy.crash_window]
            assert after.crash_loop == (len(in_window) >= policy.crash_limit)
            assert after.crash_loop or policy.initial <= after.delay <= policy.cap

    @given(restarting, st.integers(min_value=1, max_value=50), st.integers(0, 4000).map(lambda q: q / 4))
    def test_stable_readiness_always_resets(self, policy: BackoffPolicy, exits: int, extra: float) -> None:
        history = RestartHistory()
        for n in range(exits):
            history = history.after_exit(policy, T0 + n * policy.crash_window).history
        ready_at = T0 + exits * policy.crash_window
        after = history.became_ready(ready_at).after_exit(policy, ready_at + policy.reset_after + extra)
        assert after.delay == policy.initial
        assert after.history.attempt == 1

    @given(restarting, st.integers(min_value=1, max_value=30))
    def test_spaced_exits_follow_the_schedule_exactly(self, policy: BackoffPolicy, exits: int) -> None:
        times = [T0 + 3 * policy.crash_window * n for n in range(exits)]
        expected = [min(policy.initial * policy.factor**n, policy.cap) for n in range(exits)]
        delays = [delay for delay, _ in _exits(RestartHistory(), policy, times)]
        assert delays == pytest.approx(expected)

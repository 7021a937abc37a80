"""Analysis verdicts: fail on significant evidence at any sample size, pass only with enough data."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from conveyor.rollout.analysis import AnalysisPolicy, VersionStats, judge

POLICY = AnalysisPolicy(max_error_rate=0.001, max_p99_ms=200.0, min_requests=50)
STABLE = VersionStats("1.0.0", 10_000, 3, 12.0, {60: 9_000, 70: 1_000})


def test_the_reason_carries_the_numbers() -> None:
    verdict = judge(POLICY, VersionStats("1.1.0", 1_240, 52, 15.0, {60: 1_240}), STABLE, 30.0)
    assert verdict.outcome == "fail"
    assert "4.2%" in verdict.reason and "52 of 1,240 requests" in verdict.reason
    numbers = verdict.to_json()
    assert numbers["new"]["errors"] == 52 and numbers["stable"]["requests"] == 10_000
    assert numbers["checks"][0]["numbers"]["p_value"] < 1e-10


def test_two_errors_in_ten_requests_fail_and_one_in_one_does_not() -> None:
    assert judge(POLICY, VersionStats("1.1.0", 10, 2), STABLE, 5.0).outcome == "fail"
    one = judge(POLICY, VersionStats("1.1.0", 1, 1), STABLE, 5.0)
    assert one.outcome == "inconclusive"


def test_too_few_requests_never_pass() -> None:
    verdict = judge(POLICY, VersionStats("1.1.0", 12, 0, 10.0, {60: 12}), STABLE, 5.0)
    assert verdict.outcome == "inconclusive"
    assert "12 of the 50 requests needed" in verdict.reason
    assert judge(POLICY, VersionStats("1.1.0", 0, 0), STABLE, 5.0).reason.startswith("no requests reached")


def test_a_degraded_environment_is_not_blamed_on_the_release() -> None:
    bad_stable = VersionStats("1.0.0", 10_000, 500)
    verdict = judge(POLICY, VersionStats("1.1.0", 500, 25), bad_stable, 30.0)
    assert verdict.outcome == "inconclusive"
    assert "environment is degraded" in verdict.reason


def test_latency_over_the_threshold_fails_once_a_p99_means_something() -> None:
    slow = VersionStats("1.1.0", 400, 0, 450.0, {90: 400})
    assert judge(POLICY, slow, STABLE, 30.0).outcome == "fail"
    few = VersionStats("1.1.0", 60, 0, 450.0, {90: 60})
    thresholds_only = AnalysisPolicy(max_error_rate=0.001, max_p99_ms=200.0, compare_to_stable=False)
    assert judge(thresholds_only, few, STABLE, 30.0).outcome == "pass"  # 60 samples: no p99 yet
    assert judge(POLICY, few, STABLE, 30.0).outcome == "fail"  # but far slower than stable already


def test_a_few_milliseconds_slower_is_never_a_failure() -> None:
    policy = AnalysisPolicy(min_requests=50)
    stable = VersionStats("1.0.0", 20_000, 0, 3.0, {30: 20_000})
    new = VersionStats("1.1.0", 2_000, 0, 4.1, {33: 2_000})
    assert judge(policy, new, stable, 30.0).outcome == "pass"


versions = st.builds(
    VersionStats,
    st.just("1.1.0"),
    st.integers(0, 5_000),
    st.integers(0, 5_000),
    st.one_of(st.none(), st.floats(0.1, 5_000)),
    st.dictionaries(st.integers(0, 120), st.integers(1, 100), max_size=5),
).filter(lambda v: v.errors <= v.requests)


@given(versions, versions)
def test_pass_needs_min_requests_and_error_rate_within_the_threshold(
    new: VersionStats, stable: VersionStats
) -> None:
    verdict = judge(POLICY, new, stable, 30.0)
    if verdict.outcome == "pass":
        assert new.requests >= POLICY.min_requests
        assert new.error_rate <= 0.001
    assert verdict.reason

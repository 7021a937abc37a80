"""MetricsRegistry windows on a fake clock: boundaries, expiry, error accounting and percentile accuracy."""

from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.runtime.local.metrics import BOUNDS, RETENTION_S, MetricsRegistry, percentile_from_histogram

T0 = 10_000.0
T0_PLUS_1S = T0 + 1
T0_PLUS_15M = T0 + RETENTION_S
ENV = "production"

RELATIVE_BOUND = 0.123
"""The documented percentile error: 12.3 % of the exact value from 0.1 ms to 100 s…"""
ABSOLUTE_BOUND_S = 0.0001
"""…and 0.1 ms below 0.1 ms."""


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(clock: FakeClock) -> MetricsRegistry:
    return MetricsRegistry(now=clock)


def exact_percentile(samples: list[float], q: str) -> float:
    """Nearest rank: the smallest sample with at least q of all samples at or below it."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(Fraction(q) * len(ordered)))
    return ordered[rank - 1]


def within_bound(estimate: float, exact: float) -> bool:
    return abs(estimate - exact) <= max(RELATIVE_BOUND * exact, ABSOLUTE_BOUND_S) + 1e-12


class TestWindowBoundaries:
    def test_window_of_one_second_is_the_current_second_only(
        self, registry: MetricsRegistry, clock: FakeClock
    ) -> None:
        registry.observe(ENV, "v1", 200, 0.01)
        clock.now = T0_PLUS_1S + 0.5
        registry.observe(ENV, "v1", 200, 0.01)
        assert registry.window(ENV, "v1", 1).requests == 1
        assert registry.window(ENV, "v1", 2).requests == 2

    def test_current_partial_second_counts(self, registry: MetricsRegistry, clock: FakeClock) -> None:
        clock.now = T0 + 0.999
        registry.observe(ENV, "v1", 200, 0.01)
        assert registry.window(ENV, "v1", 1, now=T0 + 0.9995).requests == 1
        assert registry.window(ENV, "v1", 1, now=T0_PLUS_1S).requests == 0

    def test_rps_divides_by_the_window(self, registry: MetricsRegistry, clock: FakeClock) -> None:
        for second in range(10):
            clock.now = T0 + second
            for _ in range(30):
                registry.observe(ENV, "v1", 200, 0.01)
        assert registry.window(ENV, "v1", 10).rps == pytest.approx(30.0)
        assert registry.window(ENV, "v1", 5).rps == pytest.approx(30.0)
        assert registry.window(ENV, "v1", 20).rps == pytest.approx(15.0)

    def test_fractional_window_rounds_up_to_whole_seconds(
        self, registry: MetricsRegistry, clock: FakeClock
    ) -> None:
        registry.observe(ENV, "v1", 200, 0.01)
        clock.now = T0_PLUS_1S
        assert registry.window(ENV, "v1", 1.5).requests == 1

    @pytest.mark.parametrize("seconds", [0, -1, RETENTION_S + 1], ids=["zero", "negative", "past-retention"])
    def test_window_outside_retention_is_refused(self, registry: MetricsRegistry, seconds: int) -> None:
        with pytest.raises(ValueError, match="metrics window"):
            registry.window(ENV, "v1", seconds)


class TestExpiry:
    def test_a_sample_lives_fifteen_minutes(self, registry: MetricsRegistry) -> None:
        registry.observe(ENV, "v1", 200, 0.01)
        assert registry.window(ENV, "v1", RETENTION_S, now=T0_PLUS_15M - 1).requests == 1
        assert registry.window(ENV, "v1", RETENTION_S, now=T0_PLUS_15M).requests == 0

    def test_a_reused_slot_forgets_the_old_second(self, registry: MetricsRegistry, clock: FakeClock) -> None:
        registry.observe(ENV, "v1", 500, 0.01)
        clock.now = T0_PLUS_15M
        registry.observe(ENV, "v1", 200, 0.02)
        stats = registry.window(ENV, "v1", RETENTION_S)
        assert (stats.requests, stats.errors) == (1, 0)

    def test_totals_for_prometheus_do_not_expire(self, registry: MetricsRegistry, clock: FakeClock) -> None:
        registry.observe(ENV, "v1", 200, 0.01)
        clock.now = T0_PLUS_15M * 2
        assert 'code_class="2xx"} 1' in registry.prometheus_text()


class TestCounting:
    def test_classes_errors_and_upstream_errors(self, registry: MetricsRegistry) -> None:
        for status in (200, 201, 302, 404, 500, 503):
            registry.observe(ENV, "v1", status, 0.01)
        registry.observe(ENV, "v1", 502, 0.01, upstream_error=True)
        registry.observe(ENV, "v1", 200, 0.5, upstream_error=True)  # response cut off mid-body
        registry.observe(ENV, "v1", 0, 0.01)  # injected abort: no response at all
        stats = registry.window(ENV, "v1", 60)
        assert stats.requests == 9
        assert stats.by_class == {"aborted": 1, "2xx": 3, "3xx": 1, "4xx": 1, "5xx": 3}
        # Each failed request counts once, even when it is both a 5xx and an upstream error.
        assert stats.errors == 5
        assert stats.upstream_errors == 2
        assert stats.error_rate == pytest.approx(5 / 9)

    def test_versions_and_environments_are_kept_apart(self, registry: MetricsRegistry) -> None:
        registry.observe(ENV, "v1", 500, 0.01)
        registry.observe(ENV, "v2", 200, 0.01)
        registry.observe("staging", "v1", 200, 0.01)
        assert registry.versions(ENV) == ["v1", "v2"]
        assert registry.environments() == ["production", "staging"]
        assert registry.window(ENV, "v1", 60).error_rate == 1.0
        assert registry.window("staging", "v1", 60).error_rate == 0.0

    def test_inflight_gauge(self, registry: MetricsRegistry) -> None:
        registry.inflight_add(ENV, "v1", 3)
        registry.inflight_add(ENV, "v1", -1)
        assert registry.window(ENV, "v1", 10).inflight == 2

    def test_unknown_version_is_an_empty_window(self, registry: MetricsRegistry) -> None:
        stats = registry.window(ENV, "nope", 60)
        assert (stats.requests, stats.error_rate, stats.p99_ms) == (0, 0.0, None)
        assert registry.versions(ENV) == []


class TestPercentiles:
    def test_bounds_are_log_spaced_within_the_documented_ratio(self) -> None:
        ratios = [b / a for a, b in itertools.pairwise(BOUNDS)]
        assert max(ratios) - 1 < RELATIVE_BOUND
        assert BOUNDS[0] == ABSOLUTE_BOUND_S and BOUNDS[-1] == 100.0

    def test_known_distribution(self, registry: MetricsRegistry) -> None:
        rng = random.Random(7)
        samples = [rng.lognormvariate(math.log(0.02), 0.8) for _ in range(20_000)]
        for s in samples:
            registry.observe(ENV, "v1", 200, s)
        stats = registry.window(ENV, "v1", 60)
        for q, estimate_ms in (("0.5", stats.p50_ms), ("0.95", stats.p95_ms), ("0.99", stats.p99_ms)):
            assert estimate_ms is not None
            assert within_bound(estimate_ms / 1000, exact_percentile(samples, q)), q

    @given(
        samples=st.lists(
            st.floats(min_value=1e-6, max_value=99.0, allow_nan=False, allow_infinity=False),
            min_size=1,
            max_size=400,
        ),
        q=st.sampled_from(["0.5", "0.9", "0.95", "0.99", "0.999", "1"]),
    )
    def test_estimate_is_within_the_bound_of_the_exact_value(self, samples: list[float], q: str) -> None:
        registry = MetricsRegistry(now=FakeClock())
        for s in samples:
            registry.observe(ENV, "v1", 200, s)
        hist = registry.series(ENV, "v1").hist_total
        estimate = percentile_from_histogram(hist, float(q))
        assert estimate is not None
        assert within_bound(estimate, exact_percentile(samples, q))

    def test_beyond_the_last_bound_reports_the_last_bound(self, registry: MetricsRegistry) -> None:
        registry.observe(ENV, "v1", 200, 250.0)
        assert registry.window(ENV, "v1", 60).p99_ms == 100_000.0

    def test_empty_histogram_has_no_percentile(self) -> None:
        assert percentile_from_histogram([0] * (len(BOUNDS) + 1), 0.99) is None

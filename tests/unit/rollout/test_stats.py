"""The exact tests behind rollout analysis, against values computed by hand and by definition."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from conveyor.rollout.stats import binomial_upper, fisher_greater, mann_whitney_greater


def _binomial_by_definition(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, x) * p**x * (1 - p) ** (n - x) for x in range(k, n + 1))


def _fisher_by_definition(a: int, b: int, c: int, d: int) -> float:
    n1, errors, total = a + b, a + c, a + b + c + d
    top = min(errors, n1)
    return sum(
        math.comb(errors, x) * math.comb(total - errors, n1 - x) for x in range(a, top + 1)
    ) / math.comb(total, n1)


def test_the_worked_examples_of_the_adr() -> None:
    assert math.isclose(binomial_upper(1, 1, 0.001), 0.001)
    assert math.isclose(binomial_upper(2, 10, 0.001), _binomial_by_definition(2, 10, 0.001), rel_tol=1e-9)
    assert 4.4e-5 < binomial_upper(2, 10, 0.001) < 4.6e-5


@given(st.integers(0, 60), st.integers(0, 60), st.floats(0.0005, 0.9))
def test_binomial_tail_matches_its_definition(k: int, n: int, p: float) -> None:
    exact = _binomial_by_definition(k, n, p) if k <= n else 0.0
    assert math.isclose(binomial_upper(k, n, p), min(1.0, exact), rel_tol=1e-7, abs_tol=1e-12)


@given(st.integers(0, 30), st.integers(0, 30), st.integers(0, 30), st.integers(0, 30))
def test_fisher_matches_its_definition(a: int, b: int, c: int, d: int) -> None:
    if a + b == 0 or c + d == 0 or a + c == 0 or b + d == 0:
        assert fisher_greater(a, b, c, d) == 1.0
        return
    assert math.isclose(
        fisher_greater(a, b, c, d), min(1.0, _fisher_by_definition(a, b, c, d)), rel_tol=1e-7, abs_tol=1e-12
    )


def test_fisher_is_fair_to_a_small_sample() -> None:
    # 1 error in 12 canary requests vs 3 in 1,188 stable ones is not evidence; 5 in 12 is
    assert fisher_greater(1, 11, 3, 1185) > 0.01
    assert fisher_greater(5, 7, 3, 1185) < 1e-6


def test_fisher_stays_fast_with_a_large_stable_sample() -> None:
    assert fisher_greater(52, 1188, 30, 100_000) < 1e-12


def test_mann_whitney_sees_a_slower_version_and_not_an_equal_one() -> None:
    stable = {40: 500, 41: 300, 42: 200}
    assert mann_whitney_greater({40: 50, 41: 30, 42: 20}, stable) > 0.1
    assert mann_whitney_greater({46: 60, 47: 40}, stable) < 1e-6
    assert mann_whitney_greater({30: 100}, stable) > 0.99  # faster is never "greater"
    assert mann_whitney_greater({}, stable) == 1.0
    assert mann_whitney_greater({40: 10}, {40: 10}) == 1.0  # every value tied: no evidence


@given(
    st.dictionaries(st.integers(0, 120), st.integers(1, 50), min_size=1, max_size=8),
    st.dictionaries(st.integers(0, 120), st.integers(1, 50), min_size=1, max_size=8),
)
def test_p_values_are_probabilities(new: dict[int, int], stable: dict[int, int]) -> None:
    assert 0.0 <= mann_whitney_greater(new, stable) <= 1.0

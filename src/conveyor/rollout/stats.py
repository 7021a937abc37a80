"""Exact one-sided tests for rollout analysis, with `math` only (see ADR 0008).

Each returns a p-value: the chance of data at least this bad if the new version were no worse.
Tails are summed term by term in log space from the observed value outward and stop once terms no
longer change the sum, so the cost is bounded by the spread of the distribution, not its size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

_NEGLIGIBLE = 1e-17


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _upper_tail(log_pmf: Callable[[int], float], start: int, stop: int, mode: float) -> float:
    """Sum pmf(x) for x in [start, stop], stopping early once past the mode and terms are negligible."""
    total = 0.0
    for x in range(start, stop + 1):
        term = math.exp(log_pmf(x))
        total += term
        if x > mode and term <= total * _NEGLIGIBLE:
            break
    return min(1.0, total)


def _lower_tail(log_pmf: Callable[[int], float], start: int, stop: int, mode: float) -> float:
    """Sum pmf(x) for x from `stop` down to `start`, stopping early the same way."""
    total = 0.0
    for x in range(stop, start - 1, -1):
        term = math.exp(log_pmf(x))
        total += term
        if x < mode and term <= total * _NEGLIGIBLE:
            break
    return min(1.0, total)


def binomial_upper(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p): how surprising k errors in n requests are at true rate p."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)

    def log_pmf(x: int) -> float:
        return _log_choose(n, x) + x * log_p + (n - x) * log_q

    mode = (n + 1) * p
    if k > mode:
        return _upper_tail(log_pmf, k, n, mode)
    return max(0.0, 1.0 - _lower_tail(log_pmf, 0, k - 1, mode))


def fisher_greater(a: int, b: int, c: int, d: int) -> float:
    """One-sided Fisher exact p-value that row 1's share of column 1 exceeds row 2's.

    Table [[a, b], [c, d]]: a errors and b successes of the new version, c and d of the stable one.
    """
    n1, total, errors = a + b, a + b + c + d, a + c
    if n1 == 0 or c + d == 0 or errors == 0 or errors == total:
        return 1.0
    low, high = max(0, n1 - (total - errors)), min(errors, n1)
    base = _log_choose(total, n1)

    def log_pmf(x: int) -> float:
        return _log_choose(errors, x) + _log_choose(total - errors, n1 - x) - base

    mode = (n1 + 1) * (errors + 1) / (total + 2)
    if a > mode:
        return _upper_tail(log_pmf, a, high, mode)
    return max(0.0, 1.0 - _lower_tail(log_pmf, low, a - 1, mode))


def mann_whitney_greater(new: Mapping[int, int], stable: Mapping[int, int]) -> float:
    """One-sided Mann-Whitney U p-value that the new version's latencies are larger than stable's.

    Inputs are histograms (bucket index → count); values in one bucket are ties. Normal approximation
    with tie correction and continuity correction: valid once each side has about 20 samples.
    """
    n1, n2 = sum(new.values()), sum(stable.values())
    if n1 == 0 or n2 == 0:
        return 1.0
    u = 0.0
    below = 0
    ties = 0.0
    for bucket in sorted(set(new) | set(stable)):
        a, b = new.get(bucket, 0), stable.get(bucket, 0)
        u += a * (below + b / 2)
        below += b
        t = a + b
        ties += t**3 - t
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:
        return 1.0
    z = (u - n1 * n2 / 2 - 0.5) / math.sqrt(variance)
    return 0.5 * math.erfc(z / math.sqrt(2))

"""Pure: judge the new version against thresholds and against the stable version (ADR 0008).

`judge` takes both versions' statistics over the same window and returns a `Verdict`: `pass`,
`inconclusive` (wait for more data) or `fail`, with each check's numbers, so the reason a person
reads is built from exactly what was compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from conveyor.rollout.stats import binomial_upper, fisher_greater, mann_whitney_greater

Outcome = Literal["pass", "inconclusive", "fail"]
CheckOutcome = Literal["pass", "inconclusive", "fail", "skip"]

# a 99th percentile of fewer samples is just the maximum
P99_MIN_SAMPLES = 100
# the normal approximation of the Mann-Whitney test needs about this many samples per side
RANK_TEST_MIN_SAMPLES = 20
# a single failed request is never proof on its own, however unlikely it was
MIN_ERRORS_TO_FAIL = 2
# a p99 this much slower than stable's is never a failure, however significant: a fresh process
# is a few milliseconds slower than a warm one, and nobody rolls back for 1 ms
LATENCY_FLOOR_MS = 20.0


@dataclass(frozen=True)
class AnalysisPolicy:
    """What the analysis checks and how sure it must be; durations in seconds, rates as fractions."""

    interval_s: float = 5.0
    window_s: float = 60.0
    min_requests: int = 50
    alpha: float = 0.001
    max_error_rate: float | None = None
    max_p99_ms: float | None = None
    compare_to_stable: bool = True
    error_rate_margin: float = 0.01
    latency_margin: float = 0.20
    failure_limit: int = 1
    inconclusive_limit: int = 12

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VersionStats:
    """What one version served in the window: requests, errors (5xx, dropped), p99 and its histogram."""

    version: str
    requests: int
    errors: int
    p99_ms: float | None = None
    histogram: Mapping[int, int] = field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @classmethod
    def from_window(cls, version: str, data: Mapping[str, Any]) -> VersionStats:
        """From the runtime's per-version window statistics."""
        histogram = {int(k): int(v) for k, v in (data.get("histogram") or {}).items()}
        return cls(
            version,
            int(data.get("requests", 0)),
            int(data.get("errors", 0)),
            data.get("p99_ms"),
            histogram,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 6),
            "p99_ms": None if self.p99_ms is None else round(self.p99_ms, 3),
        }


@dataclass(frozen=True)
class CheckResult:
    """One comparison: its outcome, the sentence explaining it, and the numbers behind it."""

    name: str
    outcome: CheckOutcome
    reason: str
    numbers: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "outcome": self.outcome,
            "reason": self.reason,
            "numbers": dict(self.numbers),
        }


@dataclass(frozen=True)
class Verdict:
    """The analysis result of one interval."""

    outcome: Outcome
    reason: str
    window_s: float
    new: VersionStats
    stable: VersionStats | None
    checks: tuple[CheckResult, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "reason": self.reason,
            "window_s": self.window_s,
            "new": self.new.to_json(),
            "stable": self.stable.to_json() if self.stable else None,
            "checks": [c.to_json() for c in self.checks],
        }


def pct(rate: float) -> str:
    """A rate as a percentage with enough digits to tell 0.1% from 0.12%."""
    value = rate * 100
    if value == 0:
        return "0%"
    if value >= 10:
        return f"{value:.1f}%"
    return f"{value:.2g}%" if value < 1 else f"{value:.1f}%"


def _p(p: float) -> str:
    return "p < 0.0001" if p < 0.0001 else f"p = {p:.4f}"


def _share(stats: VersionStats) -> str:
    return f"{stats.errors:,} of {stats.requests:,} requests"


def judge(policy: AnalysisPolicy, new: VersionStats, stable: VersionStats | None, window_s: float) -> Verdict:
    """The verdict over one window; pure. A check may fail at any sample size, passing needs min_requests."""
    checks = tuple(
        check
        for check in (
            _error_threshold(policy, new, stable),
            _error_vs_stable(policy, new, stable),
            _latency_threshold(policy, new),
            _latency_vs_stable(policy, new, stable),
        )
        if check is not None
    )
    failed = [c for c in checks if c.outcome == "fail"]
    if failed:
        return Verdict("fail", failed[0].reason, window_s, new, stable, checks)
    if new.requests < policy.min_requests:
        why = (
            f"no requests reached {new.version} in the last {window_s:g} s"
            if new.requests == 0
            else f"{new.requests:,} of the {policy.min_requests:,} requests needed have reached {new.version}"
        )
        return Verdict("inconclusive", why, window_s, new, stable, checks)
    open_checks = [c for c in checks if c.outcome == "inconclusive"]
    if open_checks:
        return Verdict("inconclusive", open_checks[0].reason, window_s, new, stable, checks)
    return Verdict("pass", _pass_words(new, stable), window_s, new, stable, checks)


def _pass_words(new: VersionStats, stable: VersionStats | None) -> str:
    words = f"{new.version}: error rate {pct(new.error_rate)} over {new.requests:,} requests"
    if new.p99_ms is not None:
        words += f", p99 {new.p99_ms:.0f} ms"
    if stable is not None and stable.requests:
        words += f" (stable {pct(stable.error_rate)}"
        words += f", p99 {stable.p99_ms:.0f} ms)" if stable.p99_ms is not None else ")"
    return words


def _error_threshold(
    policy: AnalysisPolicy, new: VersionStats, stable: VersionStats | None
) -> CheckResult | None:
    limit = policy.max_error_rate
    if limit is None:
        return None
    name = "error rate vs threshold"
    p = binomial_upper(new.errors, new.requests, limit)
    numbers = {"threshold": limit, "errors": new.errors, "requests": new.requests, "p_value": p}
    if p < policy.alpha and new.errors >= MIN_ERRORS_TO_FAIL:
        stable_p = binomial_upper(stable.errors, stable.requests, limit) if stable else 1.0
        if stable is not None and stable_p < policy.alpha:
            why = (
                f"both versions break the {pct(limit)} error-rate threshold: {new.version} "
                f"{pct(new.error_rate)}, stable {stable.version} {pct(stable.error_rate)} "
                f"({_share(stable)}); "
                "the environment is degraded, not necessarily the release"
            )
            return CheckResult(name, "inconclusive", why, {**numbers, "stable_p_value": stable_p})
        why = (
            f"error rate {pct(new.error_rate)} ({_share(new)}) is over the {pct(limit)} threshold "
            f"(exact binomial test, {_p(p)})"
        )
        return CheckResult(name, "fail", why, numbers)
    if new.error_rate > limit:
        why = (
            f"error rate {pct(new.error_rate)} ({_share(new)}) is over the {pct(limit)} threshold, "
            f"but not yet significantly ({_p(p)})"
        )
        return CheckResult(name, "inconclusive", why, numbers)
    return CheckResult(name, "pass", f"error rate {pct(new.error_rate)} within {pct(limit)}", numbers)


def _error_vs_stable(
    policy: AnalysisPolicy, new: VersionStats, stable: VersionStats | None
) -> CheckResult | None:
    if not policy.compare_to_stable or stable is None:
        return None
    name = "error rate vs stable"
    if stable.requests == 0:
        return CheckResult(name, "skip", f"stable {stable.version} served no requests in the window")
    p = fisher_greater(new.errors, new.requests - new.errors, stable.errors, stable.requests - stable.errors)
    diff = new.error_rate - stable.error_rate
    numbers = {"difference": diff, "margin": policy.error_rate_margin, "p_value": p}
    words = (
        f"error rate {pct(new.error_rate)} vs {pct(stable.error_rate)} on stable over {new.requests:,} "
        f"requests (stable {stable.requests:,})"
    )
    if diff <= policy.error_rate_margin:
        return CheckResult(name, "pass", words, numbers)
    if p < policy.alpha and new.errors >= MIN_ERRORS_TO_FAIL:
        return CheckResult(name, "fail", f"{words}; Fisher exact test {_p(p)}", numbers)
    return CheckResult(name, "inconclusive", f"{words}; not yet significant ({_p(p)})", numbers)


def _latency_threshold(policy: AnalysisPolicy, new: VersionStats) -> CheckResult | None:
    limit = policy.max_p99_ms
    if limit is None:
        return None
    name = "p99 latency vs threshold"
    numbers = {"threshold_ms": limit, "p99_ms": new.p99_ms, "requests": new.requests}
    if new.p99_ms is None or new.requests < P99_MIN_SAMPLES:
        return CheckResult(name, "skip", f"p99 is judged from {P99_MIN_SAMPLES} requests on", numbers)
    if new.p99_ms > limit:
        why = f"p99 {new.p99_ms:.0f} ms over the {limit:.0f} ms threshold across {new.requests:,} requests"
        return CheckResult(name, "fail", why, numbers)
    return CheckResult(name, "pass", f"p99 {new.p99_ms:.0f} ms within {limit:.0f} ms", numbers)


def _latency_vs_stable(
    policy: AnalysisPolicy, new: VersionStats, stable: VersionStats | None
) -> CheckResult | None:
    if not policy.compare_to_stable or stable is None:
        return None
    name = "latency vs stable"
    if (
        min(new.requests, stable.requests) < RANK_TEST_MIN_SAMPLES
        or new.p99_ms is None
        or stable.p99_ms is None
        or not new.histogram
        or not stable.histogram
    ):
        return CheckResult(name, "skip", f"compared from {RANK_TEST_MIN_SAMPLES} requests per version on")
    p = mann_whitney_greater(new.histogram, stable.histogram)
    slower = new.p99_ms / stable.p99_ms - 1 if stable.p99_ms > 0 else 0.0
    numbers = {
        "p99_ms": new.p99_ms,
        "stable_p99_ms": stable.p99_ms,
        "margin": policy.latency_margin,
        "p_value": p,
    }
    words = f"p99 {new.p99_ms:.0f} ms vs {stable.p99_ms:.0f} ms on stable"
    if slower > policy.latency_margin and new.p99_ms - stable.p99_ms > LATENCY_FLOOR_MS and p < policy.alpha:
        return CheckResult(name, "fail", f"{words} ({slower:.0%} slower; Mann-Whitney {_p(p)})", numbers)
    return CheckResult(name, "pass", words, numbers)

"""Judging measured traffic against SLOs: examples with the exact words, and properties over any numbers."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from conveyor.pipeline.slo_check import MIN_REQUESTS, judge_slos
from conveyor.spec.operations import Latency, Slos
from conveyor.spec.types import Duration, Percent

WHAT = "1.2.0 under load"
STRICT = Slos(
    error_rate=Percent("1"),
    availability=Percent("99"),
    latency=Latency(p50=Duration(50), p95=Duration(150), p99=Duration(200)),
)


def _stats(requests: int = 4812, errors: int = 0, p50: float = 20, p95: float = 80, p99: float = 120) -> dict:
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else 0.0,
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
    }


class TestExamples:
    def test_slow_p99_names_both_numbers_and_the_sample(self) -> None:
        outcome = judge_slos(_stats(p99=312), STRICT, WHAT)
        assert outcome.verdict == "failed"
        assert outcome.reason == (
            "1.2.0 under load broke the SLOs: p99 312 ms over the 200 ms objective across 4,812 requests"
        )
        assert outcome.evidence["breaches"] == ["p99 312 ms over the 200 ms objective"]
        assert outcome.evidence["objectives"] == {
            "error_rate": "1%",
            "availability": "99%",
            "p50": "50ms",
            "p95": "150ms",
            "p99": "200ms",
        }

    def test_too_few_requests_fail_whatever_they_show(self) -> None:
        outcome = judge_slos(_stats(requests=12), STRICT, WHAT)
        assert outcome.verdict == "failed"
        assert (
            outcome.reason
            == f"1.2.0 under load: only 12 requests were measured, need at least {MIN_REQUESTS}"
        )

    def test_error_rate_and_availability_breaches_show_the_counts(self) -> None:
        outcome = judge_slos(_stats(requests=1000, errors=125), STRICT, WHAT)
        assert outcome.reason == (
            "1.2.0 under load broke the SLOs: error rate 12.5% (125 of 1,000 failed) over the 1% objective; "
            "availability 87.5% (125 of 1,000 failed) under the 99% objective across 1,000 requests"
        )

    def test_a_value_that_rounds_onto_the_objective_shows_more_decimals(self) -> None:
        # 1,001 errors in 100,000 is 1.001%: "1%" over "1%" would read as a contradiction
        outcome = judge_slos(_stats(requests=100_000, errors=1001), Slos(error_rate=Percent("1")), WHAT)
        assert "error rate 1.001% (1,001 of 100,000 failed) over the 1% objective" in outcome.reason
        late = judge_slos(_stats(p99=200.4), Slos(latency=Latency(p99=Duration(200))), WHAT)
        assert "p99 200.4 ms over the 200 ms objective" in late.reason

    def test_exactly_at_the_objective_holds(self) -> None:
        outcome = judge_slos(_stats(requests=1000, errors=10, p99=200), STRICT, WHAT)
        assert outcome.verdict == "passed"

    def test_a_pass_lists_each_objective_with_its_measurement(self) -> None:
        outcome = judge_slos(_stats(requests=2000, errors=2), STRICT, WHAT)
        assert outcome.verdict == "passed"
        assert outcome.reason == (
            "1.2.0 under load held the SLOs across 2,000 requests: error rate 0.1% within 1%, "
            "availability 99.9% within 99%, p50 20 ms within 50 ms, p95 80 ms within 150 ms, "
            "p99 120 ms within 200 ms"
        )

    def test_no_slos_is_a_failure_that_says_what_to_set(self) -> None:
        outcome = judge_slos(_stats(), Slos(), WHAT)
        assert outcome.verdict == "failed"
        assert "sets no SLOs" in outcome.reason and "conveyor.yaml" in outcome.reason

    def test_a_missing_percentile_is_a_breach_not_a_pass(self) -> None:
        outcome = judge_slos(_stats(p99=None), STRICT, WHAT)  # type: ignore[arg-type]
        assert outcome.verdict == "failed"
        assert "p99 was not measured (objective 200 ms)" in outcome.reason

    @pytest.mark.parametrize(
        ("stats", "fragment"),
        [
            (_stats(p50=51), "p50 51 ms over the 50 ms objective"),
            (_stats(p95=151), "p95 151 ms over the 150 ms objective"),
            (_stats(requests=100, errors=2), "error rate 2% (2 of 100 failed) over the 1% objective"),
        ],
        ids=["p50", "p95", "error-rate"],
    )
    def test_each_objective_is_judged(self, stats: dict[str, Any], fragment: str) -> None:
        outcome = judge_slos(stats, STRICT, WHAT)
        assert outcome.verdict == "failed" and fragment in outcome.reason


def _percent() -> st.SearchStrategy[Percent]:
    return st.decimals(0, 100, places=2).map(lambda d: Percent(Decimal(d)))


@st.composite
def slos(draw: st.DrawFn) -> Slos:
    bounds = sorted(draw(st.lists(st.integers(1, 5000), min_size=3, max_size=3)))
    p50, p95, p99 = (draw(st.none() | st.just(Duration(ms))) for ms in bounds)
    return Slos(
        error_rate=draw(st.none() | _percent()),
        availability=draw(st.none() | _percent()),
        latency=Latency(p50=p50, p95=p95, p99=p99),
    )


@st.composite
def stats(draw: st.DrawFn) -> dict[str, Any]:
    requests = draw(st.integers(0, 200_000))
    errors = draw(st.integers(0, requests))
    p50, p95, p99 = sorted(draw(st.lists(st.floats(0, 6000), min_size=3, max_size=3)))
    return _stats(requests, errors, p50, p95, p99)


def _holds(s: dict[str, Any], slo: Slos) -> bool:
    """Every objective met, computed independently with exact fractions."""
    rate = Fraction(s["errors"], s["requests"])
    checks = [
        slo.error_rate is None or rate <= Fraction(str(slo.error_rate.value)) / 100,
        slo.availability is None or 1 - rate >= Fraction(str(slo.availability.value)) / 100,
    ]
    for name in ("p50", "p95", "p99"):
        objective = getattr(slo.latency, name)
        checks.append(objective is None or s[f"{name}_ms"] <= objective.milliseconds)
    return all(checks)


class TestProperties:
    @given(stats(), slos())
    def test_passes_exactly_when_every_objective_holds_over_enough_requests(
        self, s: dict[str, Any], slo: Slos
    ) -> None:
        assume(not slo.is_empty())
        outcome = judge_slos(s, slo, WHAT)
        enough = s["requests"] >= MIN_REQUESTS
        assert outcome.passed == (enough and _holds(s, slo))
        if not enough:
            assert (
                f"only {s['requests']:,} requests were measured, need at least {MIN_REQUESTS}"
                in outcome.reason
            )

    @given(stats(), slos())
    def test_every_breached_objective_is_named_with_the_request_count(
        self, s: dict[str, Any], slo: Slos
    ) -> None:
        assume(not slo.is_empty() and s["requests"] >= MIN_REQUESTS)
        outcome = judge_slos(s, slo, WHAT)
        for name in ("p50", "p95", "p99"):
            objective = getattr(slo.latency, name)
            if objective is not None and s[f"{name}_ms"] > objective.milliseconds:
                assert f"over the {objective.milliseconds:,} ms objective" in outcome.reason
                assert name in outcome.reason
        if not outcome.passed:
            assert outcome.reason.endswith(f"across {s['requests']:,} requests")

    @given(stats(), slos(), st.integers(0, 1000), st.floats(0, 1000))
    def test_worse_numbers_never_turn_a_failure_into_a_pass(
        self, s: dict[str, Any], slo: Slos, more_errors: int, slower: float
    ) -> None:
        assume(s["requests"] > 0)
        worse = _stats(
            s["requests"],
            min(s["requests"], s["errors"] + more_errors),
            s["p50_ms"] + slower,
            s["p95_ms"] + slower,
            s["p99_ms"] + slower,
        )
        if not judge_slos(s, slo, WHAT).passed:
            assert not judge_slos(worse, slo, WHAT).passed

    @given(stats(), slos(), st.integers(1, 10_000))
    def test_raising_the_minimum_never_turns_a_failure_into_a_pass(
        self, s: dict[str, Any], slo: Slos, minimum: int
    ) -> None:
        if not judge_slos(s, slo, WHAT, min_requests=minimum).passed:
            assert not judge_slos(s, slo, WHAT, min_requests=minimum + 1).passed

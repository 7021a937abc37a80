"""The load gate's pure parts: the schedule, when requests leave, exact percentiles and the verdict."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.pipeline.gate_load import (
    LoadRun,
    Sample,
    judge_load,
    load_schedule,
    percentile,
    send_offsets,
    summarize,
)
from conveyor.spec.gates import LoadGate
from conveyor.spec.operations import Latency, Slos
from conveyor.spec.types import Duration, Percent

SLOS = Slos(error_rate=Percent("1"), latency=Latency(p99=Duration(200)))


def _gate(multiplier: float = 2, ramp_from: float | None = None, duration: str = "5m") -> LoadGate:
    data: dict[str, object] = {"type": "load", "multiplier": multiplier, "duration": duration}
    if ramp_from is not None:
        data["ramp_from"] = ramp_from
    return LoadGate.model_validate(data)


def _run(
    samples: list[Sample], planned: int | None = None, seconds: float = 10, peak: float = 100
) -> LoadRun:
    issued = len(samples)
    return LoadRun(samples, planned if planned is not None else issued, issued, seconds, peak)


class TestSchedule:
    def test_a_ramp_climbs_linearly_to_the_peak(self) -> None:
        steps = load_schedule(_gate(multiplier=2, ramp_from=0.5, duration="5s"), 100, 1.0)
        assert steps == [(0.0, 50.0), (1.0, 87.5), (2.0, 125.0), (3.0, 162.5), (4.0, 200.0)]

    def test_without_a_ramp_the_peak_holds_throughout(self) -> None:
        assert load_schedule(_gate(multiplier=3, duration="3s"), 10, 1.0) == [
            (0.0, 30.0),
            (1.0, 30.0),
            (2.0, 30.0),
        ]

    def test_scale_shrinks_the_duration_but_not_below_one_second(self) -> None:
        assert len(load_schedule(_gate(duration="5m"), 10, 0.01)) == 3
        assert load_schedule(_gate(multiplier=2, ramp_from=1, duration="5m"), 10, 0.0001) == [(0.0, 20.0)]

    def test_the_rate_is_capped(self) -> None:
        steps = load_schedule(_gate(multiplier=50, duration="2s"), 1000, 1.0, max_rps=2000)
        assert [rps for _, rps in steps] == [2000.0, 2000.0]

    @given(
        st.floats(0.1, 10),
        st.floats(1.01, 10),
        st.integers(1, 600),
        st.floats(1, 5000),
        st.floats(0.001, 1),
    )
    def test_steps_are_one_second_apart_rise_and_stay_under_the_cap(
        self, ramp_from: float, factor: float, seconds: int, rps: float, scale: float
    ) -> None:
        gate = _gate(multiplier=min(100, ramp_from * factor), ramp_from=ramp_from, duration=f"{seconds}s")
        steps = load_schedule(gate, rps, scale, max_rps=2000)
        assert [t for t, _ in steps] == [float(i) for i in range(len(steps))]
        rates = [r for _, r in steps]
        assert all(a <= b + 1e-9 for a, b in pairwise(rates))
        assert max(rates) <= 2000
        assert rates[-1] == pytest.approx(min(gate.multiplier * rps, 2000))


class TestSendOffsets:
    def test_requests_are_spread_evenly_within_each_second(self) -> None:
        assert list(send_offsets([(0.0, 4.0), (1.0, 2.0)])) == [0.0, 0.25, 0.5, 0.75, 1.0, 1.5]

    def test_fractional_rates_carry_over(self) -> None:
        assert list(send_offsets([(0.0, 0.5), (1.0, 0.5), (2.0, 0.5), (3.0, 0.5)])) == [1.0, 3.0]

    @given(st.lists(st.floats(0, 3000), min_size=1, max_size=30))
    def test_the_count_matches_the_schedule_and_offsets_never_go_back(self, rates: list[float]) -> None:
        schedule = [(float(i), r) for i, r in enumerate(rates)]
        offsets = list(send_offsets(schedule))
        assert abs(len(offsets) - sum(rates)) < 1 + 1e-6
        assert offsets == sorted(offsets) and all(0 <= o < len(rates) for o in offsets)


class TestPercentiles:
    def test_nearest_rank(self) -> None:
        values = [float(v) for v in range(1, 101)]
        assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50, 95, 99)
        assert percentile([7.0], 99) == 7.0 and percentile([], 50) is None

    @given(st.lists(st.floats(0, 1e6), min_size=1), st.floats(0.01, 100))
    def test_at_least_p_percent_of_values_are_at_or_below_it(self, values: list[float], p: float) -> None:
        ordered = sorted(values)
        value = percentile(ordered, p)
        assert value in ordered
        assert sum(v <= value for v in ordered) >= math.ceil(p / 100 * len(ordered)) - 1e-9

    def test_summary_counts_5xx_and_no_response_as_errors(self) -> None:
        samples = [Sample(200, 10), Sample(404, 11), Sample(503, 12), Sample(0, 13)]
        stats = summarize(samples, 2)
        assert stats["requests"] == 4 and stats["errors"] == 2 and stats["error_rate"] == 0.5
        assert stats["statuses"] == {"0": 1, "200": 1, "404": 1, "503": 1}
        assert stats["rps"] == 2


class TestVerdict:
    def test_a_healthy_run_passes_with_rates_as_evidence(self) -> None:
        outcome = judge_load(_run([Sample(200, 20)] * 1000), SLOS, "1.2.0 under load")
        assert outcome.verdict == "passed"
        assert outcome.evidence["target_rps"] == 100 and outcome.evidence["achieved_rps"] == 100
        assert outcome.evidence["capped"] is False and outcome.evidence["p99_ms"] == 20

    def test_a_generator_below_80_percent_of_the_target_fails_and_says_so(self) -> None:
        outcome = judge_load(_run([Sample(200, 20)] * 700, planned=1000), SLOS, "1.2.0 under load")
        assert outcome.verdict == "failed"
        assert outcome.reason == (
            "the load generator reached only 70 of 100 rps; "
            "the result would not show the SLOs hold at that load"
        )

    def test_a_slo_breach_and_a_slow_generator_are_both_reported(self) -> None:
        outcome = judge_load(_run([Sample(200, 300)] * 700, planned=1000), SLOS, "1.2.0 under load")
        assert outcome.reason.startswith(
            "1.2.0 under load broke the SLOs: p99 300 ms over the 200 ms objective"
        )
        assert "the load generator reached only 70 of 100 rps" in outcome.reason

    def test_a_capped_peak_is_in_the_evidence_and_the_reason(self) -> None:
        run = _run([Sample(200, 20)] * 20_000, seconds=10, peak=2000)
        outcome = judge_load(run, SLOS, "1.2.0 under load", requested_peak_rps=50_000)
        assert outcome.verdict == "passed"
        assert outcome.evidence["capped"] is True and outcome.evidence["requested_peak_rps"] == 50_000
        assert outcome.reason.endswith("(load capped at 2,000 rps of the 50,000 asked for)")

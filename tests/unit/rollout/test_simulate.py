"""Simulated rollouts: plan and judge over seeded traffic, JSON Lines series, the CLI's exit codes."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conveyor.cli.rollout_simulate import clock, simulate_command, span
from conveyor.errors import InvalidRequest
from conveyor.rollout.analysis import AnalysisPolicy
from conveyor.rollout.plan import FULL, RolloutPolicy, StepPolicy
from conveyor.rollout.simulate import (
    Segment,
    Series,
    SimulationResult,
    binomial,
    parse_series,
    simulate,
    worst_case_abort,
)

ANALYSIS = AnalysisPolicy(interval_s=5.0, window_s=60.0, max_error_rate=0.01, max_p99_ms=500.0)
SEED_POLICY = RolloutPolicy(
    kind="bluegreen",
    steps=(StepPolicy(100, 300.0), StepPolicy(1_000, 600.0), StepPolicy(5_000, 900.0), StepPolicy(FULL)),
    instances=4,
    analysis=AnalysisPolicy(interval_s=5.0, max_error_rate=0.001, max_p99_ms=200.0),
)
SHORT = RolloutPolicy(
    kind="canary",
    steps=(StepPolicy(1_000, 20.0), StepPolicy(5_000, 20.0), StepPolicy(FULL)),
    instances=2,
    analysis=ANALYSIS,
)
HEALTHY = Series.steady(Segment(0.0, 200.0))
FEW = settings(max_examples=15)


@st.composite
def policies(draw: st.DrawFn, min_weight: int = 100) -> RolloutPolicy:
    """Short policies: 1-3 increasing steps of 10-60 s, then 100% with or without a pause."""
    count = draw(st.integers(1, 3))
    shares = sorted(draw(st.sets(st.integers(min_weight, 9_000), min_size=count, max_size=count)))
    pauses = draw(st.lists(st.sampled_from([10.0, 20.0, 30.0, 60.0]), min_size=count, max_size=count))
    last = StepPolicy(FULL, draw(st.sampled_from([None, 10.0])))
    steps = (*(StepPolicy(w, p) for w, p in zip(shares, pauses, strict=True)), last)
    return RolloutPolicy(draw(st.sampled_from(["bluegreen", "canary"])), steps, 2, analysis=ANALYSIS)


@st.composite
def healthy_series(draw: st.DrawFn, min_rps: float = 400.0) -> Series:
    """The new version never fails; both versions share a p99; stable fails a little."""
    p99 = draw(st.floats(5.0, 200.0))
    stable_rate = draw(st.floats(0.0, 0.005))
    return Series.steady(Segment(0.0, draw(st.floats(min_rps, 2_000.0)), 0.0, stable_rate, p99, p99))


seeds = st.integers(0, 2**32 - 1)


def advances(result: SimulationResult) -> list[int]:
    return [e.step for e in result.timeline if e.kind == "advance"]


class TestSimulate:
    @FEW
    @given(policies(), healthy_series(min_rps=1.0), seeds)
    def test_the_same_seed_gives_the_same_run(self, policy: RolloutPolicy, series: Series, seed: int) -> None:
        assert simulate(policy, series, seed) == simulate(policy, series, seed)

    @FEW
    @given(policies(min_weight=500), healthy_series(), seeds)
    def test_healthy_traffic_completes_every_step_in_order(
        self, policy: RolloutPolicy, series: Series, seed: int
    ) -> None:
        result = simulate(policy, series, seed)
        assert result.outcome == "completed", result.reason
        assert advances(result) == list(range(len(policy.steps)))
        assert result.timeline[-1].kind == "complete"
        assert result.completed_s is not None
        assert result.completed_s >= sum(s.pause_s or 0.0 for s in policy.steps)
        assert result.new_failed == 0

    @FEW
    @given(policies(), st.floats(50.0, 2_000.0), seeds)
    def test_half_the_requests_failing_aborts_in_the_first_step(
        self, policy: RolloutPolicy, rps: float, seed: int
    ) -> None:
        result = simulate(policy, Series.steady(Segment(0.0, rps, new_error_rate=0.5)), seed)
        assert result.outcome == "aborted"
        assert advances(result) == [0]
        assert result.timeline[-1].kind == "abort"
        assert result.timeline[-1].new_bp == 0
        assert result.ended_s <= (policy.steps[0].pause_s or 0) + 2 * ANALYSIS.window_s

    @FEW
    @given(policies(), st.floats(0.01, 0.5), seeds)
    def test_too_little_traffic_pauses_instead_of_completing(
        self, policy: RolloutPolicy, rps: float, seed: int
    ) -> None:
        result = simulate(policy, Series.steady(Segment(0.0, rps)), seed)
        assert result.outcome == "paused"
        assert "inconclusive" in result.reason
        assert result.completed_s is None
        assert all(e.kind != "complete" for e in result.timeline)

    def test_a_slow_new_version_aborts_on_latency(self) -> None:
        slow = Series.steady(Segment(0.0, 200.0, new_p99_ms=900.0, stable_p99_ms=40.0))
        result = simulate(SHORT, slow, seed=3)
        assert result.outcome == "aborted"
        assert "p99" in result.reason

    def test_a_failure_later_in_the_rollout_aborts_at_that_step(self) -> None:
        result = simulate(SHORT, HEALTHY.failing_from(25.0, 0.3), seed=5)
        assert result.outcome == "aborted"
        assert advances(result) == [0, 1]
        assert result.ended_s > 25.0

    def test_without_auto_rollback_a_failure_pauses(self) -> None:
        policy = RolloutPolicy("canary", SHORT.steps, 2, analysis=ANALYSIS, auto_rollback=False)
        result = simulate(policy, Series.steady(Segment(0.0, 200.0, new_error_rate=0.5)), seed=1)
        assert result.outcome == "paused"
        assert "auto_rollback is off" in result.reason

    def test_a_manual_step_is_promoted_as_a_person_would(self) -> None:
        steps = (StepPolicy(1_000, 10.0, manual=True), StepPolicy(FULL))
        result = simulate(RolloutPolicy("canary", steps, 2, analysis=ANALYSIS), HEALTHY, seed=1)
        assert result.outcome == "completed"
        assert [e.kind for e in result.timeline if e.kind != "hold"] == [
            "advance",
            "promote",
            "advance",
            "complete",
        ]

    def test_max_s_stops_a_long_rollout(self) -> None:
        result = simulate(SEED_POLICY, HEALTHY, seed=1, max_s=60.0)
        assert (result.outcome, result.ended_s) == ("timeout", 60.0)

    @FEW
    @given(st.integers(0, 5_000), st.floats(0.0, 1.0), seeds)
    def test_binomial_draws_stay_within_their_range(self, n: int, p: float, seed: int) -> None:
        assert 0 <= binomial(random.Random(seed), n, p) <= n


class TestWorstCase:
    def test_every_analysed_step_of_the_seed_policy_aborts_within_its_bar(self) -> None:
        worst = worst_case_abort(SEED_POLICY, Series.steady(Segment(0.0, 100.0)), 0.05, seed=1)
        analysed, final = worst.steps[:-1], worst.steps[-1]
        assert [e.starts_s for e in worst.steps] == [0.0, 300.0, 600.0 + 300.0, 1_800.0]
        assert all(e.outcome == "aborted" for e in analysed)
        assert worst.worst_s is not None and worst.worst_s < 300
        # less traffic on the new version: more time before the evidence is significant
        at_1, at_50 = analysed[0].aborted_after_s, analysed[2].aborted_after_s
        assert at_1 is not None and at_50 is not None and at_1 > at_50
        assert final.outcome is None and "completes the rollout" in final.reason

    def test_steps_a_paused_healthy_run_never_reaches_are_reported(self) -> None:
        worst = worst_case_abort(SHORT, Series.steady(Segment(0.0, 0.1)), 0.05, seed=1)
        assert [e.starts_s for e in worst.steps] == [0.0, None, None]
        assert worst.steps[1].reason.startswith("not reached: the healthy run paused")
        assert worst.worst_s is None  # the first step pauses instead of aborting


class TestParseSeries:
    BASE = Segment(0.0, 100.0, 0.0, 0.001, 40.0, 38.0)

    def test_lines_override_from_their_t_and_keep_what_they_leave_out(self) -> None:
        text = '{"t": 30, "new": {"error_rate": 0.05}}\n\n{"t": 60, "rps": 10, "stable": {"p99_ms": 90}}\n'
        series = parse_series(text, self.BASE)
        assert series.at(0) == self.BASE
        assert series.at(45) == Segment(30.0, 100.0, 0.05, 0.001, 40.0, 38.0)
        assert series.at(600) == Segment(60.0, 10.0, 0.05, 0.001, 40.0, 90.0)

    def test_a_first_line_at_zero_replaces_the_defaults(self) -> None:
        series = parse_series('{"t": 0, "rps": 5}', self.BASE)
        assert series.segments == (Segment(0.0, 5.0, 0.0, 0.001, 40.0, 38.0),)

    @pytest.mark.parametrize(
        ("text", "line", "expected"),
        [
            ('{"t": 0}\n{"t": 5, "rps": 1', 2, "not JSON"),
            ('{"t": 0}\n{"t": 5, "new": {"error_rate": -0.1}}', 2, "new.error_rate: -0.1 is negative"),
            ('{"t": 0, "stable": {"error_rate": 1.5}}', 1, "stable.error_rate: 1.5 is more than 1"),
            ('{"t": 10}\n{"t": 20}\n{"t": 20}', 3, "t: 20 does not come after"),
            ('{"t": 0, "rpss": 3}', 1, "rpss: unknown key"),
            ('{"rps": 3}', 1, "t: missing"),
            ('{"t": "soon"}', 1, 't: expected a number, got "soon"'),
            ('{"t": 0, "new": {"p99_ms": 0}}', 1, "new.p99_ms: must be over 0 ms"),
            ("[1, 2]", 1, "expected a JSON object"),
        ],
        ids=[
            "not-json",
            "negative-rate",
            "rate-above-1",
            "t-not-increasing",
            "unknown-key",
            "missing-t",
            "t-not-a-number",
            "zero-p99",
            "not-an-object",
        ],
    )
    def test_bad_lines_are_named_with_the_field(self, text: str, line: int, expected: str) -> None:
        with pytest.raises(InvalidRequest) as caught:
            parse_series(text, self.BASE, "metrics.jsonl")
        assert caught.value.detail.startswith(f"metrics.jsonl:{line}: ")
        assert expected in caught.value.detail
        assert caught.value.hint


class TestWords:
    @pytest.mark.parametrize(
        ("seconds", "expected"), [(0, "0:00"), (65, "1:05"), (1_801, "30:01"), (8.5, "0:08.5")]
    )
    def test_clock(self, seconds: float, expected: str) -> None:
        assert clock(seconds) == expected

    @pytest.mark.parametrize(
        ("seconds", "expected"), [(300, "5m"), (90, "1m30s"), (3_600, "1h"), (0.5, "0.5s")]
    )
    def test_span(self, seconds: float, expected: str) -> None:
        assert span(seconds) == expected


SPEC = """\
project: shop
environments:
  staging:
    tier: staging
  production:
    tier: production
    scale: {expected_rps: 200}
    slos:
      error_rate: 1%
      latency: {p99: 300ms}
    strategy:
      type: canary
      steps: [{weight: 10%, pause: 1m}, {weight: 50%, pause: 1m}]
      analysis: {interval: 5s}
"""


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "conveyor.yaml"
    path.write_text(SPEC)
    return path


def run(*args: str) -> tuple[int, str]:
    """Invoke the command through a one-command Typer app; (exit code, stdout + stderr)."""
    app = typer.Typer()
    app.command()(simulate_command)
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})
    return result.exit_code, result.output


class TestCli:
    def test_a_healthy_rollout_completes_with_exit_0(self, spec_file: Path) -> None:
        code, out = run("production", "-f", str(spec_file))
        assert code == 0, out
        assert "canary 10% 1m → 50% 1m → 100%" in out
        assert "completed: full promotion after 2:0" in out
        assert "Worst case: the new version fails 5.0% of requests" in out
        assert "rollback in under 5 minutes: met" in out

    def test_a_failing_release_aborts_with_exit_1_and_says_why(self, spec_file: Path) -> None:
        code, out = run("production", "-f", str(spec_file), "--new-error-rate", "20%", "--fail-at", "30")
        assert code == 1, out
        assert "aborted after" in out
        assert "error rate" in out
        assert "is over the 1.0% threshold" in out or "on stable" in out

    def test_json_output_carries_the_timeline_and_the_worst_case(self, spec_file: Path) -> None:
        code, out = run("production", "-f", str(spec_file), "--seed", "7", "-o", "json")
        data = json.loads(out)
        assert code == 0
        assert data["seed"] == 7 and data["simulation"]["outcome"] == "completed"
        assert [e["kind"] for e in data["simulation"]["timeline"]][-1] == "complete"
        assert len(data["worst_case"]["steps"]) == 3

    def test_an_unknown_environment_exits_2_with_the_names(self, spec_file: Path) -> None:
        code, out = run("prod", "-f", str(spec_file))
        assert code == 2
        assert "environment 'prod' is not in" in out and "did you mean 'production'?" in out
        assert "staging, production" in out

    def test_a_recreate_environment_has_nothing_to_simulate(self, spec_file: Path) -> None:
        code, out = run("staging", "-f", str(spec_file))
        assert code == 2
        assert "recreate has no traffic steps to simulate" in out

    def test_a_bad_metrics_line_exits_2_naming_the_line(self, spec_file: Path, tmp_path: Path) -> None:
        metrics = tmp_path / "m.jsonl"
        metrics.write_text('{"t": 0, "rps": 50}\n{"t": 10, "new": {"error_rate": 2}}\n')
        code, out = run("production", "-f", str(spec_file), "--metrics", str(metrics))
        assert code == 2
        assert f"{metrics}:2: new.error_rate: 2 is more than 1" in out

    def test_a_metrics_file_drives_the_run(self, spec_file: Path, tmp_path: Path) -> None:
        metrics = tmp_path / "m.jsonl"
        metrics.write_text('{"t": 0, "rps": 300}\n{"t": 70, "new": {"error_rate": 0.4}}\n')
        code, out = run("production", "-f", str(spec_file), "--metrics", str(metrics))
        assert code == 1, out
        assert "step 2 (50%)" in out and "aborted after 1:" in out

    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            (["--new-error-rate", "5"], "--new-error-rate: '5' is not a percentage"),
            (["--time-scale", "2"], "--time-scale 2 is not a factor between 0 and 1"),
        ],
        ids=["rate-without-percent", "time-scale-above-1"],
    )
    def test_bad_options_exit_2(self, spec_file: Path, args: list[str], expected: str) -> None:
        code, out = run("production", "-f", str(spec_file), *args)
        assert code == 2
        assert expected in out

    def test_a_time_scale_shows_the_low_traffic_pause(self, spec_file: Path) -> None:
        code, out = run("production", "-f", str(spec_file), "--time-scale", "0.01", "--rps", "20")
        assert code == 1
        assert "CONVEYOR_TIME_SCALE=0.01" in out
        assert "paused after" in out

"""`conveyor rollout simulate ENV`: replay traffic through an environment's rollout policy, no server.

Reads conveyor.yaml locally and compiles the environment's strategy as the engine would, so a policy is
testable before it is applied (and in CI: exit 0 when the simulated rollout completes, 1 when it aborts,
pauses or runs out of time, 2 for bad input). The simulation itself is rollout/simulate.py.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn

import typer
from rich.markup import escape

from conveyor.cli.output import (
    Output,
    OutputOption,
    console,
    err_console,
    print_json,
    print_table,
    render_error,
)
from conveyor.errors import ClientError, ConveyorError
from conveyor.rollout.analysis import AnalysisPolicy, pct
from conveyor.rollout.plan import RolloutPolicy
from conveyor.rollout.simulate import (
    Event,
    Exposure,
    Segment,
    Series,
    SimulationResult,
    WorstCase,
    parse_series,
    simulate,
    worst_case_abort,
)

# the seed's bar (issue 6): a bad release goes back to the stable version in under five minutes
BAR_S = 300.0
DEFAULT_RPS = 100.0
DEFAULT_P99_MS = 50.0


@dataclass(frozen=True)
class _Setup:
    """What the simulation runs: the compiled policy, the traffic, and how to describe both."""

    environment: str
    policy: RolloutPolicy
    series: Series
    traffic: str


def simulate_command(
    env: str = typer.Argument(..., help="environment name in conveyor.yaml"),
    file: Path = typer.Option(Path("conveyor.yaml"), "--file", "-f", help="the conveyor.yaml to read"),
    metrics: Path | None = typer.Option(
        None,
        "--metrics",
        help='JSON Lines, one object a line: {"t": 0, "rps": 100, "new": {"error_rate": 0.0, "p99_ms": 40}, '
        '"stable": {...}}; each line holds from its t (seconds) on (default: synthetic traffic)',
    ),
    rps: float | None = typer.Option(
        None,
        "--rps",
        min=0,
        help="requests per second to the environment (default: scale.expected_rps or 100)",
    ),
    new_error_rate: str = typer.Option(
        "0%", "--new-error-rate", help="the new version's error rate, e.g. 5%"
    ),
    new_p99: float | None = typer.Option(
        None, "--new-p99", min=0.001, help="the new version's p99 latency in ms (default: the stable one's)"
    ),
    stable_error_rate: str = typer.Option(
        "0%", "--stable-error-rate", help="the stable version's error rate"
    ),
    stable_p99: float | None = typer.Option(
        None,
        "--stable-p99",
        min=0.001,
        help="the stable version's p99 latency in ms (default 50, or half the p99 threshold when lower)",
    ),
    fail_at: float | None = typer.Option(
        None,
        "--fail-at",
        min=0,
        help="seconds into the rollout when the new version's rates start (healthy before)",
    ),
    bad_error_rate: str = typer.Option(
        "5%", "--bad-error-rate", help="error rate of the failing release in the worst-case table"
    ),
    seed: int = typer.Option(
        1, "--seed", help="seed of the simulated traffic; the same seed gives the same run"
    ),
    time_scale: float = typer.Option(
        1.0,
        "--time-scale",
        help="scale pauses and the analysis interval as CONVEYOR_TIME_SCALE would (0 < x ≤ 1)",
    ),
    output: Output = OutputOption,
) -> None:
    """Replay traffic through ENV's rollout policy with no processes: timeline, outcome, worst time to abort.

    Exits 0 when the simulated rollout completes, 1 when it aborts or pauses (a pause needs a person), 2 for
    bad input: a policy can be tested in CI before it is applied.
    """
    traffic = _TrafficOptions(rps, new_error_rate, new_p99, stable_error_rate, stable_p99, fail_at)
    try:
        setup = _setup(env, file, time_scale, metrics, traffic)
        bad = _rate(bad_error_rate, "--bad-error-rate")
    except ConveyorError as exc:
        _bad_input(exc)
    result = simulate(setup.policy, setup.series, seed)
    worst = worst_case_abort(setup.policy, setup.series.healthy(), bad, seed)
    if output is Output.json:
        print_json(_as_json(setup, result, worst, time_scale))
    else:
        _print(setup, result, worst, time_scale)
    raise typer.Exit(0 if result.outcome == "completed" else 1)


def _bad_input(exc: ConveyorError) -> NoReturn:
    """Print the error and its fix; exit 2 (bad input, as opposed to a rollout that failed)."""
    err_console.print(render_error(exc), markup=False, soft_wrap=True)
    raise typer.Exit(2)


# --- input -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TrafficOptions:
    """The synthetic-traffic options as typed (None: the default); also the defaults under a metrics file."""

    rps: float | None
    new_error_rate: str
    new_p99: float | None
    stable_error_rate: str
    stable_p99: float | None
    fail_at: float | None

    def base(self, expected_rps: int | None, policy: RolloutPolicy) -> Segment:
        """The traffic these options describe, from 0 s on."""
        stable_ms = self.stable_p99 or _default_p99(policy.analysis)
        return Segment(
            0.0,
            self.rps if self.rps is not None else float(expected_rps or DEFAULT_RPS),
            _rate(self.new_error_rate, "--new-error-rate"),
            _rate(self.stable_error_rate, "--stable-error-rate"),
            self.new_p99 or stable_ms,
            stable_ms,
        )


def _setup(env: str, file: Path, time_scale: float, metrics: Path | None, traffic: _TrafficOptions) -> _Setup:
    """Compile the policy and build the series; ConveyorError for anything the user must fix."""
    policy, expected_rps = _policy(env, file, time_scale)
    base = traffic.base(expected_rps, policy)
    if metrics is None:
        return _Setup(env, policy, _synthetic(base, traffic.fail_at), _synthetic_words(base, traffic.fail_at))
    if traffic.fail_at is not None:
        raise ClientError(
            "--fail-at shapes the synthetic traffic, not a --metrics file",
            hint="add a line with the failing rates at that t to the metrics file instead",
        )
    series = parse_series(_read(metrics), base, str(metrics))
    return _Setup(env, policy, series, _file_words(metrics, series))


def _policy(env: str, file: Path, time_scale: float) -> tuple[RolloutPolicy, int | None]:
    """ENV's rollout policy compiled from conveyor.yaml as the engine would, and its expected_rps."""
    from conveyor.deployments.desired import instance_count
    from conveyor.rollout.policy import compile_policy
    from conveyor.spec import load_spec_file

    if not 0 < time_scale <= 1:
        raise ClientError(
            f"--time-scale {time_scale:g} is not a factor between 0 and 1",
            hint="e.g. --time-scale 0.01 runs a 5-minute pause in 3 seconds",
        )
    spec = load_spec_file(file)
    if env not in spec.environments:
        raise _unknown_environment(env, list(spec.environments), file)
    environment = spec.environments[env]
    policy = compile_policy(environment, instance_count(environment.scale.instances), time_scale)
    if policy is None:
        raise ClientError(
            f"{env} uses the recreate strategy: recreate has no traffic steps to simulate",
            hint="use strategy type bluegreen or canary with steps to move traffic gradually",
        )
    return policy, environment.scale.expected_rps


def _unknown_environment(env: str, known: list[str], file: Path) -> ClientError:
    """The error for a name conveyor.yaml does not define, with a guess and the names it does."""
    close = [k for k in known if k.startswith(env)] or difflib.get_close_matches(env, known, n=1)
    guess = f" (did you mean '{close[0]}'?)" if close else ""
    return ClientError(
        f"environment '{env}' is not in {file}{guess}",
        hint=f"environments in {file}: {', '.join(known) or 'none'}",
    )


def _rate(value: str, option: str) -> float:
    """`5%` as 0.05; ClientError naming the option otherwise."""
    from conveyor.spec.types import Percent, ValueFormatError

    try:
        return Percent.parse(value).fraction
    except ValueFormatError as exc:
        raise ClientError(f"{option}: {exc.message}", hint=exc.hint or "write a percentage like 5%") from None


def _default_p99(analysis: AnalysisPolicy | None) -> float:
    """50 ms, or half the p99 threshold when that is lower: default traffic is healthy."""
    if analysis is None or analysis.max_p99_ms is None:
        return DEFAULT_P99_MS
    return min(DEFAULT_P99_MS, analysis.max_p99_ms / 2)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClientError(f"{path} does not exist", hint="pass a JSON Lines file to --metrics") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientError(f"cannot read {path}: {exc}") from None


def _synthetic(base: Segment, fail_at: float | None) -> Series:
    """Steady traffic; with `fail_at`, the new version behaves like the stable one until then."""
    if not fail_at:
        return Series.steady(base)
    return Series((base.healthy(), replace(base, start_s=fail_at)))


# --- words -------------------------------------------------------------------------------------------


def clock(seconds: float) -> str:
    """Simulated time as m:ss (tenths only when the tick is under a second)."""
    minutes, rest = divmod(seconds, 60)
    whole = math.isclose(rest, round(rest), abs_tol=1e-6)
    return f"{int(minutes)}:{round(rest):02d}" if whole else f"{int(minutes)}:{rest:04.1f}"


def span(seconds: float) -> str:
    """A duration as written in conveyor.yaml: 5m, 1m30s, 1h, 0.5s."""
    if seconds < 60 or not float(seconds).is_integer():
        return f"{seconds:g}s"
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{v}{u}" for v, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if v]
    return "".join(parts)


def _share(bp: int) -> str:
    return f"{bp / 100:g}%"


def _versions(s: Segment) -> str:
    return (
        f"new version {pct(s.new_error_rate)} errors, p99 {s.new_p99_ms:g} ms; "
        f"stable {pct(s.stable_error_rate)} errors, p99 {s.stable_p99_ms:g} ms"
    )


def _synthetic_words(base: Segment, fail_at: float | None) -> str:
    words = f"synthetic, {base.rps:g} req/s; {_versions(base)}"
    return words + (f"; the new version is healthy until {clock(fail_at)}" if fail_at else "")


def _file_words(path: Path, series: Series) -> str:
    last = series.segments[-1].start_s
    return f"{path}: {len(series.segments)} segments to {clock(last)}; at 0:00: {_versions(series.at(0))}"


def policy_words(policy: RolloutPolicy) -> str:
    """The policy in one line: steps and pauses, then what the analysis checks."""
    steps = " → ".join(
        _share(s.weight_bp) + (f" {span(s.pause_s)}" if s.pause_s else "") + (" (manual)" if s.manual else "")
        for s in policy.steps
    )
    return f"{policy.kind} {steps}; {_analysis_words(policy.analysis, policy.auto_rollback)}"


def _analysis_words(a: AnalysisPolicy | None, auto_rollback: bool) -> str:
    if a is None:
        return "no analysis: steps move on their timers and nothing rolls back on metrics"
    fails = []
    if a.max_error_rate is not None:
        fails.append(f"error rate over {pct(a.max_error_rate)}")
    if a.compare_to_stable:
        fails.append(f"{pct(a.error_rate_margin)} more errors than stable")
    if a.max_p99_ms is not None:
        fails.append(f"p99 over {a.max_p99_ms:g} ms")
    if a.compare_to_stable:
        fails.append(f"p99 {a.latency_margin:.0%} slower than stable")
    then = "abort" if auto_rollback else "pause (auto_rollback off)"
    return (
        f"analysis every {span(a.interval_s)} over up to {span(a.window_s)}; {then} on "
        f"{', '.join(fails)} (p < {a.alpha:g}); pass from {a.min_requests} requests; "
        f"pause after {a.inconclusive_limit} inconclusive checks"
    )


def _why(event: Event) -> str:
    """The planner's reason, and the verdict's when the reason does not already say it."""
    v = event.verdict
    if v is None or v.reason in event.reason:
        return event.reason
    return f"{event.reason} — analysis {v.outcome}: {v.reason}"


def _failed_words(requests: int, failed: int) -> str:
    share = f" ({pct(failed / requests)})" if requests else ""
    return f"{requests:,} requests reached the new version, {failed:,} failed{share}"


def outcome_words(result: SimulationResult) -> str:
    """One line: how the rollout ended and what users of the new version saw."""
    seen = _failed_words(result.new_requests, result.new_failed)
    if result.outcome == "completed":
        return f"completed: full promotion after {clock(result.ended_s)}; {seen}"
    if result.outcome == "paused":
        return (
            f"paused after {clock(result.ended_s)} (a person must promote or abort): {result.reason}; {seen}"
        )
    if result.outcome == "timeout":
        return f"not finished: {result.reason}; {seen}"
    return f"aborted after {clock(result.ended_s)}: {result.reason}; {seen}"


def _abort_cell(e: Exposure) -> str:
    if e.aborted_after_s is not None:
        return clock(e.aborted_after_s)
    return f"never ({e.outcome})" if e.outcome else "—"


def bar_words(worst: WorstCase) -> str:
    """The worst time to abort against the seed's bar of rollback in under five minutes."""
    w = worst.worst
    bar = f"the seed's bar is rollback in under {BAR_S / 60:g} minutes"
    if w is None:
        return f"no step is watched by analysis: {bar}, which this policy cannot meet"
    if w.aborted_after_s is None:
        return f"a release failing from {w.words} is never rolled back ({w.outcome}): {bar}: not met"
    met = "met" if w.aborted_after_s < BAR_S else "NOT met"
    return f"worst case {clock(w.aborted_after_s)} from a failure at {w.words}: {bar}: {met}"


# --- output ------------------------------------------------------------------------------------------


def _print(setup: _Setup, result: SimulationResult, worst: WorstCase, time_scale: float) -> None:
    """The human report: policy, traffic, timeline, outcome, then the worst case per step."""
    line = console.print
    line(f"Simulating a rollout in {setup.environment} (seed {result.seed}, no processes)", markup=False)
    line(f"policy: {policy_words(setup.policy)}", markup=False)
    if time_scale != 1:
        line(
            f"time scale {time_scale:g}: pauses and the analysis interval shrink as with "
            f"CONVEYOR_TIME_SCALE={time_scale:g}; traffic and the analysis window do not",
            markup=False,
        )
    line(f"traffic: {setup.traffic}", markup=False)
    print_table(
        "Timeline",
        ["time", "action", "step", "new / stable", "why"],
        (
            [
                clock(e.t),
                e.kind,
                e.words,
                f"{_share(e.new_bp)} / {_share(10_000 - e.new_bp)}",
                escape(_why(e)),
            ]
            for e in result.timeline
        ),
    )
    line(outcome_words(result), markup=False)
    line("")
    print_table(
        f"Worst case: the new version fails {pct(worst.bad_error_rate)} of requests from the start of a step",
        ["step", "traffic", "failure starts", "aborted after", "new requests", "failed", "how it ended"],
        ([*_exposure_row(e)] for e in worst.steps),
    )
    line(bar_words(worst), markup=False)


def _exposure_row(e: Exposure) -> tuple[str, ...]:
    starts = clock(e.starts_s) if e.starts_s is not None else "—"
    counts = (f"{e.new_requests:,}", f"{e.new_failed:,}") if e.outcome else ("—", "—")
    return (e.words, _share(e.weight_bp), starts, _abort_cell(e), *counts, escape(e.reason))


def _as_json(
    setup: _Setup, result: SimulationResult, worst: WorstCase, time_scale: float
) -> dict[str, object]:
    return {
        "environment": setup.environment,
        "seed": result.seed,
        "time_scale": time_scale,
        "policy": setup.policy.to_json(),
        "series": setup.series.to_json(),
        "simulation": result.to_json(),
        "worst_case": worst.to_json(),
        "bar_s": BAR_S,
        "bar_met": worst.worst_s is not None and worst.worst_s < BAR_S,
    }

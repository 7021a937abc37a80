"""Pure: compile an environment's strategy from conveyor.yaml into a `RolloutPolicy`, durations scaled.

`CONVEYOR_TIME_SCALE` (a factor such as 0.01) shrinks the policy's waiting (pauses, the analysis
interval, keep_old) for tests and the demo, but not the analysis window: traffic does not speed up.
The compiled policy is stored with the rollout, so a restart never changes a rollout in flight.
"""

from __future__ import annotations

import os

from conveyor.errors import InvalidRequest
from conveyor.rollout.analysis import AnalysisPolicy
from conveyor.rollout.plan import RolloutPolicy, StepPolicy
from conveyor.spec.environment import Environment
from conveyor.spec.strategy import Analysis

# an analysis interval below this would only measure noise and load the engine
MIN_INTERVAL_S = 0.5


def time_scale() -> float:
    """The factor from CONVEYOR_TIME_SCALE (default 1); a clear error for nonsense."""
    raw = os.environ.get("CONVEYOR_TIME_SCALE", "").strip()
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise InvalidRequest(
            f"CONVEYOR_TIME_SCALE={raw!r} is not a factor between 0 and 1",
            hint="use e.g. CONVEYOR_TIME_SCALE=0.01 to run a 5-minute pause in 3 seconds, or unset it",
        )
    return value


def analysis_policy(analysis: Analysis, environment: Environment, scale: float) -> AnalysisPolicy:
    """Thresholds from the analysis block, falling back to the environment's SLOs when `use_slos`."""
    slos = environment.slos
    max_error = analysis.max_error_rate.fraction if analysis.max_error_rate is not None else None
    if max_error is None and analysis.use_slos and slos.error_rate is not None:
        max_error = slos.error_rate.fraction
    p99 = analysis.max_latency_p99 or (slos.latency.p99 if analysis.use_slos else None)
    return AnalysisPolicy(
        interval_s=max(MIN_INTERVAL_S, analysis.interval.seconds * scale),
        # not scaled: the window is about how many requests there are to judge, not about waiting
        window_s=analysis.window.seconds,
        min_requests=analysis.min_requests,
        alpha=round(1 - analysis.confidence.fraction, 12),
        max_error_rate=max_error,
        max_p99_ms=p99.seconds * 1000 if p99 is not None else None,
        compare_to_stable=analysis.compare_to_stable,
        error_rate_margin=analysis.error_rate_margin.fraction,
        latency_margin=analysis.latency_margin.fraction,
        failure_limit=analysis.failure_limit,
        inconclusive_limit=analysis.inconclusive_limit,
    )


def compile_policy(environment: Environment, instances: int, scale: float) -> RolloutPolicy | None:
    """The rollout policy of a weighted strategy; None for recreate."""
    strategy = environment.strategy
    if not strategy.is_weighted:
        return None
    steps = tuple(
        StepPolicy(
            weight_bp=round(step.weight.value * 100),
            pause_s=step.pause.seconds * scale if step.pause is not None else None,
            manual=step.manual,
        )
        for step in strategy.steps
    )
    keep = strategy.keep_old
    return RolloutPolicy(
        kind="canary" if strategy.type == "canary" else "bluegreen",
        steps=steps,
        instances=max(1, instances),
        analysis=analysis_policy(strategy.analysis, environment, scale) if strategy.analysis else None,
        auto_rollback=strategy.auto_rollback,
        max_surge=strategy.max_surge,
        keep_hot_s=keep.hot.seconds * scale if keep else 0.0,
        keep_standby_s=keep.standby.seconds * scale if keep else 0.0,
    )

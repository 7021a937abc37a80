"""Judge one version's measured traffic against the environment's SLOs; the load and chaos gates call it.

Pure: it takes a WindowStats-like dict (requests, errors, error_rate as a fraction, p50_ms, p95_ms,
p99_ms) and the `Slos` of conveyor.yaml, and returns a `GateOutcome` whose reason names every number
it compared. Measured values are compared as they are (no statistical test): a gate drives a known
load for a fixed time, so the sample is the whole population the verdict is about.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from conveyor.pipeline.outcome import GateOutcome
from conveyor.spec.operations import Slos
from conveyor.spec.types import Duration, Percent

MIN_REQUESTS = 100
"""Fewest requests a verdict rests on; fewer say nothing about a percentile or a 1% error rate."""


def judge_slos(
    stats: dict[str, Any], slos: Slos, what: str, *, min_requests: int = MIN_REQUESTS
) -> GateOutcome:
    """Passed when `stats` hold every objective in `slos` over at least `min_requests` requests."""
    requests = int(stats.get("requests") or 0)
    evidence = {"measured": _measured(stats), "objectives": objectives(slos), "min_requests": min_requests}
    if slos.is_empty():
        return GateOutcome(
            "failed",
            f"{what}: the environment sets no SLOs, so there is nothing to hold it to; "
            "set slos (error_rate, availability or latency) for the environment in conveyor.yaml",
            evidence,
        )
    if requests < min_requests:
        return GateOutcome(
            "failed",
            f"{what}: only {requests:,} requests were measured, need at least {min_requests:,}",
            evidence,
        )
    breaches = breached(stats, slos)
    across = f"across {requests:,} requests"
    if breaches:
        evidence["breaches"] = breaches
        return GateOutcome("failed", f"{what} broke the SLOs: {'; '.join(breaches)} {across}", evidence)
    return GateOutcome("passed", f"{what} held the SLOs {across}: {', '.join(held(stats, slos))}", evidence)


def breached(stats: dict[str, Any], slos: Slos) -> list[str]:
    """Every objective the stats break, with both numbers: "p99 312 ms over the 200 ms objective"."""
    breaches: list[str] = []
    rate = _error_rate(stats)
    counts = f"{int(stats.get('errors') or 0):,} of {int(stats.get('requests') or 0):,} failed"
    if slos.error_rate is not None and rate > _exact(slos.error_rate):
        shown = _pct(rate, slos.error_rate)
        breaches.append(f"error rate {shown} ({counts}) over the {slos.error_rate} objective")
    if slos.availability is not None and 1 - rate < _exact(slos.availability):
        shown = _pct(1 - rate, slos.availability)
        breaches.append(f"availability {shown} ({counts}) under the {slos.availability} objective")
    for name, objective in _latency_objectives(slos):
        value = stats.get(f"{name}_ms")
        if value is None:
            breaches.append(f"{name} was not measured (objective {_ms(objective.milliseconds)})")
        elif value > objective.milliseconds:
            limit = objective.milliseconds
            breaches.append(f"{name} {_ms(value, limit)} over the {_ms(limit)} objective")
    return breaches


def held(stats: dict[str, Any], slos: Slos) -> list[str]:
    """Each objective set, with the value measured against it ("p99 12 ms within 200 ms")."""
    rate = _error_rate(stats)
    parts: list[str] = []
    if slos.error_rate is not None:
        parts.append(f"error rate {_pct(rate)} within {slos.error_rate}")
    if slos.availability is not None:
        parts.append(f"availability {_pct(1 - rate)} within {slos.availability}")
    for name, objective in _latency_objectives(slos):
        parts.append(f"{name} {_ms(stats[f'{name}_ms'])} within {_ms(objective.milliseconds)}")
    return parts


def objectives(slos: Slos) -> dict[str, str]:
    """The objectives that are set, in their conveyor.yaml spelling (for evidence)."""
    found: dict[str, str] = {}
    if slos.error_rate is not None:
        found["error_rate"] = str(slos.error_rate)
    if slos.availability is not None:
        found["availability"] = str(slos.availability)
    for name, objective in _latency_objectives(slos):
        found[name] = str(objective)
    return found


def _latency_objectives(slos: Slos) -> list[tuple[str, Duration]]:
    latency = slos.latency
    pairs = (("p50", latency.p50), ("p95", latency.p95), ("p99", latency.p99))
    return [(name, objective) for name, objective in pairs if objective is not None]


def _error_rate(stats: dict[str, Any]) -> Fraction:
    requests = int(stats.get("requests") or 0)
    if stats.get("errors") is not None and requests:
        # exact from the counts: a rounded error_rate can land on either side of an objective
        return Fraction(int(stats["errors"]), requests)
    return Fraction(float(stats.get("error_rate") or 0.0))


def _exact(percent: Percent) -> Fraction:
    return Fraction(str(percent).rstrip("%")) / 100


def _measured(stats: dict[str, Any]) -> dict[str, Any]:
    keys = ("requests", "errors", "error_rate", "p50_ms", "p95_ms", "p99_ms")
    return {key: stats.get(key) for key in keys}


def _pct(fraction: Fraction, beside: Percent | None = None) -> str:
    """A fraction as a percentage ("12.5%"), with more decimals where it would read as `beside`."""
    value = float(fraction * 100)
    for decimals in (2, 3, 4, 6):
        text = f"{value:.{decimals}f}".rstrip("0").rstrip(".")
        if beside is None or float(text) != beside.value:
            break
    return f"{text}%"


def _ms(value: float, beside: float | None = None) -> str:
    """Milliseconds as "312 ms", with a decimal when rounding would make it read as `beside`."""
    text = f"{value:,.0f}"
    if beside is not None and round(value) == beside and value != beside:
        text = f"{value:,.1f}" if round(value, 1) != beside else f"{value:,.3f}"
    return f"{text} ms"

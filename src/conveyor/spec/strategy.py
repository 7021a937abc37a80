"""How a release replaces the running version: recreate, blue/green or canary traffic steps.

The rollout package plans and applies these; here they are only checked and normalized (a weighted
strategy always ends with a 100% step, added when the file leaves it implied).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from conveyor.spec.fields import Issue, SpecModel, Text, raise_issues
from conveyor.spec.types import Duration, Percent
from conveyor.spec.vocabulary import StrategyName

_FULL = Percent(100)


class Step(SpecModel):
    """One traffic step: send `weight` of requests to the new version, then wait `pause`."""

    weight: Percent
    """Share of traffic on the new version during this step."""
    pause: Duration | None = None
    """How long to hold (and analyse) before the next step; null moves on once the step is healthy."""
    manual: bool = False
    """After the pause, hold until someone runs `conveyor rollout promote ENV`."""


class KeepOld(SpecModel):
    """How long the previous version stays available after the new one takes all traffic."""

    hot: Duration = Duration(0)
    """Keep the old version running at full scale, ready to take traffic back at once."""
    standby: Duration = Duration(0)
    """After the hot period, keep the old version deployed but idle for a fast rollback."""


class Analysis(SpecModel):
    """Metric checks run during every step; a failure rolls the release back (docs/reference/analysis.md)."""

    interval: Duration = Duration.of(seconds=5)
    """How often both versions' metrics are compared."""
    window: Duration = Duration.of(minutes=1)
    """How far back each check looks (never before the step started)."""
    use_slos: bool = True
    """Judge the new version against the environment's SLOs (error rate, p99 latency)."""
    compare_to_stable: bool = True
    """Also compare the new version's error rate and latency with the stable version's."""
    failure_limit: Annotated[int, Field(ge=1)] = 1
    """Failed checks in a row that trigger a rollback (each failure is already statistically significant)."""
    inconclusive_limit: Annotated[int, Field(ge=1)] = 12
    """Inconclusive checks after the pause ended before the rollout pauses and asks a person."""
    min_requests: Annotated[int, Field(ge=1)] = 50
    """Requests the new version must serve in the window before a step can pass."""
    confidence: Percent = Percent("99.9")
    """How sure a test must be before it fails the release (99.9%: p < 0.001)."""
    max_error_rate: Percent | None = None
    """Highest error rate the new version may show (default: the SLO's error_rate)."""
    max_latency_p99: Duration | None = None
    """Highest p99 latency the new version may show (default: the SLO's p99)."""
    error_rate_margin: Percent = Percent(1)
    """How much higher than stable's the new error rate must be (and significantly so) to fail."""
    latency_margin: Percent = Percent(20)
    """How much slower than stable's the new p99 must be (and significantly so) to fail."""

    def checks_something(self) -> bool:
        """Whether any check is switched on."""
        return (
            self.use_slos
            or self.compare_to_stable
            or self.max_error_rate is not None
            or self.max_latency_p99 is not None
        )


class Sticky(SpecModel):
    """Keep a client on the canary once it landed there, by request header or cookie."""

    header: Text | None = None
    """Requests carrying this header go to the canary."""
    cookie: Text | None = None
    """Requests carrying this cookie go to the canary."""


class Strategy(SpecModel):
    """How the new version replaces the old one in this environment."""

    type: StrategyName = "recreate"
    """`recreate` stops the old version, then starts the new; the others shift traffic in steps."""
    steps: list[Step] = Field(default_factory=list)
    """Traffic steps for bluegreen and canary, increasing; a final 100% step is implied."""
    keep_old: KeepOld | None = None
    """Keep the previous version available after the switch (bluegreen and canary only)."""
    analysis: Analysis | None = None
    """Metric checks while traffic shifts; null deploys without watching metrics."""
    auto_rollback: bool = True
    """Roll back without asking when analysis fails or the new version is unhealthy."""
    sticky: Sticky | None = None
    """Sticky canary routing (canary only)."""
    max_surge: Annotated[int, Field(ge=1)] | None = None
    """Instances a canary may run beyond `scale.instances` (default: a full second set)."""

    @property
    def is_weighted(self) -> bool:
        """Whether traffic moves in steps (bluegreen or canary)."""
        return self.type != "recreate"

    @model_validator(mode="after")
    def _check_and_complete_steps(self) -> Strategy:
        issues: list[Issue] = []
        if self.type == "recreate":
            if self.steps:
                issues.append(
                    Issue(
                        ("steps",),
                        "a recreate strategy has no traffic steps",
                        "use type: bluegreen or canary to shift traffic in steps, or remove steps",
                        at_key=True,
                    )
                )
            if self.keep_old is not None:
                issues.append(
                    Issue(
                        ("keep_old",),
                        "a recreate strategy cannot keep the old version",
                        "recreate stops the old version first; use type: bluegreen to keep it",
                        at_key=True,
                    )
                )
        previous = Percent(0)
        for index, step in enumerate(self.steps):
            if step.weight == Percent(0):
                issues.append(
                    Issue(
                        ("steps", index, "weight"),
                        "a step must send more than 0% of traffic",
                        "start with a small share, like 1%",
                    )
                )
            elif step.weight <= previous:
                issues.append(
                    Issue(
                        ("steps", index, "weight"),
                        f"step weights must increase, but {step.weight} comes after {previous}",
                        "list steps from the smallest share of traffic up to 100%",
                    )
                )
            previous = max(previous, step.weight)
        if self.sticky is not None and self.type != "canary":
            issues.append(
                Issue(
                    ("sticky",),
                    f"sticky routing needs type: canary, not {self.type}",
                    "remove sticky or switch to a canary strategy",
                    at_key=True,
                )
            )
        if self.analysis is not None and not self.analysis.checks_something():
            issues.append(
                Issue(
                    ("analysis",),
                    "analysis has nothing to check",
                    "set use_slos or compare_to_stable to true, or give max_error_rate or max_latency_p99",
                    at_key=True,
                )
            )
        raise_issues(issues)
        if self.is_weighted and (not self.steps or self.steps[-1].weight != _FULL):
            return self.model_copy(update={"steps": [*self.steps, Step(weight=_FULL)]})
        return self

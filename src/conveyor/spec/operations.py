"""How an environment runs and is watched: scale, SLOs, budget, alert routing, logs and its router port."""

from __future__ import annotations

from itertools import pairwise
from typing import Annotated, Any, ClassVar

from pydantic import Field, model_validator

from conveyor.spec.fields import Issue, SpecModel, invalid, raise_issues
from conveyor.spec.types import Duration, Money, Percent, Size, show
from conveyor.spec.vocabulary import AlertRoute


class InstanceRange(SpecModel):
    """A number of instances between `min` and `max`; a bare number means exactly that many."""

    shorthand: ClassVar[tuple[dict[str, Any], str] | None] = (
        {"type": "integer", "minimum": 1},
        "a number `n`, short for `{min: n, max: n}`",
    )

    min: Annotated[int, Field(ge=1)]
    """Fewest instances."""
    max: Annotated[int, Field(ge=1)]
    """Most instances."""

    @model_validator(mode="before")
    @classmethod
    def _number_means_exactly(cls, data: Any) -> Any:
        if isinstance(data, int) and not isinstance(data, bool):
            return {"min": data, "max": data}
        if not isinstance(data, dict):
            raise invalid(
                f"expected a number of instances or a min and max, got {show(data)}",
                "write it like 2 or {min: 2, max: 3}",
            )
        return data

    @model_validator(mode="after")
    def _ordered(self) -> InstanceRange:
        if self.max < self.min:
            raise_issues(
                [Issue(("max",), f"max {self.max} is below min {self.min}", "make max at least min")]
            )
        return self


class Scale(SpecModel):
    """Expected traffic and the number of instances serving it."""

    expected_rps: Annotated[int, Field(ge=1)] | None = None
    """Requests per second the environment is sized for; load gates multiply it."""
    instances: InstanceRange = InstanceRange(min=1, max=1)
    """Instances that normally run (a number or {min, max})."""
    autoscale: InstanceRange | None = None
    """Bounds for autoscaling; null turns autoscaling off."""

    @model_validator(mode="after")
    def _autoscale_contains_instances(self) -> Scale:
        bounds, normal = self.autoscale, self.instances
        if bounds is not None and not (bounds.min <= normal.min and normal.max <= bounds.max):
            raise_issues(
                [
                    Issue(
                        ("autoscale",),
                        f"autoscale {bounds.min}-{bounds.max} does not contain "
                        f"instances {normal.min}-{normal.max}",
                        "autoscaling bounds must include the normal instance range",
                        at_key=True,
                    )
                ]
            )
        return self


class Latency(SpecModel):
    """Latency objectives by percentile; each is an upper bound."""

    p50: Duration | None = None
    """Median latency must stay below this."""
    p95: Duration | None = None
    """95th percentile latency must stay below this."""
    p99: Duration | None = None
    """99th percentile latency must stay below this."""

    @model_validator(mode="after")
    def _percentiles_increase(self) -> Latency:
        issues: list[Issue] = []
        given = [
            (name, value)
            for name, value in (("p50", self.p50), ("p95", self.p95), ("p99", self.p99))
            if value
        ]
        for (low_name, low), (high_name, high) in pairwise(given):
            if high < low:
                issues.append(
                    Issue(
                        (high_name,),
                        f"{high_name} {high} is below {low_name} {low}",
                        "a higher percentile is slower",
                    )
                )
        raise_issues(issues)
        return self


class Slos(SpecModel):
    """Service level objectives: what analysis, load and chaos gates hold the environment to."""

    availability: Percent | None = None
    """Share of requests that must succeed over the window."""
    latency: Latency = Latency()
    """Latency objectives by percentile."""
    error_rate: Percent | None = None
    """Highest share of requests that may fail."""
    window: Duration = Duration.of(days=30)
    """Period over which objectives and the error budget are measured."""

    def is_empty(self) -> bool:
        """Whether no objective is set."""
        latency = self.latency
        return (
            self.availability is None
            and self.error_rate is None
            and latency.p50 is None
            and latency.p95 is None
            and latency.p99 is None
        )


class Budget(SpecModel):
    """What the environment may cost."""

    monthly: Money
    """Spending limit per month, in dollars."""
    alert_at: Percent = Percent(80)
    """Warn when spending reaches this share of the limit."""


class Alerts(SpecModel):
    """Where alerts of each severity go: page, ticket, log, weekly-report or none."""

    critical: AlertRoute = "page"
    """Route for critical alerts."""
    high: AlertRoute = "ticket"
    """Route for high alerts."""
    medium: AlertRoute = "log"
    """Route for medium alerts."""
    low: AlertRoute = "weekly-report"
    """Route for low alerts."""


class Logs(SpecModel):
    """How long logs are kept and how much space they may take."""

    retention: Duration
    """Logs older than this are purged (or archived)."""
    size: Size | None = None
    """Storage set aside for logs."""
    archive: bool = False
    """Move expired logs to cold storage instead of deleting them."""


class Router(SpecModel):
    """The environment's HTTP entry point on the local runtime."""

    port: Annotated[int, Field(ge=1, le=65535)]
    """Port the router listens on; unique across environments."""

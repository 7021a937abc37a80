"""Promotion gates as data: the checks an artifact must pass before it enters an environment.

`Gate` is a union keyed by `type`; the pipeline package runs them. A gate's `name` defaults to its
type, so two gates of one type need distinct names.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from conveyor.spec.fields import (
    Issue,
    Label,
    ReportName,
    SpecModel,
    Text,
    environment_ref,
    raise_issues,
)
from conveyor.spec.types import Duration, Percent
from conveyor.spec.vocabulary import IntegrityCheck, Severity

_30M = Duration.of(minutes=30)
_5M = Duration.of(minutes=5)


class _GateBase(SpecModel):
    derived_defaults: ClassVar[dict[str, str]] = {"name": "the gate's type"}

    type: str
    """Which check this is."""
    name: Text
    """Name shown in promotion records; defaults to the type."""
    timeout: Duration = _30M
    """How long the gate may run before it counts as failed."""

    @model_validator(mode="before")
    @classmethod
    def _name_defaults_to_type(cls, data: Any) -> Any:
        if isinstance(data, dict) and "name" not in data and isinstance(data.get("type"), str):
            return {**data, "name": data["type"]}
        return data


class CommandGate(_GateBase):
    """Run a command (a test suite or any script) against the target; exit status 0 passes."""

    type: Literal["command"]
    run: Text
    """The command line to run (by /bin/sh, in the project directory)."""
    when: Literal["before", "after"] = "before"
    """`before` the deployment, or `after` it, against the new version (an integration suite)."""


class PreviousStageGate(_GateBase):
    """This exact artifact must have succeeded in the pipeline stage before this one."""

    type: Literal["previous-stage"]


class ScanGate(_GateBase):
    """Vulnerability and code-scanning reports attached to the artifact must stay under a threshold."""

    type: Literal["scan"]
    fail_on: Severity = "high"
    """Fail when any finding has this severity or a worse one."""
    reports: list[ReportName] = Field(default_factory=list)
    """SARIF reports (by name, e.g. sast) that must be attached and are judged; empty: all, at least one."""


class TestsGate(_GateBase):
    """JUnit test reports attached to the artifact must show no failed test and no error."""

    __test__: ClassVar[bool] = False  # a gate, not a pytest test class

    type: Literal["tests"]
    reports: list[ReportName] = Field(default_factory=list)
    """JUnit reports (by name, e.g. unit) that must be attached and are judged; empty: all, at least one."""


class SmokeGate(_GateBase):
    """HTTP checks against the deployed new version, including the version it reports."""

    type: Literal["smoke"]
    paths: list[Text] = Field(default_factory=list)
    """Paths that must answer 2xx; empty means each service's health path."""
    expect_version: bool = True
    """The service's version endpoint must report the artifact's version."""


class LoadGate(_GateBase):
    """Drive a multiple of the environment's expected RPS through the router; its SLOs must hold."""

    type: Literal["load"]
    multiplier: Annotated[float, Field(gt=0, le=100)] = 1
    """Peak load as a multiple of `scale.expected_rps`."""
    ramp_from: Annotated[float, Field(gt=0, le=100)] | None = None
    """Start at this multiple and ramp up to `multiplier`; null holds `multiplier` throughout."""
    duration: Duration = _5M
    """How long the load runs."""

    @model_validator(mode="after")
    def _ramp_goes_up(self) -> LoadGate:
        if self.ramp_from is not None and self.ramp_from >= self.multiplier:
            raise_issues(
                [
                    Issue(
                        ("ramp_from",),
                        f"ramp_from {self.ramp_from:g} must be below multiplier {self.multiplier:g}",
                        "a ramp starts low and climbs to the peak multiplier",
                    )
                ]
            )
        return self


class KillInstance(SpecModel):
    """Kill running instances of the new version."""

    kind: Literal["kill-instance"]
    count: Annotated[int, Field(ge=1)] = 1
    """How many instances to kill."""


class InjectLatency(SpecModel):
    """Delay a share of requests in the router."""

    kind: Literal["latency"]
    delay: Duration
    """Extra delay added to each affected request."""
    percent: Percent = Percent(100)
    """Share of requests affected."""


class InjectErrors(SpecModel):
    """Answer a share of requests with an error from the router."""

    kind: Literal["errors"]
    status: Annotated[int, Field(ge=500, le=599)] = 503
    """HTTP status returned."""
    percent: Percent = Percent(10)
    """Share of requests affected."""


Experiment = Annotated[KillInstance | InjectLatency | InjectErrors, Field(discriminator="kind")]


class ChaosGate(_GateBase):
    """Break things on purpose (kill instances, inject latency or errors); the SLOs must hold."""

    type: Literal["chaos"]
    experiments: Annotated[list[Experiment], Field(min_length=1)]
    """Faults to inject, one after another."""
    duration: Duration = _5M
    """How long each experiment runs."""


def _every_integrity_check() -> list[IntegrityCheck]:
    return ["counts", "checksums"]


class MigrationRehearsalGate(_GateBase):
    """Apply the release's schema changes to a disposable database clone and check its integrity."""

    type: Literal["migration-rehearsal"]
    clone_from: Annotated[str, environment_ref("clone source"), Label("environment name")] | None = None
    """Environment whose database is cloned; null clones this environment's own database."""
    integrity: list[IntegrityCheck] = Field(default_factory=_every_integrity_check)
    """Integrity checks compared before and after the migration."""
    test_rollback: bool = True
    """Also rehearse rolling the migration back."""


class SloGate(_GateBase):
    """The environment must have enough error budget left."""

    type: Literal["slo"]
    min_error_budget: Percent = Percent(10)
    """Smallest share of the error budget that must remain."""


class WindowGate(_GateBase):
    """A change window must be open and no freeze in force (see `windows`)."""

    type: Literal["window"]


GATE_MODELS: tuple[type[_GateBase], ...] = (
    CommandGate,
    PreviousStageGate,
    ScanGate,
    TestsGate,
    SmokeGate,
    LoadGate,
    ChaosGate,
    MigrationRehearsalGate,
    SloGate,
    WindowGate,
)

Gate = Annotated[
    CommandGate
    | PreviousStageGate
    | ScanGate
    | TestsGate
    | SmokeGate
    | LoadGate
    | ChaosGate
    | MigrationRehearsalGate
    | SloGate
    | WindowGate,
    Field(discriminator="type"),
]

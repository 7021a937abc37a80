"""Desired state of one environment on a runtime: what the server asks for, the agent persists.

Pure data with a JSON form; every runtime driver (local agent, Kubernetes) takes this shape.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from conveyor.errors import InvalidRequest

FULL_WEIGHT = 10_000  # basis points: 0.01% resolution


@dataclass(frozen=True)
class HealthPolicy:
    """How the runtime decides an instance is ready and alive."""

    path: str = "/healthz"
    interval: float = 10.0
    timeout: float = 2.0
    healthy_threshold: int = 1
    unhealthy_threshold: int = 3


@dataclass(frozen=True)
class FaultPolicy:
    """Faults the router injects for one version (chaos tests)."""

    latency_ms: float = 0.0
    error_rate: float = 0.0
    abort_rate: float = 0.0
    latency_rate: float = 1.0
    """Share of requests delayed by `latency_ms` (older JSON without it means every request)."""
    error_status: int = 500
    """Status of the injected errors."""


@dataclass(frozen=True)
class VersionDesired:
    """One version of the service: its artifact, how many instances, and its share of traffic."""

    version: str
    digest: str
    bundle_path: str
    instances: int
    weight_bp: int
    fault: FaultPolicy | None = None
    env: dict[str, str] | None = None
    """This version's own configuration (a rollout keeps the stable version's); None: the environment's."""
    secrets: dict[str, str] | None = None
    """This version's own secret references, like `env`; None: the environment's."""


@dataclass(frozen=True)
class EnvironmentDesired:
    """Everything the runtime needs to run one environment's service and route its traffic."""

    environment: str
    service: str
    command: tuple[str, ...]
    versions: tuple[VersionDesired, ...]
    env: dict[str, str] = field(default_factory=dict)
    health: HealthPolicy = field(default_factory=HealthPolicy)
    router_port: int | None = None
    sticky: bool = True
    port_env: str = "PORT"
    secrets: dict[str, str] = field(default_factory=dict)
    """Secret references: variable name → `environment/NAME@version`. Never values: the runtime gets
    those beside the desired state (ADR 0010), so no stored desired state holds a secret."""

    def secret_refs(self) -> set[str]:
        """Every secret reference any version runs with."""
        refs = set(self.secrets.values())
        for v in self.versions:
            refs |= set((v.secrets or {}).values())
        return refs

    def validate(self) -> None:
        """Raise InvalidRequest unless versions are unique and weights add up to 100%."""
        names = [v.version for v in self.versions]
        if len(set(names)) != len(names):
            raise InvalidRequest(f"{self.environment}: a version is listed twice: {names}")
        for v in self.versions:
            if not 0 <= v.weight_bp <= FULL_WEIGHT:
                raise InvalidRequest(f"{self.environment}: weight of {v.version} must be 0–{FULL_WEIGHT}")
            if v.instances < 0:
                raise InvalidRequest(f"{self.environment}: instances of {v.version} must be ≥ 0")
        total = sum(v.weight_bp for v in self.versions)
        if self.versions and total != FULL_WEIGHT:
            raise InvalidRequest(
                f"{self.environment}: version weights add up to {total / 100:g}%, not 100%",
                hint="give every version a share so that the shares sum to 100%",
            )
        if not self.command:
            raise InvalidRequest(f"{self.environment}: the service has no command to start it")

    def to_json(self) -> dict[str, Any]:
        """The JSON form sent to and persisted by the runtime."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EnvironmentDesired:
        """Parse the JSON form (InvalidRequest when it is malformed)."""
        try:
            versions = tuple(
                VersionDesired(
                    **{k: v for k, v in item.items() if k not in ("fault", "env", "secrets")},
                    fault=FaultPolicy(**item["fault"]) if item.get("fault") else None,
                    env=_strings(item.get("env")),
                    secrets=_strings(item.get("secrets")),
                )
                for item in data["versions"]
            )
            desired = cls(
                environment=data["environment"],
                service=data["service"],
                command=tuple(data["command"]),
                versions=versions,
                env={str(k): str(v) for k, v in (data.get("env") or {}).items()},
                health=HealthPolicy(**(data.get("health") or {})),
                router_port=data.get("router_port"),
                sticky=bool(data.get("sticky", True)),
                port_env=str(data.get("port_env") or "PORT"),
                secrets=_strings(data.get("secrets")) or {},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRequest(f"malformed desired state: {exc}") from None
        desired.validate()
        return desired


def _strings(data: Any) -> dict[str, str] | None:
    """A JSON object of text values (None stays None)."""
    return None if data is None else {str(k): str(v) for k, v in data.items()}

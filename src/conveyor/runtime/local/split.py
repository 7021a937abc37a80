"""Route tables and the weighted choice of a version for one request; pure, called by the router per request.

A `RouteTable` is an immutable snapshot of one environment's split: which versions exist, the share of
traffic each gets in basis points (1 bp = 0.01 %), the endpoints that are ready to serve each version and
any faults to inject. The agent builds a new table whenever weights or ready endpoints change and hands
it to the router, which swaps it atomically; `choose_backend` is the whole routing decision.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

TOTAL_BP = 10_000
"""Weights are basis points of traffic: they sum to exactly this over a table's backends."""

Endpoint = tuple[str, int]
"""A (host, port) an instance of a version listens on."""

_VERSION = re.compile(r"[A-Za-z0-9._+\-]+")


@dataclass(frozen=True, slots=True)
class Fault:
    """Chaos to inject in front of one version: latency on a share, a share of 5xx, a share dropped."""

    latency_ms: float = 0
    error_rate: float = 0.0
    abort_rate: float = 0.0
    latency_rate: float = 1.0
    error_status: int = 500

    def __post_init__(self) -> None:
        if not self.latency_ms >= 0:
            raise ValueError(f"fault latency_ms must be >= 0, got {self.latency_ms!r}")
        for name in ("error_rate", "abort_rate", "latency_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault {name} must be between 0 and 1, got {rate!r}")
        if not 500 <= self.error_status <= 599:
            raise ValueError(f"fault error_status must be a 5xx status, got {self.error_status!r}")


@dataclass(frozen=True, slots=True)
class Backend:
    """One version of a service in an environment: its weight in basis points and its ready endpoints."""

    version: str
    weight_bp: int
    endpoints: tuple[Endpoint, ...]
    fault: Fault | None = None

    def __post_init__(self) -> None:
        if not self.version:
            raise ValueError("a backend needs a non-empty version name")
        if not _VERSION.fullmatch(self.version):
            raise ValueError(
                f"version {self.version!r} may only use letters, digits and . _ + - (it travels in a header"
                " and a cookie)"
            )
        if isinstance(self.weight_bp, bool) or not isinstance(self.weight_bp, int):
            raise ValueError(
                f"version {self.version!r}: weight_bp must be an integer, got {self.weight_bp!r}"
            )
        if not 0 <= self.weight_bp <= TOTAL_BP:
            raise ValueError(
                f"version {self.version!r}: weight_bp must be between 0 and {TOTAL_BP} basis points,"
                f" got {self.weight_bp}"
            )
        for host, port in self.endpoints:
            if not host or not 0 < port < 65536:
                raise ValueError(f"version {self.version!r}: bad endpoint {host}:{port}")


@dataclass(frozen=True)
class RouteTable:
    """An environment's traffic split at one moment; validated on construction, never mutated."""

    environment: str
    backends: tuple[Backend, ...]
    sticky: bool = True
    cookie_name: str = "conveyor_version"
    _by_version: dict[str, Backend] = field(init=False, repr=False, compare=False)
    _eligible: tuple[Backend, ...] = field(init=False, repr=False, compare=False)
    _cumulative: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_version: dict[str, Backend] = {}
        for backend in self.backends:
            if backend.version in by_version:
                raise ValueError(
                    f"environment {self.environment!r}: version {backend.version!r} appears twice in the"
                    " route table; merge its endpoints into one backend"
                )
            by_version[backend.version] = backend
        total = sum(b.weight_bp for b in self.backends)
        if self.backends and total != TOTAL_BP:
            weights = ", ".join(f"{b.version}={b.weight_bp}" for b in self.backends)
            raise ValueError(
                f"environment {self.environment!r}: weights must sum to {TOTAL_BP} basis points (100 %),"
                f" got {total} ({weights})"
            )
        if not self.cookie_name or any(c in self.cookie_name for c in ' ;,="\t'):
            raise ValueError(f"cookie name {self.cookie_name!r} is not a valid cookie token")
        # Versions with no ready endpoint drop out here, so their share is spread over the others.
        eligible = tuple(b for b in self.backends if b.weight_bp > 0 and b.endpoints)
        cumulative: list[int] = []
        running = 0
        for backend in eligible:
            running += backend.weight_bp
            cumulative.append(running)
        object.__setattr__(self, "_by_version", by_version)
        object.__setattr__(self, "_eligible", eligible)
        object.__setattr__(self, "_cumulative", tuple(cumulative))

    @classmethod
    def from_percentages(
        cls,
        environment: str,
        weights: Mapping[str, float],
        endpoints: Mapping[str, Sequence[Endpoint]],
        *,
        faults: Mapping[str, Fault] | None = None,
        sticky: bool = True,
        cookie_name: str = "conveyor_version",
    ) -> RouteTable:
        """Build a table from percentages (0–100, two decimals honoured) keyed by version."""
        unknown = set(endpoints) - set(weights)
        if unknown:
            raise ValueError(f"endpoints given for versions without a weight: {', '.join(sorted(unknown))}")
        backends = []
        for version, percent in weights.items():
            if not 0 <= percent <= 100:
                raise ValueError(f"version {version!r}: percentage must be between 0 and 100, got {percent}")
            backends.append(
                Backend(
                    version,
                    round(percent * 100),
                    tuple(endpoints.get(version, ())),
                    (faults or {}).get(version),
                )
            )
        return cls(environment, tuple(backends), sticky=sticky, cookie_name=cookie_name)

    def backend(self, version: str) -> Backend | None:
        """The backend serving `version`, if the table has one."""
        return self._by_version.get(version)

    def endpoints(self) -> frozenset[Endpoint]:
        """Every endpoint of every version in the table."""
        return frozenset(e for b in self.backends for e in b.endpoints)


def choose_backend(
    table: RouteTable, roll_bp: int, sticky_version: str | None, override: str | None
) -> Backend | None:
    """Pick the backend for one request: override header, then sticky cookie, then the weighted roll."""
    if not 0 <= roll_bp < TOTAL_BP:
        raise ValueError(f"roll_bp must be in [0, {TOTAL_BP}), got {roll_bp}")
    by_version = table._by_version
    if override is not None:
        chosen = by_version.get(override)
        if chosen is not None and chosen.endpoints:
            return chosen
    if sticky_version is not None:
        chosen = by_version.get(sticky_version)
        if chosen is not None and chosen.weight_bp > 0 and chosen.endpoints:
            return chosen
    cumulative = table._cumulative
    if not cumulative:
        return None
    total = cumulative[-1]
    # Map the roll onto the weight held by versions that can serve, so a dropped version's share is spread.
    point = roll_bp if total == TOTAL_BP else roll_bp * total // TOTAL_BP
    return table._eligible[bisect.bisect_right(cumulative, point)]

"""The runtime driver protocol: the only way the server changes or reads what runs.

The local agent implements it over loopback HTTP (`LocalDriver`); a Kubernetes driver will
implement the same calls with Deployments, Services and Gateway API HTTPRoutes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from conveyor.runtime.desired import EnvironmentDesired


class RuntimeDriver(Protocol):
    """Apply desired state, observe actual state, read metrics and logs."""

    def apply(
        self, desired: EnvironmentDesired, secret_values: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Make `desired` the environment's desired state; returns the runtime's acknowledgement.

        `secret_values` holds the value of each secret reference `desired` names (ADR 0010).
        """
        ...

    def observe(self, environment: str | None = None) -> dict[str, Any]:
        """Instances, routes and errors of one environment (or all)."""
        ...

    def metrics(self, environment: str, window_seconds: float) -> dict[str, Any]:
        """Per-version request statistics over the last `window_seconds`."""
        ...

    def logs(self, environment: str, lines: int, follow: bool) -> Iterator[str]:
        """The last `lines` lines of each instance's output, then new lines when following."""
        ...

    def kill_instance(self, environment: str, instance_id: str) -> dict[str, Any]:
        """Kill one instance abruptly (chaos gates); the runtime replaces it as after any crash."""
        ...

    def put_flags(self, environment: str, document: dict[str, Any]) -> dict[str, Any]:
        """Make `document` (flagd JSON) the environment's feature flags, without restarting anything."""
        ...

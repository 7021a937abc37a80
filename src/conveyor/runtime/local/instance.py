"""What the supervisor is asked to run and what it reports back: pure data the agent builds and reads."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from conveyor.errors import InvalidRequest

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class HealthCheck:
    """How an instance is probed over HTTP: ready after passes in a row, unhealthy after failures."""

    path: str = "/healthz"
    interval: float = 10.0
    timeout: float = 2.0
    healthy_threshold: int = 1
    unhealthy_threshold: int = 3
    restart_after: float | None = None
    """Restart an instance unhealthy this long; None means 3 × interval × unhealthy_threshold."""
    start_timeout: float = 60.0
    """A new instance not ready this long after its start counts as unhealthy."""

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise InvalidRequest(f"health check path '{self.path}' must start with a slash")
        if self.interval <= 0 or self.timeout <= 0 or self.start_timeout <= 0:
            raise InvalidRequest(
                "health check interval, timeout and start_timeout must be positive "
                f"(got {self.interval}, {self.timeout}, {self.start_timeout})"
            )
        if self.healthy_threshold < 1 or self.unhealthy_threshold < 1:
            raise InvalidRequest("health check thresholds must be at least 1")
        if self.restart_after is not None and self.restart_after <= 0:
            raise InvalidRequest(f"health check restart_after {self.restart_after} must be positive")

    @property
    def unhealthy_restart_after(self) -> float:
        """Seconds an instance may stay unhealthy before it is restarted."""
        if self.restart_after is not None:
            return self.restart_after
        return 3 * self.interval * self.unhealthy_threshold


@dataclass(frozen=True)
class InstanceSpec:
    """One instance to run: which environment, service, version and index, and how to start it."""

    environment: str
    service: str
    version: str
    index: int
    command: tuple[str, ...]
    workdir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    """Copied at construction; the supervisor adds PORT and CONVEYOR_* on top."""
    health: HealthCheck = field(default_factory=HealthCheck)
    port_env: str = "PORT"
    """Variable through which the instance learns its port."""

    def __post_init__(self) -> None:
        for label, value in (
            ("environment", self.environment),
            ("service", self.service),
            ("version", self.version),
        ):
            if not _NAME.fullmatch(value):
                raise InvalidRequest(
                    f"{label} '{value}' cannot name an instance",
                    hint="use letters, digits, '.', '_', '+' and '-', starting with a letter or digit",
                )
        if self.index < 0:
            raise InvalidRequest(f"instance index {self.index} must not be negative")
        if not self.command or not self.command[0]:
            raise InvalidRequest(
                f"{self.key}: the command is empty", hint="give the program and its arguments"
            )
        if not _ENV_NAME.fullmatch(self.port_env):
            raise InvalidRequest(f"'{self.port_env}' is not an environment variable name")
        object.__setattr__(self, "command", tuple(self.command))
        object.__setattr__(self, "workdir", Path(self.workdir))
        object.__setattr__(self, "env", {str(k): str(v) for k, v in self.env.items()})

    def __hash__(self) -> int:
        return hash((self.key, self.command, self.workdir, frozenset(self.env.items()), self.health))

    @property
    def key(self) -> str:
        """`environment/service/version/index`: unique on one agent."""
        return f"{self.environment}/{self.service}/{self.version}/{self.index}"


class InstanceState(StrEnum):
    """Where an instance is in its life; only `ready` instances receive traffic."""

    STARTING = "starting"
    READY = "ready"
    UNHEALTHY = "unhealthy"
    BACKOFF = "backoff"
    CRASH_LOOP = "crash-loop"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True)
class InstanceStatus:
    """A snapshot of one instance for `conveyor ps`, the agent's observe call and route updates."""

    key: str
    environment: str
    service: str
    version: str
    index: int
    pid: int | None
    port: int | None
    state: InstanceState
    restarts: int
    started_at: float | None
    """Wall-clock start of the current process (seconds since the epoch)."""
    ready_since: float | None
    """Wall-clock time it last became ready, while it is ready."""
    last_exit_code: int | None
    """Exit status of the last process; negative when a signal ended it (-9: SIGKILL)."""
    health_failures: int
    """Health checks failed in a row."""
    output_tail: tuple[str, ...]
    """Last lines the current (or last) process wrote."""
    reason: str
    """Why it is in this state, in words ("exited with code 3; restarting in 1s")."""
    log_path: Path

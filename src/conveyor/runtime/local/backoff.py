"""Restart backoff and the crash-loop verdict, as pure values; the supervisor calls them on every exit.

The schedule is deterministic (no jitter: instances restart independently, so there is no herd to
spread out): `initial`, `initial × factor`, … capped at `cap`. It starts over once an instance has
stayed ready for `reset_after`. An instance that exits `crash_limit` times within `crash_window`
without becoming ready in between gets the crash-loop verdict, and the supervisor stops restarting it.
Times are seconds on a monotonic clock, passed in as `now`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from conveyor.errors import InvalidRequest


@dataclass(frozen=True)
class BackoffPolicy:
    """How long to wait before each restart, and when repeated exits are a crash loop."""

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    reset_after: float = 60.0
    crash_limit: int = 5
    crash_window: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.cap:
            raise InvalidRequest(
                f"backoff initial delay {self.initial}s must be positive and at most the cap {self.cap}s"
            )
        if self.factor < 1:
            raise InvalidRequest(f"backoff factor {self.factor} must be at least 1")
        if self.crash_limit < 1 or self.crash_window <= 0 or self.reset_after < 0:
            raise InvalidRequest(
                "crash_limit must be ≥ 1, crash_window > 0 and reset_after ≥ 0 "
                f"(got {self.crash_limit}, {self.crash_window}, {self.reset_after})"
            )

    def delay(self, attempt: int) -> float:
        """Seconds to wait before restart number `attempt` (1 is the first restart)."""
        step = max(attempt, 1) - 1
        # compare exponents first so that a huge attempt count cannot overflow a float power
        if self.factor == 1 or step < math.log(self.cap / self.initial, self.factor):
            return min(self.initial * self.factor**step, self.cap)
        return self.cap


@dataclass(frozen=True)
class AfterExit:
    """What to do after an exit: the new history, and either a delay or the crash-loop verdict."""

    history: RestartHistory
    delay: float
    crash_loop: bool
    reason: str


@dataclass(frozen=True)
class RestartHistory:
    """The exits and readiness of one instance that the backoff decisions depend on."""

    attempt: int = 0
    """Exits since the schedule last started over."""
    exits: tuple[float, ...] = ()
    """Exit times since the instance was last ready (oldest first)."""
    ready_since: float | None = None
    """When the instance became ready, if it is ready now."""

    def became_ready(self, now: float) -> RestartHistory:
        """The instance passed its readiness checks at `now`."""
        if self.ready_since is not None:
            return self
        return RestartHistory(attempt=self.attempt, exits=(), ready_since=now)

    def became_unready(self) -> RestartHistory:
        """The instance stopped being ready without exiting (it failed its health checks)."""
        return RestartHistory(attempt=self.attempt, exits=self.exits, ready_since=None)

    def stable(self, policy: BackoffPolicy, now: float) -> bool:
        """True when the instance has been ready long enough for the schedule to start over."""
        return self.ready_since is not None and now - self.ready_since >= policy.reset_after

    def after_exit(self, policy: BackoffPolicy, now: float) -> AfterExit:
        """Record an exit at `now` and decide: restart after a delay, or stop with a crash-loop verdict."""
        attempt = 1 if self.stable(policy, now) else self.attempt + 1
        recent = tuple(t for t in self.exits if now - t < policy.crash_window)
        exits = (*recent, now)
        history = RestartHistory(attempt=attempt, exits=exits, ready_since=None)
        if len(exits) >= policy.crash_limit:
            reason = (
                f"crash loop: {len(exits)} exits within {policy.crash_window:g}s without becoming ready; "
                "not restarting"
            )
            return AfterExit(history, 0.0, True, reason)
        delay = policy.delay(attempt)
        return AfterExit(history, delay, False, f"restarting in {delay:g}s (attempt {attempt})")

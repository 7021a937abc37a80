"""Pure promotion guards: pipeline order, change windows and freezes. Each returns a Verdict.

A guard never raises for a normal "no": it says which rule refused, why in words a person can
act on, and (for windows) when it will say yes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Verdict:
    """A guard's answer: allowed or not, by which rule, why, and when to ask again."""

    allowed: bool
    rule: str
    reason: str
    retry_at: datetime | None = None


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: an environment, and whether a release may skip it."""

    environment: str
    optional: bool = False


def require_previous_stage(stages: Sequence[Stage], target: str, succeeded_in: set[str]) -> Verdict:
    """Allow entering `target` only if this digest succeeded in the nearest earlier required stage.

    Optional stages in between may be skipped; they never stand in for the required one.
    """
    names = [s.environment for s in stages]
    if target not in names:
        return Verdict(True, "previous-stage", f"{target} is not a pipeline stage; order does not apply")
    required = [s.environment for s in stages[: names.index(target)] if not s.optional]
    if not required:
        return Verdict(True, "previous-stage", f"{target} is the first required stage")
    previous = required[-1]
    if previous in succeeded_in:
        return Verdict(True, "previous-stage", f"this artifact succeeded in {previous}")
    return Verdict(
        False,
        "previous-stage",
        f"this artifact has not succeeded in {previous}, the required stage before {target}; "
        f"promote it to {previous} first",
    )


@dataclass(frozen=True)
class WindowRule:
    """A recurring window: on these weekdays, from start to end (local time; end may pass midnight)."""

    days: frozenset[str]
    start: time
    end: time


@dataclass(frozen=True)
class FreezeRule:
    """Days (inclusive, local time) on which nothing goes out."""

    name: str
    start: date
    end: date
    reason: str | None = None


@dataclass(frozen=True)
class WindowPolicy:
    """An environment's change windows and freezes; no windows means always open."""

    timezone: str = "UTC"
    allow: tuple[WindowRule, ...] = ()
    freezes: tuple[FreezeRule, ...] = field(default_factory=tuple)

    @classmethod
    def from_spec(cls, windows: Any) -> WindowPolicy:
        """Build from a spec environment's `windows` block (None: always open)."""
        if windows is None:
            return cls()
        return cls(
            timezone=windows.timezone,
            allow=tuple(
                WindowRule(frozenset(w.days), time.fromisoformat(w.start), time.fromisoformat(w.end))
                for w in windows.allow
            ),
            freezes=tuple(FreezeRule(f.name, f.start, f.end, f.reason) for f in windows.freezes),
        )


@dataclass(frozen=True)
class Override:
    """An admin's audited decision to release during a freeze or outside a window."""

    by: str
    reason: str


def _in_rule(rule: WindowRule, local: datetime) -> bool:
    day, clock = DAYS[local.weekday()], local.time()
    if rule.start <= rule.end:
        return day in rule.days and rule.start <= clock < rule.end
    # a window past midnight belongs to the day it starts on
    yesterday = DAYS[(local.weekday() - 1) % 7]
    return (day in rule.days and clock >= rule.start) or (yesterday in rule.days and clock < rule.end)


def _freeze_on(policy: WindowPolicy, day: date) -> FreezeRule | None:
    return next((f for f in policy.freezes if f.start <= day <= f.end), None)


def _next_open(policy: WindowPolicy, local: datetime, zone: ZoneInfo) -> datetime | None:
    for offset in range(0, 400):
        day = local.date() + timedelta(days=offset)
        if _freeze_on(policy, day):
            continue
        starts = sorted(
            datetime.combine(day, rule.start, zone)
            for rule in policy.allow
            if DAYS[day.weekday()] in rule.days
        )
        if not policy.allow:
            start_of_day = datetime.combine(day, time(0), zone)
            return max(start_of_day, local)
        for start in starts:
            if start > local:
                return start
    return None


def change_window(policy: WindowPolicy, now: datetime, override: Override | None = None) -> Verdict:
    """Whether a change may go out at `now` (an aware datetime), and if not, when it may."""
    zone = ZoneInfo(policy.timezone)
    local = now.astimezone(zone)
    freeze = _freeze_on(policy, local.date())
    if freeze is not None:
        if override is not None:
            return Verdict(
                True, "window", f"freeze '{freeze.name}' overridden by {override.by}: {override.reason}"
            )
        why = f" ({freeze.reason})" if freeze.reason else ""
        reopen = _next_open(policy, local, zone)
        return Verdict(
            False,
            "window",
            f"freeze '{freeze.name}' from {freeze.start} to {freeze.end}{why}; only an admin can override it",
            reopen,
        )
    if not policy.allow or any(_in_rule(rule, local) for rule in policy.allow):
        return Verdict(True, "window", "the change window is open")
    if override is not None:
        return Verdict(
            True, "window", f"outside the change window, overridden by {override.by}: {override.reason}"
        )
    reopen = _next_open(policy, local, zone)
    when = f"; it opens {reopen.isoformat()}" if reopen else ""
    return Verdict(False, "window", f"outside the change window ({policy.timezone}){when}", reopen)

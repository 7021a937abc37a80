"""Who and when: per-environment access, approvals, promotion gates and change windows."""

from __future__ import annotations

import re
import zoneinfo
from datetime import date, datetime
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from conveyor.spec.fields import Issue, Label, RoleRef, SpecModel, Text, invalid, raise_issues, suggest
from conveyor.spec.gates import Gate
from conveyor.spec.types import Duration, show
from conveyor.spec.vocabulary import Weekday


def plural(count: int, word: str) -> str:
    """`1 approval`, `2 approvals`."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


class Access(SpecModel):
    """Roles allowed to act on this environment, per action; admins may always act."""

    deploy: list[RoleRef] = Field(default_factory=list)
    """Roles that may deploy or promote an artifact into the environment."""
    approve: list[RoleRef] = Field(default_factory=list)
    """Roles that may approve or reject promotions (kept equal to approvals.approver_roles)."""
    rollout: list[RoleRef] = Field(default_factory=list)
    """Roles that may pause, resume, promote or abort a rollout."""
    config: list[RoleRef] = Field(default_factory=list)
    """Roles that may change runtime configuration and feature flags."""
    secrets: list[RoleRef] = Field(default_factory=list)
    """Roles that may write, rotate and delete secrets."""

    def roles_for(self, action: str) -> tuple[str, ...]:
        """Roles granted an environment action (`deploy`, `approve`, …)."""
        return tuple(getattr(self, action))


class Approvals(SpecModel):
    """Reviews a promotion needs before it may deploy."""

    required: Annotated[int, Field(ge=0)] = 0
    """Distinct reviewers who must approve; 0 needs no approval."""
    approver_roles: list[RoleRef] = Field(default_factory=list)
    """Roles whose members may approve."""
    approvers: list[Text] = Field(default_factory=list)
    """Users (by name) who may approve, whatever their role."""
    allow_self_approval: bool = False
    """Whether the person who requested a promotion may approve it."""
    expires_after: Duration = Duration.of(hours=24)
    """An approval lapses after this long and must be given again."""

    @model_validator(mode="after")
    def _approvers_listed_once(self) -> Approvals:
        seen: set[str] = set()
        issues: list[Issue] = []
        for index, name in enumerate(self.approvers):
            if name in seen:
                issues.append(Issue(("approvers", index), f"approver '{name}' is listed twice"))
            seen.add(name)
        raise_issues(issues)
        return self

    def pool_issues(self, roles: list[str]) -> list[Issue]:
        """Why reviewers can never reach `required` when only `roles` and the named approvers may approve."""
        need, listed = self.required, len(self.approvers)
        if not need or roles:
            return []
        if not listed:
            return [
                Issue(
                    ("required",),
                    f"{plural(need, 'approval')} required but no approvers or approver_roles listed",
                    "list approver_roles (e.g. [release-manager]) or named approvers",
                )
            ]
        if need > listed:
            return [
                Issue(
                    ("required",),
                    f"{plural(need, 'approval')} required but only {plural(listed, 'approver')} listed",
                    "list more approvers, add approver_roles, or lower approvals.required",
                )
            ]
        if need == listed and not self.allow_self_approval:
            return [
                Issue(
                    ("required",),
                    f"{plural(need, 'approval')} required but only {plural(listed, 'approver')} listed, "
                    "and whoever requests a promotion cannot approve it",
                    f"list at least {listed + 1} approvers, add approver_roles, or lower approvals.required",
                )
            ]
        return []


class Promotion(SpecModel):
    """How artifacts arrive: automatically or on request, and the gates they must pass."""

    automatic: bool = False
    """Promote without a request once the previous stage (or `branch`) has a new artifact."""
    branch: Text | None = None
    """With automatic promotion: builds of this branch (e.g. main) deploy here on their own."""
    gates: list[Gate] = Field(default_factory=list)
    """Checks the artifact must pass here (smoke, load and chaos run after it deploys); see the gate types."""
    when_busy: Literal["queue", "refuse"] = "queue"
    """A promotion requested while another is active here waits its turn (queue) or is refused."""
    require_signature: bool = False
    """Only artifacts signed by a key under `signing.trusted_keys` may be promoted here."""

    @model_validator(mode="after")
    def _check(self) -> Promotion:
        issues: list[Issue] = []
        if self.branch is not None and not self.automatic:
            issues.append(
                Issue(
                    ("branch",),
                    f"branch '{self.branch}' only applies to automatic promotion",
                    "set automatic: true, or remove branch",
                    at_key=True,
                )
            )
        names: set[str] = set()
        for index, gate in enumerate(self.gates):
            if gate.name in names:
                issues.append(
                    Issue(
                        ("gates", index, "name"),
                        f"two gates are named '{gate.name}'",
                        "give each gate its own name (a gate's name defaults to its type)",
                    )
                )
            names.add(gate.name)
        raise_issues(issues)
        return self


_CLOCK_RE = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")


def _clock_time(value: str) -> str:
    match = _CLOCK_RE.fullmatch(value.strip())
    if not match:
        raise invalid(f"'{value}' is not a time of day", 'write it as HH:MM in 24-hour time, like "09:00"')
    return f"{int(match.group(1)):02d}:{match.group(2)}"


ClockTime = Annotated[str, AfterValidator(_clock_time), Label("time of day (HH:MM)")]


def _calendar_date(value: Any) -> Any:
    if isinstance(value, datetime):
        raise invalid(
            f"expected a date, got the date and time {value.isoformat()}",
            "write only the day, like 2025-12-20",
        )
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise invalid(f"'{value}' is not a date", "write it like 2025-12-20") from None
    if not isinstance(value, date):
        raise invalid(f"expected a date, got {show(value)}", "write it like 2025-12-20")
    return value


CalendarDate = Annotated[date, BeforeValidator(_calendar_date), Label("date (YYYY-MM-DD)")]


@cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        close = suggest(value, _timezones())
        hint = f"did you mean '{close}'?" if close else "use an IANA name like UTC or Europe/Berlin"
        raise invalid(f"unknown timezone '{value}'", hint) from None
    return value


Timezone = Annotated[str, AfterValidator(_timezone), Label("timezone")]


class Window(SpecModel):
    """A weekly slot in which changes may go out."""

    days: Annotated[list[Weekday], Field(min_length=1)]
    """Days of the week: mon, tue, wed, thu, fri, sat, sun."""
    start: ClockTime
    """Opening time, HH:MM."""
    end: ClockTime
    """Closing time, HH:MM; earlier than start means the window runs past midnight."""

    @model_validator(mode="after")
    def _not_empty(self) -> Window:
        if self.start == self.end:
            raise_issues(
                [Issue(("end",), f"the window opens and closes at {self.start}", "give end a later time")]
            )
        return self


class Freeze(SpecModel):
    """Days on which no change may go out, whatever the windows say."""

    name: Text
    """What the freeze is for, e.g. year-end."""
    start: CalendarDate
    """First frozen day."""
    end: CalendarDate
    """Last frozen day (inclusive)."""
    reason: Text | None = None
    """Shown to whoever is blocked by the freeze."""

    @model_validator(mode="after")
    def _ordered(self) -> Freeze:
        if self.end < self.start:
            raise_issues(
                [
                    Issue(
                        ("end",),
                        f"freeze ends on {self.end} before it starts on {self.start}",
                        "swap start and end",
                    )
                ]
            )
        return self


class Windows(SpecModel):
    """When changes may reach this environment."""

    timezone: Timezone = "UTC"
    """Timezone of the window times and freeze dates."""
    allow: list[Window] = Field(default_factory=list)
    """Weekly slots when changes may go out; empty allows any time outside freezes."""
    freezes: list[Freeze] = Field(default_factory=list)
    """Periods when nothing may go out."""

"""Pure decisions about backups: which are due, which have expired, whether a restore is allowed,
whether a restored copy matches its backup, and a drill's verdict. No I/O; `now` is an argument.

The engine's schedule and retention, the restore guards and the drill all call these, so every rule
is tested without a database or a clock (tests/unit/backups).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from conveyor.spec.vocabulary import LIVE_TIERS

STALE_AFTER = timedelta(seconds=60)
"""A running backup, restore or drill whose worker has not reported for this long was interrupted."""
RETRY_AFTER = timedelta(minutes=5)
"""After a failed scheduled backup, wait this long (or `every`, if shorter) before trying again."""
NAME_LIMIT = 63
"""PostgreSQL's identifier limit in bytes."""


@dataclass(frozen=True)
class BackupFacts:
    """What the schedule and retention need to know about one recorded backup."""

    id: int
    state: str  # running | succeeded | failed
    started_at: datetime
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None


def last_good(backups: Iterable[BackupFacts]) -> BackupFacts | None:
    """The newest backup that succeeded (by when it was taken, then by id)."""
    good = [b for b in backups if b.state == "succeeded"]
    return max(good, key=lambda b: (b.started_at, b.id)) if good else None


def is_stale(backup: BackupFacts, now: datetime) -> bool:
    """A running row nobody has reported on for STALE_AFTER: its worker died."""
    seen = backup.heartbeat_at or backup.started_at
    return backup.state == "running" and now - seen >= STALE_AFTER


def is_due(backups: Sequence[BackupFacts], every: timedelta, now: datetime) -> bool:
    """Whether a scheduled backup should start now.

    Due when none succeeded yet, or the last good one was started `every` ago; never while one
    runs; after a failure, not again before min(every, RETRY_AFTER) has passed.
    """
    if any(b.state == "running" and not is_stale(b, now) for b in backups):
        return False
    latest = max(backups, key=lambda b: (b.started_at, b.id), default=None)
    if latest is not None and latest.state == "failed" and now - latest.started_at < min(every, RETRY_AFTER):
        return False
    good = last_good(backups)
    return good is None or now - good.started_at >= every


def expired(backups: Sequence[BackupFacts], keep: timedelta, now: datetime) -> list[int]:
    """Ids of backups kept longer than `keep`, oldest first; never the last good one, never a running one."""
    good = last_good(backups)
    gone = [
        b
        for b in backups
        if b.state != "running"
        and (good is None or b.id != good.id)
        and now - (b.finished_at or b.started_at) >= keep
    ]
    return [b.id for b in sorted(gone, key=lambda b: (b.started_at, b.id))]


def scratch_name(database: str, kind: str, number: int) -> str:
    """The database a restore or drill works in beside `database`, e.g. `shop_production_restore_12`."""
    suffix = f"_{kind}_{number}"
    return database[: NAME_LIMIT - len(suffix.encode())] + suffix


# -- restore guards: each returns why a restore is refused and the fix, or None ---------------------


@dataclass(frozen=True)
class RestoreRequest:
    """Where a backup came from and where it is to go, as the guards see it."""

    source: str
    source_tier: str
    target: str
    target_tier: str
    target_policy: str
    confirmed: bool


@dataclass(frozen=True)
class Refusal:
    """A restore that may not happen: why, and what to do instead."""

    rule: str
    reason: str
    hint: str


def production_data_stays_live(r: RestoreRequest) -> Refusal | None:
    """A production or dr backup only goes into an environment whose data policy is `real`."""
    if r.source_tier in LIVE_TIERS and r.target_policy != "real":
        return Refusal(
            "production-data-stays-live",
            f"{r.source} is a {r.source_tier} environment: its backups hold real data, and {r.target}'s "
            f"data policy is {r.target_policy}",
            f"production data leaves production only through a masked clone: "
            f"`conveyor data clone {r.source} --to {r.target}`",
        )
    return None


def live_target_needs_confirmation(r: RestoreRequest) -> Refusal | None:
    """Replacing a production or dr database needs an explicit --yes."""
    if r.target_tier in LIVE_TIERS and not r.confirmed:
        return Refusal(
            "live-target-needs-confirmation",
            f"{r.target} is a {r.target_tier} environment: the restore replaces its live database",
            "add --yes to confirm (a safety backup of the current data is taken first)",
        )
    return None


RESTORE_RULES: tuple[Callable[[RestoreRequest], Refusal | None], ...] = (
    production_data_stays_live,
    live_target_needs_confirmation,
)


def check_restore(request: RestoreRequest) -> Refusal | None:
    """The first rule that refuses the restore, or None when every rule allows it."""
    for rule in RESTORE_RULES:
        refusal = rule(request)
        if refusal is not None:
            return refusal
    return None


# -- verification -----------------------------------------------------------------------------------


def compare_tables(expected: Mapping[str, int], actual: Mapping[str, int]) -> list[str]:
    """Why a restored database's row counts differ from the backup's record (empty when they match)."""
    problems = [f"table {t} is missing" for t in sorted(set(expected) - set(actual))]
    problems += [f"table {t} is not in the backup" for t in sorted(set(actual) - set(expected))]
    problems += [
        f"table {t} has {actual[t]} rows, the backup recorded {expected[t]}"
        for t in sorted(set(expected) & set(actual))
        if actual[t] != expected[t]
    ]
    return problems


def compare_constraints(expected: Mapping[str, bool], actual: Mapping[str, bool]) -> list[str]:
    """Why a restored database's constraints differ: missing, or not validated though the source's were."""
    problems = [f"constraint {c} is missing" for c in sorted(set(expected) - set(actual))]
    problems += [
        f"constraint {c} is not validated"
        for c in sorted(set(expected) & set(actual))
        if expected[c] and not actual[c]
    ]
    return problems


@dataclass(frozen=True)
class DrillVerdict:
    """A drill's outcome: passed only when the restore worked, verified, and met the RTO."""

    passed: bool
    rto_met: bool | None
    rpo_met: bool | None
    reasons: tuple[str, ...]


def judge_drill(
    problems: Sequence[str],
    restore_time: timedelta,
    rto: timedelta | None,
    backup_age: timedelta,
    rpo: timedelta | None,
) -> DrillVerdict:
    """Pass/fail of a drill: problems fail it, so does a restore slower than the RTO.

    The RPO is judged (a backup older than the RPO means more data would be lost than allowed) and
    reported, but a drill measures the restore, so it does not fail on the schedule's account.
    """
    rto_met = None if rto is None else restore_time <= rto
    rpo_met = None if rpo is None else backup_age <= rpo
    reasons = list(problems)
    if rto_met is False:
        reasons.append(f"the restore took {_human(restore_time)}, longer than the RTO of {_human(rto)}")
    return DrillVerdict(not reasons, rto_met, rpo_met, tuple(reasons))


def _human(delta: timedelta | None) -> str:
    seconds = 0.0 if delta is None else delta.total_seconds()
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"

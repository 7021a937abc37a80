"""Pure: when a secret is due for rotation, and which kinds Conveyor can generate.

Seed 000's schedule: database passwords every 30 days, API keys every 90, signing keys every 180;
certificates are renewed 30 days before they expire. `rotate_every` in conveyor.yaml overrides a
kind's period; `null` there, or a kind without a period, never comes due by age.
"""

from __future__ import annotations

import base64
import secrets as random
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

DAY = timedelta(days=1)

DEFAULT_PERIODS: dict[str, timedelta] = {
    "database-password": 30 * DAY,
    "api-key": 90 * DAY,
    "signing-key": 180 * DAY,
}
CERTIFICATE_RENEW_BEFORE = 30 * DAY
SOON = 7 * DAY
"""A secret this close to its rotation date is listed as `soon`."""

GENERATED_KINDS = ("database-password", "password", "signing-key", "api-key", "token")
"""Kinds whose values Conveyor can make itself (`secret set --generate`, `secret rotate`)."""

Status = Literal["overdue", "due", "soon", "ok", "never"]


@dataclass(frozen=True)
class Rotation:
    """Where one secret stands against its rotation policy."""

    status: Status
    next_at: datetime | None
    why: str


def period(kind: str, rotate_every: timedelta | None, declared: bool) -> timedelta | None:
    """The rotation period: the declared `rotate_every` when conveyor.yaml sets the key, else the kind's."""
    if declared:
        return rotate_every
    return DEFAULT_PERIODS.get(kind)


def rotation(
    kind: str,
    set_at: datetime,
    now: datetime,
    every: timedelta | None,
    expires_at: datetime | None = None,
) -> Rotation:
    """Whether a secret set at `set_at` is due at `now`.

    `due` means the date has come today; `overdue` that it passed more than a day ago.
    """
    candidates: list[tuple[datetime, str]] = []
    if every is not None:
        candidates.append((set_at + every, f"rotate every {_days(every)}"))
    if expires_at is not None:
        candidates.append(
            (
                expires_at - CERTIFICATE_RENEW_BEFORE,
                f"renew {_days(CERTIFICATE_RENEW_BEFORE)} before it expires",
            )
        )
    if not candidates:
        return Rotation("never", None, f"no rotation policy for kind {kind}")
    next_at, why = min(candidates)
    if now >= next_at + DAY:
        return Rotation("overdue", next_at, why)
    if now >= next_at:
        return Rotation("due", next_at, why)
    if now >= next_at - SOON:
        return Rotation("soon", next_at, why)
    return Rotation("ok", next_at, why)


def _days(delta: timedelta) -> str:
    days = delta / DAY
    return f"{days:g} days" if days != 1 else "1 day"


def generate(kind: str) -> str:
    """A new random value for a kind Conveyor can generate (ValueError for the others)."""
    if kind in ("database-password", "password"):
        # letters and digits only: safe in connection URLs and shell-free config files
        alphabet = string.ascii_letters + string.digits
        return "".join(random.choice(alphabet) for _ in range(32))
    if kind == "signing-key":
        return base64.urlsafe_b64encode(random.token_bytes(64)).decode().rstrip("=")
    if kind in ("api-key", "token"):
        return random.token_urlsafe(32)
    raise ValueError(f"Conveyor cannot generate a {kind}; give its value on stdin or with --file")

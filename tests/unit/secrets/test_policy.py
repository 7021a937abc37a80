"""Rotation policy: due dates follow the kind's period or the declared one; certificates renew early."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.secrets import policy

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def test_seed_periods_for_each_kind() -> None:
    assert policy.period("database-password", None, declared=False) == 30 * DAY
    assert policy.period("api-key", None, declared=False) == 90 * DAY
    assert policy.period("signing-key", None, declared=False) == 180 * DAY
    assert policy.period("generic", None, declared=False) is None
    # conveyor.yaml's rotate_every wins, and an explicit null turns rotation off
    assert policy.period("api-key", 7 * DAY, declared=True) == 7 * DAY
    assert policy.period("api-key", None, declared=True) is None


@pytest.mark.parametrize(
    ("age", "status"),
    [(0, "ok"), (22, "ok"), (23.5, "soon"), (30, "due"), (30.9, "due"), (31, "overdue"), (400, "overdue")],
)
def test_status_by_age_for_a_30_day_password(age: float, status: str) -> None:
    found = policy.rotation("database-password", T0, T0 + age * DAY, 30 * DAY)
    assert found.status == status and found.next_at == T0 + 30 * DAY


def test_a_certificate_is_renewed_30_days_before_it_expires() -> None:
    expires = T0 + 365 * DAY
    assert policy.rotation("certificate", T0, T0 + 300 * DAY, None, expires).status == "ok"
    due = policy.rotation("certificate", T0, T0 + 336 * DAY, None, expires)
    assert due.status == "overdue" and due.next_at == expires - 30 * DAY and "before it expires" in due.why


@given(st.floats(0, 1000), st.floats(0, 1000), st.integers(1, 400))
def test_status_only_gets_more_urgent_with_time(a: float, b: float, days: int) -> None:
    rank = {"ok": 0, "soon": 1, "due": 2, "overdue": 3}
    early, late = sorted((a, b))
    first = policy.rotation("api-key", T0, T0 + early * DAY, days * DAY)
    second = policy.rotation("api-key", T0, T0 + late * DAY, days * DAY)
    assert rank[first.status] <= rank[second.status]


def test_without_any_policy_nothing_is_ever_due() -> None:
    assert policy.rotation("generic", T0, T0 + 10_000 * DAY, None).status == "never"


@pytest.mark.parametrize("kind", policy.GENERATED_KINDS)
def test_generated_values_are_long_random_and_distinct(kind: str) -> None:
    values = {policy.generate(kind) for _ in range(20)}
    assert len(values) == 20 and min(len(v) for v in values) >= 32


@pytest.mark.parametrize("kind", ["certificate", "generic"])
def test_kinds_conveyor_cannot_generate_say_so(kind: str) -> None:
    with pytest.raises(ValueError, match=f"cannot generate a {kind}"):
        policy.generate(kind)

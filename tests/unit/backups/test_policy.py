"""Pure rules of backups: schedule, retention, scratch names, restore guards, verification, drill verdicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.backups.policy import (
    RETRY_AFTER,
    STALE_AFTER,
    BackupFacts,
    RestoreRequest,
    check_restore,
    compare_constraints,
    compare_tables,
    expired,
    is_due,
    judge_drill,
    last_good,
    scratch_name,
)

T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def done(
    id: int, at: timedelta, state: str = "succeeded", took: timedelta = timedelta(minutes=1)
) -> BackupFacts:
    return BackupFacts(id, state, T0 + at, T0 + at + took, T0 + at + took)


def running(id: int, at: timedelta, seen: timedelta | None = None) -> BackupFacts:
    return BackupFacts(id, "running", T0 + at, None, T0 + (seen if seen is not None else at))


@st.composite
def histories(draw: st.DrawFn) -> list[BackupFacts]:
    """Backups taken at random moments over ten days, each succeeded, failed or (the newest) running."""
    offsets = sorted(draw(st.lists(st.integers(0, 10 * 24 * 60), max_size=12, unique=True)))
    found: list[BackupFacts] = []
    for index, minutes in enumerate(offsets, start=1):
        state = draw(st.sampled_from(["succeeded", "succeeded", "failed"]))
        found.append(done(index, timedelta(minutes=minutes), state))
    newest_runs: bool = draw(st.booleans())
    if found and newest_runs:
        last = found[-1]
        found[-1] = BackupFacts(last.id, "running", last.started_at, None, last.started_at)
    return found


durations = st.integers(1, 14 * 24 * 60).map(lambda m: timedelta(minutes=m))
moments = st.integers(0, 12 * 24 * 60).map(lambda m: T0 + timedelta(minutes=m))


class TestRetention:
    @given(histories(), durations, moments)
    def test_the_last_good_backup_is_never_pruned(
        self, backups: list[BackupFacts], keep: timedelta, now: datetime
    ) -> None:
        good = last_good(backups)
        assert good is None or good.id not in expired(backups, keep, now)

    @given(histories(), durations, moments)
    def test_nothing_younger_than_keep_and_nothing_running_is_pruned(
        self, backups: list[BackupFacts], keep: timedelta, now: datetime
    ) -> None:
        by_id = {b.id: b for b in backups}
        for backup_id in expired(backups, keep, now):
            backup = by_id[backup_id]
            assert backup.state != "running"
            assert now - (backup.finished_at or backup.started_at) >= keep

    @given(histories(), durations, moments)
    def test_everything_else_older_than_keep_is_pruned_and_pruning_twice_prunes_nothing_more(
        self, backups: list[BackupFacts], keep: timedelta, now: datetime
    ) -> None:
        gone = set(expired(backups, keep, now))
        good = last_good(backups)
        for b in backups:
            old = now - (b.finished_at or b.started_at) >= keep
            if old and b.state != "running" and (good is None or b.id != good.id):
                assert b.id in gone
        left = [b for b in backups if b.id not in gone]
        assert expired(left, keep, now) == []

    def test_a_failed_backup_never_counts_as_the_last_good_one(self) -> None:
        backups = [done(1, timedelta(0)), done(2, 2 * DAY, "failed")]
        assert expired(backups, DAY, T0 + 5 * DAY) == [2]


class TestSchedule:
    def test_with_no_backup_one_is_due_at_once(self) -> None:
        assert is_due([], HOUR, T0)

    @pytest.mark.parametrize(
        ("after", "due"),
        [(timedelta(minutes=59), False), (HOUR, True), (3 * HOUR, True)],
        ids=["before-every", "exactly-every", "long-after"],
    )
    def test_due_every_interval_after_the_last_good_one_started(self, after: timedelta, due: bool) -> None:
        assert is_due([done(1, timedelta(0))], HOUR, T0 + after) is due

    def test_never_while_one_runs_unless_its_worker_died(self) -> None:
        backups = [done(1, timedelta(0)), running(2, 2 * HOUR)]
        assert not is_due(backups, HOUR, T0 + 2 * HOUR + timedelta(seconds=5))
        assert is_due(backups, HOUR, T0 + 2 * HOUR + STALE_AFTER)

    def test_a_failure_is_retried_after_a_pause_not_at_every_tick(self) -> None:
        backups = [done(1, timedelta(0)), done(2, DAY, "failed", took=timedelta(seconds=1))]
        assert not is_due(backups, HOUR, T0 + DAY + timedelta(minutes=1))
        assert is_due(backups, HOUR, T0 + DAY + RETRY_AFTER)

    @given(histories(), durations, moments)
    def test_not_due_when_the_last_good_backup_is_younger_than_every(
        self, backups: list[BackupFacts], every: timedelta, now: datetime
    ) -> None:
        good = last_good(backups)
        if good is not None and now - good.started_at < every:
            assert not is_due(backups, every, now)

    @given(histories(), durations, moments)
    def test_due_once_every_has_passed_and_nothing_runs_or_just_failed(
        self, backups: list[BackupFacts], every: timedelta, now: datetime
    ) -> None:
        good = last_good(backups)
        if any(b.state == "running" for b in backups) or any(b.state == "failed" for b in backups):
            return
        assert is_due(backups, every, now) == (good is None or now - good.started_at >= every)


class TestScratchNames:
    @given(
        st.from_regex(r"[a-z_][a-z0-9_]{0,50}", fullmatch=True),
        st.sampled_from(["restore", "drill", "old"]),
        st.integers(1, 10**12),
    )
    def test_fit_postgresql_and_never_equal_the_database(self, database: str, kind: str, number: int) -> None:
        name = scratch_name(database, kind, number)
        assert len(name.encode()) <= 63 and name != database and name.endswith(f"_{kind}_{number}")

    @given(st.integers(1, 10**9), st.integers(1, 10**9))
    def test_differ_for_different_runs(self, a: int, b: int) -> None:
        base = "x" * 50
        assert (scratch_name(base, "drill", a) == scratch_name(base, "drill", b)) == (a == b)


def request(source_tier: str, target_tier: str, policy: str, confirmed: bool = False) -> RestoreRequest:
    return RestoreRequest("src", source_tier, "dst", target_tier, policy, confirmed)


class TestRestoreGuards:
    @pytest.mark.parametrize(
        ("req", "rule"),
        [
            (request("production", "staging", "masked", True), "production-data-stays-live"),
            (request("dr", "development", "synthetic", True), "production-data-stays-live"),
            (request("production", "production", "real"), "live-target-needs-confirmation"),
            (request("staging", "dr", "real"), "live-target-needs-confirmation"),
        ],
        ids=["prod-into-masked-staging", "dr-into-dev", "prod-unconfirmed", "into-dr-unconfirmed"],
    )
    def test_refused(self, req: RestoreRequest, rule: str) -> None:
        refusal = check_restore(req)
        assert refusal is not None and refusal.rule == rule and refusal.hint

    @pytest.mark.parametrize(
        "req",
        [
            request("production", "production", "real", True),
            request("production", "dr", "real", True),
            request("staging", "staging", "masked"),
            request("development", "staging", "masked"),
        ],
        ids=["prod-confirmed", "prod-into-dr-confirmed", "staging-itself", "dev-into-staging"],
    )
    def test_allowed(self, req: RestoreRequest) -> None:
        assert check_restore(req) is None

    @given(
        st.sampled_from(["development", "testing", "staging", "production", "dr", "preview"]),
        st.sampled_from(["development", "testing", "staging", "production", "dr", "preview"]),
        st.sampled_from(["synthetic", "masked", "real"]),
        st.booleans(),
    )
    def test_live_data_never_lands_outside_a_real_data_environment(
        self, source: str, target: str, policy: str, confirmed: bool
    ) -> None:
        if check_restore(request(source, target, policy, confirmed)) is None:
            assert source not in ("production", "dr") or policy == "real"
            assert target not in ("production", "dr") or confirmed


tables = st.dictionaries(
    st.from_regex(r"public\.[a-z]{1,8}", fullmatch=True), st.integers(0, 10**9), max_size=8
)


class TestVerification:
    @given(tables)
    def test_a_faithful_copy_has_no_problem(self, counts: dict[str, int]) -> None:
        assert compare_tables(counts, dict(counts)) == []

    @given(tables.filter(bool), st.data())
    def test_any_changed_count_names_its_table(self, counts: dict[str, int], data: st.DataObject) -> None:
        table = data.draw(st.sampled_from(sorted(counts)))
        changed = {**counts, table: counts[table] + data.draw(st.integers(1, 10))}
        problems = compare_tables(counts, changed)
        assert len(problems) == 1 and table in problems[0]

    def test_missing_and_extra_tables_are_named(self) -> None:
        assert compare_tables({"public.a": 1}, {"public.b": 1}) == [
            "table public.a is missing",
            "table public.b is not in the backup",
        ]

    def test_constraints_must_all_be_back_and_validated(self) -> None:
        expected = {"public.a.a_pkey": True, "public.b.b_a_fkey": True, "public.c.c_check": False}
        actual = {"public.a.a_pkey": True, "public.b.b_a_fkey": False, "public.c.c_check": False}
        assert compare_constraints(expected, actual) == ["constraint public.b.b_a_fkey is not validated"]
        assert compare_constraints(expected, {}) == [f"constraint {c} is missing" for c in sorted(expected)]


class TestDrillVerdict:
    @given(st.floats(0, 10_000), st.floats(1, 10_000), st.floats(0, 10**6), st.floats(1, 10**6))
    def test_passes_exactly_when_clean_and_within_the_rto(
        self, took: float, rto: float, age: float, rpo: float
    ) -> None:
        verdict = judge_drill([], timedelta(seconds=took), timedelta(seconds=rto), timedelta(seconds=age),
                              timedelta(seconds=rpo))  # fmt: skip
        within = timedelta(seconds=took) <= timedelta(seconds=rto)  # durations are kept to the microsecond
        assert verdict.passed == within == verdict.rto_met
        assert verdict.rpo_met == (timedelta(seconds=age) <= timedelta(seconds=rpo))

    def test_a_problem_fails_it_whatever_the_time(self) -> None:
        verdict = judge_drill(["table public.a is missing"], timedelta(seconds=1), HOUR, HOUR, None)
        assert not verdict.passed and verdict.reasons == ("table public.a is missing",)

    def test_a_missed_rto_says_by_how_much(self) -> None:
        verdict = judge_drill([], timedelta(minutes=90), HOUR, timedelta(0), None)
        assert not verdict.passed and "longer than the RTO of 60.0m" in verdict.reasons[0]

    def test_no_objectives_judge_nothing_but_the_restore(self) -> None:
        verdict = judge_drill([], timedelta(hours=5), None, timedelta(days=3), None)
        assert verdict.passed and verdict.rto_met is None and verdict.rpo_met is None

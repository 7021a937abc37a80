"""Pipeline order, change windows and freezes as pure guards."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.pipeline.guards import (
    FreezeRule,
    Override,
    Stage,
    WindowPolicy,
    WindowRule,
    change_window,
    require_previous_stage,
)
from conveyor.spec import load_spec_text, render_init

PIPELINE = [Stage("development", optional=True), Stage("staging"), Stage("production"), Stage("dr")]
WEEKDAYS = WindowPolicy(
    timezone="Europe/Berlin",
    allow=(WindowRule(frozenset({"mon", "tue", "wed", "thu"}), time(9), time(16)),),
)
# 2026-11-25 is a Wednesday; Berlin is UTC+1 in November
WED_10_BERLIN = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
WED_17_BERLIN = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)
FRI_10_BERLIN = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


class TestPreviousStage:
    @pytest.mark.parametrize(
        ("target", "succeeded", "allowed"),
        [
            ("staging", set(), True),
            ("production", set(), False),
            ("production", {"staging"}, True),
            ("production", {"development"}, False),
            ("dr", {"staging"}, False),
            ("dr", {"production"}, True),
            ("preview-42", set(), True),
        ],
        ids=[
            "optional-dev-skipped",
            "skip-staging",
            "after-staging",
            "dev-is-not-staging",
            "dr-needs-prod",
            "dr-after-prod",
            "not-a-stage",
        ],
    )
    def test_order(self, target: str, succeeded: set[str], allowed: bool) -> None:
        assert require_previous_stage(PIPELINE, target, succeeded).allowed is allowed

    def test_the_refusal_says_what_to_do(self) -> None:
        verdict = require_previous_stage(PIPELINE, "production", set())
        assert verdict.reason == (
            "this artifact has not succeeded in staging, the required stage before production; "
            "promote it to staging first"
        )

    @given(
        st.lists(st.booleans(), min_size=1, max_size=8),
        st.data(),
    )
    def test_never_enters_without_the_previous_required_stage(
        self, optional: list[bool], data: st.DataObject
    ) -> None:
        stages = [Stage(f"env{i}", opt) for i, opt in enumerate(optional)]
        target = data.draw(st.sampled_from(stages)).environment
        succeeded = set(data.draw(st.lists(st.sampled_from([s.environment for s in stages]))))
        verdict = require_previous_stage(stages, target, succeeded)
        index = [s.environment for s in stages].index(target)
        required_before = [s.environment for s in stages[:index] if not s.optional]
        if required_before and required_before[-1] not in succeeded:
            assert not verdict.allowed
        else:
            assert verdict.allowed


class TestWindows:
    def test_inside_the_window(self) -> None:
        assert change_window(WEEKDAYS, WED_10_BERLIN).allowed

    def test_after_hours_says_when_it_opens(self) -> None:
        verdict = change_window(WEEKDAYS, WED_17_BERLIN)
        assert not verdict.allowed and verdict.retry_at is not None
        assert verdict.retry_at.isoformat() == "2026-11-26T09:00:00+01:00"

    def test_friday_waits_for_monday(self) -> None:
        verdict = change_window(WEEKDAYS, FRI_10_BERLIN)
        assert verdict.retry_at is not None and verdict.retry_at.isoformat() == "2026-11-30T09:00:00+01:00"

    def test_an_override_opens_it_and_is_named(self) -> None:
        verdict = change_window(WEEKDAYS, FRI_10_BERLIN, Override("root", "hotfix for INC-12"))
        assert verdict.allowed and "overridden by root: hotfix for INC-12" in verdict.reason

    def test_a_window_past_midnight(self) -> None:
        night = WindowPolicy(allow=(WindowRule(frozenset({"sat"}), time(22), time(2)),))
        assert change_window(night, datetime(2026, 11, 29, 1, 0, tzinfo=UTC)).allowed  # Sunday 01:00
        assert not change_window(night, datetime(2026, 11, 29, 3, 0, tzinfo=UTC)).allowed

    def test_no_windows_means_always_open(self) -> None:
        assert change_window(WindowPolicy(), FRI_10_BERLIN).allowed

    def test_the_policy_comes_from_conveyor_yaml(self) -> None:
        env = load_spec_text(render_init("shop")).environments["production"]
        policy = WindowPolicy.from_spec(env.windows)
        assert policy.allow[0].days == {"mon", "tue", "wed", "thu"} and policy.allow[0].start == time(9)


class TestFreezes:
    FROZEN = WindowPolicy(freezes=(FreezeRule("year-end", date(2026, 12, 20), date(2027, 1, 4), "holidays"),))

    def test_a_freeze_blocks_and_says_until_when(self) -> None:
        verdict = change_window(self.FROZEN, datetime(2026, 12, 24, 12, tzinfo=UTC))
        assert not verdict.allowed
        assert verdict.reason == (
            "freeze 'year-end' from 2026-12-20 to 2027-01-04 (holidays); only an admin can override it"
        )
        assert verdict.retry_at is not None and verdict.retry_at.date() == date(2027, 1, 5)

    @given(st.integers(0, 15 * 24 * 60))
    def test_freezes_always_block_without_override(self, minutes: int) -> None:
        moment = datetime(2026, 12, 20, tzinfo=UTC) + timedelta(minutes=minutes)
        verdict = change_window(self.FROZEN, moment)
        assert verdict.allowed is False
        assert change_window(self.FROZEN, moment, Override("root", "incident")).allowed

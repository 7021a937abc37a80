"""The promotion state machine as a pure function: one test class per state, properties over all of them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.pipeline.approvals import ApprovalPolicy, Review
from conveyor.pipeline.decide import (
    ACTIVE_STATES,
    READY_DEADLINE,
    STATES,
    TERMINAL_STATES,
    GatePlan,
    GateStatus,
    Observations,
    Readiness,
    decide,
)
from conveyor.pipeline.explain import explain
from conveyor.pipeline.guards import (
    FreezeRule,
    Override,
    Stage,
    WindowPolicy,
    WindowRule,
    require_previous_stage,
)

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # a Wednesday
T0_PLUS_1H = T0 + timedelta(hours=1)
PIPELINE = (Stage("development", optional=True), Stage("staging"), Stage("production"), Stage("dr"))
RELEASE = "sha256:aa+config:11"
TWO_RMS = ApprovalPolicy(required=2, approver_roles=frozenset({"release-manager"}))
GATES = (
    GatePlan("tests", "command", "before"),
    GatePlan("scan", "scan", "before"),
    GatePlan("smoke", "smoke", "after"),
)


def obs(state: str = "requested", **changes: object) -> Observations:
    base = Observations(
        state=state,
        environment="production",
        service="web",
        version="1.2.0",
        requested_by="rita",
        release=RELEASE,
        now=T0,
        stages=PIPELINE,
        succeeded_in=frozenset({"staging"}),
        gates=GATES,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def passed(*names: str) -> dict[str, GateStatus]:
    return {n: GateStatus("passed", "ok", 1) for n in names}


def approve(user: str, at: datetime = T0, release: str = RELEASE, role: str = "release-manager") -> Review:
    return Review(user, role, "approve", release, at)


class TestRequested:
    def test_skipping_a_required_stage_is_rejected_with_the_stage_named(self) -> None:
        d = decide(obs(succeeded_in=frozenset({"development"})))
        assert d.state == "rejected"
        assert "staging" in d.reason and not d.run_gates

    def test_gates_before_the_deployment_start_together(self) -> None:
        d = decide(obs())
        assert d.state == "gating"
        assert d.run_gates == ("tests", "scan")  # smoke runs after the deployment

    def test_no_gates_and_no_approvals_goes_straight_to_deploying(self) -> None:
        d = decide(obs(gates=()))
        assert (d.state, d.deploy) == ("deploying", True)


class TestGating:
    def test_a_failed_gate_rejects_with_its_reason(self) -> None:
        runs = {**passed("scan"), "tests": GateStatus("failed", "`make test` exited 2", 1)}
        d = decide(obs("gating", runs=runs))
        assert d.state == "rejected"
        assert d.reason == "gate tests failed: `make test` exited 2"

    def test_a_running_gate_keeps_it_gating_without_starting_it_again(self) -> None:
        runs = {**passed("scan"), "tests": GateStatus("running", "", 1)}
        d = decide(obs("gating", runs=runs))
        assert d.state == "gating" and d.run_gates == ()
        assert d.retry_at is not None and d.retry_at > T0

    def test_a_waiting_gate_is_judged_again_and_says_when(self) -> None:
        opens = T0 + timedelta(hours=3)
        runs = {**passed("tests"), "scan": GateStatus("waiting", "window closed", 1, opens)}
        d = decide(obs("gating", runs=runs))
        assert d.state == "gating" and d.run_gates == ("scan",)

    def test_all_passed_waits_for_approvals_when_the_policy_needs_them(self) -> None:
        d = decide(obs("gating", runs=passed("tests", "scan"), approvals=TWO_RMS))
        assert d.state == "awaiting_approval"
        assert "2 more approval(s)" in d.reason and "any release-manager" in d.reason


class TestAwaitingApproval:
    def test_two_distinct_reviewers_move_it_to_deploying(self) -> None:
        d = decide(obs("awaiting_approval", approvals=TWO_RMS, reviews=(approve("sam"), approve("lee"))))
        assert (d.state, d.deploy) == ("deploying", True)

    def test_the_requester_and_a_repeat_do_not_count(self) -> None:
        reviews = (approve("rita"), approve("sam"), approve("sam", T0 + timedelta(minutes=1)))
        d = decide(obs("awaiting_approval", approvals=TWO_RMS, reviews=reviews))
        assert d.state == "awaiting_approval"
        assert "requester" in d.reason and "counts once" in d.reason

    def test_approvals_on_another_release_are_void(self) -> None:
        old = "sha256:aa+config:00"
        reviews = (approve("sam", release=old), approve("lee", release=old))
        d = decide(obs("awaiting_approval", approvals=TWO_RMS, reviews=reviews))
        assert d.state == "awaiting_approval" and "another release" in d.reason

    def test_one_rejection_ends_it_with_the_reason(self) -> None:
        reviews = (
            approve("sam"),
            Review("lee", "release-manager", "reject", RELEASE, T0, "no rollback plan"),
        )
        d = decide(obs("awaiting_approval", approvals=TWO_RMS, reviews=reviews))
        assert d.state == "rejected" and d.reason == "rejected by lee: no rollback plan"

    def test_a_rejection_survives_a_configuration_change_and_ends_it_while_gating(self) -> None:
        reviews = (Review("lee", "release-manager", "reject", "sha256:aa+config:00", T0, "wrong schema"),)
        d = decide(obs("gating", approvals=TWO_RMS, reviews=reviews, runs=passed("tests")))
        assert d.state == "rejected" and d.reason == "rejected by lee: wrong schema"

    def test_approvals_that_expired_while_queued_send_it_back(self) -> None:
        policy = replace(TWO_RMS, expires_after=timedelta(hours=1))
        reviews = (approve("sam"), approve("lee"))
        later = T0 + timedelta(hours=2)
        d = decide(obs("queued", approvals=policy, reviews=reviews, now=later))
        assert d.state == "awaiting_approval" and "expired" in d.reason


class TestQueued:
    def test_waits_while_another_promotion_holds_the_environment(self) -> None:
        d = decide(obs("queued", blocked_by="promotion 4 (web 1.1.0) is deploying"))
        assert d.state == "queued" and not d.deploy and "promotion 4" in d.reason

    def test_waits_for_the_change_window_and_says_when_it_opens(self) -> None:
        windows = WindowPolicy(allow=(WindowRule(frozenset({"mon"}), time(9), time(16)),))
        d = decide(obs("queued", windows=windows))
        assert d.state == "queued" and not d.deploy
        assert "2026-11-30T09:00" in d.reason
        assert d.retry_at is not None and d.retry_at <= T0 + timedelta(seconds=30)

    def test_an_override_lets_it_out_of_a_freeze(self) -> None:
        freeze = WindowPolicy(
            freezes=(FreezeRule("year-end", date(2026, 11, 20), date(2026, 12, 31), "peak"),)
        )
        blocked = decide(obs("queued", windows=freeze))
        assert blocked.state == "queued" and "year-end" in blocked.reason
        d = decide(obs("queued", windows=freeze, override=Override("admin", "security fix")))
        assert d.deploy and any("overridden by admin" in c.reason for c in d.checks)


class TestDeploying:
    def test_ready_moves_on_to_verification_gates(self) -> None:
        d = decide(obs("deploying", readiness=Readiness(2, 2), deploy_started_at=T0))
        assert d.state == "verifying" and d.run_gates == ("smoke",)

    def test_a_crash_loop_rolls_back_to_the_previous_release(self) -> None:
        r = Readiness(0, 2, crashed="instance exits with code 3")
        d = decide(obs("deploying", readiness=r, has_previous_release=True))
        assert (d.state, d.roll_back) == ("rolled_back", True)
        assert "exits with code 3" in d.reason

    def test_a_crash_loop_with_nothing_to_return_to_fails(self) -> None:
        d = decide(obs("deploying", readiness=Readiness(0, 1, crashed="exit 1")))
        assert (d.state, d.roll_back) == ("failed", False)
        assert "no earlier release" in d.reason

    def test_never_ready_rolls_back_after_the_deadline(self) -> None:
        late = T0 + READY_DEADLINE + timedelta(seconds=1)
        d = decide(
            obs(
                "deploying",
                readiness=Readiness(1, 2),
                deploy_started_at=T0,
                now=late,
                has_previous_release=True,
            )
        )
        assert d.state == "rolled_back" and "did not become ready" in d.reason

    def test_an_unreachable_runtime_waits(self) -> None:
        d = decide(obs("deploying", readiness=Readiness(0, 0, error="agent down")))
        assert d.state == "deploying" and "agent down" in d.reason


class TestVerifying:
    def test_a_failed_smoke_check_rolls_back(self) -> None:
        runs = {**passed("tests", "scan"), "smoke": GateStatus("failed", "GET /version reports 1.1.0", 1)}
        d = decide(obs("verifying", runs=runs, has_previous_release=True))
        assert d.state == "rolled_back" and d.roll_back and "smoke" in d.reason

    def test_passing_verification_succeeds(self) -> None:
        d = decide(obs("verifying", runs=passed("tests", "scan", "smoke")))
        assert d.state == "succeeded"


@pytest.mark.parametrize("state", TERMINAL_STATES)
def test_an_ended_promotion_stays_ended(state: str) -> None:
    d = decide(obs(state))
    assert d.state == state and not (d.deploy or d.roll_back or d.run_gates)


# -- properties over every state ------------------------------------------------------------

envs = st.sampled_from([s.environment for s in PIPELINE])
gate_state = st.sampled_from(["running", "waiting", "passed", "failed"])


@st.composite
def observations(draw: st.DrawFn) -> Observations:
    names = [g.name for g in GATES]
    runs = {
        name: GateStatus(draw(gate_state), "r", 1, T0 + timedelta(minutes=5))
        for name in names
        if draw(st.booleans())
    }
    users = st.sampled_from(["rita", "sam", "lee", "ann"])
    reviews = draw(
        st.lists(
            st.builds(
                Review,
                users,
                st.sampled_from(["release-manager", "developer"]),
                st.sampled_from(["approve", "reject"]),
                st.sampled_from([RELEASE, "other"]),
                st.just(T0),
            ),
            max_size=4,
        )
    )
    freeze = draw(st.booleans())
    windows = WindowPolicy(
        freezes=(FreezeRule("f", date(2026, 11, 1), date(2026, 12, 31)),) if freeze else ()
    )
    return obs(
        draw(st.sampled_from(ACTIVE_STATES)),
        environment=draw(envs),
        succeeded_in=frozenset(draw(st.sets(envs))),
        runs=runs,
        reviews=tuple(reviews),
        approvals=draw(st.sampled_from([ApprovalPolicy(0), TWO_RMS])),
        windows=windows,
        override=draw(st.sampled_from([None, Override("admin", "hotfix")])),
        blocked_by=draw(st.sampled_from([None, "promotion 9 is deploying"])),
        readiness=draw(st.sampled_from([None, Readiness(1, 1), Readiness(0, 1, crashed="boom")])),
        has_previous_release=draw(st.booleans()),
        now=draw(st.sampled_from([T0, T0_PLUS_1H])),
    )


@given(observations())
def test_never_deploys_where_the_previous_required_stage_lacks_the_digest(o: Observations) -> None:
    d = decide(o)
    if d.deploy:
        assert require_previous_stage(o.stages, o.environment, set(o.succeeded_in)).allowed


@given(observations())
def test_a_freeze_always_blocks_without_an_override(o: Observations) -> None:
    d = decide(o)
    if o.windows.freezes and o.override is None:
        assert not d.deploy


@given(observations())
def test_never_deploys_without_the_approvals_the_policy_needs(o: Observations) -> None:
    d = decide(o)
    if d.deploy and o.approvals.required:
        counted = {r.user for r in o.reviews if r.decision == "approve" and r.release == RELEASE}
        counted -= {o.requested_by}
        counted &= {r.user for r in o.reviews if r.role == "release-manager"}
        assert len(counted) >= o.approvals.required
        assert not any(
            r.decision == "reject" and r.role == "release-manager" and r.user != o.requested_by
            for r in o.reviews
        )


@given(observations())
def test_decide_is_total_and_explains_itself(o: Observations) -> None:
    d = decide(o)
    assert d.state in STATES and d.reason
    assert not (d.deploy and d.roll_back)
    if d.state in ACTIVE_STATES:
        assert d.retry_at is not None or d.deploy or d.run_gates or d.state != o.state
    doc = explain(
        {
            "id": 1,
            "service": "web",
            "version": "1.2.0",
            "environment": o.environment,
            "trigger": "manual",
            "requested_by": "rita",
            "requested_at": "t",
            "state": o.state,
            "reason": "r",
            "override": None,
        },
        o,
        d,
        [],
    )
    assert doc["lines"] and doc["summary"]

"""Approval counting: the requester never counts, nobody counts twice, one rejection ends it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.pipeline.approvals import ApprovalPolicy, Review, distinct, release_id, tally
from conveyor.spec import load_spec_text, render_init

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
T0_PLUS_1H = T0 + timedelta(hours=1)
RELEASE = release_id("sha256:" + "a" * 64, "c" * 64)
OTHER_RELEASE = release_id("sha256:" + "b" * 64, "c" * 64)
POLICY = ApprovalPolicy(
    required=2, approver_roles=frozenset({"release-manager"}), expires_after=timedelta(days=1)
)


def review(
    user: str,
    decision: str = "approve",
    *,
    role: str = "release-manager",
    release: str = RELEASE,
    at: datetime = T0,
) -> Review:
    return Review(user=user, role=role, decision=decision, release=release, at=at)  # type: ignore[arg-type]


class TestCounting:
    def test_two_distinct_release_managers_approve(self) -> None:
        result = tally(POLICY, "dev", RELEASE, [review("ann"), review("bob")], T0_PLUS_1H)
        assert result.status == "approved" and result.approvals == ("ann", "bob")

    @pytest.mark.parametrize(
        ("reviews", "reason"),
        [
            ([review("dev")], "the requester cannot review their own promotion"),
            ([review("ann", role="developer")], "role 'developer' may not approve here"),
            ([review("ann", release=OTHER_RELEASE)], "another release"),
            ([review("ann", at=T0 - timedelta(days=2))], "expired"),
        ],
        ids=["self-approval", "wrong-role", "other-release", "expired"],
    )
    def test_reviews_that_do_not_count_say_why(self, reviews: list[Review], reason: str) -> None:
        result = tally(POLICY, "dev", RELEASE, reviews, T0_PLUS_1H)
        assert result.status == "waiting" and result.approvals == () and result.missing == 2
        assert reason in result.ignored[0][1]

    def test_approving_twice_counts_once(self) -> None:
        result = tally(
            POLICY, "dev", RELEASE, [review("ann"), review("ann", at=T0 + timedelta(minutes=1))], T0_PLUS_1H
        )
        assert result.approvals == ("ann",) and result.missing == 1

    def test_one_rejection_ends_it(self) -> None:
        reviews = [review("ann"), review("bob"), review("cat", "reject")]
        result = tally(POLICY, "dev", RELEASE, reviews, T0_PLUS_1H)
        assert result.status == "rejected" and result.rejected_by == "cat"
        assert result.explain(POLICY) == "rejected by cat"

    def test_a_rejection_stands_even_if_its_author_approves_later(self) -> None:
        reviews = [review("cat", "reject"), review("cat", at=T0 + timedelta(minutes=5)), review("ann")]
        assert tally(POLICY, "dev", RELEASE, reviews, T0_PLUS_1H).status == "rejected"

    def test_named_approvers_and_admins_count(self) -> None:
        policy = ApprovalPolicy(required=2, approvers=frozenset({"zoe"}))
        reviews = [review("zoe", role="developer"), review("root", role="admin")]
        assert tally(policy, "dev", RELEASE, reviews, T0_PLUS_1H).status == "approved"

    def test_self_approval_when_the_policy_allows_it(self) -> None:
        policy = ApprovalPolicy(required=1, approver_roles=frozenset({"developer"}), allow_self_approval=True)
        assert tally(policy, "dev", RELEASE, [review("dev", role="developer")], T0).status == "approved"

    def test_the_explanation_names_who_may_approve(self) -> None:
        text = tally(POLICY, "dev", RELEASE, [review("ann")], T0_PLUS_1H).explain(POLICY)
        assert (
            text
            == "waiting for 1 more approval(s); approved so far by ann; who may approve: any release-manager"
        )

    def test_the_policy_comes_from_conveyor_yaml(self) -> None:
        env = load_spec_text(render_init("shop")).environments["production"]
        policy = ApprovalPolicy.from_spec(env.approvals)
        assert policy.required == 2 and policy.approver_roles == {"release-manager"}
        assert not policy.allow_self_approval and policy.expires_after == timedelta(days=1)


users = st.sampled_from(["ann", "bob", "cat", "dev", "eve", "zoe"])
roles = st.sampled_from(["release-manager", "developer", "admin", "viewer"])
reviews_strategy = st.lists(
    st.builds(
        Review,
        user=users,
        role=roles,
        decision=st.sampled_from(["approve", "reject"]),
        release=st.sampled_from([RELEASE, OTHER_RELEASE]),
        at=st.integers(0, 3 * 24 * 60).map(lambda m: T0 + timedelta(minutes=m)),
    ),
    max_size=20,
)


class TestProperties:
    @given(reviews_strategy, users, st.integers(1, 4))
    def test_the_requester_never_counts_and_nobody_counts_twice(
        self, reviews: list[Review], requester: str, required: int
    ) -> None:
        policy = ApprovalPolicy(required=required, approver_roles=frozenset({"release-manager"}))
        result = tally(policy, requester, RELEASE, reviews, T0 + timedelta(days=3))
        assert requester not in result.approvals
        assert distinct(result.approvals)

    @given(reviews_strategy, users)
    def test_only_reviews_of_this_release_count(self, reviews: list[Review], requester: str) -> None:
        result = tally(POLICY, requester, RELEASE, reviews, T0 + timedelta(days=3))
        on_release = {r.user for r in reviews if r.release == RELEASE}
        assert set(result.approvals) <= on_release

    @given(reviews_strategy, users)
    def test_approved_means_enough_and_no_rejection(self, reviews: list[Review], requester: str) -> None:
        result = tally(POLICY, requester, RELEASE, reviews, T0 + timedelta(days=3))
        if result.status == "approved":
            assert len(result.approvals) >= POLICY.required and result.rejected_by is None
        # a rejection binds to the promotion: neither another release nor time voids it
        valid_rejection = any(
            r.decision == "reject" and r.user != requester and POLICY.eligible(r.user, r.role)
            for r in reviews
        )
        assert (result.status == "rejected") == valid_rejection
        if result.status == "waiting":
            assert result.missing == POLICY.required - len(result.approvals) > 0

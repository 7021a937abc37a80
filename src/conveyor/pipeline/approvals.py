"""Pure approval counting: which reviews count toward a promotion, and what is still missing.

The rules, in order: a review counts only for the exact release it was given on (artifact digest
plus resolved config hash), only while it has not expired, only from an eligible reviewer (a named
approver or a holder of an approver role), never from the requester unless the policy allows self
approval, and once per person. One valid rejection ends it, even if its author approves later, and
whatever changed since: a rejection is of the promotion, not of one release.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

Decision = Literal["approve", "reject"]
Status = Literal["approved", "rejected", "waiting"]


@dataclass(frozen=True)
class ApprovalPolicy:
    """An environment's approval rule, from `approvals:` in conveyor.yaml."""

    required: int
    approver_roles: frozenset[str] = frozenset()
    approvers: frozenset[str] = frozenset()
    allow_self_approval: bool = False
    expires_after: timedelta | None = None

    @classmethod
    def from_spec(cls, approvals: Any) -> ApprovalPolicy:
        """Build the policy from a spec environment's `approvals` block."""
        expires = approvals.expires_after
        return cls(
            required=approvals.required,
            approver_roles=frozenset(approvals.approver_roles),
            approvers=frozenset(approvals.approvers),
            allow_self_approval=approvals.allow_self_approval,
            expires_after=timedelta(seconds=expires.seconds) if expires is not None else None,
        )

    def eligible(self, user: str, role: str) -> bool:
        """Whether this person may review at all (admins always may)."""
        return role == "admin" or user in self.approvers or role in self.approver_roles


@dataclass(frozen=True)
class Review:
    """One person's decision on one release of a promotion."""

    user: str
    role: str
    decision: Decision
    release: str
    at: datetime
    comment: str = ""


@dataclass(frozen=True)
class Tally:
    """The outcome of counting: status, who counted, who did not and why, and what is missing."""

    status: Status
    approvals: tuple[str, ...]
    rejected_by: str | None
    ignored: tuple[tuple[str, str], ...]
    missing: int

    def explain(self, policy: ApprovalPolicy) -> str:
        """The tally in plain words, naming who may still approve."""
        if self.status == "rejected":
            return f"rejected by {self.rejected_by}"
        counted = ", ".join(self.approvals) or "nobody yet"
        if self.status == "approved":
            return f"approved by {counted} ({len(self.approvals)} of {policy.required} required)"
        who = sorted(policy.approvers) + [f"any {r}" for r in sorted(policy.approver_roles)]
        return (
            f"waiting for {self.missing} more approval(s); approved so far by {counted}; "
            f"who may approve: {', '.join(who) or 'an admin'}"
        )


def tally(
    policy: ApprovalPolicy, requester: str, release: str, reviews: Iterable[Review], now: datetime
) -> Tally:
    """Count `reviews` for `release` requested by `requester` at time `now`; pure."""
    approvers: set[str] = set()
    rejections: list[Review] = []
    ignored: list[tuple[str, str]] = []
    for review in sorted(reviews, key=lambda r: r.at):
        reason = _why_not(policy, requester, release, review, now)
        if reason:
            ignored.append((review.user, reason))
        elif review.decision == "reject":
            rejections.append(review)
        elif review.user in approvers:
            ignored.append((review.user, "already approved: a person counts once"))
        else:
            approvers.add(review.user)
    approvals = tuple(sorted(approvers))
    if rejections:
        first = min(rejections, key=lambda r: r.at)
        return Tally(
            "rejected", approvals, first.user, tuple(ignored), max(0, policy.required - len(approvals))
        )
    missing = max(0, policy.required - len(approvals))
    return Tally("approved" if missing == 0 else "waiting", approvals, None, tuple(ignored), missing)


def _why_not(
    policy: ApprovalPolicy, requester: str, release: str, review: Review, now: datetime
) -> str | None:
    # a rejection ends the promotion whatever changed since; an approval holds only for its release
    if review.decision == "approve" and review.release != release:
        return "given on another release (the artifact or its configuration changed since)"
    if (
        review.decision == "approve"
        and policy.expires_after is not None
        and now - review.at > policy.expires_after
    ):
        return f"expired (approvals last {policy.expires_after})"
    if review.user == requester and not policy.allow_self_approval:
        return "the requester cannot review their own promotion"
    if not policy.eligible(review.user, review.role):
        return f"role '{review.role}' may not approve here"
    return None


def release_id(digest: str, config_sha256: str) -> str:
    """What an approval is bound to: the artifact digest and the resolved configuration's hash."""
    return f"{digest}+config:{config_sha256}"


def distinct(users: Sequence[str]) -> bool:
    """True when no user appears twice (a property every tally keeps)."""
    return len(set(users)) == len(users)

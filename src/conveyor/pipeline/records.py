"""Promotion rows: lookups, the lease statements, and transitions written with their audit events.

Every function runs in the caller's transaction; the engine and the API share them.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from conveyor.audit.log import AuditContext, record
from conveyor.clock import isoformat
from conveyor.errors import NotFound
from conveyor.pipeline.approvals import release_id
from conveyor.pipeline.decide import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    Decision,
)
from conveyor.store.tables import GateRun, Promotion, PromotionTransition
from conveyor.store.tables import Review as ReviewRow


def parse_time(value: str | None) -> datetime | None:
    """The store's ISO strings back into aware datetimes."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def release_of(row: Promotion) -> str:
    """The release a promotion's approvals bind to."""
    return release_id(row.digest, row.config_sha256)


def succeeded_in(session: Session, service: str, digest: str) -> set[str]:
    """Environments where a promotion of this exact build of `service` succeeded."""
    rows = session.execute(
        select(Promotion.environment).where(
            Promotion.service == service, Promotion.digest == digest, Promotion.state == "succeeded"
        )
    )
    return {name for (name,) in rows}


def succeeded_by_digest(session: Session, service: str | None = None) -> dict[str, set[str]]:
    """For every `service@digest`, the environments a promotion of it succeeded in (one query)."""
    query = select(Promotion.service, Promotion.digest, Promotion.environment).where(
        Promotion.state == "succeeded"
    )
    if service:
        query = query.where(Promotion.service == service)
    found: dict[str, set[str]] = {}
    for service_name, digest, environment in session.execute(query):
        found.setdefault(f"{service_name}@{digest}", set()).add(environment)
    return found


def get_promotion(session: Session, promotion_id: int, *, lock: bool = False) -> Promotion:
    """One promotion, or NotFound; `lock` holds its row until commit (changes race the engine)."""
    row = session.get(Promotion, promotion_id, with_for_update=lock)
    if row is None:
        newest = session.execute(select(func.max(Promotion.id))).scalar_one()
        have = f"promotions are numbered 1–{newest}" if newest else "there are no promotions yet"
        raise NotFound(
            f"promotion {promotion_id} does not exist ({have})", hint="see `conveyor promotion list`"
        )
    return row


def list_promotions(
    session: Session,
    environment: str | None = None,
    state: str | None = None,
    service: str | None = None,
    limit: int = 50,
) -> list[Promotion]:
    """Promotions, newest first, optionally filtered."""
    query = select(Promotion).order_by(Promotion.id.desc()).limit(limit)
    if environment:
        query = query.where(Promotion.environment == environment)
    if state == "active":
        query = query.where(Promotion.state.in_(ACTIVE_STATES))
    elif state:
        query = query.where(Promotion.state == state)
    if service:
        query = query.where(Promotion.service == service)
    return list(session.execute(query).scalars())


def active_in(session: Session, environment: str) -> list[Promotion]:
    query = (
        select(Promotion)
        .where(Promotion.environment == environment, Promotion.state.in_(ACTIVE_STATES))
        .order_by(Promotion.id)
    )
    return list(session.execute(query).scalars())


def transition(
    session: Session, ctx: AuditContext, row: Promotion, decision: Decision, now: datetime
) -> None:
    """Persist `decision` on `row`: a state change gets a transition row, an audit event and a new step."""
    stamp = isoformat(now)
    moved = decision.state != row.state
    row.reason = decision.reason
    row.decision = json.dumps(decision.to_json(), sort_keys=True)
    row.updated_at = stamp
    if decision.state in TERMINAL_STATES:
        row.next_run_at = None
        row.finished_at = row.finished_at or stamp
    else:
        row.next_run_at = isoformat(decision.retry_at or now)
    if not moved:
        return
    session.add(
        PromotionTransition(
            promotion_id=row.id,
            from_state=row.state,
            to_state=decision.state,
            at=stamp,
            actor=ctx.actor,
            reason=decision.reason,
        )
    )
    failed = decision.state in ("rejected", "failed", "rolled_back")
    record(
        session,
        ctx,
        f"promotion.{decision.state}",
        now=now,
        environment=row.environment,
        target=f"promotion:{row.id}",
        outcome="failure" if failed else "success",
        details={
            "promotion": row.id,
            "artifact": f"{row.service}@{row.version}",
            "from": row.state,
            "to": decision.state,
            "reason": decision.reason,
            "override": {"by": row.override_by, "reason": row.override_reason} if row.override_by else None,
        },
    )
    row.state = decision.state
    row.step_token += 1


def stop_open_runs(session: Session, row: Promotion, ending: str, now: datetime) -> list[int]:
    """Mark a finished promotion's unfinished gate runs stopped; returns command runs to kill."""
    commands = []
    for run in latest_runs(session, row.id).values():
        if run.state in ("running", "waiting", "pending"):
            if run.type == "command" and run.state == "running":
                commands.append(run.id)
            run.state, run.finished_at = "stopped", isoformat(now)
            run.reason = f"stopped: the promotion was {ending.replace('_', ' ')}"
    return commands


def latest_runs(session: Session, promotion_id: int) -> dict[str, GateRun]:
    """The newest attempt of each gate of a promotion."""
    latest: dict[str, GateRun] = {}
    rows = session.execute(
        select(GateRun).where(GateRun.promotion_id == promotion_id).order_by(GateRun.attempt)
    ).scalars()
    for run in rows:
        latest[run.name] = run
    return latest


def gate_runs(session: Session, promotion_id: int) -> list[GateRun]:
    """Every attempt of every gate of a promotion, in start order."""
    query = select(GateRun).where(GateRun.promotion_id == promotion_id).order_by(GateRun.id)
    return list(session.execute(query).scalars())


def reviews_of(session: Session, promotion_id: int) -> list[ReviewRow]:
    """Reviews of a promotion, oldest first."""
    query = select(ReviewRow).where(ReviewRow.promotion_id == promotion_id).order_by(ReviewRow.id)
    return list(session.execute(query).scalars())


def transitions_of(session: Session, promotion_id: int) -> list[PromotionTransition]:
    """State changes of a promotion, oldest first."""
    query = (
        select(PromotionTransition)
        .where(PromotionTransition.promotion_id == promotion_id)
        .order_by(PromotionTransition.id)
    )
    return list(session.execute(query).scalars())


def due(session: Session, now: datetime, limit: int = 20) -> list[int]:
    """Ids of active promotions whose time to look again has come and whose lease is free."""
    stamp = isoformat(now)
    query = (
        select(Promotion.id)
        .where(
            Promotion.state.in_(ACTIVE_STATES),
            Promotion.next_run_at <= stamp,
            (Promotion.lease_expires_at.is_(None)) | (Promotion.lease_expires_at < stamp),
        )
        .order_by(Promotion.next_run_at)
        .limit(limit)
    )
    return [pid for (pid,) in session.execute(query)]


def claim(session: Session, promotion_id: int, owner: str, now: datetime, until: datetime) -> bool:
    """Take the lease on a due promotion in one statement; True when this worker won it."""
    stamp = isoformat(now)
    result = session.execute(
        update(Promotion)
        .where(
            Promotion.id == promotion_id,
            Promotion.state.in_(ACTIVE_STATES),
            Promotion.next_run_at <= stamp,
            (Promotion.lease_expires_at.is_(None)) | (Promotion.lease_expires_at < stamp),
        )
        .values(lease_owner=owner, lease_expires_at=isoformat(until))
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def holds_lease(row: Promotion, owner: str, now: datetime) -> bool:
    """Whether `owner` still holds `row`'s lease at `now`."""
    expires = parse_time(row.lease_expires_at)
    return row.lease_owner == owner and expires is not None and expires > now


def release_lease(row: Promotion) -> None:
    """Give the lease back (the row's next_run_at says when it is due again)."""
    row.lease_owner = None
    row.lease_expires_at = None

"""Append audit events inside the caller's transaction, and read, verify and export the chain."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from conveyor.audit.chain import HASHED_FIELDS, Verification, canonical_json, event_hash, verify
from conveyor.clock import isoformat
from conveyor.store.tables import AuditEvent, AuditHead

# Defence in depth: a value under one of these keys never reaches the audit log, whoever passes it.
_SECRET_KEYS = frozenset({"token", "secret", "password", "value", "private_key"})


@dataclass(frozen=True)
class AuditContext:
    """Who is acting and from where: attached to every event a request writes."""

    actor: str
    source_ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


SYSTEM = AuditContext(actor="system")


def _scrub(details: Mapping[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in details.items():
        if key.lower() in _SECRET_KEYS:
            clean[key] = "[redacted]"
        elif isinstance(value, Mapping):
            clean[key] = _scrub(value)
        else:
            clean[key] = value
    return clean


def record(
    session: Session,
    ctx: AuditContext,
    action: str,
    *,
    now: datetime,
    environment: str | None = None,
    target: str | None = None,
    outcome: str = "success",
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain in `session`'s transaction (commits or rolls back with it)."""
    head = session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one()
    body: dict[str, Any] = {
        "seq": head.seq + 1,
        "id": uuid.uuid4().hex,
        "at": isoformat(now),
        "actor": ctx.actor,
        "action": action,
        "environment": environment,
        "target": target,
        "outcome": outcome,
        "source_ip": ctx.source_ip,
        "user_agent": (ctx.user_agent or None) and ctx.user_agent[:255],
        "request_id": ctx.request_id,
        "details": canonical_json(_scrub(details or {})),
        "prev_hash": head.hash,
    }
    body["hash"] = event_hash(body)
    event = AuditEvent(**body)
    session.add(event)
    head.seq, head.hash = body["seq"], body["hash"]
    session.flush()
    return event


def lock_chain(session: Session) -> None:
    """Take the chain head lock now, serialising this transaction with every other writer."""
    session.execute(select(AuditHead.seq).where(AuditHead.id == 1).with_for_update()).scalar_one()


@dataclass
class EventFilter:
    """Criteria for listing events; every field optional, combined with AND."""

    environment: str | None = None
    actor: str | None = None
    action: str | None = None
    since: str | None = None
    until: str | None = None
    after_seq: int | None = None
    limit: int = 100
    actions_prefix: list[str] = field(default_factory=list)


def event_to_dict(event: AuditEvent) -> dict[str, Any]:
    """The public JSON form of an event (details decoded)."""
    return {
        "seq": event.seq,
        "id": event.id,
        "at": event.at,
        "actor": event.actor,
        "action": event.action,
        "environment": event.environment,
        "target": event.target,
        "outcome": event.outcome,
        "source_ip": event.source_ip,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
        "details": json.loads(event.details),
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def list_events(session: Session, flt: EventFilter) -> list[AuditEvent]:
    """Events matching `flt`, newest first, at most `flt.limit`."""
    query = select(AuditEvent)
    if flt.environment:
        query = query.where(AuditEvent.environment == flt.environment)
    if flt.actor:
        query = query.where(AuditEvent.actor == flt.actor)
    if flt.action:
        # `spec.*` style prefixes select a family of actions
        if flt.action.endswith("*"):
            query = query.where(AuditEvent.action.startswith(flt.action[:-1]))
        else:
            query = query.where(AuditEvent.action == flt.action)
    if flt.since:
        query = query.where(AuditEvent.at >= flt.since)
    if flt.until:
        query = query.where(AuditEvent.at < flt.until)
    if flt.after_seq is not None:
        query = query.where(AuditEvent.seq > flt.after_seq)
    query = query.order_by(AuditEvent.seq.desc()).limit(flt.limit)
    return list(session.execute(query).scalars())


def _raw_rows(session: Session, batch: int = 1000) -> Iterator[dict[str, Any]]:
    # order by the physical sequence column as stored; verify() checks it is gap-free
    last = -1
    while True:
        rows = session.execute(
            select(AuditEvent).where(AuditEvent.seq > last).order_by(AuditEvent.seq).limit(batch)
        ).scalars()
        got = 0
        for row in rows:
            got += 1
            last = row.seq
            yield {name: getattr(row, name) for name in (*HASHED_FIELDS, "hash")}
        if got < batch:
            return


def verify_chain(session: Session) -> Verification:
    """Walk every stored event and check the chain against the recorded head."""
    head = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one()
    return verify(_raw_rows(session), head.seq, head.hash)


def export_events(session: Session) -> Iterator[dict[str, Any]]:
    """Every event in chain order, in public JSON form (for JSON Lines export)."""
    last = 0
    while True:
        batch = list(
            session.execute(
                select(AuditEvent).where(AuditEvent.seq > last).order_by(AuditEvent.seq).limit(1000)
            ).scalars()
        )
        if not batch:
            return
        for event in batch:
            yield event_to_dict(event)
        last = batch[-1].seq

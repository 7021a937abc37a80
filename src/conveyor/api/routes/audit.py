"""The audit trail: list with filters, verify the hash chain, export JSON Lines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from conveyor.api.deps import AuditDep, StateDep, guarded
from conveyor.audit import log as audit
from conveyor.clock import isoformat
from conveyor.errors import InvalidRequest

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


def _check_time(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"{name}={value!r} is not an ISO 8601 time", hint="e.g. 2026-11-25 or 2026-11-25T10:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return isoformat(parsed)


@router.get("/events", **guarded("audit:read"))
def list_events(
    state: StateDep,
    environment: str | None = None,
    actor: str | None = None,
    action: str | None = Query(None, description="exact action, or a prefix ending in * (spec.*)"),
    since: str | None = Query(None, description="ISO 8601 time, inclusive"),
    until: str | None = Query(None, description="ISO 8601 time, exclusive"),
    limit: int = Query(100, ge=1, le=10_000),
) -> list[dict[str, Any]]:
    """Events matching the filters, newest first."""
    flt = audit.EventFilter(
        environment=environment,
        actor=actor,
        action=action,
        since=_check_time("since", since),
        until=_check_time("until", until),
        limit=limit,
    )
    with state.store.read() as session:
        return [audit.event_to_dict(e) for e in audit.list_events(session, flt)]


@router.get("/verify", **guarded("audit:verify"))
def verify(state: StateDep) -> dict[str, Any]:
    """Recompute the whole hash chain; `ok` is false with the first bad event named."""
    with state.store.read() as session:
        result = audit.verify_chain(session)
    brk = result.first_break
    return {
        "ok": result.ok,
        "checked": result.checked,
        "head": {"seq": result.head_seq, "hash": result.head_hash},
        "first_bad": None if brk is None else {"seq": brk.seq, "id": brk.event_id, "reason": brk.reason},
    }


@router.get("/export", **guarded("audit:export"))
def export(state: StateDep, ctx: AuditDep) -> StreamingResponse:
    """Every event in chain order as JSON Lines (the export itself is audited first)."""
    with state.store.write() as session:
        audit.record(session, ctx, "audit.export", now=state.clock.now())

    def lines() -> Iterator[bytes]:
        with state.store.read() as session:
            for event in audit.export_events(session):
                yield (json.dumps(event, ensure_ascii=False) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/jsonl")

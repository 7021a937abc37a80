"""Pure hash-chain rules: the canonical encoding of an event, its hash, and verifying a sequence.

hash(event) = sha256(prev_hash || canonical JSON of every field but `hash`). The sequence number
is inside the hashed body, so reordering rows breaks the chain just as editing or deleting does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64

HASHED_FIELDS = (
    "seq",
    "id",
    "at",
    "actor",
    "action",
    "environment",
    "target",
    "outcome",
    "source_ip",
    "user_agent",
    "request_id",
    "details",
    "prev_hash",
)


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(event: Mapping[str, Any]) -> str:
    """The chain hash of one event (a mapping holding at least HASHED_FIELDS)."""
    body = canonical_json({name: event[name] for name in HASHED_FIELDS})
    return hashlib.sha256((event["prev_hash"] + body).encode()).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    """Where verification failed and why, in words an auditor can act on."""

    seq: int | None
    event_id: str | None
    reason: str


@dataclass(frozen=True)
class Verification:
    """The outcome of walking the whole chain."""

    checked: int
    head_seq: int
    head_hash: str
    first_break: ChainBreak | None

    @property
    def ok(self) -> bool:
        return self.first_break is None


def verify(events: Iterable[Mapping[str, Any]], head_seq: int, head_hash: str) -> Verification:
    """Walk events in sequence order and report the first that does not chain; pure."""
    expected_prev, expected_seq, checked = GENESIS, 1, 0
    for event in events:
        seq = event["seq"]
        if seq != expected_seq:
            missing = (
                f"event {expected_seq}" if seq == expected_seq + 1 else (f"events {expected_seq}–{seq - 1}")
            )
            reason = (
                f"{missing} missing: the chain jumps from {expected_seq - 1} to {seq}"
                if seq > expected_seq
                else f"sequence number {seq} repeats or goes backwards after {expected_seq - 1}"
            )
            return Verification(checked, head_seq, head_hash, ChainBreak(seq, event["id"], reason))
        if event["prev_hash"] != expected_prev:
            reason = (
                f"event {seq} does not follow event {seq - 1}: its prev_hash does not match; "
                "an earlier event was altered, removed or reordered"
            )
            return Verification(checked, head_seq, head_hash, ChainBreak(seq, event["id"], reason))
        if event_hash(event) != event["hash"]:
            reason = f"event {seq} was modified after it was written: its content no longer matches its hash"
            return Verification(checked, head_seq, head_hash, ChainBreak(seq, event["id"], reason))
        expected_prev, expected_seq, checked = event["hash"], seq + 1, checked + 1
    last_seq = expected_seq - 1
    if last_seq != head_seq or expected_prev != head_hash:
        reason = (
            f"the chain ends at event {last_seq} but its head records event {head_seq}: "
            "events at the end were deleted, or the head was altered"
        )
        return Verification(checked, head_seq, head_hash, ChainBreak(last_seq + 1, None, reason))
    return Verification(checked, head_seq, head_hash, None)

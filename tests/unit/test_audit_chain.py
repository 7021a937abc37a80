"""The pure hash-chain rules: any edit, deletion or reordering is found, and named."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from conveyor.audit.chain import GENESIS, event_hash, verify


def build_chain(actions: list[str]) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    prev = GENESIS
    for seq, action in enumerate(actions, start=1):
        event: dict[str, object] = {
            "seq": seq,
            "id": f"id{seq}",
            "at": f"2026-11-25T10:00:{seq % 60:02d}.000000Z",
            "actor": "alice",
            "action": action,
            "environment": None,
            "target": None,
            "outcome": "success",
            "source_ip": "127.0.0.1",
            "user_agent": "test",
            "request_id": f"r{seq}",
            "details": json.dumps({"n": seq}),
            "prev_hash": prev,
        }
        event["hash"] = event_hash(event)
        prev = str(event["hash"])
        events.append(event)
    return events


def head_of(events: list[dict[str, object]]) -> tuple[int, str]:
    return (len(events), str(events[-1]["hash"])) if events else (0, GENESIS)


actions = st.lists(st.sampled_from(["spec.apply", "user.add", "token.create"]), min_size=2, max_size=30)


class TestIntactChain:
    @given(actions)
    def test_an_untouched_chain_verifies(self, acts: list[str]) -> None:
        events = build_chain(acts)
        result = verify(events, *head_of(events))
        assert result.ok and result.checked == len(events)

    def test_an_empty_chain_verifies_against_the_genesis_head(self) -> None:
        assert verify([], 0, GENESIS).ok


class TestTampering:
    @given(actions, st.data())
    def test_an_edited_field_is_named(self, acts: list[str], data: st.DataObject) -> None:
        events = build_chain(acts)
        head = head_of(events)
        victim = data.draw(st.integers(0, len(events) - 1))
        events[victim] = {**events[victim], "actor": "mallory"}
        result = verify(events, *head)
        assert result.first_break is not None
        assert result.first_break.seq == victim + 1
        assert "modified" in result.first_break.reason

    @given(actions, st.data())
    def test_a_deleted_event_is_named(self, acts: list[str], data: st.DataObject) -> None:
        events = build_chain(acts)
        head = head_of(events)
        victim = data.draw(st.integers(0, len(events) - 2))
        del events[victim]
        result = verify(events, *head)
        assert result.first_break is not None
        assert result.first_break.seq == victim + 2
        assert f"event {victim + 1} missing" in result.first_break.reason

    def test_deleting_the_last_event_is_caught_by_the_head(self) -> None:
        events = build_chain(["a", "b", "c"])
        head = head_of(events)
        result = verify(events[:-1], *head)
        assert result.first_break is not None and result.first_break.seq == 3

    @given(actions, st.data())
    def test_swapped_events_are_caught(self, acts: list[str], data: st.DataObject) -> None:
        events = build_chain(acts)
        head = head_of(events)
        i = data.draw(st.integers(0, len(events) - 2))
        # swap contents but keep the sequence numbers in place, as an UPDATE of two rows would
        a, b = events[i], events[i + 1]
        events[i] = {**b, "seq": a["seq"]}
        events[i + 1] = {**a, "seq": b["seq"]}
        result = verify(events, *head)
        assert result.first_break is not None and result.first_break.seq == i + 1

    def test_a_rehashed_edit_still_breaks_the_link_to_the_next_event(self) -> None:
        events = build_chain(["a", "b", "c"])
        head = head_of(events)
        forged = {**events[0], "actor": "mallory"}
        forged["hash"] = event_hash(forged)
        events[0] = forged
        result = verify(events, *head)
        assert result.first_break is not None and result.first_break.seq == 2

"""The audit trail through the CLI: filters, export, and tampering found with plain SQL."""

from __future__ import annotations

import itertools
import json

import pytest

from conveyor.spec import render_init
from conveyor.store.db import Store
from tests.conftest import Server


def _busy(server: Server) -> None:
    (server.home.parent / "conveyor.yaml").write_text(render_init("shop"))
    server.cli("apply", "--yes", check=True)
    server.cli("user", "add", "rita", "--role", "release-manager", check=True)
    server.cli("user", "add", "dev1", "--role", "developer", check=True)
    server.cli("token", "create", "--name", "ci", check=True)


def _sql(server: Server, statement: str) -> None:
    store = Store(server.database_url)
    with store.engine.begin() as conn:
        conn.exec_driver_sql(statement)
    store.dispose()


def test_list_filters_and_export(server: Server) -> None:
    _busy(server)
    events = json.loads(server.cli("audit", "list", "-o", "json", check=True).stdout)
    actions = [e["action"] for e in events]
    assert {"spec.apply", "user.add", "token.create", "user.bootstrap"} <= set(actions)
    assert [e["seq"] for e in events] == sorted((e["seq"] for e in events), reverse=True)

    users = json.loads(server.cli("audit", "list", "--action", "user.*", "-o", "json", check=True).stdout)
    assert {e["action"] for e in users} == {"user.add", "user.bootstrap"}
    by_admin = json.loads(server.cli("audit", "list", "--actor", "system", "-o", "json", check=True).stdout)
    assert by_admin and all(e["actor"] == "system" for e in by_admin)
    recent = json.loads(server.cli("audit", "list", "--since", "10m", "-o", "json", check=True).stdout)
    assert len(recent) == len(events)
    future = json.loads(server.cli("audit", "list", "--since", "2099-01-01", "-o", "json", check=True).stdout)
    assert future == []
    bad = server.cli("audit", "list", "--since", "yesterday")
    assert bad.returncode == 1 and "relative time" in bad.stderr

    out = server.home.parent / "audit.jsonl"
    server.cli("audit", "export", "--file", str(out), check=True)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))
    assert lines[-1]["action"] == "audit.export"
    assert all(line["prev_hash"] == prev["hash"] for prev, line in itertools.pairwise(lines))


def test_verify_passes_on_an_untouched_chain(server: Server) -> None:
    _busy(server)
    result = server.cli("audit", "verify", check=True)
    assert "audit chain intact" in result.stdout


@pytest.mark.parametrize(
    ("statement", "bad_seq", "words"),
    [
        ("UPDATE audit_events SET actor = 'mallory' WHERE seq = 4", 4, "modified"),
        ("DELETE FROM audit_events WHERE seq = 3", 4, "event 3 missing"),
        ("UPDATE audit_events SET details = '{}' WHERE seq = 2", 2, "modified"),
    ],
    ids=["edited-actor", "deleted-row", "edited-details"],
)
def test_tampering_with_plain_sql_is_named(server: Server, statement: str, bad_seq: int, words: str) -> None:
    _busy(server)
    _sql(server, statement)
    result = server.cli("audit", "verify")
    assert result.returncode == 1
    assert f"BROKEN at event {bad_seq}" in result.stderr and words in result.stderr
    data = json.loads(server.cli("audit", "verify", "-o", "json").stdout)
    assert data["ok"] is False and data["first_bad"]["seq"] == bad_seq


def test_swapping_two_rows_is_named(server: Server) -> None:
    _busy(server)
    # exchange the sequence numbers of events 2 and 3 (reordering history)
    _sql(server, "UPDATE audit_events SET seq = -2 WHERE seq = 2")
    _sql(server, "UPDATE audit_events SET seq = 2 WHERE seq = 3")
    _sql(server, "UPDATE audit_events SET seq = 3 WHERE seq = -2")
    result = server.cli("audit", "verify")
    assert result.returncode == 1 and "BROKEN at event 2" in result.stderr


def test_deleting_the_newest_events_is_caught(server: Server) -> None:
    _busy(server)
    _sql(server, "DELETE FROM audit_events WHERE seq = (SELECT MAX(seq) FROM audit_events)")
    result = server.cli("audit", "verify")
    assert result.returncode == 1 and "were deleted" in result.stderr

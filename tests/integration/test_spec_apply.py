"""plan / apply / history / diff through the real CLI and server, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

from conveyor.spec import load_spec_text, render_init
from tests.conftest import Server


def write_spec(server: Server, text: str, name: str = "conveyor.yaml") -> Path:
    path = server.home.parent / name
    path.write_text(text)
    return path


def counts(server: Server) -> tuple[int, int]:
    with server.admin() as http:
        revisions = len(http.get("/api/v1/spec/revisions").json())
        events = len(http.get("/api/v1/audit/events", params={"limit": 10000}).json())
    return revisions, events


def test_plan_apply_and_plan_again(server: Server) -> None:
    write_spec(server, render_init("shop"))
    plan = json.loads(server.cli("plan", "-o", "json", check=True).stdout)
    assert plan["base_revision"] == 0
    assert plan["environments"]["added"] == list(load_spec_text(render_init("shop")).environments)
    assert plan["environments"]["added"][:3] == ["development", "staging", "production"]

    shown = server.cli("plan", check=True).stdout
    assert "+ environment production" in shown and "environment(s) to add" in shown

    applied = server.cli("apply", "--yes", "-m", "first", check=True)
    assert "Applied: revision 1." in applied.stdout
    assert "No changes" in server.cli("apply", "--yes", check=True).stdout
    assert "no changes" in server.cli("plan", check=True).stdout

    status = server.cli("status", check=True).stdout
    assert "revision 1" in status and "production" in status
    with server.admin() as http:
        events = http.get("/api/v1/audit/events", params={"action": "spec.apply"}).json()
    assert len(events) == 1
    assert events[0]["actor"] == "admin" and events[0]["details"]["revision"] == 1
    assert events[0]["source_ip"] == "127.0.0.1" and events[0]["user_agent"].startswith("conveyor-cli/")
    assert events[0]["request_id"]


def test_a_field_change_is_shown_field_by_field_and_diffable(server: Server) -> None:
    text = render_init("shop")
    write_spec(server, text)
    server.cli("apply", "--yes", check=True)
    changed = text.replace("LOG_LEVEL: warn", "LOG_LEVEL: error", 1)
    assert changed != text
    write_spec(server, changed)
    shown = server.cli("plan", check=True).stdout
    assert "~ environment production" in shown
    assert 'config.LOG_LEVEL: "warn" → "error"' in shown
    server.cli("apply", "--yes", check=True)

    history = json.loads(server.cli("spec", "history", "-o", "json", check=True).stdout)
    assert [r["number"] for r in history] == [2, 1]
    diff = json.loads(server.cli("spec", "diff", "1", "2", "-o", "json", check=True).stdout)
    assert list(diff["environments"]["changed"]) == ["production"]
    assert diff["environments"]["changed"]["production"][0]["path"] == ["config", "LOG_LEVEL"]
    assert server.cli("spec", "show", "1", check=True).stdout.strip() == text.strip()
    missing = server.cli("spec", "diff", "1", "9")
    assert missing.returncode == 1 and "revision 9 does not exist" in missing.stderr


def test_removing_an_environment_is_planned_as_a_removal(server: Server) -> None:
    write_spec(server, render_init("shop", frozenset({"qa"})))
    server.cli("apply", "--yes", check=True)
    write_spec(server, render_init("shop"))
    plan = json.loads(server.cli("plan", "-o", "json", check=True).stdout)
    assert plan["environments"]["removed"] == ["qa"]
    server.cli("apply", "--yes", check=True)
    with server.admin() as http:
        names = [e["name"] for e in http.get("/api/v1/environments").json()]
        assert "qa" not in names
        gone = http.get("/api/v1/environments/qa")
        assert gone.status_code == 404


def test_an_invalid_file_changes_nothing(server: Server) -> None:
    write_spec(server, render_init("shop"))
    server.cli("apply", "--yes", check=True)
    before = counts(server)
    bad = render_init("shop").replace("tier: production", "tier: prod", 1)
    path = write_spec(server, bad, "bad.yaml")
    result = server.cli("apply", "--yes", str(path))
    assert result.returncode == 2
    assert "bad.yaml:" in result.stderr and "did you mean 'production'" in result.stderr
    # straight to the API too: the server validates on its own and answers 422 with the position
    with server.admin() as http:
        response = http.post("/api/v1/spec/apply", json={"source": bad, "filename": "bad.yaml"})
    assert response.status_code == 422
    body = response.json()
    assert body["line"] > 0 and body["file"] == "bad.yaml" and "production" in body["hint"]
    assert counts(server) == before


def test_a_stale_plan_is_refused(server: Server) -> None:
    text = render_init("shop")
    with server.admin() as http:
        first = http.post("/api/v1/spec/apply", json={"source": text, "expected_revision": 0})
        assert first.status_code == 200 and first.json()["revision"] == 1
        stale = http.post(
            "/api/v1/spec/apply",
            json={"source": text.replace("LOG_LEVEL: warn", "LOG_LEVEL: error", 1), "expected_revision": 0},
        )
    assert stale.status_code == 409
    assert "revision 1 was applied since" in stale.json()["detail"]
    assert "conveyor plan" in stale.json()["hint"]


def test_apply_in_a_script_needs_yes(server: Server) -> None:
    write_spec(server, render_init("shop"))
    result = server.cli("apply")
    assert result.returncode == 1 and "--yes" in result.stderr
    assert counts(server)[0] == 0

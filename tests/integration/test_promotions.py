"""Promotions end to end: a real server, agent, app processes and router on SQLite and PostgreSQL.

One artifact goes staging (automatic from main, gates) → production (two approvals), failed gates
and failed verifications say why, bad input changes nothing.
"""

from __future__ import annotations

import json
import os
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, Server, free_port

# the store-heavy paths run on both backends; engine behaviour that does not depend on the store runs
# on SQLite only, to keep the suite within its time budget (test_engine_failover covers PostgreSQL)
BOTH = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

SPEC = """
version: 1
project: shop
services:
  web:
    command: python app.py
    version_path: /version
    health: {{path: /healthz, interval: 1s, timeout: 500ms}}
environments:
  development:
    tier: development
    access: {{deploy: [developer, release-manager]}}
    router: {{port: {dev}}}
  staging:
    tier: staging
    access: {{deploy: [release-manager]}}
    promotion:
      automatic: true
      branch: main
      gates:
        - {{type: command, name: tests, run: {run}}}
        - {{type: smoke}}
    router: {{port: {staging}}}
  production:
    tier: production
    access: {{deploy: [release-manager]}}
    approvals: {{required: 2, approver_roles: [release-manager], approvers: [dana]}}
    promotion:
      when_busy: {when_busy}
      gates:
        - {{type: previous-stage}}
        - {{type: smoke}}
{windows}    router: {{port: {production}}}
pipeline:
  stages:
    - {{environment: development, optional: true}}
    - staging
    - production
"""


def write_spec(
    server: Server, tests: str = "true", when_busy: str = "queue", windows: str = ""
) -> dict[str, int]:
    ports = {"dev": free_port(), "staging": free_port(), "production": free_port()}
    run = json.dumps(f"echo testing $CONVEYOR_VERSION >> gate-runs.txt; {tests}")  # JSON is valid YAML
    text = SPEC.format(run=run, when_busy=when_busy, windows=windows, **ports)
    (server.home.parent / "conveyor.yaml").write_text(text)
    server.cli("apply", "--yes", check=True)
    return ports


def bundle(tmp: Path, version: str, app: str | None = None) -> Path:
    """The example app as a bundle; `app` replaces its entry point (to build a broken release)."""
    path = tmp / f"web-{version}.tar.gz"
    stamp = tmp / f"VERSION-{version}"
    stamp.write_text(version + "\n")  # every build differs, as a real one would
    with tarfile.open(path, "w:gz") as tar:
        tar.add(stamp, arcname="VERSION")
        if app is None:
            tar.add(ROOT / "examples/app/app.py", arcname="app.py")
        else:
            tar.add(ROOT / "examples/app/app.py", arcname="real_app.py")
            entry = tmp / f"entry-{version}.py"
            entry.write_text(app)
            tar.add(entry, arcname="app.py")
    return path


def register(server: Server, tmp: Path, version: str, app: str | None = None, branch: str = "main") -> None:
    server.cli(
        "artifact", "register", "web", version, "--bundle", str(bundle(tmp, version, app)),
        "--branch", branch, "--commit", "a1b2c3d", check=True,
    )  # fmt: skip


def add_user(server: Server, name: str, role: str = "release-manager") -> str:
    with server.admin() as http:
        created = http.post("/api/v1/users", json={"name": name, "role": role})
        assert created.status_code == 201, created.text
        return str(created.json()["token"]["token"])


def wait_for(server: Server, promotion: int, states: tuple[str, ...], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with server.admin() as http:
        while True:
            data: dict[str, Any] = http.get(f"/api/v1/promotions/{promotion}").json()
            if data["state"] in states:
                return data
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"promotion {promotion} stayed {data['state']}: {data['explain']['lines']}"
                )
            time.sleep(0.2)


def only_promotion(server: Server, environment: str) -> int:
    with server.admin() as http:
        rows = http.get("/api/v1/promotions", params={"environment": environment}).json()
    assert len(rows) == 1, rows
    return int(rows[0]["id"])


def served_version(port: int, expect: str | None = None, timeout: float = 30) -> str:
    """The version the environment's router serves; with `expect`, wait for it (a recreate has a gap)."""
    deadline = time.monotonic() + timeout
    while True:
        body = httpx.get(f"http://127.0.0.1:{port}/version", timeout=5).json()
        version = str(body.get("version"))
        if expect is None or version == expect or time.monotonic() > deadline:
            return version
        time.sleep(0.2)


def snapshot(server: Server) -> tuple[Any, ...]:
    """What a refused request must leave unchanged."""
    with server.admin() as http:
        promotions = http.get("/api/v1/promotions").json()
        reviews = [len(http.get(f"/api/v1/promotions/{p['id']}").json()["reviews"]) for p in promotions]
        events = [
            e["action"]
            for e in http.get("/api/v1/audit/events", params={"limit": 500}).json()
            if e["action"] != "access.denied"
        ]
    return [(p["id"], p["state"]) for p in promotions], reviews, len(events)


@BOTH
def test_one_artifact_walks_staging_then_production_with_two_approvals(
    server: Server, tmp_path: Path
) -> None:
    ports = write_spec(server)
    rita, sam, lee = (add_user(server, n) for n in ("rita", "sam", "lee"))
    register(server, tmp_path, "1.0.0")

    staging = wait_for(server, only_promotion(server, "staging"), ("succeeded", "rejected", "failed"))
    assert staging["state"] == "succeeded", staging["explain"]["lines"]
    assert staging["trigger"] == "auto"
    assert [g["name"] for g in staging["gates"]] == ["tests", "smoke"]
    assert all(g["state"] == "passed" for g in staging["gates"])
    smoke = staging["gates"][1]["evidence"]["checks"]
    assert {"path": "/version", "reported_version": "1.0.0"}.items() <= smoke[-1].items()
    assert served_version(ports["staging"]) == "1.0.0"
    assert (server.home.parent / "gate-runs.txt").read_text() == "testing 1.0.0\n"

    out = server.cli("promote", "web", "1.0.0", "--to", "production", "--wait", "60", token=rita)
    assert out.returncode == 0, out.stderr
    assert "awaiting_approval" in out.stdout
    assert "who may approve: dana, any release-manager" in out.stdout
    assert "the requester (rita) cannot approve" in out.stdout
    production = only_promotion(server, "production")

    before = snapshot(server)
    own = server.cli("approve", str(production), token=rita)
    assert own.returncode == 1 and "requester never counts" in own.stderr
    assert snapshot(server) == before

    server.cli("approve", str(production), "--comment", "checked the staging run", token=sam, check=True)
    before = snapshot(server)
    twice = server.cli("approve", str(production), token=sam)
    assert twice.returncode == 1 and "counts once" in twice.stderr
    assert snapshot(server) == before
    explained = server.cli("explain", str(production), check=True).stdout
    assert "Approvals: 1 of 2" in explained and "approved so far by sam" in explained

    server.cli("approve", str(production), token=lee, check=True)
    done = wait_for(server, production, ("succeeded", "rolled_back", "failed"))
    assert done["state"] == "succeeded", done["explain"]["lines"]
    assert [t["to"] for t in done["transitions"]] == [
        "requested", "gating", "awaiting_approval", "deploying", "verifying", "succeeded",
    ]  # fmt: skip
    assert {r["user"] for r in done["reviews"]} == {"sam", "lee"}
    assert served_version(ports["production"]) == "1.0.0"

    history = server.cli("history", "production", "-o", "json", check=True).stdout
    assert '"promotion": ' + str(production) in history
    shown = server.cli("artifact", "show", "web", "1.0.0", "-o", "json", check=True).stdout
    assert '"environment": "production"' in shown and '"state": "succeeded"' in shown
    listed = json.loads(server.cli("artifact", "list", "-o", "json", check=True).stdout)
    assert listed[0]["succeeded_in"] == ["production", "staging"]
    assert (
        "staging succeeded (promotion 1)" in server.cli("artifact", "show", "web", "1.0.0", check=True).stdout
    )
    with server.admin() as http:
        actions = [e["action"] for e in http.get("/api/v1/audit/events", params={"limit": 500}).json()]
    for action in ("promotion.request", "promotion.approve", "promotion.deploying", "promotion.succeeded"):
        assert action in actions
    assert server.cli("audit", "verify").returncode == 0


@BOTH
def test_bad_requests_are_refused_and_change_nothing(server: Server, tmp_path: Path) -> None:
    write_spec(server)
    rita = add_user(server, "rita")
    dev = add_user(server, "dana", role="developer")
    register(server, tmp_path, "1.0.0", branch="feature/x")  # not main: nothing starts by itself
    before = snapshot(server)
    cases = [
        (("promote", "api", "1.0.0", "--to", "staging"), "service 'api' is not declared"),
        (
            ("promote", "web", "9.9.9", "--to", "staging"),
            "no artifact web 9.9.9 (registered versions: 1.0.0)",
        ),
        (("promote", "web", "1.0.0", "--to", "prod"), "did you mean 'production'?"),
        (("promote", "web", "1.0.0", "--to", "production"), "has not succeeded in staging"),
        (("approve", "42"), "promotion 42 does not exist"),
        (("promotion", "wait", "42", "--until", "bogus"), "'bogus' is not a promotion state"),
    ]
    for args, message in cases:
        out = server.cli(*args, token=rita)
        assert out.returncode == 1, args
        assert message in out.stderr, (args, out.stderr)
    denied = server.cli("promote", "web", "1.0.0", "--to", "staging", token=dev)
    assert denied.returncode == 1 and "environment:deploy" in denied.stderr
    assert snapshot(server) == before

    with server.http(rita) as http:
        response = http.post("/api/v1/environments/staging/promotions", json={"service": "web"})
        assert response.status_code == 422
        response = http.post("/api/v1/promotions/1/reject", json={"reason": ""})
        assert response.status_code in (404, 422)
    assert snapshot(server) == before


@SQLITE
def test_an_expired_or_revoked_token_cannot_approve(server: Server, tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    from conveyor.store.db import normalize_url

    write_spec(server)
    register(server, tmp_path, "1.0.0")
    wait_for(server, only_promotion(server, "staging"), ("succeeded",))
    rita = add_user(server, "rita")
    sam = add_user(server, "sam")
    server.cli("promote", "web", "1.0.0", "--to", "production", token=rita, check=True)
    production = only_promotion(server, "production")
    wait_for(server, production, ("awaiting_approval",))
    with server.admin() as http:
        issued = http.post("/api/v1/tokens", json={"name": "soon-revoked", "user": "sam"}).json()
        assert http.delete(f"/api/v1/tokens/{issued['id']}").status_code == 200
    engine = create_engine(normalize_url(server.database_url))
    with engine.begin() as conn:  # sam's own token ran out yesterday
        conn.execute(
            text(
                "UPDATE tokens SET expires_at = :t "
                "WHERE user_id = (SELECT id FROM users WHERE name = 'sam') AND revoked_at IS NULL"
            ),
            {"t": "2026-01-01T00:00:00.000000Z"},
        )
    engine.dispose()
    before = snapshot(server)
    out = server.cli("approve", str(production), token=issued["token"])
    assert out.returncode == 1 and "revoked" in out.stderr
    out = server.cli("approve", str(production), token=sam)
    assert out.returncode == 1 and "expired" in out.stderr
    out = server.cli("approve", str(production), token="cvy_" + "x" * 43)
    assert out.returncode == 1 and "token" in out.stderr
    assert snapshot(server) == before

    # a reviewer named in the policy may approve whatever their role
    dana = add_user(server, "dana", role="qa")
    server.cli("approve", str(production), "--comment", "named approver", token=dana, check=True)
    approved = wait_for(server, production, ("awaiting_approval",))
    assert [r["user"] for r in approved["reviews"]] == ["dana"]


@SQLITE
def test_a_failing_gate_rejects_with_its_output_and_can_be_rerun(server: Server, tmp_path: Path) -> None:
    # fails on the first run, passes on the second: a flaky suite
    write_spec(server, tests='test -f second-try || { touch second-try; echo "3 tests failed"; exit 2; }')
    register(server, tmp_path, "1.0.0")
    promotion = only_promotion(server, "staging")
    rejected = wait_for(server, promotion, ("rejected", "succeeded"))
    assert rejected["state"] == "rejected"
    assert rejected["reason"].startswith("gate tests failed:") and "exited 2" in rejected["reason"]
    explained = server.cli("explain", str(promotion), check=True).stdout
    assert "✗ tests" in explained and "3 tests failed" in explained
    run = rejected["gates"][0]
    with server.admin() as http:
        output = http.get(f"/api/v1/promotions/{promotion}/gates/{run['id']}/output").text
    assert output.endswith("3 tests failed\n")

    server.cli("promotion", "rerun", str(promotion), check=True)
    done = wait_for(server, promotion, ("succeeded", "rejected"))
    assert done["state"] == "succeeded", done["explain"]["lines"]
    assert [(g["name"], g["attempt"], g["state"]) for g in done["gates"]] == [
        ("tests", 1, "failed"), ("tests", 2, "passed"), ("smoke", 1, "passed"),
    ]  # fmt: skip


@SQLITE
def test_a_release_that_fails_verification_or_crashes_is_rolled_back(server: Server, tmp_path: Path) -> None:
    ports = write_spec(server)
    register(server, tmp_path, "1.0.0")
    wait_for(server, only_promotion(server, "staging"), ("succeeded",))

    wrong = (
        "import os, runpy\n"
        'os.environ["CONVEYOR_VERSION"] = "0.0.0-wrong-build"\n'
        'runpy.run_path("real_app.py", run_name="__main__")\n'
    )
    register(server, tmp_path, "1.1.0", app=wrong)
    with server.admin() as http:
        second = max(p["id"] for p in http.get("/api/v1/promotions").json())
    rolled = wait_for(server, second, ("rolled_back", "succeeded", "failed"))
    assert rolled["state"] == "rolled_back"
    assert "reports version '0.0.0-wrong-build', expected '1.1.0'" in rolled["reason"]
    assert "returned staging to its previous release" in rolled["reason"]
    assert served_version(ports["staging"], expect="1.0.0") == "1.0.0"

    register(server, tmp_path, "1.2.0", app="import sys\nprint('cannot open config')\nsys.exit(3)\n")
    with server.admin() as http:
        third = max(p["id"] for p in http.get("/api/v1/promotions").json())
    crashed = wait_for(server, third, ("rolled_back", "succeeded", "failed"), timeout=90)
    assert crashed["state"] == "rolled_back"
    assert "code 3" in crashed["reason"] and "cannot open config" in crashed["reason"]
    assert served_version(ports["staging"], expect="1.0.0") == "1.0.0"
    kinds = server.cli("history", "staging", "-o", "json", check=True).stdout
    assert kinds.count('"kind": "rollback"') == 2


@BOTH
def test_promotions_into_one_environment_take_turns_or_are_refused(server: Server, tmp_path: Path) -> None:
    ports = write_spec(server, when_busy="refuse")  # staging queues (the default), production refuses
    register(server, tmp_path, "1.0.0")
    register(server, tmp_path, "1.1.0")
    with server.admin() as http:
        ids = sorted(
            p["id"] for p in http.get("/api/v1/promotions", params={"environment": "staging"}).json()
        )
    assert len(ids) == 2
    done = [wait_for(server, i, ("succeeded", "rejected", "failed", "rolled_back")) for i in ids]
    assert [d["state"] for d in done] == ["succeeded", "succeeded"]

    def holding(d: dict[str, Any]) -> tuple[str, str]:
        start = next(t["at"] for t in d["transitions"] if t["to"] == "deploying")
        return start, d["transitions"][-1]["at"]

    (a_start, a_end), (b_start, b_end) = holding(done[0]), holding(done[1])
    assert a_end <= b_start or b_end <= a_start, "two promotions deployed into staging at once"
    assert served_version(ports["staging"]) == ("1.1.0" if b_start > a_start else "1.0.0")

    rita = add_user(server, "rita")
    server.cli("promote", "web", "1.0.0", "--to", "production", token=rita, check=True)
    # the first one settles at production's approval before the snapshot, so only a change made by
    # the refused request can differ
    wait_for(server, only_promotion(server, "production"), ("awaiting_approval",))
    before = snapshot(server)
    refused = server.cli("promote", "web", "1.1.0", "--to", "production", token=rita)
    assert refused.returncode == 1
    assert "its policy refuses a second one" in refused.stderr and "promotion cancel" in refused.stderr
    assert snapshot(server) == before


@SQLITE
def test_cancel_stops_the_running_gate_process(server: Server, tmp_path: Path) -> None:
    write_spec(server, tests="echo $$ > gate.pid; sleep 60")
    register(server, tmp_path, "1.0.0")
    first = only_promotion(server, "staging")
    pid_file = server.home.parent / "gate.pid"
    deadline = time.monotonic() + 20
    while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.1)
    gate_pid = int(pid_file.read_text())
    os.kill(gate_pid, 0)

    out = server.cli("promotion", "cancel", str(first), "--reason", "superseded by 1.1.0")
    assert out.returncode == 0, out.stderr
    cancelled = wait_for(server, first, ("cancelled",))
    assert "superseded by 1.1.0" in cancelled["reason"]
    assert cancelled["gates"][0]["state"] == "stopped"
    assert cancelled["gates"][0]["reason"] == "stopped: the promotion was cancelled"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(gate_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the cancelled promotion's gate process is still running")
    again = server.cli("promotion", "cancel", str(first), "--reason", "twice")
    assert again.returncode == 1 and "cannot be cancelled" in again.stderr


@SQLITE
def test_a_freeze_holds_a_release_until_an_admin_overrides_it(server: Server, tmp_path: Path) -> None:
    today = time.strftime("%Y-%m-%d", time.gmtime())
    windows = (
        "    windows:\n"
        f"      freezes: [{{name: launch, start: {today}, end: {today}, reason: big launch day}}]\n"
    )
    write_spec(server, windows=windows)
    register(server, tmp_path, "1.0.0")
    wait_for(server, only_promotion(server, "staging"), ("succeeded",))
    rita, sam, lee = (add_user(server, n) for n in ("rita", "sam", "lee"))
    server.cli("promote", "web", "1.0.0", "--to", "production", token=rita, check=True)
    production = only_promotion(server, "production")
    for token in (sam, lee):
        wait_for(server, production, ("awaiting_approval",))
        server.cli("approve", str(production), token=token, check=True)
    held = wait_for(server, production, ("queued",))
    time.sleep(1.5)
    held = wait_for(server, production, ("queued",))
    assert "freeze 'launch'" in held["reason"] and "big launch day" in held["reason"]
    assert "only an admin can override" in held["reason"]

    denied = server.cli("promotion", "override", str(production), "--reason", "please", token=rita)
    assert denied.returncode == 1 and "promotions:override" in denied.stderr
    server.cli("promotion", "override", str(production), "--reason", "security fix CVE-1", check=True)
    done = wait_for(server, production, ("succeeded", "rolled_back", "failed"))
    assert done["state"] == "succeeded"
    assert done["override"] == {"by": "admin", "reason": "security fix CVE-1"}
    listed = server.cli("promotion", "list", "--env", "production", check=True).stdout
    assert "succeeded (override)" in listed


@SQLITE
def test_an_environment_that_requires_a_signature_waits_for_one(server: Server, tmp_path: Path) -> None:
    key = tmp_path / "ci.key"
    public = json.loads(server.cli("artifact", "keygen", "--out", str(key), "-o", "json", check=True).stdout)
    ports = write_spec(server)
    text = (server.home.parent / "conveyor.yaml").read_text()
    text = text.replace(
        "project: shop\n", f"project: shop\nsigning:\n  trusted_keys:\n    ci: {public['public_key']}\n"
    )
    text = text.replace("      automatic: true\n", "      automatic: true\n      require_signature: true\n")
    (server.home.parent / "conveyor.yaml").write_text(text)
    server.cli("apply", "--yes", check=True)

    register(server, tmp_path, "1.0.0")  # unsigned: the signature gate waits for one
    promotion = only_promotion(server, "staging")
    deadline = time.monotonic() + 30
    while "waiting for it until" not in (explained := server.cli("explain", str(promotion)).stdout):
        assert time.monotonic() < deadline, explained
        time.sleep(0.2)
    assert "requires a signature and web 1.0.0 has none from a trusted key (ci)" in explained
    assert wait_for(server, promotion, ("gating",))["state"] == "gating"

    forged = tmp_path / "forged.sig"
    forged.write_text("A" * 86 + "==\n")
    out = server.cli("artifact", "attach", "web", "1.0.0", "--signature", str(forged))
    assert out.returncode == 1 and wait_for(server, promotion, ("gating",))["state"] == "gating"

    digest = json.loads(server.cli("artifact", "show", "web", "1.0.0", "-o", "json", check=True).stdout)[
        "digest"
    ]
    signature = tmp_path / "web.sig"
    signature.write_text(server.cli("artifact", "sign", "--key", str(key), digest, check=True).stdout)
    server.cli("artifact", "attach", "web", "1.0.0", "--signature", str(signature), check=True)
    done = wait_for(server, promotion, ("succeeded", "rejected"))
    assert done["state"] == "succeeded", done["explain"]["lines"]
    assert (done["gates"][0]["name"], done["gates"][0]["state"]) == ("signature", "passed")
    assert "signed by the trusted key 'ci'" in done["gates"][0]["reason"]
    assert served_version(ports["staging"], expect="1.0.0") == "1.0.0"


@SQLITE
def test_rollback_and_redeploy_cover_releases_made_by_promotions(server: Server, tmp_path: Path) -> None:
    ports = write_spec(server)
    for version in ("1.0.0", "1.1.0"):
        register(server, tmp_path, version)
        with server.admin() as http:
            newest = max(p["id"] for p in http.get("/api/v1/promotions").json())
        assert wait_for(server, newest, ("succeeded", "rejected", "failed"))["state"] == "succeeded"
    assert served_version(ports["staging"], expect="1.1.0") == "1.1.0"

    out = server.cli("rollback", "staging", check=True).stdout
    assert "1.0.0" in out
    assert served_version(ports["staging"], expect="1.0.0") == "1.0.0"
    server.cli("redeploy", "staging", check=True)
    history = json.loads(server.cli("history", "staging", "-o", "json", check=True).stdout)
    assert [(h["kind"], h["version"]) for h in history] == [
        ("redeploy", "1.0.0"), ("rollback", "1.0.0"), ("promotion", "1.1.0"), ("promotion", "1.0.0"),
    ]  # fmt: skip
    assert all(h["state"] == "applied" for h in history)

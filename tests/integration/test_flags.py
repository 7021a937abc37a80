"""Feature flags end to end: a change reaches the running example app within seconds and without a restart;
bad input changes nothing; every change is audited; flagd JSON and OFREP serve the same answers."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, free_port
from tests.integration.test_promotions import add_user, register
from tests.unit.flags.schema import FIXTURES, validate

pytestmark = pytest.mark.integration

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
    access: {{deploy: [developer, release-manager], config: [release-manager]}}
    router: {{port: {port}}}
  production:
    tier: production
    access: {{deploy: [release-manager], config: [release-manager]}}
    router: {{port: {production}}}
pipeline:
  stages: [development, production]
"""
PROPAGATION_LIMIT_S = 3.0


def setup_project(server: Server, tmp_path: Path) -> int:
    port = free_port()
    (server.home.parent / "conveyor.yaml").write_text(SPEC.format(port=port, production=free_port()))
    server.cli("apply", "--yes", check=True)
    return port


def app_flag(port: int, key: str, user: str | None = None, **context: str) -> dict[str, Any]:
    headers = {"X-User": user} if user else {}
    url = f"http://127.0.0.1:{port}/flags/{key}"
    body: dict[str, Any] = httpx.get(url, params=context, headers=headers, timeout=5).json()
    return body


def wait_until(port: int, key: str, wanted: dict[str, Any], user: str | None = None, **context: str) -> float:
    """Poll the app through the router until the flag answers `wanted`; the seconds it took."""
    started = time.monotonic()
    while True:
        seen = app_flag(port, key, user, **context)
        if all(seen.get(k) == v for k, v in wanted.items()):
            return time.monotonic() - started
        if time.monotonic() - started > 30:
            raise AssertionError(f"the app still answers {seen} for {key}, expected {wanted}")
        time.sleep(0.02)


def instance_pids(server: Server, environment: str) -> list[int]:
    with server.admin() as http:
        observed = http.get(f"/api/v1/environments/{environment}/runtime").json()["observed"]
    return sorted(int(i["pid"]) for i in observed["instances"])


def ofrep(server: Server, environment: str, key: str, context: dict[str, Any]) -> httpx.Response:
    with server.admin() as http:
        return http.post(
            f"/api/v1/environments/{environment}/ofrep/v1/evaluate/flags/{key}", json={"context": context}
        )


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_flag_change_reaches_the_running_app_within_seconds_without_a_restart(
    server: Server, tmp_path: Path
) -> None:
    port = setup_project(server, tmp_path)
    register(server, tmp_path, "1.0.0")
    server.cli("deploy", "web", "1.0.0", "--env", "development", check=True)
    wait_until(port, "new-checkout", {"reason": "FLAG_NOT_FOUND"})
    pids = instance_pids(server, "development")
    app_pid = app_flag(port, "new-checkout")["pid"]
    delays: dict[str, float] = {}

    # the instance knows where the file is: flagd providers read FLAGD_OFFLINE_FLAG_SOURCE_PATH
    flags_file = server.home / "agent/flags/development.flagd.json"
    setting = httpx.get(f"http://127.0.0.1:{port}/settings/FLAGD_OFFLINE_FLAG_SOURCE_PATH", timeout=5).json()
    assert setting["sha256"] == hashlib.sha256(str(flags_file).encode()).hexdigest()

    # 1. create a boolean flag, off (CLI): measured from the moment the change is acknowledged
    began = time.monotonic()
    created = server.cli(
        "flag", "set", "development", "new-checkout", "--off", "-m", "dark launch", check=True
    )
    acked = time.monotonic()
    assert "running instances read it within seconds" in created.stdout
    seen = wait_until(port, "new-checkout", {"value": False, "variant": "off", "reason": "STATIC"})
    delays["create (after the CLI returned)"] = seen
    delays["create (CLI start to app)"] = seen + (acked - began)
    assert stat.S_IMODE(flags_file.stat().st_mode) == 0o600
    assert validate(json.loads(flags_file.read_text())) == []

    # 2. a 50 % rollout: the app buckets users exactly as Conveyor's own evaluator (OFREP) does
    server.cli("flag", "rollout", "development", "new-checkout", "50", check=True)
    delays["rollout 50% (after the CLI returned)"] = wait_until(
        port, "new-checkout", {"reason": "TARGETING_MATCH"}, user="user-1"
    )
    users = [f"user-{i}" for i in range(40)]
    served = {u: app_flag(port, "new-checkout", u)["value"] for u in users}
    expected = {
        u: ofrep(server, "development", "new-checkout", {"targetingKey": u}).json()["value"] for u in users
    }
    assert served == expected and 5 < sum(served.values()) < 35

    # 3. a targeting rule (CLI `--when` words): example.com users get it whatever their bucket
    server.cli(
        "flag", "target", "development", "new-checkout",
        "--when", "email ends_with @example.com", "--variant", "on", check=True,
    )  # fmt: skip
    outsider = next(u for u, on in served.items() if not on)
    wait_until(port, "new-checkout", {"value": True}, user=outsider, email="ana@example.com")
    assert app_flag(port, "new-checkout", outsider, email="ana@other.org")["value"] is False

    # 4. disable over the API: measured from the request leaving to the app answering DISABLED
    started = time.monotonic()
    with server.admin() as http:
        response = http.post(
            "/api/v1/environments/development/flags/new-checkout/disable", json={"reason": "incident 42"}
        )
    assert response.status_code == 200 and response.json()["delivery"]["delivered"] is True
    wait_until(port, "new-checkout", {"reason": "DISABLED", "value": None}, user="user-1")
    delays["disable (API request to app)"] = time.monotonic() - started

    # nothing restarted: the same instance (pid) answered every time
    assert app_flag(port, "new-checkout")["pid"] == app_pid
    assert instance_pids(server, "development") == pids
    for what, seconds in delays.items():
        print(f"flag propagation, {what}: {seconds * 1000:.0f} ms")
    assert all(seconds < PROPAGATION_LIMIT_S for what, seconds in delays.items() if "CLI start" not in what)
    assert delays["create (CLI start to app)"] < 3 * PROPAGATION_LIMIT_S  # CLI start-up included


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_bad_input_is_refused_changes_nothing_and_every_change_is_audited(
    server: Server, tmp_path: Path
) -> None:
    setup_project(server, tmp_path)
    cli = server.cli

    def flag_events() -> list[dict[str, Any]]:
        with server.admin() as http:
            events = http.get("/api/v1/audit/events", params={"limit": 500}).json()
        return [e for e in events if e["action"].startswith("flag.")]

    unknown = cli("flag", "set", "prod", "beta", "--on")
    assert (
        unknown.returncode == 1 and "environment 'prod' is not in the applied conveyor.yaml" in unknown.stderr
    )
    assert "did you mean 'production'?" in unknown.stderr
    mixed = cli("flag", "set", "production", "theme", "--variants", "a=1,b=x")
    assert mixed.returncode == 1 and "flag 'theme': mixes variant types" in mixed.stderr
    bad_key = cli("flag", "set", "production", "new checkout", "--on")
    assert bad_key.returncode == 1 and "is not a valid flag key" in bad_key.stderr
    (tmp_path / "broken.json").write_text('{"flags": {"a": ')
    broken = cli("flag", "import", "production", str(tmp_path / "broken.json"))
    assert broken.returncode == 1 and "broken.json:1:" in broken.stderr and "not valid JSON" in broken.stderr
    half = {
        "flags": {
            "good": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"},
            "bad": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "maybe"},
        }
    }
    (tmp_path / "half.json").write_text(json.dumps(half))
    refused = cli("flag", "import", "production", str(tmp_path / "half.json"))
    assert refused.returncode == 1
    assert "flag 'bad': defaultVariant 'maybe' is not one of its variants" in refused.stderr
    dev = add_user(server, "dev1", "developer")
    denied = cli("flag", "set", "production", "beta", "--on", token=dev)
    assert denied.returncode == 1 and "environment:config" in denied.stderr
    with server.http(dev) as http:
        response = http.put("/api/v1/environments/production/flags/beta", json={"on": True})
        assert response.status_code == 403 and response.json()["permission"] == "environment:config"
        assert http.get("/api/v1/environments/production/flags").status_code == 200  # reading is allowed
    assert json.loads(cli("flag", "list", "production", "-o", "json", check=True).stdout)["flags"] == []
    assert flag_events() == []

    cli("flag", "set", "production", "beta", "--on", "-m", "launch", check=True)
    target_bad = cli("flag", "target", "production", "beta", "--when", "plan == pro", "--variant", "maybe")
    assert target_bad.returncode == 1 and "has no variant 'maybe'" in target_bad.stderr
    when_bad = cli("flag", "target", "production", "beta", "--when", "plan is pro", "--variant", "on")
    assert when_bad.returncode == 1 and "'is' is not a condition operator" in when_bad.stderr
    too_much = cli("flag", "rollout", "production", "beta", "120")
    assert too_much.returncode == 1
    cli("flag", "set", "production", "beta", "--off", "-m", "not yet", check=True)
    cli("flag", "delete", "production", "beta", "-m", "cleanup", check=True)
    events = flag_events()  # newest first
    assert [e["action"] for e in events] == ["flag.delete", "flag.set", "flag.set"]
    assert all(e["environment"] == "production" and e["actor"] == "admin" for e in events)
    created, switched, deleted = reversed(events)
    assert created["details"]["before"] is None and created["details"]["after"]["defaultVariant"] == "on"
    assert created["details"]["reason"] == "launch"
    assert switched["details"]["before"]["defaultVariant"] == "on"
    assert switched["details"]["after"]["defaultVariant"] == "off"
    assert deleted["details"]["before"]["defaultVariant"] == "off" and deleted["details"]["after"] is None
    with server.admin() as http:
        chain = http.get("/api/v1/audit/verify").json()
    assert chain["ok"] is True


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_flagd_files_round_trip_and_ofrep_answers_like_flagd(server: Server, tmp_path: Path) -> None:
    setup_project(server, tmp_path)
    cli = server.cli
    example = FIXTURES / "example.flagd.json"
    imported = json.loads(cli("flag", "import", "production", str(example), "-o", "json", check=True).stdout)
    assert len(imported["created"]) == 8 and imported["changed"] == imported["unchanged"] == []
    exported = cli("flag", "export", "production", check=True).stdout
    document = json.loads(exported)
    assert validate(document) == [] and document["$schema"] == "https://flagd.dev/schema/v0/flags.json"
    (tmp_path / "again.json").write_text(exported)
    again = json.loads(cli("flag", "import", "production", str(tmp_path / "again.json"), "-o", "json").stdout)
    assert len(again["unchanged"]) == 8  # $evaluators were inlined; the export is the same flags

    evaluated = cli("flag", "eval", "production", "fibAlgo", "--context", "email=ross@faas.com", check=True)
    assert 'fibAlgo = "binet" (variant binet, TARGETING_MATCH)' in evaluated.stdout
    missing = cli("flag", "eval", "production", "nope")
    assert missing.returncode == 1 and "FLAG_NOT_FOUND" in missing.stderr

    single = ofrep(server, "production", "isColorYellow", {"color": "yellow"})
    assert single.status_code == 200
    assert single.json() == {
        "key": "isColorYellow", "value": True, "variant": "on", "reason": "TARGETING_MATCH",
        "metadata": {"flagSetId": "conveyor/production"},
    }  # fmt: skip
    not_found = ofrep(server, "production", "nope", {})
    assert not_found.status_code == 404 and not_found.json()["errorCode"] == "FLAG_NOT_FOUND"
    cli("flag", "disable", "production", "myBoolFlag", check=True)
    disabled = ofrep(server, "production", "myBoolFlag", {}).json()
    assert disabled["reason"] == "DISABLED" and "value" not in disabled  # the app's own default applies
    with server.admin() as http:
        bulk = http.post("/api/v1/environments/production/ofrep/v1/evaluate/flags", json={"context": {}})
        assert bulk.status_code == 200 and len(bulk.json()["flags"]) == 8
        cached = http.post(
            "/api/v1/environments/production/ofrep/v1/evaluate/flags",
            json={"context": {}},
            headers={"If-None-Match": bulk.headers["etag"]},
        )
        assert cached.status_code == 304
        served = http.get("/api/v1/environments/production/flags/flagd.json").json()
    assert served["flags"]["myBoolFlag"]["state"] == "DISABLED"

    custom = cli("flag", "rollout", "production", "headerColor", "10")
    assert custom.returncode == 1 and "targeting Conveyor did not write" in custom.stderr
    listed = cli("flag", "list", "production", check=True).stdout
    assert "headerColor" in listed and "custom targeting" in listed


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_change_while_the_agent_is_down_is_stored_and_delivered_when_it_returns(
    server: Server, tmp_path: Path
) -> None:
    port = setup_project(server, tmp_path)
    register(server, tmp_path, "1.0.0")
    server.cli("deploy", "web", "1.0.0", "--env", "development", check=True)
    server.cli("flag", "set", "development", "banner", "--variants", 'text="hello"', check=True)
    wait_until(port, "banner", {"value": "hello"})

    agent_pid = int((server.home / "agent.pid").read_text())
    agent_port = json.loads((server.home / "agent.json").read_text())["url"].rsplit(":", 1)[1]
    os.kill(agent_pid, signal.SIGKILL)  # the agent this test's server started
    deadline = time.monotonic() + 15
    while Path(f"/proc/{agent_pid}").exists() and "Z" not in _state(agent_pid):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    pending = server.cli("flag", "set", "development", "banner", "--variants", 'text="bye"', check=True)
    assert "delivery to running instances is pending" in pending.stdout
    assert json.loads((server.home / "agent/flags/development.flagd.json").read_text())["flags"]["banner"][
        "variants"
    ] == {"text": "hello"}

    # the agent comes back with its instances; the next deployment delivers the stored flags
    server.cli("up", "--port", server.url.rsplit(":", 1)[1], "--agent-port", agent_port, check=True)
    server.cli("deploy", "web", "1.0.0", "--env", "development", check=True)
    wait_until(port, "banner", {"value": "bye"})


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"

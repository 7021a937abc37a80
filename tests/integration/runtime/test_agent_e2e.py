"""The local runtime end to end: register, deploy, route real traffic, survive an agent kill -9."""

from __future__ import annotations

import json
import os
import re
import signal
import tarfile
import time
from pathlib import Path

import httpx
import pytest

from conveyor.spec import render_init
from tests.conftest import ROOT, Server, free_port

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _bundle(tmp: Path, marker: str) -> Path:
    """A .tar.gz of the example app, made distinct by a marker file."""
    path = tmp / f"app-{marker}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(ROOT / "examples/app/app.py", arcname="app.py")
        info_file = tmp / f"BUILD-{marker}"
        info_file.write_text(marker)
        tar.add(info_file, arcname="BUILD")
    return path


def _spec(router_port: int) -> str:
    text = render_init("shop")
    text = re.sub(r"port: 81\d\d", lambda _m: f"port: {free_port()}", text)
    text = text.replace("instances: {min: 1, max: 2}   # no autoscaling", "instances: 2", 1)
    text = text.replace("interval: 10s", "interval: 1s", 1).replace("timeout: 2s", "timeout: 500ms", 1)
    # the development router gets the port the test reads from
    head, _, tail = text.partition("  development:")
    tail = re.sub(r"port: \d+", f"port: {router_port}", tail, count=1)
    return head + "  development:" + tail


def generate_secrets(server: Server, environment: str) -> None:
    """Values for the secrets the template's service needs (the template declares references only)."""
    for name in ("POSTGRES_PASSWORD", "JWT_SECRET", "API_KEY"):
        server.cli("secret", "set", environment, name, "--generate", check=True)


def _gone(pid: int) -> bool:
    """The process no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _get(port: int) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}/hello", timeout=5)


def _version(port: int) -> str | None:
    """The version that answered, or None while nothing is ready yet."""
    response = _get(port)
    return response.json().get("version") if response.status_code == 200 else None


def _wait(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def test_register_deploy_route_and_restore_after_agent_kill(server: Server, tmp_path: Path) -> None:
    port = free_port()
    (server.home.parent / "conveyor.yaml").write_text(_spec(port))
    server.cli("apply", "--yes", check=True)
    generate_secrets(server, "development")
    v1, v2 = _bundle(tmp_path, "one"), _bundle(tmp_path, "two")
    server.cli("artifact", "register", "web", "1.0.0", "--bundle", str(v1), check=True)
    server.cli("artifact", "register", "web", "1.1.0", "--bundle", str(v2), check=True)

    deployed = server.cli("deploy", "web", "1.0.0", "--env", "development", check=True)
    assert "1.0.0 is live in development: 2/2 instance(s) ready" in deployed.stdout
    response = _get(port)
    assert response.status_code == 200
    assert response.json()["version"] == "1.0.0" and response.json()["environment"] == "development"
    assert response.headers["x-conveyor-version"] == "1.0.0"
    # the environment's config reaches the instances as environment variables
    instances = {_get(port).json()["instance"] for _ in range(20)}
    assert len(instances) == 2, "both instances take traffic"

    ps = json.loads(server.cli("ps", "--env", "development", "-o", "json", check=True).stdout)
    states = [i["state"] for i in ps["development"]["instances"]]
    assert states == ["ready", "ready"]
    logs = server.cli("logs", "development", "--lines", "5", check=True).stdout
    assert "example app 1.0.0 (development) listening" in logs
    traffic = json.loads(server.cli("traffic", "development", "-o", "json", check=True).stdout)
    assert traffic["versions"]["1.0.0"]["requests"] >= 21

    # chaos: faults injected at the router show up in what the client sees and in the metrics
    server.cli("fault", "development", "1.0.0", "--error-rate", "1", "--latency-ms", "30", check=True)
    assert {_get(port).status_code for _ in range(20)} == {500}
    stats = json.loads(server.cli("traffic", "development", "--window", "5", "-o", "json", check=True).stdout)
    injected = stats["versions"]["1.0.0"]
    assert injected["errors"] >= 20 and injected["error_rate"] > 0.3 and injected["p99_ms"] >= 30
    server.cli("fault", "development", "1.0.0", "--clear", check=True)
    assert {_get(port).status_code for _ in range(20)} == {200}
    unknown = server.cli("fault", "development", "9.9.9", "--error-rate", "0.5")
    assert unknown.returncode == 1 and "does not run in development" in unknown.stderr

    server.cli("deploy", "web", "1.1.0", "--env", "development", check=True)
    _wait(lambda: _version(port) == "1.1.0")

    # kill -9 the agent: routes and instances come back from its persisted state
    agent_pid = int((server.home / "agent.pid").read_text())
    agent_port = json.loads((server.home / "agent.json").read_text())["url"].rsplit(":", 1)[1]
    listed = json.loads(server.cli("ps", "-o", "json", check=True).stdout)
    old_pids = {i["pid"] for i in listed["development"]["instances"]}
    os.kill(agent_pid, signal.SIGKILL)
    _wait(lambda: _gone(agent_pid))
    with pytest.raises(httpx.TransportError):
        _get(port)
    down = server.cli("ps")
    assert down.returncode == 1 and "agent" in down.stderr and "not reachable" in down.stderr
    server.cli("up", "--port", server.url.rsplit(":", 1)[1], "--agent-port", agent_port, check=True)
    _wait(lambda: _version(port) == "1.1.0")
    ps = json.loads(server.cli("ps", "-o", "json", check=True).stdout)
    assert [i["state"] for i in ps["development"]["instances"]] == ["ready", "ready"]
    # the instances of the killed agent did not linger
    assert all(_gone(pid) for pid in old_pids)


def test_a_tampered_bundle_is_refused_and_nothing_changes(server: Server, tmp_path: Path) -> None:
    port = free_port()
    (server.home.parent / "conveyor.yaml").write_text(_spec(port))
    server.cli("apply", "--yes", check=True)
    generate_secrets(server, "development")
    server.cli("artifact", "register", "web", "1.0.0", "--bundle", str(_bundle(tmp_path, "a")), check=True)
    registered = json.loads(
        server.cli(
            "artifact",
            "register",
            "web",
            "2.0.0",
            "--bundle",
            str(_bundle(tmp_path, "b")),
            "-o",
            "json",
            check=True,
        ).stdout
    )
    server.cli("deploy", "web", "1.0.0", "--env", "development", check=True)
    blob = server.home / "artifacts/sha256" / (registered["digest"].removeprefix("sha256:") + ".tar.gz")
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))

    refused = server.cli("deploy", "web", "2.0.0", "--env", "development")
    assert refused.returncode == 1
    assert "digest" in refused.stderr and registered["digest"] in refused.stderr
    assert _get(port).json()["version"] == "1.0.0"
    with server.admin() as http:
        events = http.get("/api/v1/audit/events", params={"action": "deploy.finish"}).json()
    assert events[0]["outcome"] == "failure" and "digest" in events[0]["details"]["error"]


def test_rollback_and_redeploy_replay_exact_releases(server: Server, tmp_path: Path) -> None:
    port = free_port()
    (server.home.parent / "conveyor.yaml").write_text(_spec(port))
    server.cli("apply", "--yes", check=True)
    generate_secrets(server, "development")
    nothing = server.cli("rollback", "development")
    assert nothing.returncode == 1 and "nothing has been deployed to development yet" in nothing.stderr
    server.cli("artifact", "register", "web", "1.0.0", "--bundle", str(_bundle(tmp_path, "r1")), check=True)
    server.cli("artifact", "register", "web", "1.1.0", "--bundle", str(_bundle(tmp_path, "r2")), check=True)
    server.cli("deploy", "web", "1.0.0", "--env", "development", check=True)
    only_one = server.cli("rollback", "development")
    assert only_one.returncode == 1 and "no earlier release to roll back to" in only_one.stderr

    server.cli("deploy", "web", "1.1.0", "--env", "development", check=True)
    assert _version(port) == "1.1.0"
    rolled = server.cli("rollback", "development", check=True)
    assert (
        "(rollback): web 1.0.0 → development" in rolled.stdout and "is live in development" in rolled.stdout
    )
    assert _version(port) == "1.0.0"
    server.cli("redeploy", "development", check=True)
    assert _version(port) == "1.0.0"

    history = json.loads(server.cli("history", "development", "-o", "json", check=True).stdout)
    assert [(h["kind"], h["version"], h["state"]) for h in history] == [
        ("redeploy", "1.0.0", "applied"),
        ("rollback", "1.0.0", "applied"),
        ("deploy", "1.1.0", "applied"),
        ("deploy", "1.0.0", "applied"),
    ]
    assert len({h["config_sha256"] for h in history}) == 1 and all(h["finished_at"] for h in history)
    table = server.cli("history", "development", check=True).stdout
    assert "rollback" in table and "applied" in table
    with server.admin() as http:
        actions = [
            e["action"] for e in http.get("/api/v1/audit/events", params={"action": "rollback.*"}).json()
        ]
    assert actions == ["rollback.finish", "rollback.start"]

"""Two real servers on one PostgreSQL store: one is killed with SIGKILL mid-promotion, the other finishes it.

No step runs twice: the command gate's side effect is counted in a file, deployments in the store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, free_port, start_server
from tests.integration.test_promotions import bundle

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

SPEC = """
version: 1
project: shop
services:
  web:
    command: python app.py
    version_path: /version
    health: {{path: /healthz, interval: 1s, timeout: 500ms}}
environments:
  staging:
    tier: staging
    promotion:
      automatic: true
      branch: main
      gates:
        - {{type: command, name: tests, run: "echo ran >> side-effects.txt; sleep 3"}}
        - {{type: smoke}}
    router: {{port: {port}}}
"""
ENGINE_ENV = {"CONVEYOR_ENGINE_LEASE": "3", "CONVEYOR_ENGINE_TICK": "0.2"}


@pytest.fixture
def first(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    for key, value in ENGINE_ENV.items():
        monkeypatch.setenv(key, value)
    srv = start_server(tmp_path / "project", database_url)
    try:
        yield srv
    finally:
        srv.cli("down")


def second_server(first: Server) -> tuple[subprocess.Popen[bytes], str]:
    """Another server process on the same store, home and agent (as a second machine would share them)."""
    port = free_port()
    agent = json.loads((first.home / "agent.json").read_text())["url"]
    env = {
        **os.environ,
        **ENGINE_ENV,
        "CONVEYOR_HOME": str(first.home),
        "CONVEYOR_DATABASE_URL": first.database_url,
        "CONVEYOR_AGENT_URL": agent,
    }
    log = (first.home / "second-server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "server", "--port", str(port)],
        cwd=first.home.parent,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the second server did not start")


def promotion(url: str, token: str) -> dict[str, Any]:
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=10) as http:
        rows = http.get("/api/v1/promotions").json()
        assert len(rows) == 1
        data: dict[str, Any] = http.get(f"/api/v1/promotions/{rows[0]['id']}").json()
        return data


def wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("kill_at", ["gate-running", "deploying"])
def test_a_killed_server_s_promotion_is_finished_by_the_other_without_repeating_a_step(
    first: Server, tmp_path: Path, kill_at: str
) -> None:
    port = free_port()
    (first.home.parent / "conveyor.yaml").write_text(SPEC.format(port=port))
    first.cli("apply", "--yes", check=True)
    effects = first.home.parent / "side-effects.txt"
    first.cli(
        "artifact", "register", "web", "1.0.0", "--bundle", str(bundle(tmp_path, "1.0.0")),
        "--branch", "main", check=True,
    )  # fmt: skip

    if kill_at == "gate-running":
        wait_until(lambda: effects.exists() and effects.read_text(), 30, "the gate command to start")
    else:
        wait_until(lambda: promotion(first.url, first.admin_token)["state"] == "deploying", 60, "deploying")
    os.kill(first.pid(), signal.SIGKILL)

    proc, url = second_server(first)
    try:
        ended = ("succeeded", "rejected", "failed")
        done = wait_until(
            lambda: (p := promotion(url, first.admin_token))["state"] in ended and p,
            90,
            "the second server to finish the promotion",
        )
        assert done["state"] == "succeeded", done["explain"]["lines"]
        assert effects.read_text() == "ran\n", "the gate command ran more than once"
        tests_runs = [g for g in done["gates"] if g["name"] == "tests"]
        assert [(g["attempt"], g["state"]) for g in tests_runs] == [(1, "passed")]
        assert [t["to"] for t in done["transitions"]] == [
            "requested", "gating", "deploying", "verifying", "succeeded",
        ]  # fmt: skip
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {first.admin_token}"}) as http:
            history = http.get("/api/v1/environments/staging/history").json()
            assert [(d["kind"], d["state"]) for d in history] == [("promotion", "applied")]
            assert httpx.get(f"http://127.0.0.1:{port}/version").json()["version"] == "1.0.0"
            verified = http.get("/api/v1/audit/verify")
            assert verified.status_code == 200 and verified.json()["ok"] is True, verified.text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

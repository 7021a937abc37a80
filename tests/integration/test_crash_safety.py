"""kill -9 the server in the middle of an apply: the store holds the old or the new revision, never a mix."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx

from conveyor.spec import load_spec_text, render_init
from tests.conftest import Cli, free_port, start_server


def _wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_apply_survives_server_kill_before_commit(database_url: str, tmp_path: Path) -> None:
    server = start_server(tmp_path / "project", database_url)
    first = render_init("shop")
    second = render_init("shop", frozenset({"qa", "dr"})).replace("LOG_LEVEL: warn", "LOG_LEVEL: error", 1)
    with server.admin() as http:
        assert http.post("/api/v1/spec/apply", json={"source": first}).json()["revision"] == 1
    server.cli("down", check=True)

    # restart with a pause inside the apply transaction, after every row is written but before commit
    paused = Cli(server.home, {**server.cli.env, "CONVEYOR_FAULT_PAUSE": "apply.before_commit=60"})
    port = server.url.rsplit(":", 1)[1]
    paused("up", "--port", port, "--agent-port", str(free_port()), check=True)
    url = server.url
    outcome: dict[str, object] = {}

    def apply_second() -> None:
        try:
            httpx.post(
                f"{url}/api/v1/spec/apply",
                json={"source": second},
                headers={"authorization": f"Bearer {server.admin_token}"},
                timeout=90,
            )
            outcome["answered"] = True
        except httpx.TransportError as exc:
            outcome["error"] = type(exc).__name__

    thread = threading.Thread(target=apply_second)
    thread.start()
    _wait_for(lambda: "fault pause point apply.before_commit" in server.log())
    os.kill(int((server.home / "server.pid").read_text()), signal.SIGKILL)
    thread.join(30)
    assert "error" in outcome and "answered" not in outcome

    server.cli("up", "--port", port, "--agent-port", str(free_port()), check=True)
    try:
        with server.admin() as http:
            revisions = http.get("/api/v1/spec/revisions").json()
            assert [r["number"] for r in revisions] == [1]
            envs = [e["name"] for e in http.get("/api/v1/environments").json()]
            assert envs == list(load_spec_text(first).environments)
            prod = http.get("/api/v1/environments/production").json()
            assert prod["spec"]["config"]["LOG_LEVEL"] == "warn"
            verify = http.get("/api/v1/audit/verify").json()
            assert verify["ok"], verify
            applies = http.get("/api/v1/audit/events", params={"action": "spec.apply"}).json()
            assert len(applies) == 1
            # and the work can be done again, completely
            again = http.post("/api/v1/spec/apply", json={"source": second}).json()
            assert again["revision"] == 2
            envs = [e["name"] for e in http.get("/api/v1/environments").json()]
            assert envs == list(load_spec_text(second).environments)
            assert "qa" in envs and "dr" in envs
            assert http.get("/api/v1/audit/verify").json()["ok"]
        status = json.loads(server.cli("status", "-o", "json", check=True).stdout)
        assert status["spec"]["revision"] == 2
    finally:
        server.cli("down")

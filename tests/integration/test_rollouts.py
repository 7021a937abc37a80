"""Canary rollouts end to end: real server, agent, app processes, router and load on loopback.

A release that starts failing at the 10% step is rolled back by analysis; the test measures the
reaction time (first failed request → no more requests reach the bad version) and how many requests
saw it. A server killed with SIGKILL mid-step resumes the same step, and traffic never drops.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, free_port, start_server
from tests.integration.test_promotions import add_user, register

pytestmark = pytest.mark.integration
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

SPEC = """
version: 1
project: shop
services:
  web:
    command: python app.py
    version_path: /version
    health: {{path: /healthz, interval: 500ms, timeout: 400ms}}
environments:
  production:
    tier: production
    scale: {{instances: 2}}
    slos: {{error_rate: 1%, latency: {{p99: 2s}}}}
    strategy:
      type: canary
      steps:
{steps}
      analysis: {{interval: 1s, min_requests: 20, window: 30s}}
{keep}    router: {{port: {port}}}
pipeline:
  stages: [production]
"""


@dataclass
class Load:
    """Steady traffic through the router from a few threads; every response's version and status kept."""

    port: int
    threads: int = 2
    log: list[tuple[float, int, str]] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        for _ in range(self.threads):
            worker = threading.Thread(target=self._run, daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def _run(self) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=5) as http:
            while not self._stop.is_set():
                http.cookies.clear()  # every request is a new visitor: the weighted split decides
                try:
                    response = http.get("/")
                    self.log.append(
                        (
                            time.monotonic(),
                            response.status_code,
                            response.headers.get("x-conveyor-version", ""),
                        )
                    )
                except httpx.HTTPError as exc:
                    self.failures.append((time.monotonic(), repr(exc)))
                time.sleep(0.004)

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=10)


@contextmanager
def production(tmp_path: Path, database_url: str, steps: str, keep: str = "") -> Iterator[tuple[Server, int]]:
    """A server whose production runs 1.0.0 and has 1.1.0 registered; stopped however the test ends."""
    server = start_server(tmp_path / "project", database_url, {"CONVEYOR_ENGINE_TICK": "0.2"})
    try:
        port = free_port()
        (server.home.parent / "conveyor.yaml").write_text(SPEC.format(steps=steps, port=port, keep=keep))
        server.cli("apply", "--yes", check=True)
        for version in ("1.0.0", "1.1.0"):
            register(server, tmp_path, version)
        promote(server, "1.0.0", ("succeeded",))
        yield server, port
    finally:
        server.cli("down")


def promote(server: Server, version: str, until: tuple[str, ...] | None = None) -> int:
    with server.admin() as http:
        created = http.post(
            "/api/v1/environments/production/promotions", json={"service": "web", "version": version}
        )
        assert created.status_code == 201, created.text
        promotion = int(created.json()["id"])
    if until:
        wait_state(server, promotion, until)
    return promotion


def wait_state(
    server: Server, promotion: int, states: tuple[str, ...], timeout: float = 90
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with server.admin() as http:
        while True:
            try:
                data: dict[str, Any] = http.get(f"/api/v1/promotions/{promotion}").json()
            except httpx.HTTPError:
                data = {"state": "unreachable", "reason": "server restarting"}
            if data["state"] in states:
                return data
            assert time.monotonic() < deadline, (
                f"promotion {promotion} stayed {data['state']}: {data['reason']}"
            )
            time.sleep(0.1)


def rollout(server: Server) -> dict[str, Any]:
    with server.admin() as http:
        data: dict[str, Any] = http.get(
            "/api/v1/environments/production/rollout", params={"analysis": 50}
        ).json()
    return data["rollout"] or {}


def wait_step(server: Server, step: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        data = rollout(server)
        if data.get("step") == step and data.get("phase") == "progressing":
            return data
        assert time.monotonic() < deadline, f"rollout never reached step {step}: {data}"
        time.sleep(0.05)


@SQLITE
def test_a_release_failing_at_the_10_percent_step_is_rolled_back_by_analysis(
    database_url: str, tmp_path: Path
) -> None:
    steps = "\n".join(
        f"        - {step}"
        for step in ("{weight: 5%, pause: 1s}", "{weight: 10%, pause: 60s}", "{weight: 50%, pause: 5s}")
    )
    with production(tmp_path, database_url, steps) as (server, port):
        load = Load(port).start()
        promotion = promote(server, "1.1.0")
        wait_step(server, 1)
        with server.http(add_user(server, "dev1", "developer")) as http:
            denied = http.post("/api/v1/environments/production/rollout/abort", json={"reason": "mine"})
        assert denied.status_code == 403 and "environment:rollout" in denied.text, denied.text
        # the new version starts failing half of its requests, as a bad code path reached under load would
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"x-conveyor-version": "1.1.0"}
        ) as http:
            assert http.post("/_fault", json={"error_rate": 0.5}).status_code == 200
        broke_at = time.monotonic()
        done = wait_state(server, promotion, ("rolled_back", "succeeded", "failed"), timeout=60)
        time.sleep(1.0)
        load.stop()
        assert done["state"] == "rolled_back", done["reason"]
        assert "error rate" in done["reason"] and "step 2 (10%)" in done["reason"], done["reason"]
        after = [(t, s, v) for t, s, v in load.log if t >= broke_at]
        bad = [(t, s, v) for t, s, v in after if v == "1.1.0"]
        failed = [t for t, s, v in bad if s >= 500]
        assert failed, "no request failed: the fault never reached the new version"
        reaction = bad[-1][0] - failed[0]
        print(
            f"\nrollback reaction {reaction:.2f} s; {len(bad)} requests reached 1.1.0 after the fault, "
            f"{len(failed)} failed; {len(after)} requests in all"
        )
        assert reaction < 1.0 + 3.0, f"rollback took {reaction:.2f} s from the first failed request"
        assert not load.failures, load.failures[:3]
        tail = [v for t, s, v in load.log if t >= bad[-1][0] + 0.5]
        assert tail and set(tail) == {"1.0.0"}, set(tail)
        data = rollout(server)
        assert data["phase"] == "aborted" and data["weights"] == {"1.1.0": 0, "1.0.0": 10_000}
        failing = [run for run in data["analysis_runs"] if run["outcome"] == "fail"]
        assert failing and failing[-1]["numbers"]["new"]["errors"] > 0
        assert failing[-1]["numbers"]["stable"]["requests"] > 0
        with server.admin() as http:
            events = http.get("/api/v1/audit/events", params={"action": "rollout.abort"}).json()
        assert events, "the abort was not audited"


@SQLITE
def test_a_server_killed_mid_step_resumes_the_same_step_and_traffic_never_drops(
    database_url: str, tmp_path: Path
) -> None:
    # step 0 outlasts the outage plus a restart on a busy machine, so the same step is what resumes
    steps = "        - {weight: 10%, pause: 10s}\n        - {weight: 50%, pause: 2s}"
    keep = "      keep_old: {hot: 2s, standby: 2s}\n"
    with production(tmp_path, database_url, steps, keep) as (server, port):
        load = Load(port).start()
        promotion = promote(server, "1.1.0")
        first = wait_step(server, 0)
        time.sleep(1.0)
        os.kill(server.pid(), signal.SIGKILL)
        time.sleep(1.5)  # the data plane serves on its own meanwhile
        server.cli("up", "--port", server.url.rsplit(":", 1)[1], check=True)
        resumed = rollout(server)
        assert resumed["step"] == 0 and resumed["step_started_at"] == first["step_started_at"], resumed
        done = wait_state(server, promotion, ("succeeded", "rolled_back", "failed"), timeout=60)
        time.sleep(1.0)
        load.stop()
        assert done["state"] == "succeeded", done["reason"]
        assert not load.failures, load.failures[:3]
        assert all(s == 200 for _, s, _ in load.log), {s for _, s, _ in load.log}
        with server.admin() as http:
            events = http.get("/api/v1/audit/events", params={"action": "rollout.step", "limit": 50}).json()
        moves = sorted((e["details"]["from_step"], e["details"]["to_step"]) for e in events)
        assert moves == [(-1, 0), (0, 1), (1, 2)], moves
        served = {v for _, _, v in load.log[-50:]}
        assert served == {"1.1.0"}, served
        # the old version stays hot (running, no traffic), then on standby (kept, no instances), then goes
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not seen or seen[-1] != ("retired", ())):
            phase = rollout(server)["phase"]
            with server.admin() as http:
                runtime = http.get("/api/v1/environments/production/runtime").json()
            desired = runtime["observed"]["desired"]
            old = tuple(v["instances"] for v in desired["versions"] if v["version"] == "1.0.0")
            if not seen or seen[-1] != (phase, old):
                seen.append((phase, old))
            time.sleep(0.2)
        assert seen[0] == ("hot", (2,)) and seen[-1] == ("retired", ()), seen
        assert ("standby", (0,)) in seen, seen


GATED = """
version: 1
project: shop
services:
  web:
    command: python app.py
    version_path: /version
    health: {{path: /healthz, interval: 500ms, timeout: 400ms}}
environments:
  staging:
    tier: staging
    scale: {{instances: 2, expected_rps: 20}}
    slos: {{error_rate: 1%, latency: {{p99: 500ms}}}}
    promotion:
      gates:
        - {{type: load, ramp_from: 1, multiplier: 3, duration: 5m}}
        - type: chaos
          experiments:
            - {{kind: kill-instance, count: 1}}
            - {{kind: latency, delay: 100ms, percent: 10%}}
          duration: 5m
    strategy: {{type: bluegreen}}
    router: {{port: {port}}}
pipeline:
  stages: [staging]
"""


@SQLITE
def test_load_and_chaos_gates_judge_the_new_version_before_it_gets_traffic(
    database_url: str, tmp_path: Path
) -> None:
    server = start_server(tmp_path / "project", database_url, {"CONVEYOR_TIME_SCALE": "0.01"})
    try:
        port = free_port()
        (server.home.parent / "conveyor.yaml").write_text(GATED.format(port=port))
        server.cli("apply", "--yes", check=True)
        for version in ("1.0.0", "1.1.0"):
            register(server, tmp_path, version)
        server.cli("deploy", "web", "1.0.0", "--env", "staging", check=True)  # what runs there before
        with server.admin() as http:
            second = http.post(
                "/api/v1/environments/staging/promotions", json={"service": "web", "version": "1.1.0"}
            )
            promotion = int(second.json()["id"])
            done = wait_state(server, promotion, ("succeeded", "rolled_back", "failed"), timeout=120)
            assert done["state"] == "succeeded", done["reason"]
            gates = {g["name"]: g for g in http.get(f"/api/v1/promotions/{promotion}").json()["gates"]}
        load, chaos = gates["load"], gates["chaos"]
        assert load["state"] == "passed" and chaos["state"] == "passed", (load["reason"], chaos["reason"])
        assert load["evidence"]["requests"] > 50, load["evidence"]
        assert "1.1.0" in load["reason"] or load["evidence"].get("version") == "1.1.0", load
        assert len(chaos["evidence"]["experiments"]) == 2, chaos["evidence"]
    finally:
        server.cli("down")

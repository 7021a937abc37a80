"""Load and chaos gates against a real agent running the example app; healthy passes, broken fails.

The gates talk to the runtime only through `LocalDriver`, so this starts `conveyor agent` alone (no
server, no store) and applies desired state to it directly, one environment per scenario.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conveyor.errors import NotFound
from conveyor.pipeline.gate_chaos import run_chaos
from conveyor.pipeline.gate_load import load_schedule, run_load
from conveyor.runtime.desired import EnvironmentDesired, HealthPolicy, VersionDesired
from conveyor.runtime.local.bundle import digest_file
from conveyor.runtime.local.client import LocalDriver, ensure_agent_token
from conveyor.spec.gates import ChaosGate, LoadGate
from conveyor.spec.operations import Latency, Slos
from conveyor.spec.types import Duration, Percent
from tests.conftest import ROOT, free_port

VERSION = "1.0.0"
SLOS = Slos(error_rate=Percent("2"), latency=Latency(p99=Duration(200)))
SCALE = 0.1  # 30s gate durations run for 3 s
LOAD = LoadGate.model_validate({"type": "load", "multiplier": 2, "ramp_from": 1, "duration": "30s"})

Deploy = Callable[..., tuple[EnvironmentDesired, str]]


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDriver]:
    """`conveyor agent` in the foreground on a free port, with its own home."""
    home = tmp_path_factory.mktemp("agent") / ".conveyor"
    home.mkdir()
    token = ensure_agent_token(home)
    port = free_port()
    log = open(home / "agent.log", "wb")  # noqa: SIM115 - closed after the process below
    env = {**os.environ, "CONVEYOR_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "agent", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: httpx.get(f"{url}/healthz", timeout=1).status_code == 200, "the agent answers")
        yield LocalDriver(url, token)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The example app as a bundle, with its digest."""
    path = tmp_path_factory.mktemp("bundle") / "app.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(ROOT / "examples/app/app.py", arcname="app.py")
    return path, digest_file(path)


@pytest.fixture
def deploy(driver: LocalDriver, bundle: tuple[Path, str]) -> Iterator[Deploy]:
    """Run the example app in a new environment; returns its desired state and router URL."""
    applied: list[str] = []

    def make(environment: str, instances: int = 2, **app_env: str) -> tuple[EnvironmentDesired, str]:
        port = free_port()
        desired = EnvironmentDesired(
            environment=environment,
            service="web",
            command=("python", "app.py"),
            versions=(VersionDesired(VERSION, bundle[1], str(bundle[0]), instances, 10_000),),
            env=dict(app_env),
            health=HealthPolicy(interval=0.5, timeout=1.0),
            router_port=port,
        )
        driver.apply(desired)
        applied.append(environment)
        _until(
            lambda: _ready(driver, environment) == instances,
            f"{instances} ready instance(s) in {environment}",
        )
        return desired, f"http://127.0.0.1:{port}"

    yield make
    for environment in applied:
        httpx.delete(f"{driver.url}/v1/environments/{environment}", headers=driver._headers, timeout=30)


def _ready(driver: LocalDriver, environment: str) -> int:
    return sum(i["state"] == "ready" for i in driver.observe(environment)["instances"])


def _until(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not reached within {timeout:g}s: {what}")


class TestLoadGate:
    def test_a_healthy_app_holds_its_slos_under_a_ramp(self, deploy: Deploy) -> None:
        _, url = deploy("healthy")
        schedule = load_schedule(LOAD, 50, SCALE)
        assert schedule == [(0.0, 50.0), (1.0, 75.0), (2.0, 100.0)]
        outcome = run_load(url, VERSION, schedule, SLOS, requested_peak_rps=100)
        assert outcome.verdict == "passed", outcome.reason
        assert outcome.reason.startswith(f"{VERSION} under load (peak 100 rps) held the SLOs across ")
        evidence = outcome.evidence
        assert evidence["requests"] == 225 and evidence["statuses"] == {"200": 225}
        assert evidence["achieved_rps"] == evidence["target_rps"] == 75
        assert evidence["capped"] is False and evidence["p99_ms"] < 200

    @pytest.mark.parametrize(
        ("app_env", "fragment"),
        [
            ({"APP_ERROR_RATE": "0.3"}, "error rate"),
            ({"APP_LATENCY_MS": "300"}, "p99 3"),
        ],
        ids=["errors", "latency"],
    )
    def test_a_misbehaving_app_fails_naming_the_broken_objective(
        self, deploy: Deploy, app_env: dict[str, str], fragment: str
    ) -> None:
        _, url = deploy(f"broken-{next(iter(app_env)).lower().replace('_', '-')}", **app_env)
        outcome = run_load(url, VERSION, load_schedule(LOAD, 50, SCALE), SLOS)
        assert outcome.verdict == "failed"
        assert outcome.reason.startswith(f"{VERSION} under load (peak 100 rps) broke the SLOs: {fragment}")
        assert outcome.reason.endswith("across 225 requests")

    def test_a_rate_the_generator_cannot_reach_fails_and_says_so(self, deploy: Deploy) -> None:
        _, url = deploy("unreachable-rate", instances=1, APP_LATENCY_MS="500")
        # two requests in flight at most, 500 ms each: about 4 rps of the 100 asked for
        outcome = run_load(url, VERSION, [(0.0, 100.0), (1.0, 100.0)], SLOS, concurrency=2, min_requests=1)
        assert outcome.verdict == "failed"
        assert "the load generator reached only " in outcome.reason and " of 100 rps" in outcome.reason


class TestChaosGate:
    def test_killing_one_of_two_instances_is_absorbed_and_it_comes_back(
        self, driver: LocalDriver, deploy: Deploy
    ) -> None:
        _, url = deploy("chaos-kill")
        before = {i["key"]: i["pid"] for i in driver.observe("chaos-kill")["instances"]}
        gate = ChaosGate.model_validate(
            {"type": "chaos", "duration": "30s", "experiments": [{"kind": "kill-instance", "count": 1}]}
        )
        outcome = run_chaos(driver, "chaos-kill", VERSION, url, gate, SLOS, SCALE)
        assert outcome.verdict == "passed", outcome.reason
        assert outcome.reason == f"{VERSION} held the SLOs through 1 experiment(s): kill-instance ×1"
        experiment = outcome.evidence["experiments"][0]
        assert experiment["requests"] == 150 and experiment["recovered_after_s"] is not None
        killed = experiment["killed"][0]
        assert before[killed["instance"]] == killed["pid"]
        after = {i["key"]: i for i in driver.observe("chaos-kill")["instances"]}
        assert after[killed["instance"]]["pid"] != killed["pid"]
        assert after[killed["instance"]]["last_exit_code"] == -signal.SIGKILL
        assert experiment["recovered_after_s"] < 10
        with pytest.raises(NotFound, match=r"instance chaos-kill/web/9\.9\.9/0 does not run in environment"):
            driver.kill_instance("chaos-kill", "chaos-kill/web/9.9.9/0")

    def test_injected_latency_and_errors_fail_by_name_and_are_always_taken_away(
        self, driver: LocalDriver, deploy: Deploy
    ) -> None:
        desired, url = deploy("chaos-faults")
        gate = ChaosGate.model_validate(
            {
                "type": "chaos",
                "duration": "30s",
                "experiments": [
                    {"kind": "latency", "delay": "300ms", "percent": "25%"},
                    {"kind": "errors", "status": 503, "percent": "50%"},
                ],
            }
        )
        outcome = run_chaos(driver, "chaos-faults", VERSION, url, gate, SLOS, SCALE)
        assert outcome.verdict == "failed"
        assert outcome.reason.startswith("2 of 2 chaos experiment(s) failed: ")
        latency, errors = outcome.evidence["experiments"]
        # a quarter of the requests delayed: the median stays fast, the tail carries the delay
        assert latency["p50_ms"] < 300 <= latency["p99_ms"], latency
        assert f"{VERSION} during latency 300ms on 25% of requests broke the SLOs: p99 3" in outcome.reason
        assert set(errors["statuses"]) == {"200", "503"}
        assert f"{VERSION} during errors 503 on 50% of requests broke the SLOs: error rate " in outcome.reason
        assert "over the 2% objective" in outcome.reason
        restored = EnvironmentDesired.from_json(driver.observe("chaos-faults")["desired"])
        assert restored == desired, "the faults are gone again"
        assert httpx.get(url, timeout=5).status_code == 200

    def test_asking_to_kill_more_instances_than_run_stops_the_gate_with_the_reason(
        self, driver: LocalDriver, deploy: Deploy
    ) -> None:
        _, url = deploy("chaos-too-few", instances=1)
        gate = ChaosGate.model_validate(
            {
                "type": "chaos",
                "duration": "10s",
                "experiments": [{"kind": "kill-instance", "count": 2}, {"kind": "errors"}],
            }
        )
        outcome = run_chaos(driver, "chaos-too-few", VERSION, url, gate, SLOS, SCALE)
        assert outcome.verdict == "failed"
        assert outcome.reason == (
            "1 of 2 chaos experiment(s) failed: kill-instance ×2 could not be carried out: "
            f"only 1 ready instance(s) of {VERSION} in chaos-too-few; the experiment kills 2; "
            "run more instances or lower the experiment's count (not run: errors 503 on 10% of requests)"
        )

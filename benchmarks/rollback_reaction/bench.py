"""Rollback reaction benchmark: how fast Conveyor takes traffic away from a release that starts failing.

`make bench-rollback` runs it (README.md next to this file explains what and why). It starts a real
server and agent (`conveyor up`, SQLite, a throwaway home), an environment with a canary strategy and
the default analysis settings, keeps a steady open-loop load on the environment's router, and for
each scenario promotes a new version, waits until it holds 10% of the traffic, makes it fail a share
of its requests (`POST /_fault` through the router) and measures from the responses the load saw how
long the failing version kept getting traffic. It appends the numbers to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from results import Run, machine, report, show  # this directory: sys.path[0] when run as a script

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
APP = ROOT / "examples" / "app" / "app.py"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
ENV = "production"
STABLE = "1.0.0"
ENDED = ("succeeded", "rejected", "cancelled", "failed", "rolled_back")  # pipeline.decide.TERMINAL_STATES
SCENARIOS = {"100%": 1.0, "20%": 0.2, "5%": 0.05}
SPEC = """\
version: 1
project: bench
services:
  web:
    command: python app.py
    version_path: /version
    health: {{path: /healthz, interval: 500ms, timeout: 400ms}}
environments:
  production:
    tier: production
    scale: {{instances: 2}}
    slos: {{error_rate: 0.1%, latency: {{p99: 500ms}}}}
    strategy:
      type: canary
      steps:
        - {{weight: 1%, pause: 30s}}
        - {{weight: 10%, pause: 10m}}
        - {{weight: 50%, pause: 10m}}
      analysis: {{}}
    router: {{port: {port}}}
pipeline:
  stages: [production]
"""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse_time(stamp: str) -> float:
    """A server timestamp (UTC ISO 8601) as seconds since the epoch."""
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


# --- the server ---------------------------------------------------------------------------------


@dataclass
class Server:
    """A real `conveyor up` in a throwaway home; `cli` runs the real command against it."""

    home: Path
    url: str = ""
    token: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        """Run `python -m conveyor ARGS` with this home; returns stdout."""
        env = {**os.environ, **self.env, "CONVEYOR_HOME": str(self.home), "NO_COLOR": "1"}
        env.pop("CONVEYOR_TOKEN", None)
        env.pop("CONVEYOR_TIME_SCALE", None)  # measured at the real default interval
        if "CONVEYOR_ENGINE_TICK" not in self.env:
            env.pop("CONVEYOR_ENGINE_TICK", None)  # the default tick unless --tick says otherwise
        done = subprocess.run(
            [sys.executable, "-m", "conveyor", *args],
            cwd=self.home.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise SystemExit(
                f"conveyor {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
            )
        return done.stdout

    def api(self) -> httpx.Client:
        """An HTTP client for the server's API with the admin token."""
        return httpx.Client(base_url=self.url, headers={"authorization": f"Bearer {self.token}"}, timeout=30)


def start_server(workdir: Path, tick: str | None) -> Server:
    """`conveyor up` on free ports with SQLite under `workdir`."""
    home = workdir / "project" / ".conveyor"
    home.parent.mkdir(parents=True)
    env = {"CONVEYOR_DATABASE_URL": f"sqlite:///{workdir / 'state.db'}"}
    if tick:
        env["CONVEYOR_ENGINE_TICK"] = tick
    server = Server(home, env=env)
    port = free_port()
    server.cli("up", "--port", str(port), "--agent-port", str(free_port()))
    server.url = f"http://127.0.0.1:{port}"
    server.token = json.loads((home / "credentials").read_text())["token"]
    return server


def ours(home: Path) -> list[int]:
    """Pids of this home's processes: CONVEYOR_HOME in their environment or a cwd in its project."""
    marker, project = f"CONVEYOR_HOME={home}".encode(), str(home.parent)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cwd = os.readlink(entry / "cwd")
            inside = cwd == project or cwd.startswith(project + "/")
            if inside or marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
    return found


def stop_server(server: Server) -> list[int]:
    """`conveyor down`, then end anything of ours still running, by pid; returns the leftovers found."""
    with contextlib.suppress(Exception):
        server.cli("down", check=False, timeout=60)
    leftovers = ours(server.home)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in leftovers):
        time.sleep(0.1)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return leftovers


@contextlib.contextmanager
def running_server(workdir: Path, tick: str | None) -> Iterator[Server]:
    """A server for the whole benchmark, stopped however the benchmark ends."""
    server = start_server(workdir, tick)
    try:
        yield server
    finally:
        leftovers = stop_server(server)
        if leftovers:
            print(f"stopped {len(leftovers)} leftover process(es) after `conveyor down`: {leftovers}")


def register(server: Server, workdir: Path, version: str) -> None:
    """Register examples/app/app.py as VERSION of `web` (a VERSION file makes every build distinct)."""
    stamp = workdir / f"VERSION-{version}"
    stamp.write_text(version + "\n")
    bundle = workdir / f"web-{version}.tar.gz"
    with tarfile.open(bundle, "w:gz") as tar:
        tar.add(stamp, arcname="VERSION")
        tar.add(APP, arcname="app.py")
    server.cli("artifact", "register", "web", version, "--bundle", str(bundle), "--branch", "main")


# --- promotions and the rollout -----------------------------------------------------------------


def promote(server: Server, version: str) -> int:
    """Start a promotion of VERSION to production; returns its id."""
    with server.api() as http:
        created = http.post(
            f"/api/v1/environments/{ENV}/promotions", json={"service": "web", "version": version}
        )
    if created.status_code != 201:
        raise SystemExit(f"promoting {version} failed: {created.status_code} {created.text}")
    return int(created.json()["id"])


def promotion(server: Server, promotion_id: int) -> dict[str, Any]:
    """The promotion's current state and reason."""
    with server.api() as http:
        data: dict[str, Any] = http.get(f"/api/v1/promotions/{promotion_id}").json()
    return data


def wait_ended(server: Server, promotion_id: int, timeout: float, poll: float = 0.05) -> dict[str, Any]:
    """Poll until the promotion ends (or `timeout`); the result carries `seen_at` (monotonic)."""
    deadline = time.monotonic() + timeout
    while True:
        data = promotion(server, promotion_id)
        if data["state"] in ENDED or time.monotonic() > deadline:
            return {**data, "seen_at": time.monotonic()}
        time.sleep(poll)


def rollout(server: Server, runs: int = 20) -> dict[str, Any]:
    """The environment's latest rollout with its recent analysis runs."""
    with server.api() as http:
        data = http.get(f"/api/v1/environments/{ENV}/rollout", params={"analysis": runs}).json()
    return data["rollout"] or {}


def wait_step(server: Server, promotion_id: int, step: int, timeout: float) -> dict[str, Any]:
    """Poll until the promotion's rollout is progressing at `step`; stops early if the promotion ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = rollout(server, 0)
        if data.get("promotion") == promotion_id:
            if data.get("step") == step and data.get("phase") == "progressing":
                return data
            if data.get("phase") not in (None, "preview", "progressing"):
                break
        time.sleep(0.05)
    state = promotion(server, promotion_id)
    raise SystemExit(
        f"promotion {promotion_id} never held step {step + 1}: {state['state']} ({state.get('reason')})"
    )


def inject_fault(router_port: int, version: str, error_rate: float) -> None:
    """Make VERSION's instance answer 500 to a share of its requests (through the router's override)."""
    with httpx.Client(base_url=f"http://127.0.0.1:{router_port}", timeout=5) as http:
        answer = http.post(
            "/_fault", json={"error_rate": error_rate}, headers={"x-conveyor-version": version}
        )
    served_by = answer.headers.get("x-conveyor-version")
    if answer.status_code != 200 or served_by != version:
        raise SystemExit(f"fault injection reached {served_by!r}: {answer.status_code} {answer.text}")


def new_instances(server: Server, version: str) -> int:
    """How many instances of VERSION the runtime runs (a fault reaches one instance)."""
    with server.api() as http:
        observed = http.get(f"/api/v1/environments/{ENV}/runtime").json()["observed"]
    versions = observed.get("desired", {}).get("versions", [])
    return sum(int(v.get("instances", 0)) for v in versions if v.get("version") == version)


# --- load ---------------------------------------------------------------------------------------


@dataclass
class Load:
    """Open-loop traffic at a fixed rate through the router, from a few threads; every response kept.

    Thread k sends the requests scheduled at t0 + i/rate for i ≡ k (mod threads): a slow response
    delays only that thread's next slot, and `late` counts requests sent over 50 ms after their slot.
    Cookies are cleared before every request so each one is a new visitor and the weighted split decides.
    """

    port: int
    rate: float
    threads: int = 8
    log: list[tuple[float, int, str]] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)
    late: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        """Start the threads; the schedule starts now."""
        t0 = time.monotonic() + 0.1
        for k in range(self.threads):
            worker = threading.Thread(target=self._run, args=(t0, k), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def _run(self, t0: float, k: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=5) as http:
            i = k
            while not self._stop.is_set():
                slot = t0 + i / self.rate
                i += self.threads
                wait = slot - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                elif wait < -0.05:
                    with self._lock:
                        self.late += 1
                http.cookies.clear()
                try:
                    response = http.get("/")
                    record = (
                        time.monotonic(),
                        response.status_code,
                        response.headers.get("x-conveyor-version", ""),
                    )
                    with self._lock:
                        self.log.append(record)
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.errors.append((time.monotonic(), repr(exc)))

    def between(self, start: float, end: float) -> list[tuple[float, int, str]]:
        """Responses received in [start, end]."""
        with self._lock:
            return [r for r in self.log if start <= r[0] <= end]

    def stop(self) -> None:
        """Stop the threads and wait for them."""
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=10)


# --- one run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """When the fault starts: `dwell` s into the 10% step, or right after that step's first analysis run.

    Analysis runs come every interval from the step's start, so the moment of the fault within that
    cycle sets how long the next run is away: 2 s in is 3 s before it, right after a run is a whole
    interval before the next (the worst case).
    """

    dwell: float = 2.0
    after_analysis: bool = False

    def words(self) -> str:
        """The moment, for the report."""
        if self.after_analysis:
            return "right after the 10% step's first analysis run (worst phase: a whole interval to the next)"
        return f"{self.dwell:g} s after the 10% step started (`step_started_at`)"


def reach_step(server: Server, version: str, timing: Timing) -> int:
    """Promote VERSION and return its promotion id at the moment `timing` says, in the 10% step (index 1)."""
    promotion_id = promote(server, version)
    step = wait_step(server, promotion_id, 1, timeout=180)
    if not timing.after_analysis:
        time.sleep(max(0.0, parse_time(step["step_started_at"]) + timing.dwell - time.time()))
        return promotion_id
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        data = rollout(server, 3)
        if any(run["step"] == 1 for run in data.get("analysis_runs", [])):
            return promotion_id
        time.sleep(0.02)
    raise SystemExit(f"no analysis run at the 10% step of promotion {promotion_id} within 30 s")


def measure(server: Server, load: Load, router_port: int, scenario: str, version: str, timing: Timing) -> Run:
    """One run: promote, fault at the 10% step, wait for the rollback, read what the load saw."""
    promotion_id = reach_step(server, version, timing)
    instances = new_instances(server, version)
    inject_fault(router_port, version, SCENARIOS[scenario])
    fault = (time.monotonic(), time.time())
    done = wait_ended(server, promotion_id, timeout=120)
    if done["state"] not in ENDED:
        with server.api() as http:  # leave a clean stable for the next run; the report shows the state
            http.post(f"/api/v1/environments/{ENV}/rollout/abort", json={"reason": "benchmark timeout"})
        wait_ended(server, promotion_id, timeout=30)
    time.sleep(1.5)  # responses still in flight, and the clean tail after the switch
    seen = load.between(fault[0], time.monotonic())
    return summarise(scenario, version, done, fault, seen, rollout(server, 50), instances)


def summarise(
    scenario: str,
    version: str,
    done: dict[str, Any],
    fault: tuple[float, float],
    seen: list[tuple[float, int, str]],
    data: dict[str, Any],
    instances: int,
) -> Run:
    """A run's numbers from the responses after the fault and the rollout's stored analysis runs."""
    fault_at, fault_wall = fault
    bad = [r for r in seen if r[2] == version]
    failed = [r for r in bad if r[1] >= 500]
    last_bad = bad[-1][0] if bad else None
    after = sorted(
        (r for r in data.get("analysis_runs", []) if parse_time(r["at"]) >= fault_wall), key=lambda r: r["at"]
    )
    verdict = next((r for r in after if r["outcome"] == "fail"), None)
    verdict_s = parse_time(verdict["at"]) - fault_wall if verdict else None  # both on this machine's clock
    new = verdict["numbers"].get("new", {}) if verdict else {}
    until_last = [r for r in seen if last_bad is not None and r[0] <= last_bad]
    tail = [r for r in seen if last_bad is not None and r[0] >= last_bad + 0.5]
    gone_s = last_bad - fault_at if last_bad is not None else None
    return Run(
        scenario=scenario,
        version=version,
        state=done["state"],
        reason=str(done.get("reason") or ""),
        reaction_s=last_bad - failed[0][0] if failed and last_bad is not None else None,
        fault_to_gone_s=gone_s,
        fault_to_state_s=done["seen_at"] - fault_at,
        fault_to_verdict_s=verdict_s,
        verdict_to_gone_s=gone_s - verdict_s if gone_s is not None and verdict_s is not None else None,
        analyses=len(after) if verdict is None else after.index(verdict) + 1,
        evidence=f"{new.get('errors', '?')} of {new.get('requests', '?')}" if verdict else "–",
        bad_requests=len(bad),
        bad_failed=len(failed),
        share=len(bad) / len(until_last) if until_last else None,
        clean_after=bool(tail) and {r[2] for r in tail} == {STABLE},
        new_instances=instances,
    )


# --- main ---------------------------------------------------------------------------------------


def versions() -> Iterator[str]:
    """1.1.0, 1.1.1, …: one new version per run."""
    n = 0
    while True:
        yield f"1.1.{n}"
        n += 1


def prepare(server: Server, workdir: Path, total: int) -> int:
    """conveyor.yaml, every version registered, 1.0.0 running at 100%; returns the router port."""
    port = free_port()
    (server.home.parent / "conveyor.yaml").write_text(SPEC.format(port=port))
    server.cli("apply", "--yes")
    names = versions()
    for version in [STABLE, *(next(names) for _ in range(total))]:
        register(server, workdir, version)
    first = promote(server, STABLE)
    done = wait_ended(server, first, timeout=120, poll=0.2)
    if done["state"] != "succeeded":
        raise SystemExit(f"the first release {STABLE} did not succeed: {done['state']} ({done['reason']})")
    return port


def timing(args: argparse.Namespace) -> Timing:
    """The fault's moment from the options."""
    return Timing(args.dwell, args.after_analysis)


def run_all(server: Server, port: int, args: argparse.Namespace, chosen: list[str]) -> tuple[list[Run], Load]:
    """Every scenario `repeats` times, interleaved, under one steady load."""
    runs: list[Run] = []
    names = versions()
    load = Load(port, args.rate, args.threads).start()
    try:
        # interleaved: slow drifts of a shared machine hit every scenario alike
        for _ in range(args.repeats):
            for scenario in chosen:
                runs.append(measure(server, load, port, scenario, next(names), timing(args)))
                show(runs[-1])
    finally:
        load.stop()
    return runs, load


def described(args: argparse.Namespace, load: Load, took: float) -> dict[str, str]:
    """How this run was set up, in words, for the report."""
    tick = f"{args.tick} s (set with --tick)" if args.tick else "unset (0.5 s default)"
    command = "make bench-rollback" if os.environ.get("MAKELEVEL") else " ".join(["python", *sys.argv])
    return {
        "command": command,
        "took": f"{took / 60:.1f} min",
        "load": f"{args.rate:g} req/s open loop through the environment's router ({args.threads} threads,"
        " cookies cleared before every request so the weighted split decides), `GET /` on"
        f" examples/app/app.py; {len(load.log)} responses, {load.late} requests sent over 50 ms after"
        f" their slot, {len(load.errors)} transport errors",
        "settings": "SQLite store; 2 instances; canary steps 1% for 30 s, 10% for 10 min, 50% for 10 min;"
        " `analysis: {}`, i.e. the defaults (interval 5 s, window 1 m, min_requests 50, confidence 99.9%,"
        " failure_limit 1, SLO thresholds, compare to stable); SLOs error_rate 0.1%, p99 500 ms;"
        f" CONVEYOR_TIME_SCALE unset; CONVEYOR_ENGINE_TICK {tick}",
        "each": f"promote the next 1.1.x over {STABLE}; {timing(args).words()}, inject the fault:"
        ' `POST /_fault {"error_rate": R}` with `X-Conveyor-Version: 1.1.x`'
        " through the router (the new version's one instance answers 500 to a share R of its requests);"
        f" {args.repeats} run(s) per scenario, interleaved",
    }


def main() -> None:
    """Parse the options, run every scenario, print and append the report."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs per scenario (about 40 s each)")
    parser.add_argument("--rate", type=float, default=200, help="requests per second through the router")
    parser.add_argument("--threads", type=int, default=8, help="load generator threads")
    parser.add_argument("--dwell", type=float, default=2.0, help="seconds at the 10%% step before the fault")
    parser.add_argument(
        "--after-analysis",
        action="store_true",
        help="fault right after the 10%% step's first analysis run instead (the worst phase)",
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"any of {', '.join(SCENARIOS)}")
    parser.add_argument("--tick", default=None, help="CONVEYOR_ENGINE_TICK in seconds (default: unset, 0.5)")
    parser.add_argument(
        "--no-append", action="store_true", help=f"print only, do not append to {RESULTS.name}"
    )
    args = parser.parse_args()
    chosen = args.scenarios.split(",")
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenario {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}")
    # a plain `kill` (or `timeout`) must still run the clean-up below: turn SIGTERM into SystemExit
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    info = machine()
    began = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="conveyor-rollback-") as tmp,
        running_server(Path(tmp), args.tick) as server,
    ):
        port = prepare(server, Path(tmp), args.repeats * len(chosen))
        print(f"server {server.url}, router :{port}, {STABLE} at 100%; load {args.rate:g} req/s", flush=True)
        runs, load = run_all(server, port, args, chosen)
    text = report(runs, info, described(args, load, time.monotonic() - began))
    print("\n" + text)
    if not args.no_append:
        with RESULTS.open("a") as out:
            out.write("\n" + text)
        print(f"appended to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

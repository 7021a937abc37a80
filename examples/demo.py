"""`make demo`: the journey Conveyor supports today, run for real in ./.demo with the real CLI.

init → validate (and a broken file) → up → plan → apply → change → plan/apply/diff → users, roles,
tokens → a denied action → status → 1.0.0 built once: development by hand, staging by itself through
tests, scans, load and chaos, production after two approvals → steady traffic on production →
1.1.0 through every traffic step to 100% → 1.2.0 with a defect, rolled back by analysis on its own
→ history → audit list / verify / export → down.

Durations in the rollout policy run 100 times faster (CONVEYOR_TIME_SCALE=0.01): a 5-minute step
takes 3 seconds. conveyor.yaml itself is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".demo"
CONVEYOR = [sys.executable, "-m", "conveyor"]


def step(title: str) -> None:
    bold, plain = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")
    print(f"\n{bold}== {title}{plain}", flush=True)


def run(*args: str, token: str | None = None, expect: int = 0, stdin: str | None = None) -> str:
    """Run `conveyor ARGS` as a user would, echoing the command and its output."""
    env = {**os.environ, "CONVEYOR_HOME": str(WORK / ".conveyor")}
    env.pop("CONVEYOR_TOKEN", None)
    shown = "conveyor " + " ".join(args)
    if token:
        env["CONVEYOR_TOKEN"] = token
        shown = "CONVEYOR_TOKEN=… " + shown
    if stdin is not None:
        shown = "… | " + shown  # the value itself is never echoed
    print(f"$ {shown}", flush=True)
    proc = subprocess.run([*CONVEYOR, *args], cwd=WORK, env=env, capture_output=True, text=True, input=stdin)
    sys.stdout.write(proc.stdout)
    sys.stdout.write(proc.stderr)
    if proc.returncode != expect:
        raise SystemExit(f"demo failed: `{shown}` exited {proc.returncode}, expected {expect}")
    return proc.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def token_in(output: str) -> str:
    return next(word for word in output.split() if word.startswith("cvy_"))


def main() -> None:
    os.environ.setdefault("CONVEYOR_TIME_SCALE", "0.01")
    if (WORK / ".conveyor" / "server.pid").exists():
        subprocess.run(
            [*CONVEYOR, "down"],
            cwd=WORK,
            env={**os.environ, "CONVEYOR_HOME": str(WORK / ".conveyor")},
            capture_output=True,
        )
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    spec = WORK / "conveyor.yaml"

    step("Write a conveyor.yaml with the three tiers, plus QA and DR")
    run("init", "--with", "qa,dr", "--project", "shop")
    # the demo's routers take free ports, so it runs beside whatever already uses 8101-8105
    spec.write_text(re.sub(r"port: 81\d\d", lambda _m: f"port: {free_port()}", spec.read_text()))
    run("validate")

    step("A file with mistakes is explained, line by line, and nothing happens")
    broken = WORK / "broken.yaml"
    text = spec.read_text()
    broken.write_text(text.replace("tier: production", "tier: prod", 1).replace("approvals:", "aprovals:", 1))
    run("validate", "broken.yaml", expect=2)

    step("Start the server in the background (first start creates the admin)")
    run("up", "--port", str(free_port()))
    try:
        journey(spec, text)
    finally:
        step("Stop the server")
        run("down")
    print(
        f"\nThe demo's state is in {WORK}. Explore it: cd .demo && ../.venv/bin/conveyor up && "
        "../.venv/bin/conveyor status"
    )


def journey(spec: Path, text: str) -> None:
    run("status")

    step("Plan and apply the file as revision 1")
    run("plan")
    run("apply", "--yes", "--message", "initial environments")

    step("Change production's log level: plan shows the field that changes")
    spec.write_text(text.replace("LOG_LEVEL: warn", "LOG_LEVEL: error", 1))
    run("plan")
    run("apply", "--yes", "--message", "quieter production logs")
    run("spec", "history")
    run("spec", "diff", "1", "2")

    step("People: a release manager and a developer, each with a token shown once")
    rita = token_in(run("user", "add", "rita", "--role", "release-manager"))
    dev = token_in(run("user", "add", "dev1", "--role", "developer"))
    run("user", "list")
    run("token", "create", "--name", "ci", "--expires-in-days", "30")
    run("token", "list", "--all")
    run("whoami", token=rita)

    step("A developer may plan a change but not apply it: the 403 names the missing permission")
    spec.write_text(spec.read_text().replace("DB_POOL_SIZE: 20", "DB_POOL_SIZE: 30", 1))
    run("plan", token=dev)
    run("apply", "--yes", token=dev, expect=1)
    run("apply", "--yes", "--message", "bigger staging pool", token=rita)

    step("Status: server, store, environments")
    run("status")

    promote(rita)

    step("The audit trail: who did what, from where; the hash chain verifies")
    run("audit", "list", "--limit", "12")
    run("audit", "list", "--action", "spec.*")
    run("audit", "verify")
    run("audit", "export", "--file", "audit.jsonl")


def bundle(version: str, defect: dict[str, object] | None = None) -> Path:
    """Package the example app as a .tar.gz bundle, as CI would once per build."""
    path = WORK / f"web-{version}.tar.gz"
    (WORK / "VERSION").write_text(version + "\n")  # every build differs, as a real one would
    with tarfile.open(path, "w:gz") as tar:
        tar.add(ROOT / "examples/app/app.py", arcname="app.py")
        tar.add(WORK / "VERSION", arcname="VERSION")
        if defect is not None:
            (WORK / "defects.json").write_text(json.dumps(defect))
            tar.add(WORK / "defects.json", arcname="defects.json")
    return path


def router_port(environment: str) -> int:
    return int(YAML().load(WORK / "conveyor.yaml")["environments"][environment]["router"]["port"])


def demo_pipeline(spec: Path) -> None:
    """The gates and rollout settings this demo runs, sized for one laptop."""
    yaml = YAML()
    doc = yaml.load(spec)
    envs = doc["environments"]
    staging, production = envs["staging"], envs["production"]
    envs["qa"]["promotion"]["gates"] = [
        {"type": "command", "name": "unit-tests", "run": "python3 checks/test_app.py"},
    ]
    chaos = [{"kind": "kill-instance", "count": 1}, {"kind": "latency", "delay": "100ms", "percent": "10%"}]
    staging["promotion"]["gates"] = [
        {"type": "command", "name": "unit-tests", "run": "python3 checks/test_app.py"},
        {"type": "scan", "fail_on": "high", "reports": ["sast"]},
        {"type": "tests", "reports": ["unit"]},
        {
            "type": "command",
            "name": "integration",
            "when": "after",
            "run": "python3 checks/check_deployed.py",
        },
        {"type": "smoke"},
        {"type": "load", "ramp_from": 1, "multiplier": 5, "duration": "5m"},
        {"type": "chaos", "experiments": chaos, "duration": "5m"},
    ]
    staging["scale"]["expected_rps"] = 50  # what one laptop can drive 5x of, next to everything else
    production["promotion"]["gates"] = [{"type": "previous-stage"}, {"type": "smoke"}, {"type": "window"}]
    production["windows"]["allow"] = []  # the demo may run on any day; freezes would still hold it
    production["scale"]["instances"] = {"min": 2, "max": 6}
    # the 1% step sees ~2 req/s of the demo's traffic: judge from 20 requests, and wait up to 30 s for them
    production["strategy"]["analysis"]["min_requests"] = 20
    production["strategy"]["analysis"]["inconclusive_limit"] = 60
    yaml.dump(doc, spec)


def junit_report(path: Path) -> None:
    """Run the example app's unit tests as CI would, and write their JUnit XML report."""
    sys.path.insert(0, str(ROOT / "examples/app"))
    import test_app

    suite = unittest.defaultTestLoader.loadTestsFromModule(test_app)
    cases = _flatten(suite)  # a suite forgets its tests once it has run them
    result = unittest.TestResult()
    started = time.monotonic()
    suite.run(result)
    took = time.monotonic() - started
    failed = {id(t) for t, _ in result.failures + result.errors}
    counts = {"tests": result.testsRun, "failures": len(result.failures), "errors": len(result.errors)}
    xml = ET.Element(
        "testsuite", name="example-app", time=f"{took:.3f}", **{k: str(v) for k, v in counts.items()}
    )
    for case in cases:
        node = ET.SubElement(xml, "testcase", classname=type(case).__name__, name=case._testMethodName)
        if id(case) in failed:
            ET.SubElement(node, "failure", message="failed")
    ET.ElementTree(xml).write(path, encoding="utf-8", xml_declaration=True)
    summary = ", ".join(f"{value} {key}" for key, value in counts.items())
    print(f"unit tests: {summary} → {path.name}")


def _flatten(suite: unittest.TestSuite) -> list[unittest.TestCase]:
    cases: list[unittest.TestCase] = []
    for item in suite:
        cases += _flatten(item) if isinstance(item, unittest.TestSuite) else [item]  # type: ignore[list-item]
    return cases


def newest_promotion(env: str) -> str:
    """The id of the newest promotion into `env` (read quietly, as a script would)."""
    proc = subprocess.run(
        [*CONVEYOR, "promotion", "list", "--env", env, "--limit", "1", "-o", "json"],
        cwd=WORK,
        env={**os.environ, "CONVEYOR_HOME": str(WORK / ".conveyor")},
        capture_output=True,
        text=True,
        check=True,
    )
    return str(json.loads(proc.stdout)[0]["id"])


class Traffic:
    """Steady visitors on production's router from a few threads, counted by version and status."""

    def __init__(self, port: int, rps: float = 200.0, threads: int = 4) -> None:
        self.port, self.pause = port, threads / rps
        self.counts: dict[tuple[str, int], int] = {}
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.workers = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> Traffic:
        for worker in self.workers:
            worker.start()
        return self

    def _run(self) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=5) as http:
            while not self.stop_event.is_set():
                http.cookies.clear()  # each request a new visitor: the router's weights decide
                try:
                    response = http.get("/checkout")
                    key = (response.headers.get("x-conveyor-version", "?"), response.status_code)
                except httpx.HTTPError:
                    key = ("no answer", 0)
                with self.lock:
                    self.counts[key] = self.counts.get(key, 0) + 1
                time.sleep(self.pause)

    def report(self, title: str) -> None:
        """Print what visitors saw since the last report, then start counting again."""
        with self.lock:
            counts, self.counts = self.counts, {}
        print(f"traffic during {title}: {sum(counts.values()):,} requests")
        for (version, status), n in sorted(counts.items()):
            print(f"  {version:>9}  HTTP {status}: {n:,}")

    def stop(self) -> None:
        self.stop_event.set()
        for worker in self.workers:
            worker.join(timeout=10)


def ci_build(version: str, defect: dict[str, object] | None = None) -> None:
    """What CI does once per build of main: unit tests, a scan, then one registration with provenance."""
    junit_report(WORK / "unit.xml")
    shutil.copy(ROOT / "examples/reports/web-sast.sarif", WORK / "sast.sarif")
    bundle(version, defect)
    commit = hashlib.sha1(version.encode()).hexdigest()[:10]
    run(
        "artifact", "register", "web", version, "--bundle", f"web-{version}.tar.gz",
        "--branch", "main", "--commit", commit, "--build-url", f"https://ci.example.com/shop/runs/{version}",
        "--sarif", "sast=sast.sarif", "--junit", "unit=unit.xml",
    )  # fmt: skip


def to_production(version: str, rita: str, sam: str, lee: str) -> None:
    """Staging on its own, then production: a request and two approvals from other people."""
    run("promotion", "wait", newest_promotion("staging"), "--timeout", "180")
    run("promote", "web", version, "--to", "production", token=rita)
    production = newest_promotion("production")
    run("approve", production, "--comment", "staging is green", token=sam)
    run("approve", production, "--comment", "rollback plan checked", token=lee)


def secrets(rita: str, dev_token: str) -> None:
    """Every environment gets its own secrets: values go in on stdin or are generated, never come out."""
    step("Secrets: sealed per environment, values in on stdin (never an argument), never shown again")
    api_key = "sk_live_" + os.urandom(12).hex()
    run("secret", "set", "production", "API_KEY", "-m", "payment provider key", stdin=api_key, token=rita)
    run("secret", "set", "production", "API_KEY", stdin="stolen", token=dev_token, expect=1)
    for environment in ("development", "qa", "staging", "production", "dr"):
        for name in ("POSTGRES_PASSWORD", "JWT_SECRET", "API_KEY"):
            if (environment, name) != ("production", "API_KEY"):
                subprocess.run(
                    [*CONVEYOR, "secret", "set", environment, name, "--generate"],
                    cwd=WORK,
                    env={**os.environ, "CONVEYOR_HOME": str(WORK / ".conveyor"), "CONVEYOR_TOKEN": rita},
                    check=True,
                    capture_output=True,
                )
    print("(every other secret was generated the same way: conveyor secret set ENV NAME --generate)")
    run("secret", "list", "production")
    run("secret", "rotate", "production", "JWT_SECRET", "-m", "demo rotation", token=rita)
    run("secret", "history", "production", "JWT_SECRET")
    run("config", "show", "production")
    run("secret", "due")


def flags(port: int, rita: str) -> None:
    """A flag changes what running instances do within a second, with no release and no restart."""
    step("Feature flags: a new checkout for 25% of users, then off for everyone, with no release")

    def ask() -> tuple[int, set[int]]:
        answers = [
            httpx.get(
                f"http://127.0.0.1:{port}/flags/new-checkout", headers={"X-User": f"user-{i}"}, timeout=5
            )
            for i in range(200)
        ]
        return sum(a.json().get("value") is True for a in answers), {a.json()["pid"] for a in answers}

    run("flag", "set", "production", "new-checkout", "--off", "-m", "dark launch", token=rita)
    run("flag", "rollout", "production", "new-checkout", "25", "-m", "first users", token=rita)
    time.sleep(0.5)  # the app re-reads its flags file at most every 200 ms
    on, pids = ask()
    print(f"$ curl -H 'X-User: user-N' http://127.0.0.1:{port}/flags/new-checkout   (200 users)")
    print(f"{on} of 200 users see the new checkout (25% asked); answered by instances {sorted(pids)}")
    run("flag", "eval", "production", "new-checkout", "-c", "targetingKey=user-7")
    run("flag", "disable", "production", "new-checkout", "-m", "checkout errors reported", token=rita)
    time.sleep(0.5)
    off, after = ask()
    print(f"after disable: {off} of 200 users see it; same instances, none restarted: {after == pids}")
    run("flag", "list", "production")


def promote(rita: str) -> None:
    """Build once, promote many: three releases from main through staging to production."""
    spec = WORK / "conveyor.yaml"

    step("The gates: staging tests, scans, loads and breaks each build; production needs two approvals")
    demo_pipeline(spec)
    run("plan")
    run("apply", "--yes", "--message", "the gates and rollout this demo runs", token=rita)
    sam = token_in(run("user", "add", "sam", "--role", "release-manager"))
    lee = token_in(run("user", "add", "lee", "--role", "release-manager"))
    checks = WORK / "checks"
    checks.mkdir()
    for name in ("app.py", "test_app.py", "check_deployed.py"):
        shutil.copy(ROOT / "examples/app" / name, checks / name)

    secrets(rita, dev_token=token_in(run("user", "add", "dev2", "--role", "developer")))

    step("CI builds 1.0.0 from main once; the same bytes go to development by hand")
    ci_build("1.0.0")
    with tarfile.open(WORK / "web-1.0.0-rebuilt.tar.gz", "w:gz") as tar:
        tar.add(ROOT / "examples/app/app.py", arcname="app.py")  # other bytes under the same version
    run("artifact", "register", "web", "1.0.0", "--bundle", "web-1.0.0-rebuilt.tar.gz", expect=1)
    run("deploy", "web", "1.0.0", "--env", "development")
    dev = router_port("development")
    served = [httpx.get(f"http://127.0.0.1:{dev}/", timeout=5) for _ in range(20)]
    print(f"$ curl -i http://127.0.0.1:{dev}/   (20 times)")
    print(f"HTTP {served[0].status_code}, X-Conveyor-Version: {served[0].headers.get('x-conveyor-version')}")
    print(f"instances that answered: {sorted({r.json()['instance'] for r in served})}")
    run("ps", "--env", "development")

    step(
        "1.0.0 reaches staging by itself (tests, scan, load 1-5x, chaos), then production after two approvals"
    )
    to_production("1.0.0", rita, sam, lee)
    run("promotion", "wait", newest_promotion("production"), "--timeout", "180")
    run("promotion", "show", newest_promotion("staging"))
    port = router_port("production")
    traffic = Traffic(port).start()
    print(f"(steady traffic now flows to production's router on port {port}: ~200 visitors/s)")
    try:
        step("1.1.0, a healthy release: traffic moves 1% → 10% → 50% → 100% while analysis watches")
        ci_build("1.1.0")
        traffic.report("1.0.0 in production")
        to_production("1.1.0", rita, sam, lee)
        run("rollout", "watch", "production", "--interval", "0.5", "--timeout", "150")
        traffic.report("the 1.1.0 rollout")

        flags(port, rita)

        step("1.2.0 ships a defect in a code path only production's settings turn on (ENABLE_METRICS)")
        ci_build("1.2.0", defect={"error_rate": 0.3, "only_if": "ENABLE_METRICS"})
        to_production("1.2.0", rita, sam, lee)
        run("rollout", "watch", "production", "--interval", "0.5", "--timeout", "150", expect=1)
        time.sleep(1.0)
        traffic.report("the 1.2.0 rollout and its rollback")
        run("rollout", "status", "production")
    finally:
        traffic.stop()
    answer = httpx.get(f"http://127.0.0.1:{port}/version", timeout=5)
    print(f"$ curl http://127.0.0.1:{port}/version\n{answer.text}")
    run("history", "production")
    run("artifact", "show", "web", "1.1.0")


if __name__ == "__main__":
    main()

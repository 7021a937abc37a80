"""`make demo`: the journey Conveyor supports today, run for real in ./.demo with the real CLI.

init → validate (and a broken file) → up → plan → apply → change → plan/apply/diff → users, roles,
tokens → a denied action → status → deploy to development → a main build promoted to staging by
itself through gates → production with two approvals → audit list / verify / export → down.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
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


def run(*args: str, token: str | None = None, expect: int = 0) -> str:
    """Run `conveyor ARGS` as a user would, echoing the command and its output."""
    env = {**os.environ, "CONVEYOR_HOME": str(WORK / ".conveyor")}
    env.pop("CONVEYOR_TOKEN", None)
    shown = "conveyor " + " ".join(args)
    if token:
        env["CONVEYOR_TOKEN"] = token
        shown = "CONVEYOR_TOKEN=… " + shown
    print(f"$ {shown}", flush=True)
    proc = subprocess.run([*CONVEYOR, *args], cwd=WORK, env=env, capture_output=True, text=True)
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

    ship()
    promote(rita)

    step("The audit trail: who did what, from where; the hash chain verifies")
    run("audit", "list", "--limit", "12")
    run("audit", "list", "--action", "spec.*")
    run("audit", "verify")
    run("audit", "export", "--file", "audit.jsonl")


def bundle(version: str) -> Path:
    """Package the example app as a .tar.gz bundle, as CI would once per build."""
    path = WORK / f"web-{version}.tar.gz"
    (WORK / "VERSION").write_text(version + "\n")  # every build differs, as a real one would
    with tarfile.open(path, "w:gz") as tar:
        tar.add(ROOT / "examples/app/app.py", arcname="app.py")
        tar.add(WORK / "VERSION", arcname="VERSION")
    return path


def ship() -> None:
    """Register two builds, deploy them to development, and send real traffic through the router."""
    port = int(re.search(r"port: (\d+)", (WORK / "conveyor.yaml").read_text()).group(1))  # type: ignore[union-attr]

    step("CI registers each build once: digest computed, bytes stored content-addressed")
    bundle("1.0.0")
    run("artifact", "register", "web", "1.0.0", "--bundle", "web-1.0.0.tar.gz")
    (WORK / "CHANGES").write_text("1.1.0: faster checkout\n")
    with tarfile.open(WORK / "web-1.1.0.tar.gz", "w:gz") as tar:
        tar.add(ROOT / "examples/app/app.py", arcname="app.py")
        tar.add(WORK / "CHANGES", arcname="CHANGES")
    run("artifact", "register", "web", "1.1.0", "--bundle", "web-1.1.0.tar.gz")
    run("artifact", "register", "web", "1.1.0", "--bundle", "web-1.0.0.tar.gz", expect=1)
    run("artifact", "list")

    step("Deploy 1.0.0 to development: real processes behind the environment's router")
    run("deploy", "web", "1.0.0", "--env", "development")
    served = [httpx.get(f"http://127.0.0.1:{port}/", timeout=5) for _ in range(50)]
    first = served[0]
    print(f"$ curl -i http://127.0.0.1:{port}/   (50 times)")
    header = first.headers.get("x-conveyor-version")
    print(f"HTTP {first.status_code}, X-Conveyor-Version: {header}, {first.text}")
    print(f"instances that answered: {sorted({r.json()['instance'] for r in served})}")
    run("ps", "--env", "development")
    run("traffic", "development")
    run("logs", "development", "--lines", "2")

    step("Deploy 1.1.0 (recreate): the router now sends everything to the new version")
    run("deploy", "web", "1.1.0", "--env", "development")
    answer = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
    print(f"$ curl http://127.0.0.1:{port}/\n{answer.text}")


def demo_pipeline(spec: Path) -> None:
    """The gates this Conveyor runs today; load, chaos, SLO and migration gates come later."""
    yaml = YAML()
    doc = yaml.load(spec)
    staging, production = doc["environments"]["staging"], doc["environments"]["production"]
    doc["environments"]["qa"]["promotion"]["gates"] = [
        {"type": "command", "name": "unit-tests", "run": "python3 checks/test_app.py"},
    ]
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
    ]
    production["promotion"]["gates"] = [{"type": "previous-stage"}, {"type": "smoke"}, {"type": "window"}]
    production["windows"]["allow"] = []  # the demo may run on any day; freezes would still hold it
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


def promote(rita: str) -> None:
    """Build once, promote many: main → staging through gates by itself, production after two approvals."""
    spec = WORK / "conveyor.yaml"
    port = int(YAML().load(spec)["environments"]["production"]["router"]["port"])

    step("The gates: staging tests, scans and checks the deployed build; production needs two approvals")
    demo_pipeline(spec)
    run("plan")
    run("apply", "--yes", "--message", "the gates this demo runs", token=rita)
    sam = token_in(run("user", "add", "sam", "--role", "release-manager"))
    lee = token_in(run("user", "add", "lee", "--role", "release-manager"))

    step("CI builds 1.2.0 from main once: unit tests, a scan report, then one registration with provenance")
    checks = WORK / "checks"
    checks.mkdir()
    for name in ("app.py", "test_app.py", "check_deployed.py"):
        shutil.copy(ROOT / "examples/app" / name, checks / name)
    junit_report(WORK / "unit.xml")
    shutil.copy(ROOT / "examples/reports/web-sast.sarif", WORK / "sast.sarif")
    bundle("1.2.0")
    run(
        "artifact", "register", "web", "1.2.0", "--bundle", "web-1.2.0.tar.gz",
        "--branch", "main", "--commit", "9f3c2e1a7b", "--build-url", "https://ci.example.com/shop/runs/1042",
        "--sarif", "sast=sast.sarif", "--junit", "unit=unit.xml",
    )  # fmt: skip

    step("main builds reach staging by themselves: gates before the deployment, checks after it")
    staging = newest_promotion("staging")
    run("promotion", "wait", staging, "--timeout", "180")
    run("promotion", "show", staging)

    step("Production: a release manager asks; the requester never counts as a reviewer")
    run("promote", "web", "1.2.0", "--to", "production", "--wait", "60", token=rita)
    production = newest_promotion("production")
    run("explain", production)
    run("approve", production, token=rita, expect=1)

    step("Two other release managers approve this exact release (artifact digest + configuration)")
    run("approve", production, "--comment", "staging gauntlet is green", token=sam)
    run("approve", production, "--comment", "rollback plan checked", token=lee)
    run("promotion", "wait", production, "--timeout", "180")
    answer = httpx.get(f"http://127.0.0.1:{port}/version", timeout=5)
    print(f"$ curl http://127.0.0.1:{port}/version\n{answer.text}")
    run("history", "production")
    run("artifact", "show", "web", "1.2.0")
    run("promotion", "list")


if __name__ == "__main__":
    main()

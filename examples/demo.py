"""`make demo`: the journey Conveyor supports today, run for real in ./.demo with the real CLI.

init → validate (and a broken file) → up → plan → apply → change → plan/apply/diff → users, roles,
tokens → a denied action → status → audit list / verify / export → down.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx

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

    step("The audit trail: who did what, from where; the hash chain verifies")
    run("audit", "list", "--limit", "12")
    run("audit", "list", "--action", "spec.*")
    run("audit", "verify")
    run("audit", "export", "--file", "audit.jsonl")


def bundle(version: str) -> Path:
    """Package the example app as a .tar.gz bundle, as CI would once per build."""
    path = WORK / f"web-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(ROOT / "examples/app/app.py", arcname="app.py")
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


if __name__ == "__main__":
    main()

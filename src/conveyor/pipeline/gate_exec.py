"""Run gates: command gates as detached processes a restarted worker can re-attach to, smoke checks over HTTP.

A command gate runs in its own session under a tiny shell wrapper that writes its pid before the
command starts and its exit status after it ends, both into the run's directory. The worker that
started it may die; whoever holds the promotion's lease next reads those files instead of starting
the command a second time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from conveyor.pipeline.outcome import GateOutcome
from conveyor.tls import client_context

OUTPUT_TAIL_BYTES = 4096
# variables a gate's command inherits from the server; everything else (database URLs, tokens,
# master keys) stays out of reach of the scripts a conveyor.yaml names
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL", "VIRTUAL_ENV")
_WRAPPER = (
    'echo $$ > "$1/pid.tmp" && mv "$1/pid.tmp" "$1/pid"; '
    '/bin/sh -c "$2" > "$1/output.log" 2>&1; '
    'echo $? > "$1/exit.tmp"; mv "$1/exit.tmp" "$1/exit"'
)

# processes this worker started, so it can reap them (a gate started elsewhere is not our child)
_children: dict[int, subprocess.Popen[bytes]] = {}


def run_dir(home: Path, run_id: int) -> Path:
    """Where a gate run's pid, exit status and output live."""
    return home / "gates" / str(run_id)


def gate_environment(extra: dict[str, str]) -> dict[str, str]:
    """The environment a command gate runs with: a few safe variables and the promotion's facts."""
    env = {k: os.environ[k] for k in _INHERITED if k in os.environ}
    env.update(extra)
    return env


def start_command(directory: Path, command: str, cwd: Path, env: dict[str, str]) -> int:
    """Start `command` detached, recording pid and exit status under `directory`; returns the pid."""
    directory.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        ["/bin/sh", "-c", _WRAPPER, "conveyor-gate", str(directory), command],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _children[proc.pid] = proc
    return proc.pid


def _reap() -> None:
    for pid, proc in list(_children.items()):
        if proc.poll() is not None:
            del _children[pid]


def _alive(pid: int, directory: Path) -> bool:
    """Whether `pid` is still the wrapper of this run (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return str(directory).encode() in cmdline and ") Z " not in stat


def output_tail(directory: Path) -> str:
    """The last few KiB of a command gate's output."""
    path = directory / "output.log"
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - OUTPUT_TAIL_BYTES))
            data = handle.read()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return ("…" + text) if size > OUTPUT_TAIL_BYTES else text


def recorded_pid(directory: Path) -> int | None:
    """The pid the wrapper wrote, if it got that far."""
    try:
        return int((directory / "pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _stop(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except (ProcessLookupError, PermissionError):
            return
        _reap()
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


@dataclass(frozen=True)
class CommandStatus:
    """Where a command gate stands: finished (with an outcome), still running, or lost."""

    outcome: GateOutcome | None
    lost: bool = False
    timed_out: bool = False  # the caller stops it, after recording the verdict


def collect_command(
    directory: Path, command: str, started: datetime, timeout: timedelta, now: datetime
) -> CommandStatus:
    """Read a command gate's result, say when its time is up, or report it lost."""
    _reap()
    took = (now - started).total_seconds()
    evidence: dict[str, Any] = {"command": command, "output": "", "seconds": round(took, 3)}
    try:
        code = int((directory / "exit").read_text().strip())
    except (FileNotFoundError, ValueError):
        code = None
    if code is not None:
        evidence.update(exit_code=code, output=output_tail(directory))
        if code == 0:
            return CommandStatus(GateOutcome("passed", f"`{command}` exited 0 after {took:.1f}s", evidence))
        return CommandStatus(GateOutcome("failed", f"`{command}` exited {code} after {took:.1f}s", evidence))
    pid = recorded_pid(directory)
    if pid is not None and _alive(pid, directory):
        if now - started > timeout:
            evidence["output"] = output_tail(directory)
            failed = GateOutcome("failed", f"`{command}` timed out after {timeout}", evidence)
            return CommandStatus(failed, timed_out=True)
        return CommandStatus(None)
    if pid is None and now - started < timedelta(seconds=10):
        return CommandStatus(None)  # the wrapper is starting
    return CommandStatus(None, lost=True)


def stop_runs(home: Path, run_ids: list[int]) -> None:
    """Stop the command gates of these runs (call after the transaction that recorded why commits)."""
    for run_id in run_ids:
        stop_command(run_dir(home, run_id))


def stop_command(directory: Path) -> None:
    """Stop a running command gate (a cancelled promotion)."""
    pid = recorded_pid(directory)
    if pid is not None and _alive(pid, directory):
        _stop(pid)


def smoke(
    base_url: str,
    version: str,
    paths: list[str],
    version_path: str | None,
    expect_version: bool,
    timeout: float = 5.0,
) -> GateOutcome:
    """HTTP checks against `version` through the environment's router (pinned with X-Conveyor-Version)."""
    checks: list[dict[str, Any]] = []
    failures: list[str] = []
    headers = {"x-conveyor-version": version}
    with httpx.Client(base_url=base_url, timeout=timeout, headers=headers, verify=client_context()) as client:
        for path in paths:
            checks.append(_check(client, path, None, failures))
        if expect_version and version_path:
            checks.append(_check(client, version_path, version, failures))
    evidence = {"url": base_url, "checks": checks}
    if failures:
        return GateOutcome("failed", "; ".join(failures), evidence)
    what = f"{len(checks)} check(s) passed against {version} at {base_url}"
    if expect_version and not version_path:
        what += " (no version_path declared for the service, so the reported version was not checked)"
    return GateOutcome("passed", what, evidence)


def _check(client: httpx.Client, path: str, version: str | None, failures: list[str]) -> dict[str, Any]:
    started = time.monotonic()
    try:
        response = client.get(path)
    except httpx.HTTPError as exc:
        failures.append(f"GET {path} failed: {type(exc).__name__}: {exc}")
        return {"path": path, "error": f"{type(exc).__name__}: {exc}"}
    ms = round((time.monotonic() - started) * 1000, 1)
    served_by = response.headers.get("x-conveyor-version")
    result: dict[str, Any] = {"path": path, "status": response.status_code, "ms": ms, "served_by": served_by}
    if not response.is_success:
        failures.append(f"GET {path} answered {response.status_code}")
        result["body"] = response.text[:300]
    elif version is not None:
        reported = _reported_version(response)
        result["reported_version"] = reported
        if reported != version:
            failures.append(f"GET {path} reports version {reported!r}, expected {version!r}")
    return result


def _reported_version(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:128] or None
    if isinstance(body, dict):
        value = body.get("version")
        return str(value) if value is not None else None
    return str(body)[:128]

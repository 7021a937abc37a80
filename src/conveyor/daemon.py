"""Run the server in the background for `conveyor up` / `down`: pid file, log file, readiness wait."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from conveyor.credentials import write_private
from conveyor.errors import ClientError
from conveyor.settings import Settings


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie still answers kill(0); treat it as gone
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _is_conveyor(pid: int) -> bool:
    try:
        return b"conveyor" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): trust the pid file


def running_pid(settings: Settings) -> int | None:
    """The pid of the background server this home started, if it is still running."""
    try:
        pid = int(settings.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _alive(pid) and _is_conveyor(pid) else None


def port_free(host: str, port: int) -> bool:
    """Whether nothing listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file (empty when there is none)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def start(settings: Settings, host: str, port: int, timeout: float = 30.0) -> tuple[int, str]:
    """Start `conveyor server` detached, wait until it answers /readyz; returns (pid, url)."""
    url = f"http://{host}:{port}"
    settings.home.mkdir(parents=True, exist_ok=True)
    if not port_free(host, port):
        raise ClientError(f"{host}:{port} is already in use", hint="pick another port with --port")
    env = {**os.environ, "CONVEYOR_HOME": str(settings.home), "CONVEYOR_DATABASE_URL": settings.database_url}
    with open(settings.log_file, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "server", "--host", host, "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # survives the terminal that ran `conveyor up`
        )
    settings.pid_file.write_text(f"{proc.pid}\n")
    write_private(settings.server_file, json.dumps({"url": url, "pid": proc.pid}) + "\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _forget(settings)
            raise ClientError(
                f"the server exited during start-up (exit code {proc.returncode}); "
                f"last lines of {settings.log_file}:\n{log_tail(settings.log_file)}",
                hint="fix the cause above, then run `conveyor up` again",
            )
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return proc.pid, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    stop(settings)
    raise ClientError(
        f"the server did not become ready within {timeout:.0f}s; last lines of {settings.log_file}:\n"
        f"{log_tail(settings.log_file)}",
        hint="see the log file for the cause",
    )


def _forget(settings: Settings) -> None:
    for path in (settings.pid_file, settings.server_file):
        path.unlink(missing_ok=True)


def stop(settings: Settings, timeout: float = 15.0) -> int | None:
    """Stop the background server (SIGTERM, then SIGKILL after `timeout`); returns its pid or None."""
    pid = running_pid(settings)
    if pid is None:
        _forget(settings)
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    _forget(settings)
    return pid

"""Run the server in the background for `conveyor up` / `down`: pid file, log file, readiness wait."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from conveyor.credentials import write_private
from conveyor.errors import ClientError
from conveyor.settings import Settings
from conveyor.tls import client_context


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


def _files(settings: Settings, name: str) -> tuple[Path, Path, Path]:
    """(pid file, log file, url file) of the background process `name` (server or agent)."""
    return settings.home / f"{name}.pid", settings.home / f"{name}.log", settings.home / f"{name}.json"


def running_pid(settings: Settings, name: str = "server") -> int | None:
    """The pid of the background process `name` this home started, if it is still running."""
    try:
        pid = int(_files(settings, name)[0].read_text().strip())
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


@dataclass(frozen=True)
class Starting:
    """A background process launched and not yet known to be ready."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log_file: Path


def launch(
    settings: Settings, host: str, port: int, *, name: str = "server", extra_env: dict[str, str] | None = None
) -> Starting:
    """Start `conveyor NAME` (server or agent) detached; `wait_ready` waits for it."""
    url = f"http://{host}:{port}"
    pid_file, log_file, url_file = _files(settings, name)
    settings.home.mkdir(parents=True, exist_ok=True)
    if not port_free(host, port):
        flag = "--agent-port" if name == "agent" else "--port"
        raise ClientError(f"{host}:{port} is already in use", hint=f"pick another port with {flag}")
    env = {
        **os.environ,
        "CONVEYOR_HOME": str(settings.home),
        "CONVEYOR_DATABASE_URL": settings.database_url,
        **(extra_env or {}),
    }
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor", name, "--host", host, "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # survives the terminal that ran `conveyor up`
        )
    pid_file.write_text(f"{proc.pid}\n")
    write_private(url_file, json.dumps({"url": url, "pid": proc.pid}) + "\n")
    return Starting(name, proc, url, log_file)


def _answered_by(response: httpx.Response) -> int | None:
    """The pid a ready answer names (None when it names none: not a Conveyor process)."""
    try:
        pid = response.json().get("pid")
    except (ValueError, AttributeError):
        return None
    return pid if isinstance(pid, int) else None


def wait_ready(
    settings: Settings, starting: Starting, timeout: float = 30.0, ready_path: str = "/readyz"
) -> tuple[int, str]:
    """Wait until a launched process answers `ready_path`; returns (pid, url), or stops it and says why."""
    name, proc, url, log_file = starting.name, starting.proc, starting.url, starting.log_file
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0, verify=client_context()) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                _forget(settings, name)
                raise ClientError(
                    f"the {name} exited during start-up (exit code {proc.returncode}); "
                    f"last lines of {log_file}:\n{log_tail(log_file)}",
                    hint="fix the cause above, then run `conveyor up` again",
                )
            try:
                answer = http.get(f"{url}{ready_path}")
            except httpx.TransportError:
                answer = None
            if answer is not None and answer.status_code == 200:
                answered_by = _answered_by(answer)
                if answered_by == proc.pid:
                    return proc.pid, url
                stop(settings, name=name)
                who = f"another process (pid {answered_by})" if answered_by else "another program"
                raise ClientError(
                    f"{who} answers at {url}: the {name} could not listen there",
                    hint=f"stop that process, or start on another port (see `conveyor up --help`); "
                    f"{log_file} has the {name}'s own error",
                )
            time.sleep(0.05)
    stop(settings, name=name)
    raise ClientError(
        f"the {name} did not become ready within {timeout:.0f}s; last lines of {log_file}:\n"
        f"{log_tail(log_file)}",
        hint="see the log file for the cause",
    )


def start(
    settings: Settings,
    host: str,
    port: int,
    timeout: float = 30.0,
    *,
    name: str = "server",
    ready_path: str = "/readyz",
    extra_env: dict[str, str] | None = None,
) -> tuple[int, str]:
    """Start `conveyor NAME` (server or agent) detached and wait until it is ready; returns (pid, url)."""
    return wait_ready(
        settings, launch(settings, host, port, name=name, extra_env=extra_env), timeout, ready_path
    )


def _forget(settings: Settings, name: str) -> None:
    pid_file, _, url_file = _files(settings, name)
    for path in (pid_file, url_file):
        path.unlink(missing_ok=True)


def stop(settings: Settings, timeout: float = 15.0, *, name: str = "server") -> int | None:
    """Stop background process `name` (SIGTERM, then SIGKILL after `timeout`); returns its pid or None."""
    pid = running_pid(settings, name)
    if pid is None:
        _forget(settings, name)
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    _forget(settings, name)
    return pid

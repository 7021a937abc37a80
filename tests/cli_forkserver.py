"""Runs the real `conveyor` command in a forked child of one warm process (the suite's CLI launcher).

An integration test calls the CLI a dozen times, and a fresh interpreter spends most of each call
importing the CLI, httpx, Rich, SQLAlchemy and Alembic and loading the CA bundle: about 0.6 s of CPU.
Here one process per test worker imports all that once, then forks a child per command. The child is
still its own OS process: it gets the command's environment, working directory, stdin, stdout and
stderr, runs `python -m conveyor ARGS` exactly as the interpreter would (`runpy`, `__main__`), and its
exit status is the command's. Nothing a command changes outlives its child, so commands cannot leak
state into each other. `CONVEYOR_TEST_CLI=spawn` runs every command in a fresh interpreter instead.

Protocol, one Unix-socket connection per command: the client sends a JSON request line; the child
answers `pid N` at once and `exit N` when the command ends (a child killed by a signal closes the
connection without `exit`).
"""

from __future__ import annotations

import contextlib
import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

# what the CLI's commands import between them, imported once here instead of once per command
WARM = (
    "conveyor.cli.main",
    "conveyor.cli.client",
    "conveyor.store.db",
    "conveyor.store.migrate",
    "conveyor.spec",
    "conveyor.spec.loader",
    "conveyor.secrets.keys",
    "conveyor.rollout.policy",
    "httpx",
    "yaml",
)


def _serve(path: str) -> None:
    for name in WARM:
        __import__(name)
    from conveyor.tls import client_context

    client_context()  # children share the loaded CA bundle
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            _child(conn)  # never returns
        conn.close()


def _child(conn: socket.socket) -> None:
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the command waits for its own children
        request = json.loads(conn.makefile("r", encoding="utf-8").readline())
        conn.sendall(f"pid {os.getpid()}\n".encode())
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, name, flags in (
            (0, "stdin", os.O_RDONLY),
            (1, "stdout", os.O_WRONLY),
            (2, "stderr", os.O_WRONLY),
        ):
            target = os.open(request[name], flags)
            os.dup2(target, fd)
            os.close(target)
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - the process's own streams
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.argv = ["conveyor", *request["args"]]
        try:
            runpy.run_module("conveyor", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as done:
            if done.code is None:
                code = 0
            elif isinstance(done.code, int):
                code = done.code
            else:
                print(done.code, file=sys.stderr)
                code = 1
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        conn.sendall(f"exit {code}\n".encode())
    finally:
        os._exit(code)


class ForkServer:
    """The warm process of one test worker, started on first use and replaced if it dies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._dir = tempfile.mkdtemp(prefix="conveyor-cli-")
        self._path = os.path.join(self._dir, "cli.sock")

    def _ensure(self) -> str:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path)
                self._proc = subprocess.Popen(
                    [sys.executable, __file__, self._path],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    text=True,
                    env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
                )
                assert self._proc.stdout is not None
                if self._proc.stdout.readline().strip() != "ready":
                    raise RuntimeError("the CLI fork server did not start")
            return self._path

    def run(
        self, args: list[str], *, cwd: Path, env: dict[str, str], input: str | None, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        path = self._ensure()
        with tempfile.TemporaryDirectory(dir=self._dir) as scratch:
            files = {name: os.path.join(scratch, name) for name in ("stdin", "stdout", "stderr")}
            Path(files["stdin"]).write_text(input or "", encoding="utf-8")
            for name in ("stdout", "stderr"):
                Path(files[name]).touch()
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.connect(path)
                conn.settimeout(timeout)
                conn.sendall(
                    (json.dumps({"args": args, "cwd": str(cwd), "env": env, **files}) + "\n").encode()
                )
                reader = conn.makefile("r", encoding="utf-8")
                pid = int(reader.readline().split()[1])
                try:
                    last = reader.readline()
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    raise subprocess.TimeoutExpired(["conveyor", *args], timeout) from None
            code = int(last.split()[1]) if last.startswith("exit ") else -signal.SIGKILL
            out = Path(files["stdout"]).read_text(encoding="utf-8", errors="replace")
            err = Path(files["stderr"]).read_text(encoding="utf-8", errors="replace")
        return subprocess.CompletedProcess([sys.executable, "-m", "conveyor", *args], code, out, err)

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        with contextlib.suppress(OSError):
            os.unlink(self._path)
            os.rmdir(self._dir)


if __name__ == "__main__":
    _serve(sys.argv[1])

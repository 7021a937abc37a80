"""One OS process of an instance: started in its own session, its output collected; the supervisor owns it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
from collections import deque
from collections.abc import Iterable

from conveyor.runtime.local.health_probe import ProbeResult
from conveyor.runtime.local.instance import InstanceSpec
from conveyor.runtime.local.instance_logs import InstanceLog
from conveyor.runtime.local.pidfile import ProcessRecord, signal_group, start_ticks

LOOPBACK = "127.0.0.1"
TAIL_LINES = 20
_READ = 64 * 1024
# variables an instance inherits from the agent; the rest (tokens, database URLs) stay private
INHERITED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")


def child_env(spec: InstanceSpec, port: int) -> dict[str, str]:
    """The environment of a new process: a few of the agent's variables, the spec's, then Conveyor's."""
    env = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
    env["PYTHONUNBUFFERED"] = "1"  # Python apps' output reaches the log as it is written
    env.update(spec.env)
    env.update(
        {
            spec.port_env: str(port),
            "CONVEYOR_ENV": spec.environment,
            "CONVEYOR_VERSION": spec.version,
            "CONVEYOR_INSTANCE": spec.key,
        }
    )
    return env


def free_port(taken: Iterable[int] = ()) -> int:
    """A loopback port nothing listens on now, other than the ones in `taken`."""
    avoid = set(taken)
    port = 0
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            break
    return port


def describe_exit(code: int | None) -> str:
    """An exit status in words: "exited with code 3", "killed by SIGKILL"."""
    if code is None:
        return "did not start"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class InstanceProcess:
    """A running (or reaped) process of one instance, with the bookkeeping the tick loop needs."""

    def __init__(
        self, proc: subprocess.Popen[bytes], port: int, started_at: float, started_mono: float
    ) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.start_ticks = start_ticks(proc.pid)
        self.port = port
        self.started_at = started_at
        self.started_mono = started_mono
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.check: asyncio.Task[ProbeResult] | None = None
        self.next_check_at = started_mono
        self.kill_at: float | None = None
        self.exit_code: int | None = None
        self.reaped = False
        self.output_closed = False
        self.exit_logged = False
        self.reader: asyncio.Task[None] | None = None

    @classmethod
    def launch(
        cls, spec: InstanceSpec, env: dict[str, str], port: int, started_at: float, started_mono: float
    ) -> InstanceProcess:
        """Start the command in its own session, stdin from /dev/null, stdout and stderr merged into a pipe.

        Blocking (fork and exec): the supervisor runs it in a worker thread.
        """
        proc = subprocess.Popen(
            spec.command,
            cwd=spec.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return cls(proc, port, started_at, started_mono)

    def poll(self) -> int | None:
        """The exit status once the process has exited (reaping it), else None; never blocks."""
        return self.proc.poll()

    def signal(self, sig: int) -> None:
        """Send `sig` to the whole process group."""
        signal_group(self.pid, sig)

    def record(self, key: str) -> ProcessRecord:
        """What the pid file keeps about this process."""
        return ProcessRecord(key, self.pid, self.start_ticks)

    async def collect_output(self, log_file: InstanceLog) -> None:
        """Copy the output into the log file and the tail until the pipe closes and the process exits."""
        assert self.proc.stdout is not None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**20)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), self.proc.stdout
        )
        partial = b""
        try:
            while chunk := await reader.read(_READ):
                await asyncio.to_thread(log_file.write, chunk)
                *lines, partial = (partial + chunk).split(b"\n")
                self.tail.extend(_text(line) for line in lines)
                if len(partial) > _READ:
                    self.tail.append(_text(partial[:4096]) + " …")
                    partial = b""
            if partial:
                self.tail.append(_text(partial))
        finally:
            transport.close()
            self.output_closed = True
        # the kernel closes a dying process's pipes a moment before it can be reaped
        for _ in range(40):
            if self.poll() is not None:
                return
            await asyncio.sleep(0.005)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r")

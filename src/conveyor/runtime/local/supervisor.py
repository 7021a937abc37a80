"""Runs app instances as OS processes, checks their health and restarts them; the agent drives it.

The shape is uvicorn's `supervisors/multiprocess.py`: `apply`, `restart` and signal handlers only
enqueue a request and wake the loop; one short tick loop owns every instance and does the work
(reconcile, reap exits, health checks, restarts with backoff, SIGKILL after a grace period);
`stop()` terminates all groups, then joins all. Each instance runs in its own session (process
group) so that SIGTERM and SIGKILL reach everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from conveyor.errors import Conflict, InvalidRequest, NotFound
from conveyor.runtime.local.backoff import BackoffPolicy, RestartHistory
from conveyor.runtime.local.health_probe import ProbeResult, probe
from conveyor.runtime.local.instance import HealthCheck, InstanceSpec, InstanceState, InstanceStatus
from conveyor.runtime.local.instance_logs import InstanceLog, instance_log_path, prune_rotated
from conveyor.runtime.local.pidfile import (
    ProcessRecord,
    end_orphans,
    signal_group,
    start_ticks,
    write_records,
)

__all__ = ["HealthCheck", "InstanceSpec", "InstanceState", "InstanceStatus", "Supervisor"]

log = logging.getLogger("conveyor.supervisor")

LOOPBACK = "127.0.0.1"
TAIL_LINES = 20
PRUNE_EVERY = 3600.0
# variables an instance inherits from the agent; the rest (tokens, database URLs) stay private
INHERITED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
_PROBED = (InstanceState.STARTING, InstanceState.READY, InstanceState.UNHEALTHY)


class _Run:
    """One OS process of an instance, from its start until it is reaped."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        ticks: int | None,
        port: int,
        started_at: float,
        started_mono: float,
    ) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.start_ticks = ticks
        self.port = port
        self.started_at = started_at
        self.started_mono = started_mono
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.pump: asyncio.Task[None] | None = None
        self.check: asyncio.Task[ProbeResult] | None = None
        self.next_check_at = started_mono
        self.kill_at: float | None = None
        self.exit_code: int | None = None
        self.reaped = False
        self.output_closed = False
        self.exit_logged = False


class _Instance:
    """The supervisor's mutable record of one desired instance; only the tick loop changes it."""

    def __init__(self, spec: InstanceSpec, log_file: InstanceLog) -> None:
        self.spec = spec
        self.log = log_file
        self.state = InstanceState.STARTING
        self.run: _Run | None = None
        self.history = RestartHistory()
        self.restarts = 0
        self.restart_at = 0.0
        self.restart_now = False
        self.ready_since: float | None = None
        self.unhealthy_since = 0.0
        self.passes = 0
        self.failures = 0
        self.last_exit_code: int | None = None
        self.reason = "starting"
        self.start_error: str | None = None
        self.retiring = False

    @property
    def alive(self) -> bool:
        return self.run is not None and not self.run.reaped


@dataclass(frozen=True)
class _Apply:
    specs: dict[str, InstanceSpec]
    done: asyncio.Future[None]


@dataclass(frozen=True)
class _Restart:
    key: str
    done: asyncio.Future[None]


class Supervisor:
    """Keeps the applied set of instances running, healthy and reported."""

    def __init__(
        self,
        log_dir: Path,
        *,
        tick: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] | None = None,
        log_max_bytes: int = 10 * 1024 * 1024,
        log_backups: int = 5,
        log_retention_days: float = 14.0,
        backoff: BackoffPolicy | None = None,
        stop_grace: float = 10.0,
        startup_check_interval: float = 0.2,
        pid_file: Path | None = None,
    ) -> None:
        self.log_dir = log_dir
        self.pid_file = pid_file or log_dir / "instances.json"
        self._tick_interval = tick
        self._clock = clock
        self._wall = wall_clock
        self._on_change = on_change
        self._log_max_bytes = log_max_bytes
        self._log_backups = log_backups
        self._retention_days = log_retention_days
        self._backoff = backoff or BackoffPolicy()
        self._stop_grace = stop_grace
        self._startup_check = startup_check_interval
        self._instances: dict[str, _Instance] = {}
        self._retiring: list[_Instance] = []
        self._logs: dict[str, InstanceLog] = {}
        self._requests: deque[_Apply | _Restart | int] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._stopped = False
        self._signals: list[int] = []
        self._seen: tuple[tuple[str, str, int | None], ...] = ()
        self._last_prune = float("-inf")
        self._records_dirty = False
        self.shutdown_requested = asyncio.Event()
        """Set when an installed signal handler received SIGTERM or SIGINT."""

    # ---- public API -------------------------------------------------------------------------------

    async def start(self) -> None:
        """End instances a previous agent left behind, then start the tick loop."""
        if self._stopped:
            raise Conflict(
                "this supervisor was stopped", hint="create a new Supervisor to run instances again"
            )
        if self._task is not None:
            return
        await end_orphans(self.pid_file, grace=self._stop_grace)
        await asyncio.to_thread(write_records, self.pid_file, [])
        self._task = asyncio.create_task(self._loop(), name="conveyor-supervisor")

    async def apply(self, specs: Sequence[InstanceSpec]) -> None:
        """Make `specs` the running set: start what is missing, stop what is gone, replace what changed."""
        desired: dict[str, InstanceSpec] = {}
        for spec in specs:
            if spec.key in desired:
                raise InvalidRequest(f"instance {spec.key} is listed twice")
            desired[spec.key] = spec
        await self._submit(lambda done: _Apply(desired, done))

    async def restart(self, key: str) -> None:
        """Restart one instance now, forgetting its backoff and any crash-loop verdict."""
        await self._submit(lambda done: _Restart(key, done))

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every instance's group, SIGKILL what is left after `timeout`, and reap them all."""
        if self._task is None or self._stopped:
            return
        self._closing = True
        self._wake.set()
        await self._task
        self._stopped = True
        self._remove_signal_handlers()
        self._fail_requests()
        everything = [*self._instances.values(), *self._retiring]
        for inst in everything:
            inst.retiring = True
            if inst.run is not None:
                self._cancel_check(inst.run)
            if inst.alive:
                assert inst.run is not None
                self._terminate(inst, inst.run, self._clock(), timeout, "stopping: supervisor shut down")
        self._notify()
        await self._join(everything, timeout)
        pumps = [i.run.pump for i in everything if i.run is not None and i.run.pump is not None]
        if pumps:
            _, late = await asyncio.wait(pumps, timeout=2.0)
            for pump in late:
                pump.cancel()
        for inst in everything:
            inst.state = InstanceState.STOPPED
            if inst.reason.startswith("stopping"):
                inst.reason = "stopped"
        for log_file in self._logs.values():
            await asyncio.to_thread(log_file.close)
        await asyncio.to_thread(write_records, self.pid_file, [])
        self._notify()

    def install_signal_handlers(self, signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
        """Route these signals to the tick loop, which sets `shutdown_requested`; the agent then stops."""
        loop = asyncio.get_running_loop()
        for sig in signals:
            loop.add_signal_handler(sig, self._enqueue, sig)
            self._signals.append(sig)

    def instances(self) -> list[InstanceStatus]:
        """A snapshot of every instance, including ones still stopping after a change."""
        everything = [*self._instances.values(), *self._retiring]
        return sorted((self._status(i) for i in everything), key=lambda s: (s.key, s.state != "stopping"))

    def ready_endpoints(
        self, environment: str, version: str, service: str | None = None
    ) -> list[tuple[str, int]]:
        """(host, port) of the ready instances of one version in one environment, by index."""
        ready = [
            inst
            for inst in self._instances.values()
            if inst.spec.environment == environment
            and inst.spec.version == version
            and (service is None or inst.spec.service == service)
            and inst.state is InstanceState.READY
            and inst.run is not None
        ]
        ready.sort(key=lambda inst: inst.spec.index)
        return [(LOOPBACK, inst.run.port) for inst in ready if inst.run is not None]

    # ---- requests ---------------------------------------------------------------------------------

    async def _submit(self, make: Callable[[asyncio.Future[None]], _Apply | _Restart]) -> None:
        if self._task is None or self._closing:
            raise Conflict("the supervisor is not running", hint="await supervisor.start() first")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(make(done))
        await done

    def _enqueue(self, request: _Apply | _Restart | int) -> None:
        # signal handlers and callers only enqueue: the tick loop alone changes instances
        self._requests.append(request)
        self._wake.set()

    def _fail_requests(self) -> None:
        while self._requests:
            request = self._requests.popleft()
            if not isinstance(request, int) and not request.done.done():
                request.done.set_exception(Conflict("the supervisor stopped before handling the request"))

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)
        self._signals.clear()

    # ---- the tick loop ----------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._closing:
            self._wake.clear()
            try:
                await self._tick()
            except Exception:
                log.exception("supervisor tick failed; continuing")
            self._notify()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._tick_interval)

    async def _tick(self) -> None:
        while self._requests and not self._closing:
            await self._handle(self._requests.popleft())
        now = self._clock()
        for inst in [*self._instances.values(), *self._retiring]:
            await self._step(inst, now)
        self._retiring = [i for i in self._retiring if i.state is not InstanceState.STOPPED]
        self._close_unused_logs()
        if self._records_dirty:
            self._records_dirty = False
            await asyncio.to_thread(write_records, self.pid_file, self._records())
        if now - self._last_prune >= PRUNE_EVERY:
            self._last_prune = now
            await asyncio.to_thread(
                prune_rotated, self.log_dir, retention_days=self._retention_days, now=self._wall()
            )

    async def _handle(self, request: _Apply | _Restart | int) -> None:
        if isinstance(request, int):
            log.info("received signal %s; shutdown requested", signal.Signals(request).name)
            self.shutdown_requested.set()
            return
        try:
            if isinstance(request, _Apply):
                await self._reconcile(request.specs)
            else:
                self._restart(request.key)
        except Exception as exc:
            if not request.done.done():
                request.done.set_exception(exc)
        else:
            if not request.done.done():
                request.done.set_result(None)

    async def _reconcile(self, desired: Mapping[str, InstanceSpec]) -> None:
        now = self._clock()
        for key, inst in list(self._instances.items()):
            if desired.get(key) != inst.spec:
                del self._instances[key]
                self._retire(inst, now)
        for key, spec in desired.items():
            if key not in self._instances:
                inst = _Instance(spec, self._log_for(spec))
                self._instances[key] = inst
                await self._spawn(inst, now)

    def _restart(self, key: str) -> None:
        inst = self._instances.get(key)
        if inst is None:
            raise NotFound(f"instance {key} is not running on this agent")
        inst.history = RestartHistory()
        inst.restart_now = True
        if inst.alive:
            assert inst.run is not None
            self._terminate(inst, inst.run, self._clock(), self._stop_grace, "stopping: restart requested")
        else:
            inst.state = InstanceState.BACKOFF
            inst.restart_at = self._clock()

    def _retire(self, inst: _Instance, now: float) -> None:
        inst.retiring = True
        if inst.alive:
            assert inst.run is not None
            self._terminate(inst, inst.run, now, self._stop_grace, "stopping: no longer desired")
            self._retiring.append(inst)
        else:
            inst.state = InstanceState.STOPPED
            inst.reason = "stopped"

    async def _step(self, inst: _Instance, now: float) -> None:
        run = inst.run
        if run is not None and not run.reaped:
            code = run.proc.poll()
            if code is not None:
                await self._reaped(inst, run, code, now)
            else:
                if run.kill_at is not None and now >= run.kill_at:
                    log.warning("instance %s ignored SIGTERM; sending SIGKILL", inst.spec.key)
                    signal_group(run.pid, signal.SIGKILL)
                    run.kill_at = None
                if inst.state in _PROBED:
                    self._check_health(inst, run, now)
        if inst.state is InstanceState.BACKOFF and not inst.retiring and now >= inst.restart_at:
            inst.restarts += 1
            await self._spawn(inst, now)

    # ---- processes --------------------------------------------------------------------------------

    async def _spawn(self, inst: _Instance, now: float) -> None:
        spec = inst.spec
        port = self._free_port()
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
        inst.passes = inst.failures = 0
        inst.ready_since = None
        inst.restart_now = False
        inst.start_error = None
        try:
            proc, ticks = await asyncio.to_thread(_launch, spec, env)
        except OSError as exc:
            inst.start_error = f"cannot start {spec.command[0]!r} in {spec.workdir}: {exc.strerror or exc}"
            await self._write_log(inst, inst.start_error)
            inst.run = None
            self._after_exit(inst, None, inst.start_error, now)
            return
        run = _Run(proc, ticks, port, self._wall(), now)
        inst.run = run
        inst.state = InstanceState.STARTING
        inst.reason = "starting: waiting for the first passing health check"
        self._records_dirty = True
        await self._write_log(inst, f"started pid {run.pid} on port {port}")
        assert proc.stdout is not None
        run.pump = asyncio.create_task(self._pump(inst, run, proc.stdout), name=f"output {spec.key}")

    async def _pump(self, inst: _Instance, run: _Run, pipe: IO[bytes]) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**20)
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
        partial = b""
        try:
            while chunk := await reader.read(64 * 1024):
                await asyncio.to_thread(inst.log.write, chunk)
                *lines, partial = (partial + chunk).split(b"\n")
                run.tail.extend(_text(line) for line in lines)
                if len(partial) > 64 * 1024:
                    run.tail.append(_text(partial[:4096]) + " …")
                    partial = b""
            if partial:
                run.tail.append(_text(partial))
        finally:
            transport.close()
            run.output_closed = True
        # end of output usually means the process is exiting: wake the tick to reap it at once,
        # after the short moment the kernel takes between closing its pipes and making it reapable
        for _ in range(40):
            if run.proc.poll() is not None:
                break
            await asyncio.sleep(0.005)
        self._wake.set()
        await self._log_exit(inst, run)

    async def _reaped(self, inst: _Instance, run: _Run, code: int, now: float) -> None:
        run.reaped = True
        run.exit_code = code
        self._records_dirty = True
        signal_group(run.pid, signal.SIGKILL)  # whatever the leader left behind in its group
        self._cancel_check(run)
        await self._log_exit(inst, run)
        if inst.retiring:
            inst.state = InstanceState.STOPPED
            inst.reason = "stopped"
            inst.last_exit_code = code
            return
        what = _describe_exit(code)
        if inst.restart_now:
            inst.last_exit_code = code
            inst.state = InstanceState.BACKOFF
            inst.restart_at = now
            inst.reason = f"{what}; restarting as requested"
            return
        self._after_exit(inst, code, what, now)

    def _after_exit(self, inst: _Instance, code: int | None, what: str, now: float) -> None:
        inst.last_exit_code = code
        inst.ready_since = None
        decision = inst.history.after_exit(self._backoff, now)
        inst.history = decision.history
        inst.reason = f"{what}; {decision.reason}"
        if decision.crash_loop:
            inst.state = InstanceState.CRASH_LOOP
            log.error("instance %s is in a crash loop: %s", inst.spec.key, inst.reason)
        else:
            inst.state = InstanceState.BACKOFF
            inst.restart_at = now + decision.delay

    def _terminate(self, inst: _Instance, run: _Run, now: float, grace: float, reason: str) -> None:
        inst.state = InstanceState.STOPPING
        inst.reason = reason
        inst.ready_since = None
        self._cancel_check(run)
        if run.kill_at is None:
            signal_group(run.pid, signal.SIGTERM)
            run.kill_at = now + grace

    async def _join(self, instances: Sequence[_Instance], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        runs = [i.run for i in instances if i.run is not None and not i.run.reaped]
        deadline = loop.time() + timeout
        while any(r.proc.poll() is None for r in runs) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for run in runs:
            if run.proc.poll() is None:
                signal_group(run.pid, signal.SIGKILL)
        # SIGKILL cannot be ignored; this only waits for the kernel to tear the processes down
        while any(r.proc.poll() is None for r in runs):
            await asyncio.sleep(0.02)
        for inst in instances:
            last = inst.run
            code = last.proc.poll() if last is not None else None
            if last is not None and not last.reaped and code is not None:
                await self._reaped(inst, last, code, self._clock())

    def _free_port(self) -> int:
        taken = {i.run.port for i in [*self._instances.values(), *self._retiring] if i.alive and i.run}
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((LOOPBACK, 0))
                port = int(sock.getsockname()[1])
            if port not in taken:
                return port
        raise InvalidRequest("no free loopback port for a new instance")

    # ---- health -----------------------------------------------------------------------------------

    def _check_health(self, inst: _Instance, run: _Run, now: float) -> None:
        health = inst.spec.health
        if run.check is not None and run.check.done():
            self._observe(inst, run.check.result(), now)
            run.check = None
        if (
            inst.state is InstanceState.UNHEALTHY
            and now - inst.unhealthy_since >= health.unhealthy_restart_after
        ):
            waited = now - inst.unhealthy_since
            self._terminate(inst, run, now, self._stop_grace, f"restarting: unhealthy for {waited:.0f}s")
            return
        if inst.state is InstanceState.STARTING and now - run.started_mono >= health.start_timeout:
            inst.state = InstanceState.UNHEALTHY
            inst.unhealthy_since = now
            inst.reason = f"not ready {health.start_timeout:g}s after its start ({inst.reason})"
        if run.check is None and now >= run.next_check_at:
            starting = inst.state is InstanceState.STARTING
            run.next_check_at = now + (
                min(self._startup_check, health.interval) if starting else health.interval
            )
            run.check = asyncio.create_task(probe(LOOPBACK, run.port, health.path, health.timeout))
            run.check.add_done_callback(lambda _: self._wake.set())

    def _observe(self, inst: _Instance, result: ProbeResult, now: float) -> None:
        health = inst.spec.health
        if result.ok:
            inst.failures = 0
            inst.passes += 1
            if inst.state is not InstanceState.READY and inst.passes >= health.healthy_threshold:
                inst.state = InstanceState.READY
                inst.ready_since = self._wall()
                inst.history = inst.history.became_ready(now)
                inst.reason = f"ready: {health.path} answered {result.detail}"
            return
        inst.passes = 0
        inst.failures += 1
        if inst.state is InstanceState.STARTING:
            inst.reason = f"starting: {health.path}: {result.detail}"
        elif inst.state is InstanceState.READY and inst.failures >= health.unhealthy_threshold:
            inst.state = InstanceState.UNHEALTHY
            inst.unhealthy_since = now
            inst.ready_since = None
            inst.history = inst.history.became_unready()
            inst.reason = f"unhealthy: {health.path}: {result.detail} ({inst.failures} checks in a row)"
        elif inst.state is InstanceState.UNHEALTHY:
            inst.reason = f"unhealthy: {health.path}: {result.detail} ({inst.failures} checks in a row)"

    def _cancel_check(self, run: _Run) -> None:
        if run.check is not None:
            run.check.cancel()
            run.check = None

    # ---- reporting --------------------------------------------------------------------------------

    def _status(self, inst: _Instance) -> InstanceStatus:
        spec, run = inst.spec, inst.run
        alive = run is not None and not run.reaped
        return InstanceStatus(
            key=spec.key,
            environment=spec.environment,
            service=spec.service,
            version=spec.version,
            index=spec.index,
            pid=run.pid if alive and run else None,
            port=run.port if alive and run else None,
            state=inst.state,
            restarts=inst.restarts,
            started_at=run.started_at if alive and run else None,
            ready_since=inst.ready_since if inst.state is InstanceState.READY else None,
            last_exit_code=inst.last_exit_code,
            health_failures=inst.failures,
            output_tail=tuple(run.tail) if run else ((inst.start_error,) if inst.start_error else ()),
            reason=inst.reason,
            log_path=inst.log.path,
        )

    def _notify(self) -> None:
        everything = [*self._instances.values(), *self._retiring]
        seen = tuple(
            sorted((i.spec.key, str(i.state), i.run.port if i.alive and i.run else None) for i in everything)
        )
        if seen == self._seen:
            return
        self._seen = seen
        if self._on_change is not None:
            try:
                self._on_change()
            except Exception:
                log.exception("supervisor on_change callback failed")

    def _records(self) -> list[ProcessRecord]:
        everything = [*self._instances.values(), *self._retiring]
        return [
            ProcessRecord(i.spec.key, i.run.pid, i.run.start_ticks) for i in everything if i.alive and i.run
        ]

    # ---- logs -------------------------------------------------------------------------------------

    def _log_for(self, spec: InstanceSpec) -> InstanceLog:
        log_file = self._logs.get(spec.key)
        if log_file is None:
            path = instance_log_path(self.log_dir, spec.environment, spec.service, spec.version, spec.index)
            log_file = InstanceLog(path, max_bytes=self._log_max_bytes, backups=self._log_backups)
            self._logs[spec.key] = log_file
        return log_file

    def _close_unused_logs(self) -> None:
        used = {i.spec.key for i in [*self._instances.values(), *self._retiring]}
        for key in [k for k in self._logs if k not in used]:
            self._logs.pop(key).close()

    async def _write_log(self, inst: _Instance, message: str) -> None:
        stamp = datetime.fromtimestamp(self._wall(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        line = f"--- {stamp} conveyor: {inst.spec.key} {message} ---\n"
        await asyncio.to_thread(inst.log.write, line.encode())

    async def _log_exit(self, inst: _Instance, run: _Run) -> None:
        # written once, after both the last output and the exit status are known, so it comes last
        if run.reaped and run.output_closed and not run.exit_logged:
            run.exit_logged = True
            await self._write_log(inst, f"pid {run.pid} {_describe_exit(run.exit_code)}")


def _launch(spec: InstanceSpec, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int | None]:
    """Start the process in its own session; runs in a worker thread (fork and exec take a while)."""
    proc = subprocess.Popen(
        spec.command,
        cwd=spec.workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, start_ticks(proc.pid)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "did not start"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r")

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
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from conveyor.errors import Conflict, InvalidRequest, NotFound
from conveyor.runtime.local.backoff import BackoffPolicy, RestartHistory
from conveyor.runtime.local.health_probe import ProbeResult, probe
from conveyor.runtime.local.instance import HealthCheck, InstanceSpec, InstanceState, InstanceStatus
from conveyor.runtime.local.instance_logs import InstanceLog, instance_log_path, prune_rotated
from conveyor.runtime.local.instance_process import (
    LOOPBACK,
    InstanceProcess,
    child_env,
    describe_exit,
    free_port,
)
from conveyor.runtime.local.pidfile import end_orphans, write_records

__all__ = ["HealthCheck", "InstanceSpec", "InstanceState", "InstanceStatus", "Supervisor"]

log = logging.getLogger("conveyor.supervisor")

PRUNE_EVERY = 3600.0
_PROBED = (InstanceState.STARTING, InstanceState.READY, InstanceState.UNHEALTHY)


class _Instance:
    """The supervisor's mutable record of one desired instance; only the tick loop changes it."""

    def __init__(self, spec: InstanceSpec, log_file: InstanceLog) -> None:
        self.spec = spec
        self.log = log_file
        self.state = InstanceState.STARTING
        self.run: InstanceProcess | None = None
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
        self.earlier_tail: tuple[str, ...] = ()
        """The last lines of the run before this one: a restarted instance that has not printed yet
        still shows why the one before it exited."""
        self.retiring = False
        self.replaced = False
        """Still serving while an instance with a changed spec starts in its place (never restarted)."""
        self.drain_until: float | None = None
        """Out of the routes and waiting for its requests in flight to finish, until this time at most."""

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


@dataclass(frozen=True)
class _Kill:
    key: str
    done: asyncio.Future[None]


_Request = _Apply | _Restart | _Kill


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
        in_flight: Callable[[int], int] | None = None,
        drain_timeout: float = 30.0,
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
        self._in_flight = in_flight
        """Requests in flight to the instance on a port; with it, a serving instance drains before SIGTERM."""
        self._drain_timeout = drain_timeout
        self._instances: dict[str, _Instance] = {}
        self._retiring: list[_Instance] = []
        self._replaced: dict[str, _Instance] = {}
        """Ready instances whose spec changed, serving until their replacement (same key) is ready."""
        self._logs: dict[str, InstanceLog] = {}
        self._requests: deque[_Request | int] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._stopping: asyncio.Future[None] | None = None
        self._signals: list[int] = []
        self._seen: tuple[tuple[str, str, int | None], ...] = ()
        self._last_prune = float("-inf")
        self._records_dirty = False
        self.shutdown_requested = asyncio.Event()
        """Set when an installed signal handler received SIGTERM or SIGINT."""

    # ---- public API -------------------------------------------------------------------------------

    async def start(self) -> None:
        """End instances a previous agent left behind, then start the tick loop."""
        if self._stopping is not None:
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

    async def kill(self, key: str) -> None:
        """SIGKILL one instance's process group (chaos); it is then restarted as after any crash."""
        await self._submit(lambda done: _Kill(key, done))

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every instance's group, SIGKILL what is left after `timeout`, and reap them all."""
        if self._task is None:
            return
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._shutdown(timeout))
        await asyncio.shield(self._stopping)

    async def _shutdown(self, timeout: float) -> None:
        assert self._task is not None
        self._closing = True
        self._wake.set()
        await self._task
        self._remove_signal_handlers()
        self._fail_requests()
        everything = self._everything()
        for inst in everything:
            inst.retiring = True
            if inst.run is not None:
                self._cancel_check(inst.run)
            if inst.alive:
                assert inst.run is not None
                self._terminate(inst, inst.run, self._clock(), timeout, "stopping: supervisor shut down")
        self._notify()
        await self._join(everything, timeout)
        readers = [i.run.reader for i in everything if i.run is not None and i.run.reader is not None]
        if readers:
            _, late = await asyncio.wait(readers, timeout=2.0)
            for reader in late:
                reader.cancel()
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
        everything = self._everything()
        return sorted((self._status(i) for i in everything), key=lambda s: (s.key, s.state != "stopping"))

    def ready_endpoints(
        self, environment: str, version: str, service: str | None = None
    ) -> list[tuple[str, int]]:
        """(host, port) of the ready instances of one version in one environment, by index."""
        ready = [
            inst
            for inst in (*self._instances.values(), *self._replaced.values())
            if inst.spec.environment == environment
            and inst.spec.version == version
            and (service is None or inst.spec.service == service)
            and inst.state is InstanceState.READY
            and inst.run is not None
        ]
        ready.sort(key=lambda inst: inst.spec.index)
        return [(LOOPBACK, inst.run.port) for inst in ready if inst.run is not None]

    # ---- requests ---------------------------------------------------------------------------------

    async def _submit(self, make: Callable[[asyncio.Future[None]], _Request]) -> None:
        if self._task is None or self._closing:
            raise Conflict("the supervisor is not running", hint="await supervisor.start() first")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(make(done))
        await done

    def _enqueue(self, request: _Request | int) -> None:
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
        for inst in self._everything():
            await self._step(inst, now)
        self._hand_over(now)
        # a stopped instance stays listed until its output is drained, so its log file stays open
        self._retiring = [i for i in self._retiring if i.state is not InstanceState.STOPPED or _draining(i)]
        self._close_unused_logs()
        if self._records_dirty:
            self._records_dirty = False
            records = [i.run.record(i.spec.key) for i in self._everything() if i.alive and i.run]
            await asyncio.to_thread(write_records, self.pid_file, records)
        if now - self._last_prune >= PRUNE_EVERY:
            self._last_prune = now
            await asyncio.to_thread(
                prune_rotated, self.log_dir, retention_days=self._retention_days, now=self._wall()
            )

    async def _handle(self, request: _Request | int) -> None:
        if isinstance(request, int):
            log.info("received signal %s; shutdown requested", signal.Signals(request).name)
            self.shutdown_requested.set()
            return
        try:
            if isinstance(request, _Apply):
                await self._reconcile(request.specs)
            elif isinstance(request, _Kill):
                self._kill(request.key)
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
                if key in desired and inst.state is InstanceState.READY and key not in self._replaced:
                    # a changed instance (new configuration, new secret) keeps serving until its
                    # replacement passes its health check: no gap in traffic (surge of one)
                    inst.replaced = True
                    self._replaced[key] = inst
                else:
                    self._retire(inst, now)
        for key in [k for k in self._replaced if k not in desired]:
            self._retire(self._replaced.pop(key), now)
        for key, spec in desired.items():
            if key not in self._instances:
                inst = _Instance(spec, self._log_for(spec))
                self._instances[key] = inst
                await self._spawn(inst, now)
        self._notify()  # routes leave retired instances before their requests in flight are counted

    def _hand_over(self, now: float) -> None:
        """Retire each replaced instance once its replacement is ready, has failed, or it stopped serving."""
        done = []
        for key, old in list(self._replaced.items()):
            new = self._instances.get(key)
            settled = new is None or new.state in (InstanceState.READY, InstanceState.CRASH_LOOP)
            if settled or old.state is not InstanceState.READY:
                done.append(self._replaced.pop(key))
        if done:
            self._notify()  # routes leave the old instances before they are asked to stop
            for old in done:
                self._retire(old, now)

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

    def _kill(self, key: str) -> None:
        inst = self._instances.get(key)
        if inst is None:
            raise NotFound(f"instance {key} is not running on this agent")
        if not inst.alive or inst.state is InstanceState.STOPPING:
            raise Conflict(
                f"instance {key} has no process to kill ({inst.state}: {inst.reason})",
                hint="wait until it runs again; `conveyor ps` shows its state",
            )
        assert inst.run is not None
        log.warning("instance %s: SIGKILL on request (pid %d)", key, inst.run.pid)
        # reaped by the next tick like any crash: backoff, restart, crash-loop verdict
        inst.run.signal(signal.SIGKILL)

    def _retire(self, inst: _Instance, now: float) -> None:
        inst.retiring = True
        if not inst.alive:
            inst.state = InstanceState.STOPPED
            inst.reason = "stopped"
            return
        assert inst.run is not None
        if self._in_flight is not None and inst.state is InstanceState.READY:
            # It has been serving: the routes no longer send it requests, and SIGTERM waits until
            # those it already has are answered (connection draining), so none is cut off midway.
            inst.state = InstanceState.STOPPING
            inst.reason = "draining: out of the routes, answering the requests it has"
            inst.ready_since = None
            inst.drain_until = now + self._drain_timeout
            self._cancel_check(inst.run)
        else:
            self._terminate(inst, inst.run, now, self._stop_grace, "stopping: no longer desired")
        self._retiring.append(inst)

    async def _step(self, inst: _Instance, now: float) -> None:
        run = inst.run
        if run is not None and not run.reaped:
            code = run.poll()
            if code is not None:
                await self._reaped(inst, run, code, now)
            else:
                if inst.drain_until is not None and (
                    now >= inst.drain_until or not self._requests_in_flight(run)
                ):
                    inst.drain_until = None
                    self._terminate(inst, run, now, self._stop_grace, "stopping: no longer desired")
                if run.kill_at is not None and now >= run.kill_at:
                    log.warning("instance %s ignored SIGTERM; sending SIGKILL", inst.spec.key)
                    run.signal(signal.SIGKILL)
                    run.kill_at = None
                if inst.state in _PROBED:
                    self._check_health(inst, run, now)
        if (
            inst.state is InstanceState.BACKOFF
            and not (inst.retiring or inst.replaced)
            and now >= inst.restart_at
        ):
            inst.restarts += 1
            await self._spawn(inst, now)

    # ---- processes --------------------------------------------------------------------------------

    async def _spawn(self, inst: _Instance, now: float) -> None:
        spec = inst.spec
        port = free_port(i.run.port for i in self._everything() if i.alive and i.run)
        inst.passes = inst.failures = 0
        inst.ready_since = None
        inst.restart_now = False
        inst.start_error = None
        if inst.run is not None and inst.run.tail:
            inst.earlier_tail = tuple(inst.run.tail)
        try:
            run = await asyncio.to_thread(
                InstanceProcess.launch, spec, child_env(spec, port), port, self._wall(), now
            )
        except OSError as exc:
            inst.start_error = f"cannot start {spec.command[0]!r} in {spec.workdir}: {exc.strerror or exc}"
            await self._write_log(inst, inst.start_error)
            inst.run = None
            self._after_exit(inst, None, inst.start_error, now)
            return
        inst.run = run
        inst.state = InstanceState.STARTING
        inst.reason = "starting: waiting for the first passing health check"
        self._records_dirty = True
        await self._write_log(inst, f"started pid {run.pid} on port {port}")
        run.reader = asyncio.create_task(self._collect(inst, run), name=f"output of {spec.key}")

    async def _collect(self, inst: _Instance, run: InstanceProcess) -> None:
        await run.collect_output(inst.log)
        self._wake.set()  # the output ended, so the process has most likely exited: reap it now
        await self._log_exit(inst, run)

    async def _reaped(self, inst: _Instance, run: InstanceProcess, code: int, now: float) -> None:
        run.reaped = True
        run.exit_code = code
        self._records_dirty = True
        run.signal(signal.SIGKILL)  # whatever the leader left behind in its group
        self._cancel_check(run)
        await self._log_exit(inst, run)
        if inst.retiring:
            inst.state = InstanceState.STOPPED
            inst.reason = "stopped"
            inst.last_exit_code = code
            return
        what = describe_exit(code)
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

    def _terminate(
        self, inst: _Instance, run: InstanceProcess, now: float, grace: float, reason: str
    ) -> None:
        inst.state = InstanceState.STOPPING
        inst.reason = reason
        inst.ready_since = None
        self._cancel_check(run)
        if run.kill_at is None:
            run.signal(signal.SIGTERM)
            run.kill_at = now + grace

    async def _join(self, instances: Sequence[_Instance], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        runs = [i.run for i in instances if i.run is not None and not i.run.reaped]
        deadline = loop.time() + timeout
        while any(r.poll() is None for r in runs) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for run in runs:
            if run.poll() is None:
                run.signal(signal.SIGKILL)
        # SIGKILL cannot be ignored; this only waits for the kernel to tear the processes down
        while any(r.poll() is None for r in runs):
            await asyncio.sleep(0.02)
        for inst in instances:
            last = inst.run
            code = last.poll() if last is not None else None
            if last is not None and not last.reaped and code is not None:
                await self._reaped(inst, last, code, self._clock())

    # ---- health -----------------------------------------------------------------------------------

    def _check_health(self, inst: _Instance, run: InstanceProcess, now: float) -> None:
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

    def _requests_in_flight(self, run: InstanceProcess) -> int:
        if self._in_flight is None:
            return 0
        try:
            return self._in_flight(run.port)
        except Exception:
            log.exception("counting the requests in flight failed; not waiting for them")
            return 0

    def _cancel_check(self, run: InstanceProcess) -> None:
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
            output_tail=_tail_of(inst),
            reason=inst.reason,
            log_path=inst.log.path,
        )

    def _notify(self) -> None:
        everything = self._everything()
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

    def _everything(self) -> list[_Instance]:
        return [*self._instances.values(), *self._replaced.values(), *self._retiring]

    # ---- logs -------------------------------------------------------------------------------------

    def _log_for(self, spec: InstanceSpec) -> InstanceLog:
        log_file = self._logs.get(spec.key)
        if log_file is None:
            path = instance_log_path(self.log_dir, spec.environment, spec.service, spec.version, spec.index)
            log_file = InstanceLog(path, max_bytes=self._log_max_bytes, backups=self._log_backups)
            self._logs[spec.key] = log_file
        return log_file

    def _close_unused_logs(self) -> None:
        used = {i.spec.key for i in self._everything()}
        for key in [k for k in self._logs if k not in used]:
            self._logs.pop(key).close()

    async def _write_log(self, inst: _Instance, message: str) -> None:
        stamp = datetime.fromtimestamp(self._wall(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        line = f"--- {stamp} conveyor: {inst.spec.key} {message} ---\n"
        await asyncio.to_thread(inst.log.write, line.encode())

    async def _log_exit(self, inst: _Instance, run: InstanceProcess) -> None:
        # written once, after both the last output and the exit status are known, so it comes last
        if run.reaped and run.output_closed and not run.exit_logged:
            run.exit_logged = True
            await self._write_log(inst, f"pid {run.pid} {describe_exit(run.exit_code)}")


def _tail_of(inst: _Instance) -> tuple[str, ...]:
    """The instance's last output: its current run's, else what stopped it from starting, else the
    run before (a restarted instance that has printed nothing yet)."""
    if inst.run is not None and inst.run.tail:
        return tuple(inst.run.tail)
    if inst.start_error:
        return (inst.start_error,)
    return inst.earlier_tail


def _draining(inst: _Instance) -> bool:
    reader = inst.run.reader if inst.run is not None else None
    return reader is not None and not reader.done()

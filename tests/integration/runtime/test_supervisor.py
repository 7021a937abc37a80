"""The supervisor with real processes: the example app started, probed, killed, replaced and stopped."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.errors import Conflict
from conveyor.runtime.local.backoff import BackoffPolicy
from conveyor.runtime.local.instance_logs import rotated_path, tail
from conveyor.runtime.local.supervisor import (
    HealthCheck,
    InstanceSpec,
    InstanceState,
    InstanceStatus,
    Supervisor,
)

ROOT = Path(__file__).resolve().parents[3]
APP_DIR = ROOT / "examples" / "app"
FAST = HealthCheck(interval=0.2, timeout=1.0, healthy_threshold=1, unhealthy_threshold=2, restart_after=60)
QUICK_BACKOFF = BackoffPolicy(initial=0.05, factor=2, cap=0.4, reset_after=5, crash_limit=4, crash_window=30)
APP = (sys.executable, "app.py")


def app_after(prelude: str) -> tuple[str, ...]:
    """A command that runs `prelude`, then the example app in the same process."""
    return (sys.executable, "-c", f"{prelude}\nimport runpy\nrunpy.run_path('app.py', run_name='__main__')")


def spec(
    version: str = "1.0.0",
    index: int = 0,
    *,
    command: tuple[str, ...] = APP,
    env: Mapping[str, str] | None = None,
    health: HealthCheck = FAST,
    environment: str = "dev",
) -> InstanceSpec:
    return InstanceSpec(environment, "shop", version, index, command, APP_DIR, env or {}, health)


@asynccontextmanager
async def supervising(tmp_path: Path, **options: Any) -> AsyncIterator[Supervisor]:
    options.setdefault("backoff", QUICK_BACKOFF)
    options.setdefault("stop_grace", 2.0)
    supervisor = Supervisor(tmp_path / "logs", tick=0.05, **options)
    await supervisor.start()
    try:
        yield supervisor
    finally:
        await supervisor.stop(timeout=5.0)


async def until(what: str, predicate: Callable[[], bool], timeout: float = 10.0) -> float:
    """Wait until `predicate()` holds; return how long it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not reached within {timeout}s: {what}")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


def status(supervisor: Supervisor, key: str) -> InstanceStatus:
    matches = [s for s in supervisor.instances() if s.key == key]
    assert matches, f"{key} is not listed"
    return matches[-1]


def state_is(supervisor: Supervisor, key: str, state: InstanceState) -> Callable[[], bool]:
    return lambda: any(s.key == key and s.state is state for s in supervisor.instances())


def running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


def processes() -> list[tuple[int, str, int, int]]:
    """(pid, state, ppid, pgrp) of every process."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        found.append((int(stat.parent.name), fields[0], int(fields[1]), int(fields[2])))
    return found


async def get(port: int, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as client:
        return await client.get(f"http://127.0.0.1:{port}{path}")


async def fault(port: int, **changes: object) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.post(f"http://127.0.0.1:{port}/_fault", json=changes)
        response.raise_for_status()


def test_an_instance_becomes_ready_and_is_listed_with_its_port(tmp_path: Path) -> None:
    async def scenario() -> None:
        changes: list[list[tuple[str, int]]] = []
        holder: list[Supervisor] = []

        def on_change() -> None:
            changes.append(holder[0].ready_endpoints("dev", "1.0.0"))

        async with supervising(tmp_path, on_change=on_change) as supervisor:
            holder.append(supervisor)
            await supervisor.apply([spec()])
            await until("ready", state_is(supervisor, "dev/shop/1.0.0/0", InstanceState.READY))
            current = status(supervisor, "dev/shop/1.0.0/0")
            assert current.port is not None and current.pid is not None
            assert supervisor.ready_endpoints("dev", "1.0.0") == [("127.0.0.1", current.port)]
            assert supervisor.ready_endpoints("dev", "2.0.0") == []
            assert supervisor.ready_endpoints("dev", "1.0.0", service="other") == []
            assert changes[-1] == [("127.0.0.1", current.port)]
            assert (current.restarts, current.health_failures, current.last_exit_code) == (0, 0, None)
            assert current.started_at is not None and abs(current.started_at - time.time()) < 30
            assert current.ready_since is not None and current.ready_since >= current.started_at
            assert any("listening on 127.0.0.1" in line for line in current.output_tail)
            answer = (await get(current.port, "/")).json()
            assert answer["version"] == "1.0.0"
            assert answer["environment"] == "dev"
            assert answer["instance"] == "dev/shop/1.0.0/0"

    asyncio.run(scenario())


def test_an_instance_gets_its_port_and_identity_but_not_the_agents_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_TEST_AGENT_SECRET", "s3cret")
    show = app_after(
        "import json, os, sys\n"
        "seen = {'env': dict(os.environ), 'cwd': os.getcwd(), 'stdin': sys.stdin.read()}\n"
        "print('SEEN=' + json.dumps(seen))"
    )

    async def scenario() -> None:
        async with supervising(tmp_path) as supervisor:
            await supervisor.apply([spec(command=show, env={"DATABASE_URL": "sqlite://"})])
            await until("ready", state_is(supervisor, "dev/shop/1.0.0/0", InstanceState.READY))
            current = status(supervisor, "dev/shop/1.0.0/0")
            line = next(line for line in current.output_tail if line.startswith("SEEN="))
            seen = json.loads(line.removeprefix("SEEN="))
            env = seen["env"]
            assert env["PORT"] == str(current.port)
            assert env["CONVEYOR_ENV"] == "dev"
            assert env["CONVEYOR_VERSION"] == "1.0.0"
            assert env["CONVEYOR_INSTANCE"] == "dev/shop/1.0.0/0"
            assert env["DATABASE_URL"] == "sqlite://"
            assert "CONVEYOR_TEST_AGENT_SECRET" not in env
            assert seen["cwd"] == str(APP_DIR)
            assert seen["stdin"] == ""
            assert os.getpgid(current.pid or 0) == current.pid  # its own process group

    asyncio.run(scenario())


def test_kill_9_restarts_on_a_new_pid_and_hides_the_instance_while_it_is_down(tmp_path: Path) -> None:
    async def scenario() -> dict[str, float]:
        async with supervising(tmp_path) as supervisor:
            key = "dev/shop/1.0.0/0"
            await supervisor.apply([spec()])
            await until("ready", state_is(supervisor, key, InstanceState.READY))
            before = status(supervisor, key)
            assert before.pid is not None
            killed_at = time.monotonic()
            os.kill(before.pid, signal.SIGKILL)
            hidden = await until("excluded", lambda: supervisor.ready_endpoints("dev", "1.0.0") == [])
            # sampled in the gap: down, not routable, not yet restarted
            gap = status(supervisor, key)
            assert gap.state in (InstanceState.BACKOFF, InstanceState.STARTING)
            assert gap.last_exit_code == -9
            assert "killed by SIGKILL" in gap.reason
            await until("ready again", lambda: supervisor.ready_endpoints("dev", "1.0.0") != [])
            back = time.monotonic() - killed_at
            after = status(supervisor, key)
            assert after.pid is not None and after.pid != before.pid
            assert after.restarts == 1
            assert not running(before.pid)
            assert supervisor.ready_endpoints("dev", "1.0.0") == [("127.0.0.1", after.port)]
            assert (await get(after.port or 0, "/healthz")).status_code == 200
            return {"hidden_after": hidden, "routable_again_after": back}

    gap = asyncio.run(scenario())
    hidden, back = gap["hidden_after"], gap["routable_again_after"]
    print(f"kill -9 gap: excluded after {hidden:.3f}s, ready again after {back:.3f}s")


def test_a_failing_health_check_makes_it_unhealthy_and_unroutable_until_it_recovers(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with supervising(tmp_path) as supervisor:
            key = "dev/shop/1.0.0/0"
            await supervisor.apply([spec()])
            await until("ready", state_is(supervisor, key, InstanceState.READY))
            ready = status(supervisor, key)
            await fault(ready.port or 0, fail_health=True)
            await until("unhealthy", state_is(supervisor, key, InstanceState.UNHEALTHY), timeout=5)
            sick = status(supervisor, key)
            assert supervisor.ready_endpoints("dev", "1.0.0") == []
            assert sick.pid == ready.pid and sick.restarts == 0  # kept running, still probed
            assert sick.health_failures >= 2
            assert "HTTP 503" in sick.reason
            await fault(ready.port or 0, fail_health=False)
            await until("ready again", state_is(supervisor, key, InstanceState.READY), timeout=5)
            assert status(supervisor, key).pid == ready.pid
            assert supervisor.ready_endpoints("dev", "1.0.0") == [("127.0.0.1", ready.port)]

    asyncio.run(scenario())


def test_an_instance_unhealthy_for_too_long_is_restarted(tmp_path: Path) -> None:
    health = HealthCheck(interval=0.2, timeout=1.0, unhealthy_threshold=2, restart_after=0.6)

    async def scenario() -> None:
        async with supervising(tmp_path) as supervisor:
            key = "dev/shop/1.0.0/0"
            await supervisor.apply([spec(health=health)])
            await until("ready", state_is(supervisor, key, InstanceState.READY))
            first = status(supervisor, key)
            await fault(first.port or 0, fail_health=True)
            await until("restarted", lambda: status(supervisor, key).restarts == 1, timeout=10)
            await until("ready again", state_is(supervisor, key, InstanceState.READY))
            assert status(supervisor, key).pid != first.pid
            assert not running(first.pid or 0)

    asyncio.run(scenario())


def test_an_instance_never_ready_turns_unhealthy_after_start_timeout_and_is_restarted(tmp_path: Path) -> None:
    health = HealthCheck(interval=0.2, timeout=1.0, start_timeout=0.5, restart_after=0.5)

    async def scenario() -> None:
        async with supervising(tmp_path) as supervisor:
            key = "dev/shop/1.0.0/0"
            await supervisor.apply([spec(env={"APP_FAIL_HEALTH": "1"}, health=health)])
            await until("unhealthy", state_is(supervisor, key, InstanceState.UNHEALTHY), timeout=5)
            sick = status(supervisor, key)
            assert sick.reason == "not ready 0.5s after its start (starting: /healthz: HTTP 503)"
            assert supervisor.ready_endpoints("dev", "1.0.0") == []
            await until("restarted", lambda: status(supervisor, key).restarts >= 1, timeout=5)
            assert status(supervisor, key).pid != sick.pid

    asyncio.run(scenario())


def test_an_app_that_exits_at_once_ends_in_a_crash_loop_with_its_last_words(tmp_path: Path) -> None:
    crash = (sys.executable, "-c", "import sys; print('boom: missing DATABASE_URL'); sys.exit(3)")

    async def scenario() -> None:
        async with supervising(tmp_path) as supervisor:
            key = "dev/shop/1.0.0/0"
            await supervisor.apply([spec(command=crash)])
            await until("crash loop", state_is(supervisor, key, InstanceState.CRASH_LOOP), timeout=10)
            verdict = status(supervisor, key)
            assert verdict.restarts == QUICK_BACKOFF.crash_limit - 1
            assert verdict.last_exit_code == 3
            assert verdict.pid is None and verdict.port is None
            assert "crash loop" in verdict.reason
            await until("tail", lambda: "boom" in " ".join(status(supervisor, key).output_tail), timeout=2)
            assert status(supervisor, key).output_tail[-1] == "boom: missing DATABASE_URL"
            await asyncio.sleep(3 * QUICK_BACKOFF.cap)
            assert status(supervisor, key).restarts == verdict.restarts  # no restarts after the verdict
            await supervisor.restart(key)
            await until("tried again", lambda: status(supervisor, key).restarts > verdict.restarts, timeout=5)

    asyncio.run(scenario())


def test_a_restarted_instance_that_has_not_printed_yet_still_shows_why_the_last_one_exited(
    tmp_path: Path,
) -> None:
    # the first run says why it stops; the restart stays silent (and never gets healthy)
    marker = tmp_path / "ran-once"
    first_then_silent = (
        sys.executable,
        "-c",
        f"import os, sys, time\nif os.path.exists({str(marker)!r}): time.sleep(60)\n"
        f"open({str(marker)!r}, 'w').close()\nprint('cannot open config')\nsys.exit(3)",
    )

    async def scenario() -> None:
        async with supervising(tmp_path) as supervisor:
            key = "dev/shop/1.0.0/0"
            await supervisor.apply([spec(command=first_then_silent)])
            await until("restarted", lambda: status(supervisor, key).restarts >= 1, timeout=10)
            await until("second run up", lambda: status(supervisor, key).pid is not None, timeout=10)
            again = status(supervisor, key)
            assert again.last_exit_code == 3
            assert again.output_tail == ("cannot open config",)

    asyncio.run(scenario())


def test_a_program_that_cannot_start_is_reported_not_retried_forever(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with supervising(tmp_path) as supervisor:
            key = "dev/shop/1.0.0/0"
            await supervisor.apply([spec(command=("/nonexistent/bin/app",))])
            await until("crash loop", state_is(supervisor, key, InstanceState.CRASH_LOOP), timeout=10)
            verdict = status(supervisor, key)
            assert verdict.output_tail and "cannot start '/nonexistent/bin/app'" in verdict.output_tail[0]
            assert "No such file or directory" in verdict.reason

    asyncio.run(scenario())


def test_apply_stops_removed_instances_starts_new_ones_and_replaces_changed_ones(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with supervising(tmp_path) as supervisor:
            await supervisor.apply([spec("1.0.0", 0), spec("1.0.0", 1)])
            await until("both ready", lambda: len(supervisor.ready_endpoints("dev", "1.0.0")) == 2)
            kept, removed = status(supervisor, "dev/shop/1.0.0/0"), status(supervisor, "dev/shop/1.0.0/1")

            await supervisor.apply([spec("1.0.0", 0), spec("2.0.0", 0)])
            await until("removed one gone", lambda: not running(removed.pid or 0), timeout=5)
            await until("new one ready", lambda: supervisor.ready_endpoints("dev", "2.0.0") != [])
            await until("listing settled", lambda: len(supervisor.instances()) == 2, timeout=5)
            assert [s.key for s in supervisor.instances()] == ["dev/shop/1.0.0/0", "dev/shop/2.0.0/0"]
            assert status(supervisor, "dev/shop/1.0.0/0").pid == kept.pid  # unchanged: untouched
            assert supervisor.ready_endpoints("dev", "1.0.0") == [("127.0.0.1", kept.port)]

            await supervisor.apply([spec("1.0.0", 0, env={"FEATURE": "on"}), spec("2.0.0", 0)])
            await until("old process gone", lambda: not running(kept.pid or 0), timeout=5)
            await until(
                "replacement ready", state_is(supervisor, "dev/shop/1.0.0/0", InstanceState.READY), timeout=5
            )
            assert status(supervisor, "dev/shop/1.0.0/0").pid != kept.pid

            await supervisor.apply([])
            await until("all stopped", lambda: supervisor.instances() == [], timeout=5)

    asyncio.run(scenario())


def test_an_instance_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    stubborn = app_after("import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)")

    async def scenario() -> None:
        async with supervising(tmp_path, stop_grace=0.5) as supervisor:
            key = "dev/shop/1.0.0/0"
            await supervisor.apply([spec(command=stubborn)])
            await until("ready", state_is(supervisor, key, InstanceState.READY))
            pid = status(supervisor, key).pid or 0
            await supervisor.apply([])
            assert status(supervisor, key).state is InstanceState.STOPPING
            await asyncio.sleep(0.3)
            assert running(pid)  # SIGTERM ignored, still inside its grace period
            took = await until("killed", lambda: not running(pid), timeout=5)
            assert took < 3
            log_file = tmp_path / "logs" / "dev" / "shop-1.0.0-0.log"
            await until(
                "exit logged", lambda: f"pid {pid} killed by SIGKILL" in log_file.read_text(), timeout=2
            )

    asyncio.run(scenario())


def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    with_helper = app_after("import subprocess\nsubprocess.Popen(['sleep', '300'])")

    async def scenario() -> set[int]:
        supervisor = Supervisor(tmp_path / "logs", tick=0.05, backoff=QUICK_BACKOFF)
        await supervisor.start()
        await supervisor.apply([spec("1.0.0", 0), spec("1.0.0", 1, command=with_helper), spec("2.0.0", 0)])
        await until("all ready", lambda: all(s.state is InstanceState.READY for s in supervisor.instances()))
        groups = {s.pid or 0 for s in supervisor.instances()}
        members = [p for p in processes() if p[3] in groups]
        assert any(pid not in groups for pid, *_ in members), "the helper process should share its group"
        await supervisor.stop(timeout=5.0)
        assert all(s.state is InstanceState.STOPPED and s.pid is None for s in supervisor.instances())
        return groups

    groups = asyncio.run(scenario())
    leftovers = [p for p in processes() if p[3] in groups and p[1] != "Z"]
    assert leftovers == []
    # not even zombies: every instance was reaped (the worker's other children, such as the suite's
    # CLI launcher, are not the supervisor's)
    children = [p for p in processes() if p[2] == os.getpid() and p[0] in groups]
    assert children == []


def test_output_lands_in_the_instance_log_file_and_rotates(tmp_path: Path) -> None:
    async def scenario() -> Path:
        async with supervising(tmp_path, log_max_bytes=2048, log_backups=2) as supervisor:
            key = "dev/shop/1.0.0/0"
            await supervisor.apply([spec(env={"APP_ACCESS_LOG": "1"})])
            await until("ready", state_is(supervisor, key, InstanceState.READY))
            current = status(supervisor, key)
            # a few connections at once: the example app's listen backlog is small
            async with httpx.AsyncClient(timeout=5, limits=httpx.Limits(max_connections=4)) as client:
                paths = [f"http://127.0.0.1:{current.port}/request-{n:03d}-{'x' * 40}" for n in range(80)]
                await asyncio.gather(*(client.get(path) for path in paths))
            await until("requests logged", lambda: "/request-" in " ".join(tail(current.log_path, 5)))
            return current.log_path

    path = asyncio.run(scenario())
    assert path == tmp_path / "logs" / "dev" / "shop-1.0.0-0.log"
    files = [path, rotated_path(path, 1), rotated_path(path, 2)]
    assert all(f.exists() and f.stat().st_size <= 2048 for f in files)
    assert not rotated_path(path, 3).exists()
    everything = "".join(f.read_text() for f in reversed(files))
    assert everything.count("GET /request-") >= 40  # the oldest may have rotated away
    assert everything.rstrip().endswith("killed by SIGTERM ---")


def test_instances_left_by_a_killed_agent_are_ended_when_the_next_one_starts(tmp_path: Path) -> None:
    agent = f"""
import asyncio, sys
from pathlib import Path
from conveyor.runtime.local.supervisor import HealthCheck, InstanceSpec, Supervisor

async def main():
    supervisor = Supervisor(Path({str(tmp_path / "logs")!r}), tick=0.05)
    await supervisor.start()
    command = ({sys.executable!r}, "app.py")
    health = HealthCheck(interval=0.2, timeout=1.0)
    spec = InstanceSpec("dev", "shop", "1.0.0", 0, command, Path({str(APP_DIR)!r}), {{}}, health)
    await supervisor.apply([spec])
    while not supervisor.ready_endpoints("dev", "1.0.0"):
        await asyncio.sleep(0.02)
    print(supervisor.instances()[0].pid, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""
    proc = subprocess.Popen([sys.executable, "-c", agent], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        orphan = int(proc.stdout.readline())
    finally:
        proc.kill()  # the agent dies without stopping anything
        proc.wait()
    assert running(orphan)

    async def scenario() -> None:
        async with supervising(tmp_path, stop_grace=2.0) as supervisor:
            assert not running(orphan)
            assert supervisor.instances() == []

    asyncio.run(scenario())


def test_signal_handlers_only_request_a_shutdown(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with supervising(tmp_path) as supervisor:
            await supervisor.apply([spec()])
            await until("ready", state_is(supervisor, "dev/shop/1.0.0/0", InstanceState.READY))
            supervisor.install_signal_handlers([signal.SIGUSR1])
            os.kill(os.getpid(), signal.SIGUSR1)
            await asyncio.wait_for(supervisor.shutdown_requested.wait(), 5)
            assert status(supervisor, "dev/shop/1.0.0/0").state is InstanceState.READY  # nothing stopped
        with pytest.raises(Conflict, match="not running"):
            await supervisor.apply([])

    asyncio.run(scenario())


def test_a_changed_instance_serves_until_its_replacement_is_ready(tmp_path: Path) -> None:
    """A new configuration (or secret) must not leave a moment with nothing to route to."""

    async def scenario() -> None:
        slow = app_after("import time; time.sleep(1.0)")  # the replacement takes a while to start
        async with supervising(tmp_path) as supervisor:
            await supervisor.apply([spec("1.0.0", 0, command=slow), spec("1.0.0", 1, command=slow)])
            await until("both ready", lambda: len(supervisor.ready_endpoints("dev", "1.0.0")) == 2)
            old = {s.key: s.pid for s in supervisor.instances()}

            changed = {"FEATURE": "on"}
            await supervisor.apply([spec("1.0.0", i, command=slow, env=changed) for i in (0, 1)])
            seen_empty = False
            started = time.monotonic()
            while time.monotonic() - started < 15:
                endpoints = supervisor.ready_endpoints("dev", "1.0.0")
                seen_empty = seen_empty or not endpoints
                current = {s.key: s.pid for s in supervisor.instances() if s.state == "ready"}
                if len(current) == 2 and not set(current.values()) & set(old.values()):
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError(f"the replacements never took over: {supervisor.instances()}")
            assert not seen_empty, "there was a moment without a ready instance"
            await until(
                "old processes gone", lambda: not any(running(p or 0) for p in old.values()), timeout=5
            )

            # a replacement that never becomes ready does not keep the old one forever
            broken = app_after("raise SystemExit(3)")
            await supervisor.apply(
                [spec("1.0.0", 0, command=broken), spec("1.0.0", 1, command=slow, env=changed)]
            )
            await until(
                "crash loop", state_is(supervisor, "dev/shop/1.0.0/0", InstanceState.CRASH_LOOP), timeout=10
            )
            await until(
                "old one retired", lambda: len(supervisor.ready_endpoints("dev", "1.0.0")) == 1, timeout=5
            )

    asyncio.run(scenario())


def test_an_instance_leaving_the_routes_answers_its_requests_in_flight_before_sigterm(tmp_path: Path) -> None:
    """Connection draining: the router reports what is in flight; SIGTERM waits for it, up to a limit."""
    in_flight: dict[int, int] = {}

    async def scenario() -> None:
        options = {"in_flight": lambda port: in_flight.get(port, 0), "drain_timeout": 1.5}
        async with supervising(tmp_path, **options) as supervisor:
            key = "dev/shop/1.0.0/0"
            await supervisor.apply([spec()])
            await until("ready", state_is(supervisor, key, InstanceState.READY))
            first = status(supervisor, key)
            in_flight[first.port or 0] = 1
            await supervisor.apply([])
            await asyncio.sleep(0.5)
            draining = status(supervisor, key)
            assert running(first.pid or 0), "stopped with a request in flight"
            assert draining.state is InstanceState.STOPPING and draining.reason.startswith("draining")
            in_flight[first.port or 0] = 0
            took = await until("stopped once nothing is in flight", lambda: not running(first.pid or 0), 5)
            assert took < 1.0  # at once, not at the drain limit

            # a request that never ends does not keep the instance forever
            await supervisor.apply([spec()])
            await until("ready again", state_is(supervisor, key, InstanceState.READY))
            second = status(supervisor, key)
            in_flight[second.port or 0] = 1
            began = time.monotonic()
            await supervisor.apply([])
            await until("stopped at the drain limit", lambda: not running(second.pid or 0), 10)
            assert time.monotonic() - began >= 1.4

    asyncio.run(scenario())

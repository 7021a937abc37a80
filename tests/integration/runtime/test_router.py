"""The router against real example-app processes over loopback: split, stickiness, no drops, kill -9, faults.

The router runs on its own uvloop in a background thread of the test process (`RouterThread`); the apps are
real `examples/app/app.py` processes; clients are raw pipelining sockets (for volume) or httpx.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import httptools
import httpx
import pytest
import uvloop

from conveyor.runtime.local.metrics import MetricsRegistry, WindowStats
from conveyor.runtime.local.router import Router
from conveyor.runtime.local.split import Backend, Fault, RouteTable
from tests.conftest import ROOT, free_port

APP = ROOT / "examples" / "app" / "app.py"
ENV = "production"
T = TypeVar("T")


# ---------------------------------------------------------------- harness


@dataclass
class App:
    """One example-app process serving one version."""

    version: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def endpoint(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def fault(self, **changes: object) -> None:
        httpx.post(f"http://127.0.0.1:{self.port}/_fault", json=changes, timeout=5).raise_for_status()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def start_apps(*versions: str) -> list[App]:
    """Start one example app per version on free ports; return once every /healthz answers."""
    apps = []
    for version in versions:
        port = free_port()
        env = {**os.environ, "PORT": str(port), "CONVEYOR_VERSION": version, "CONVEYOR_ENV": ENV}
        proc = subprocess.Popen(
            [sys.executable, str(APP)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        apps.append(App(version, port, proc))
    deadline = time.monotonic() + 15
    for app in apps:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{app.port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or app.proc.poll() is not None:
                raise AssertionError(f"example app {app.version} did not come up on port {app.port}")
            time.sleep(0.03)
    return apps


class RouterThread:
    """A Router on its own uvloop in a background thread; the test drives it from the main thread."""

    def __init__(self, table: RouteTable, **options: Any) -> None:
        self.metrics = MetricsRegistry()
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="router-loop", daemon=True)
        self.thread.start()
        self.router = Router(table.environment, "127.0.0.1", 0, self.metrics, table, **options)
        self.run(self.router.start())
        self.port = self.router.port
        self.url = f"http://127.0.0.1:{self.port}"
        self.stopped = False

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        async def on_loop() -> T:
            return fn(*args)

        return self.run(on_loop())

    def update(self, table: RouteTable) -> None:
        self.call(self.router.update, table)

    def window(self, version: str, seconds: int = 120) -> WindowStats:
        return self.call(self.metrics.window, self.router.environment, version, seconds)

    def stop(self, drain_timeout: float = 5.0) -> None:
        if not self.stopped:
            self.stopped = True
            self.run(self.router.stop(drain_timeout), timeout=drain_timeout + 10)

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Responses:
    """Reads HTTP/1.1 responses off a socket with httptools, in order, for pipelining clients."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.parser = httptools.HttpResponseParser(self)
        self.done: deque[tuple[int, dict[bytes, bytes], bytes]] = deque()
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done.append((self.parser.get_status_code(), self.headers, b"".join(self.body)))
        self.headers, self.body = {}, []

    def next(self) -> tuple[int, dict[bytes, bytes], bytes]:
        while not self.done:
            data = self.sock.recv(256 * 1024)
            if not data:
                raise ConnectionError("the router closed the connection")
            self.parser.feed_data(data)
        return self.done.popleft()


def count_versions(
    port: int, total: int, *, connections: int = 4, batch: int = 50, extra: bytes = b""
) -> Counter[str]:
    """Send `total` GETs over keep-alive sockets, pipelined `batch` at a time; tally X-Conveyor-Version."""

    request = b"GET /split HTTP/1.1\r\nHost: router\r\n" + extra + b"\r\n"

    def worker(n: int) -> Counter[str]:
        counts: Counter[str] = Counter()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            responses = Responses(sock)
            sent = 0
            while sent < n:
                k = min(batch, n - sent)
                sock.sendall(request * k)
                for _ in range(k):
                    status, headers, _ = responses.next()
                    assert status == 200, status
                    counts[headers[b"x-conveyor-version"].decode()] += 1
                sent += k
        return counts

    shares = [total // connections + (1 if i < total % connections else 0) for i in range(connections)]
    with ThreadPoolExecutor(connections) as pool:
        return sum(pool.map(worker, shares), Counter())


def binomial_interval(n: int, p: float, confidence: float = 0.999) -> tuple[int, int]:
    """The central `confidence` acceptance region of Binomial(n, p), exact (pmf summed in log space)."""
    tail = (1 - confidence) / 2
    log_pmf = [
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
        for k in range(n + 1)
    ]
    pmf = [math.exp(x) for x in log_pmf]
    low, below = 0, 0.0
    while below + pmf[low] <= tail:
        below += pmf[low]
        low += 1
    high, above = n, 0.0
    while above + pmf[high] <= tail:
        above += pmf[high]
        high -= 1
    return low, high


def split(blue: App, green: App, green_bp: int, **table_options: Any) -> RouteTable:
    return RouteTable(
        ENV,
        (Backend("blue", 10_000 - green_bp, (blue.endpoint,)), Backend("green", green_bp, (green.endpoint,))),
        **table_options,
    )


@pytest.fixture(scope="module")
def apps() -> Iterator[dict[str, App]]:
    started = start_apps("blue", "green", "slow")
    named = {app.version: app for app in started}
    named["slow"].fault(latency_ms=800)
    try:
        yield named
    finally:
        for app in started:
            app.kill()


@pytest.fixture
def blue(apps: dict[str, App]) -> App:
    return apps["blue"]


@pytest.fixture
def green(apps: dict[str, App]) -> App:
    return apps["green"]


@pytest.fixture
def router_thread() -> Iterator[Callable[..., RouterThread]]:
    started: list[RouterThread] = []

    def make(table: RouteTable, **options: Any) -> RouterThread:
        started.append(RouterThread(table, **options))
        return started[-1]

    try:
        yield make
    finally:
        for r in started:
            r.close()


# ---------------------------------------------------------------- the must-show list


class TestWeightedSplit:
    @pytest.mark.parametrize("green_bp", [100, 1_000, 5_000], ids=["1%", "10%", "50%"])
    def test_share_is_within_the_binomial_interval(
        self, blue: App, green: App, router_thread: Callable[..., RouterThread], green_bp: int
    ) -> None:
        seed = random.randrange(2**32)
        router = router_thread(split(blue, green, green_bp, sticky=False), rng=random.Random(seed))
        requests = 10_000
        counts = count_versions(router.port, requests)
        low, high = binomial_interval(requests, green_bp / 10_000)
        print(
            f"green at {green_bp} bp: {counts['green']} of {requests} (99.9 % in {low}–{high}, seed {seed})"
        )
        assert counts["blue"] + counts["green"] == requests
        assert low <= counts["green"] <= high, f"seed {seed}"
        assert router.window("green").requests == counts["green"]


class TestSticky:
    def test_cookie_keeps_a_client_on_one_version(
        self, blue: App, green: App, router_thread: Callable[..., RouterThread]
    ) -> None:
        router = router_thread(split(blue, green, 5_000))
        with httpx.Client(base_url=router.url, timeout=10) as client:
            first = client.get("/")
            assigned = first.headers["x-conveyor-version"]
            assert (
                first.headers["set-cookie"] == f"conveyor_version={assigned}; Path=/; HttpOnly; SameSite=Lax"
            )
            seen = Counter()
            for _ in range(200):
                response = client.get("/")
                assert "set-cookie" not in response.headers
                seen[response.headers["x-conveyor-version"]] += 1
                assert response.json()["version"] == assigned
        assert seen == Counter({assigned: 200})

    def test_clients_without_cookies_land_on_both(
        self, blue: App, green: App, router_thread: Callable[..., RouterThread]
    ) -> None:
        router = router_thread(split(blue, green, 5_000))
        assigned = {httpx.get(router.url, timeout=10).headers["x-conveyor-version"] for _ in range(40)}
        assert assigned == {"blue", "green"}

    def test_stale_cookie_is_replaced(
        self, blue: App, green: App, router_thread: Callable[..., RouterThread]
    ) -> None:
        router = router_thread(split(blue, green, 0))
        response = httpx.get(router.url, cookies={"conveyor_version": "green"}, timeout=10)
        assert response.headers["x-conveyor-version"] == "blue"
        assert response.headers["set-cookie"].startswith("conveyor_version=blue;")

    def test_override_header_reaches_a_weight_zero_version(
        self, blue: App, green: App, router_thread: Callable[..., RouterThread]
    ) -> None:
        router = router_thread(split(blue, green, 0))
        for _ in range(20):
            response = httpx.get(router.url, headers={"X-Conveyor-Version": "green"}, timeout=10)
            assert response.headers["x-conveyor-version"] == "green"
            assert response.json()["version"] == "green"
            assert "set-cookie" not in response.headers
        assert httpx.get(router.url, timeout=10).headers["x-conveyor-version"] == "blue"


class TestNoDroppedRequests:
    def test_zero_dropped_while_weights_change_100_times(
        self, blue: App, green: App, router_thread: Callable[..., RouterThread]
    ) -> None:
        router = router_thread(split(blue, green, 5_000, sticky=False))
        stop = threading.Event()
        outcomes: Counter[str] = Counter()
        lock = threading.Lock()

        def client() -> None:
            local: Counter[str] = Counter()
            with httpx.Client(base_url=router.url, timeout=10) as http:
                while not stop.is_set():
                    try:
                        response = http.get("/")
                        local[f"{response.status_code} {response.headers.get('x-conveyor-version')}"] += 1
                    except httpx.HTTPError as exc:
                        local[f"error {type(exc).__name__}"] += 1
            with lock:
                outcomes.update(local)

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        plan = [0, 5_000, 10_000, 100, 9_999, 1, 2_500, 10_000, 0, 5_000]
        for i in range(100):
            router.update(split(blue, green, plan[i % len(plan)], sticky=False))
            time.sleep(0.02)
        stop.set()
        for t in threads:
            t.join(30)
        total = sum(outcomes.values())
        print(f"{total} requests during 100 weight changes: {dict(outcomes)}")
        assert total >= 1_000
        assert set(outcomes) == {"200 blue", "200 green"}

    def test_in_flight_request_finishes_on_the_version_it_started_on(
        self, apps: dict[str, App], router_thread: Callable[..., RouterThread]
    ) -> None:
        slow, blue = apps["slow"], apps["blue"]
        old = RouteTable(
            ENV, (Backend("slow", 10_000, (slow.endpoint,)), Backend("blue", 0, (blue.endpoint,)))
        )
        new = RouteTable(
            ENV, (Backend("slow", 0, (slow.endpoint,)), Backend("blue", 10_000, (blue.endpoint,)))
        )
        router = router_thread(old)
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(httpx.get, router.url, timeout=10)
            time.sleep(0.2)
            router.update(new)
            assert httpx.get(router.url, timeout=10).json()["version"] == "blue"
            # what the supervisor waits on before it stops an instance that left the routes
            assert router.call(router.router.in_flight, slow.endpoint) == 1
            assert router.call(router.router.in_flight, blue.endpoint) == 0
            response = in_flight.result()
        assert response.status_code == 200
        assert response.json()["version"] == response.headers["x-conveyor-version"] == "slow"
        assert router.call(router.router.in_flight, slow.endpoint) == 0


class TestInstanceKilled:
    def test_kill_9_one_of_two_instances_under_load(self, router_thread: Callable[..., RouterThread]) -> None:
        victim, survivor = start_apps("v1", "v1")
        try:
            table = RouteTable(ENV, (Backend("v1", 10_000, (victim.endpoint, survivor.endpoint)),))
            router = router_thread(table)
            stop = threading.Event()
            killed_at: list[float] = []
            results: list[tuple[float, str]] = []
            lock = threading.Lock()

            def client() -> None:
                local = []
                with httpx.Client(base_url=router.url, timeout=10) as http:
                    while not stop.is_set():
                        try:
                            response = http.get("/")
                            outcome = (
                                response.json()["instance"]
                                if response.status_code == 200
                                else f"{response.status_code}"
                            )
                        except (httpx.HTTPError, ValueError) as exc:
                            outcome = f"error {type(exc).__name__}"
                        local.append((time.monotonic(), outcome))
                with lock:
                    results.extend(local)

            threads = [threading.Thread(target=client) for _ in range(4)]
            for t in threads:
                t.start()
            time.sleep(1.0)
            killed_at.append(time.monotonic())
            victim.kill()
            time.sleep(2.5)
            stop.set()
            for t in threads:
                t.join(30)
        finally:
            victim.kill()
            survivor.kill()
        instances = {str(victim.proc.pid), str(survivor.proc.pid)}
        errors = [outcome for _, outcome in results if outcome not in instances]
        before = {outcome for at, outcome in results if at < killed_at[0]}
        after = [outcome for at, outcome in results if at > killed_at[0] + 0.5]
        print(f"kill -9 under load: {len(results)} requests, {len(errors)} errors seen by clients: {errors}")
        assert before == instances, "both instances served before the kill"
        assert len(errors) <= 2
        assert len(after) > 100 and set(after) == {str(survivor.proc.pid)}


class TestFaultInjection:
    def test_faults_show_in_that_versions_metrics_only(
        self, blue: App, green: App, router_thread: Callable[..., RouterThread]
    ) -> None:
        table = RouteTable(
            ENV,
            (
                Backend("blue", 5_000, (blue.endpoint,)),
                Backend("green", 5_000, (green.endpoint,), Fault(latency_ms=150, error_rate=0.25)),
            ),
            sticky=False,
        )
        router = router_thread(table)
        statuses: Counter[tuple[str, int]] = Counter()

        def client(n: int) -> Counter[tuple[str, int]]:
            local: Counter[tuple[str, int]] = Counter()
            with httpx.Client(base_url=router.url, timeout=10) as http:
                for _ in range(n):
                    response = http.get("/")
                    local[(response.headers["x-conveyor-version"], response.status_code)] += 1
            return local

        with ThreadPoolExecutor(8) as pool:
            for part in pool.map(client, [60] * 8):
                statuses.update(part)
        blue_stats, green_stats = router.window("blue"), router.window("green")
        print(f"responses {dict(statuses)}; blue {blue_stats}; green {green_stats}")
        assert blue_stats.requests + green_stats.requests == 480
        assert blue_stats.error_rate == 0.0 and blue_stats.by_class["5xx"] == 0
        assert blue_stats.p99_ms is not None and blue_stats.p99_ms < 100
        assert green_stats.requests == statuses[("green", 200)] + statuses[("green", 500)]
        assert green_stats.errors == statuses[("green", 500)]
        assert 0.12 <= green_stats.error_rate <= 0.40
        assert green_stats.p50_ms is not None and green_stats.p50_ms >= 150 * 0.95
        assert green_stats.p99_ms is not None and green_stats.p99_ms >= 150

    def test_abort_closes_the_connection_without_a_response(
        self, blue: App, green: App, router_thread: Callable[..., RouterThread]
    ) -> None:
        table = RouteTable(
            ENV,
            (
                Backend("blue", 10_000, (blue.endpoint,)),
                Backend("green", 0, (green.endpoint,), Fault(abort_rate=1.0)),
            ),
        )
        router = router_thread(table)
        for _ in range(3):
            with pytest.raises(httpx.RemoteProtocolError):
                httpx.get(router.url, headers={"X-Conveyor-Version": "green"}, timeout=10)
        assert httpx.get(router.url, timeout=10).status_code == 200
        stats = router.window("green")
        assert stats.by_class.get("aborted") == 3 and stats.errors == 3


class TestDrain:
    def test_stop_lets_an_in_flight_slow_request_finish(
        self, apps: dict[str, App], router_thread: Callable[..., RouterThread]
    ) -> None:
        slow = apps["slow"]
        router = router_thread(RouteTable(ENV, (Backend("slow", 10_000, (slow.endpoint,)),)))
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(httpx.get, router.url, timeout=10)
            time.sleep(0.2)
            began = time.monotonic()
            router.stop(drain_timeout=5)
            took = time.monotonic() - began
            response = in_flight.result()
        assert response.status_code == 200 and response.json()["version"] == "slow"
        assert response.headers["connection"] == "close"
        assert 0.3 < took < 3, f"stop() returned after {took:.2f} s"
        with pytest.raises(httpx.ConnectError):
            httpx.get(router.url, timeout=2)

    def test_stop_gives_up_after_the_drain_timeout(
        self, apps: dict[str, App], router_thread: Callable[..., RouterThread]
    ) -> None:
        slow = apps["slow"]
        router = router_thread(RouteTable(ENV, (Backend("slow", 10_000, (slow.endpoint,)),)))
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(httpx.get, router.url, timeout=10)
            time.sleep(0.2)
            began = time.monotonic()
            router.stop(drain_timeout=0.2)
            took = time.monotonic() - began
            with pytest.raises(httpx.HTTPError):
                in_flight.result()
        assert took < 0.6


# ---------------------------------------------------------------- failures the router answers itself


class TestUpstreamFailures:
    def test_no_instances_anywhere_is_503(self, router_thread: Callable[..., RouterThread]) -> None:
        router = router_thread(RouteTable(ENV, (Backend("blue", 10_000, ()), Backend("green", 0, ()))))
        response = httpx.get(router.url, timeout=10)
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"] == "no healthy instances of any version in environment 'production'"

    def test_nothing_listening_is_502_naming_environment_and_version(
        self, router_thread: Callable[..., RouterThread]
    ) -> None:
        dead = ("127.0.0.1", free_port())
        router = router_thread(RouteTable(ENV, (Backend("v7", 10_000, (dead,)),)))
        response = httpx.get(router.url, timeout=10)
        problem = response.json()
        assert response.status_code == 502
        assert response.headers["x-conveyor-version"] == "v7"
        assert (problem["environment"], problem["version"]) == ("production", "v7")
        assert "'v7' of environment 'production'" in problem["detail"] and "refused" in problem["detail"]
        assert router.window("v7").upstream_errors == 1

    def test_silent_upstream_is_504(
        self, apps: dict[str, App], router_thread: Callable[..., RouterThread]
    ) -> None:
        slow = apps["slow"]
        router = router_thread(
            RouteTable(ENV, (Backend("slow", 10_000, (slow.endpoint,)),)), upstream_timeout=0.2
        )
        response = httpx.get(router.url, timeout=10)
        assert response.status_code == 504
        assert response.json()["version"] == "slow"
        stats = router.window("slow")
        assert (stats.by_class["5xx"], stats.upstream_errors) == (1, 1)

    def test_post_is_not_retried_after_it_was_sent(self, router_thread: Callable[..., RouterThread]) -> None:
        (victim,) = start_apps("v1")
        try:
            router = router_thread(RouteTable(ENV, (Backend("v1", 10_000, (victim.endpoint,)),)))
            response = httpx.post(f"{router.url}/_fault", json={"crash": True}, timeout=10)
        finally:
            victim.kill()
        assert response.status_code == 502
        assert "closed the connection" in response.json()["detail"]

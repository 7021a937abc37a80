"""An environment's HTTP/1.1 front door, splitting requests between versions; the agent runs one each.

The agent creates a `Router` per environment, calls `start()`, then `update(table)` whenever the
supervisor's ready endpoints or a rollout's weights change, and `stop()` on the way out. The benchmark
runs it alone: `python -m conveyor.runtime.local.router --port 8080 --backend v1=127.0.0.1:9001:9000 …`.

Shape of the hot path (callbacks on asyncio protocols, no task per request):

    client socket ─► ClientConnection (httptools request parser, pipelined requests queued in order)
                        │  Router._dispatch: choose_backend → fault → pick an endpoint (round robin,
                        │  skipping endpoints marked down) → reuse an idle keep-alive connection or dial
                        ▼
                     UpstreamConnection (httptools response parser) ─► response streamed to the client

This module keeps the Router (lifecycle, dispatch, retry rule, metrics, local answers) and the CLI; the
rest lives beside it: router_client (ClientConnection), router_upstream (UpstreamConnection),
router_pool (endpoint choice, idle reuse, dialing), router_faults (injected faults), router_http
(header rules, problem+json, cookies) and router_exchange (the per-request record all of them share).

Failure rules: a connect failure marks the endpoint down for `down_for` seconds; a request is retried
once (another endpoint of the same version when there is one) if nothing reached the client yet and
either nothing was written upstream or the method is idempotent and its body is still held; otherwise
502, or 504 on a timeout. Upgrades (WebSocket, h2c) are not tunnelled: the Upgrade header is dropped and
the request is proxied as plain HTTP/1.1, which the protocol allows a server to do.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import signal
import time
from typing import TYPE_CHECKING, cast

from conveyor.runtime.local.metrics import MetricsRegistry, Series
from conveyor.runtime.local.router_client import ClientConnection
from conveyor.runtime.local.router_exchange import Exchange
from conveyor.runtime.local.router_faults import after_delay, delays, short_circuit
from conveyor.runtime.local.router_http import IDEMPOTENT, cookie_value, problem_response
from conveyor.runtime.local.router_pool import forward, pick, send_to
from conveyor.runtime.local.split import Backend, Endpoint, RouteTable, choose_backend

if TYPE_CHECKING:
    from conveyor.runtime.local.router_upstream import UpstreamConnection

UNROUTED = ""
"""The version label of requests answered before a version was chosen (bad request, no backend)."""


class Router:
    """One environment's listener: proxies each request to a version chosen by the current RouteTable."""

    _loop: asyncio.AbstractEventLoop

    def __init__(
        self,
        environment: str,
        host: str,
        port: int,
        metrics: MetricsRegistry,
        table: RouteTable | None = None,
        *,
        connect_timeout: float = 3.0,
        upstream_timeout: float = 60.0,
        keepalive_timeout: float = 75.0,
        down_for: float = 2.0,
        max_body_bytes: int = 10 * 1024 * 1024,
        max_header_bytes: int = 64 * 1024,
        max_idle_per_endpoint: int = 64,
        rng: random.Random | None = None,
    ) -> None:
        if table is not None and table.environment != environment:
            raise ValueError(f"route table is for {table.environment!r}, router for {environment!r}")
        self.environment = environment
        self.host = host
        self._requested_port = port
        self.metrics = metrics
        self.connect_timeout = connect_timeout
        self.upstream_timeout = upstream_timeout
        self.keepalive_timeout = keepalive_timeout
        self.down_for = down_for
        self.max_body_bytes = max_body_bytes
        self.max_header_bytes = max_header_bytes
        self.max_idle_per_endpoint = max_idle_per_endpoint
        self._table = table or RouteTable(environment, ())
        self._live = self._table.endpoints()
        self._server: asyncio.Server | None = None
        self._too_large = (413, "Request body too large", f"the body is larger than {max_body_bytes} bytes")
        self._time = time.monotonic
        self._clients: set[ClientConnection] = set()
        self._busy: set[UpstreamConnection] = set()
        self._idle: dict[Endpoint, list[UpstreamConnection]] = {}
        self._down_until: dict[Endpoint, float] = {}
        self._round_robin: dict[str, int] = {}
        self._series: dict[str, Series] = {}
        self._version_headers: dict[str, bytes] = {}
        self._cookie_headers: dict[tuple[str, str], bytes] = {}
        self._draining = False
        self._sweeper: asyncio.TimerHandle | None = None
        self._random = (rng or random.Random()).random
        self._ids = itertools.count(1)
        self._id_prefix = os.urandom(6).hex().encode()

    @property
    def port(self) -> int:
        """The port the router listens on (the real one once started, when 0 was asked for)."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._requested_port

    @property
    def table(self) -> RouteTable:
        """The route table the next request will use."""
        return self._table

    async def start(self) -> None:
        """Listen; requests are served from now on with the current table."""
        self._loop = asyncio.get_running_loop()
        self._time = self._loop.time
        self._draining = False
        self._server = await self._loop.create_server(
            lambda: ClientConnection(self), self.host, self._requested_port, reuse_address=True, backlog=1024
        )
        self._sweeper = self._loop.call_later(0.25, self._sweep)

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish (up to `drain_timeout` s), then close everything."""
        server = self._server
        if server is None:
            return
        self._draining = True
        server.close()
        for client in list(self._clients):
            if client.idle():
                client.close()
        deadline = self._time() + drain_timeout
        while self._clients and self._time() < deadline:
            await asyncio.sleep(0.01)
        for client in list(self._clients):
            client.closed = True
            client.transport.abort()
        for idle in self._idle.values():
            for upstream in idle:
                upstream.closed = True
                upstream.transport.close()
        self._idle.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        await server.wait_closed()
        self._server = None

    def update(self, table: RouteTable) -> None:
        """Swap in a new route table: the next request uses it, requests in flight finish where they are."""
        if table.environment != self.environment:
            raise ValueError(f"route table is for {table.environment!r}, router for {self.environment!r}")
        self._table = table
        self._live = live = table.endpoints()
        for endpoint in [e for e in self._idle if e not in live]:
            for upstream in self._idle.pop(endpoint):
                upstream.closed = True
                upstream.transport.close()

    def in_flight(self, endpoint: Endpoint) -> int:
        """Requests sent (or being sent) to `endpoint` whose response is not complete yet."""
        return sum(
            1
            for client in self._clients
            if (ex := client.current) is not None and not ex.done and ex.endpoint == endpoint
        )

    # choosing where a request goes

    def _dispatch(self, client: ClientConnection, ex: Exchange) -> None:
        if ex.reject is not None:
            status, title, detail = ex.reject
            self._respond_local(client, ex, status, title, detail)
            return
        table = self._table
        sticky: str | None = None
        if table.sticky and ex.cookie is not None:
            sticky = cookie_value(ex.cookie, table.cookie_name)
        override = ex.override.decode("latin-1") if ex.override is not None else None
        backend = choose_backend(table, int(self._random() * 10_000), sticky, override)
        if backend is None:
            self._respond_local(
                client,
                ex,
                503,
                "No healthy instances",
                f"no healthy instances of any version in environment {self.environment!r}",
                slug="no-healthy-instances",
            )
            return
        version = backend.version
        ex.backend = backend
        series = self._series.get(version)
        if series is None:
            series = self._series[version] = self.metrics.series(self.environment, version)
        ex.series = series
        series.inflight += 1
        ex.set_cookie = table.sticky and sticky != version and override != version
        fault = backend.fault
        if fault is not None:
            if delays(self, fault):
                ex.timer = self._loop.call_later(
                    fault.latency_ms / 1000, after_delay, self, client, ex, fault
                )
                return
            if short_circuit(self, client, ex, fault):
                return
        forward(self, client, ex)

    # finishing

    def _finish(self, client: ClientConnection, ex: Exchange, status: int, upstream_error: bool) -> None:
        if ex.done:
            return
        ex.done = True
        series = ex.series
        if series is None:
            self.metrics.series(self.environment, UNROUTED).observe(
                status, time.perf_counter() - ex.started, upstream_error
            )
        else:
            series.observe(status, time.perf_counter() - ex.started, upstream_error)
            series.inflight -= 1
        client.exchange_done(ex)

    def _client_gone(self, ex: Exchange) -> None:
        """The client closed its connection before its response was complete (recorded as 499)."""
        if ex.timer is not None:
            ex.timer.cancel()
            ex.timer = None
        upstream = ex.upstream
        if upstream is not None:
            upstream.abandon()
        ex.done = True
        series = ex.series
        latency = time.perf_counter() - ex.started
        if series is None:
            self.metrics.series(self.environment, UNROUTED).observe(499, latency)
        else:
            series.observe(499, latency)
            series.inflight -= 1

    def _upstream_failed(
        self,
        client: ClientConnection,
        ex: Exchange,
        endpoint: Endpoint,
        what: str,
        *,
        timed_out: bool,
        connect: bool = False,
    ) -> None:
        if ex.done:
            return
        if ex.response_started:
            # Part of the response is already with the client: the only honest signal left is closing.
            ex.keep_alive = False
            client.close()
            self._finish(client, ex, ex.status, True)
            return
        written_safely = ex.method in IDEMPOTENT and ex.sent is not None
        if ex.attempts < 2 and not timed_out and (connect or written_safely):
            backend = self._current(cast(Backend, ex.backend))
            ex.backend = backend
            # A refused connect rules the endpoint out; a dead pooled connection only rules out that
            # socket, unless the instance behind it has left the routes (replaced meanwhile).
            if connect or len(backend.endpoints) > 1 or endpoint not in backend.endpoints:
                target, fresh = pick(self, backend, endpoint), False
            else:
                target, fresh = endpoint, True
            if target is not None:
                ex.attempts += 1
                if ex.sent:
                    ex.unsent = ex.sent + ex.unsent
                    ex.unsent_size = sum(map(len, ex.unsent))
                    ex.sent = []
                send_to(self, client, ex, target, fresh)
                return
        host, port = endpoint
        version = cast(Backend, ex.backend).version
        detail = (
            f"version {version!r} of environment {self.environment!r}: the instance at {host}:{port} {what}"
        )
        if timed_out:
            self._respond_local(
                client, ex, 504, "Upstream timed out", detail, slug="upstream-timeout", upstream=True
            )
        else:
            self._respond_local(
                client, ex, 502, "Upstream unavailable", detail, slug="upstream-unavailable", upstream=True
            )

    def _current(self, backend: Backend) -> Backend:
        """The version's backend in the table as it is now (instances may have been replaced meanwhile)."""
        for candidate in self._table.backends:
            if candidate.version == backend.version and candidate.endpoints:
                return candidate
        return backend

    def _respond_local(
        self,
        client: ClientConnection,
        ex: Exchange,
        status: int,
        title: str,
        detail: str,
        *,
        slug: str | None = None,
        upstream: bool = False,
    ) -> None:
        """Answer `ex` from the router itself with an RFC 9457 problem."""
        if ex.timer is not None:
            ex.timer.cancel()
            ex.timer = None
        keep = client.may_keep_alive(ex)
        ex.keep_alive = keep
        response = problem_response(self, ex, status, title, detail, slug, keep)
        ex.status = status
        ex.response_started = True
        if not client.closed:
            client.transport.write(response)
        self._finish(client, ex, status, upstream)

    # housekeeping

    def _sweep(self) -> None:
        """Every quarter second: time out silent upstreams, close idle client connections."""
        now = self._time()
        for upstream in [u for u in self._busy if now - u.last_active > self.upstream_timeout]:
            upstream.fail(f"sent nothing for {self.upstream_timeout:g} s", timed_out=True)
        for client in [c for c in self._clients if now - c.last_active > self.keepalive_timeout]:
            if client.idle():
                client.close()
            elif client.current is None and client.parsing is not None:
                # A request that has trickled in for too long: stop waiting for it.
                client.close()
        for endpoint in [e for e, until in self._down_until.items() if until <= now]:
            del self._down_until[endpoint]
        self._sweeper = self._loop.call_later(0.25, self._sweep)


def parse_backend(spec: str) -> Backend:
    """Parse `VERSION=HOST:PORT[,HOST:PORT…]:WEIGHT_BP` (the router's command-line form)."""
    version, sep, rest = spec.partition("=")
    endpoints_part, colon, weight = rest.rpartition(":")
    if not sep or not colon or not endpoints_part:
        raise ValueError(f"--backend {spec!r}: expected VERSION=HOST:PORT[,HOST:PORT...]:WEIGHT_BP")
    endpoints = []
    for item in endpoints_part.split(","):
        host, colon, port = item.rpartition(":")
        if not colon or not host or not port.isdigit():
            raise ValueError(f"--backend {spec!r}: {item!r} is not HOST:PORT")
        endpoints.append((host, int(port)))
    if not weight.isdigit():
        raise ValueError(f"--backend {spec!r}: weight {weight!r} is not a whole number of basis points")
    return Backend(version, int(weight), tuple(endpoints))


async def _serve(router: Router) -> None:
    await router.start()
    print(f"conveyor router for {router.environment!r} listening on {router.host}:{router.port}", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await router.stop()


def main(argv: list[str] | None = None) -> None:
    """Run one router from the command line until SIGINT or SIGTERM (used by the benchmark)."""
    parser = argparse.ArgumentParser(
        prog="python -m conveyor.runtime.local.router",
        description="Run Conveyor's weighted HTTP router alone in front of fixed endpoints.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--environment", default="local")
    parser.add_argument(
        "--backend",
        action="append",
        required=True,
        metavar="VERSION=HOST:PORT[,HOST:PORT...]:WEIGHT_BP",
        help="a version, its endpoints and its weight in basis points (all weights sum to 10000)",
    )
    parser.add_argument("--no-sticky", action="store_true", help="do not pin clients with a cookie")
    args = parser.parse_args(argv)
    try:
        table = RouteTable(
            args.environment, tuple(parse_backend(b) for b in args.backend), sticky=not args.no_sticky
        )
    except ValueError as exc:
        parser.error(str(exc))
    router = Router(args.environment, args.host, args.port, MetricsRegistry(), table)
    import uvloop

    uvloop.run(_serve(router))


if __name__ == "__main__":
    main()

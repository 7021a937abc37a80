"""An environment's HTTP/1.1 front door, splitting requests between versions; the agent runs one each.

The agent creates a `Router` per environment, calls `start()`, then `update(table)` whenever the
supervisor's ready endpoints or a rollout's weights change, and `stop()` on the way out. The benchmark
runs it alone: `python -m conveyor.runtime.local.router --port 8080 --backend v1=127.0.0.1:9001:9000 …`.

Shape of the hot path (callbacks on asyncio protocols, no task per request):

    client socket ─► _ClientConnection (httptools request parser, pipelined requests queued in order)
                        │  Router._dispatch: choose_backend → fault → pick an endpoint (round robin,
                        │  skipping endpoints marked down) → reuse an idle keep-alive connection or dial
                        ▼
                     _UpstreamConnection (httptools response parser) ─► response streamed to the client

Failure rules: a connect failure marks the endpoint down for `down_for` seconds; a request is retried
once (another endpoint of the same version when there is one) if nothing reached the client yet and
either nothing was written upstream or the method is idempotent and its body is still held; otherwise
502, or 504 on a timeout. Upgrades (WebSocket, h2c) are not tunnelled: the Upgrade header is dropped and
the request is proxied as plain HTTP/1.1, which the protocol allows a server to do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http
import itertools
import json
import os
import random
import signal
import socket
import time
from collections import deque
from typing import Any, cast

import httptools

from conveyor.runtime.local.metrics import MetricsRegistry, Series
from conveyor.runtime.local.split import Backend, Endpoint, Fault, RouteTable, choose_backend

UNROUTED = ""
"""The version label of requests answered before a version was chosen (bad request, no backend)."""

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
_REQUEST_DROPPED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"transfer-encoding",
        b"upgrade",
        b"trailer",
        b"expect",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-request-id",
    }
)
_RESPONSE_DROPPED = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"trailer"}
)
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)

# Reasons the client socket's reading is paused (a bit each, resumed when all are clear).
_PIPELINE, _UPSTREAM_FULL, _BUFFER_FULL = 1, 2, 4
# How the response body is framed towards the client.
_NO_BODY, _RAW, _CHUNKED = 0, 1, 2
_RETAIN_FOR_RETRY = 64 * 1024
_BUFFER_LIMIT = 1024 * 1024


class _Exchange:
    """One request and its response, from the first request byte to the last response byte."""

    __slots__ = (
        "attempts",
        "backend",
        "body_size",
        "chunked",
        "content_length",
        "cookie",
        "done",
        "endpoint",
        "expect_continue",
        "forwarded_for",
        "has_host",
        "head",
        "head_size",
        "headers",
        "http11",
        "keep_alive",
        "method",
        "override",
        "reject",
        "request_done",
        "request_id",
        "response_started",
        "sent",
        "series",
        "set_cookie",
        "started",
        "status",
        "timer",
        "unsent",
        "unsent_size",
        "upstream",
        "url",
    )

    def __init__(self, started: float) -> None:
        self.started = started
        self.url = b""
        self.headers: list[bytes] = []
        self.has_host = False
        self.head_size = 0
        self.cookie: bytes | None = None
        self.override: bytes | None = None
        self.request_id: bytes | None = None
        self.forwarded_for: bytes | None = None
        self.expect_continue = False
        self.content_length = 0
        self.body_size = 0
        self.chunked = False
        self.method = b"GET"
        self.keep_alive = True
        self.http11 = True
        self.reject: tuple[int, str, str] | None = None
        self.request_done = False
        self.unsent: list[bytes] = []
        self.unsent_size = 0
        self.sent: list[bytes] | None = []
        self.head: bytes | None = None
        self.backend: Backend | None = None
        self.series: Series | None = None
        self.endpoint: Endpoint | None = None
        self.upstream: _UpstreamConnection | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.set_cookie = False
        self.response_started = False
        self.status = 0
        self.attempts = 1
        self.done = False


class _Reject(Exception):
    """Raised inside a parser callback to stop parsing a request the router refuses."""


class _ClientConnection(asyncio.Protocol):
    """One client socket: parses requests, keeps their responses in order, honours keep-alive."""

    transport: asyncio.Transport

    def __init__(self, router: Router) -> None:
        self.router = router
        self.parser = httptools.HttpRequestParser(self)
        self.peer = b"unknown"
        self.parsing: _Exchange | None = None
        self.current: _Exchange | None = None
        self.pending: deque[_Exchange] = deque()
        self.paused = 0
        self.write_paused = False
        self.closed = False
        self.broken = False
        self.sock: Any = None
        self.last_active = router._time()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = str(peer[0]).encode()
        self.sock = transport.get_extra_info("socket")
        self.router._clients.add(self)

    def data_received(self, data: bytes) -> None:
        if self.broken or self.closed:
            return
        self.last_active = self.router._time()
        while True:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade as exc:
                # The Upgrade header is not forwarded, so the upstream answers as plain HTTP; go on parsing.
                data = data[exc.args[0] :]
                if data:
                    continue
            except httptools.HttpParserError:
                self._parse_failed()
                return
            break
        parsing = self.parsing
        if parsing is not None and _QUICKACK is not None and self.sock is not None:
            # Half a request is waiting: acknowledge now so a Nagle-bound client sends the rest at once.
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.router._clients.discard(self)
        current = self.current
        if current is not None and not current.done:
            self.router._client_gone(current)
        for ex in self.pending:
            ex.done = True
        self.pending.clear()

    def pause_writing(self) -> None:
        self.write_paused = True
        current = self.current
        if current is not None and current.upstream is not None:
            current.upstream.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        current = self.current
        if current is not None and current.upstream is not None:
            current.upstream.resume_reading()

    # httptools callbacks

    def on_message_begin(self) -> None:
        self.parsing = _Exchange(time.perf_counter())

    def on_url(self, url: bytes) -> None:
        ex = cast(_Exchange, self.parsing)
        ex.url += url
        ex.head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        ex = cast(_Exchange, self.parsing)
        ex.head_size += len(name) + len(value) + 4
        if ex.head_size > self.router.max_header_bytes:
            ex.reject = (431, "Request headers too large", "the request line and headers exceed the limit")
            raise _Reject
        lower = name.lower()
        if lower in _REQUEST_DROPPED:
            if lower == b"transfer-encoding":
                ex.chunked = b"chunked" in value.lower()
            elif lower == b"x-forwarded-for":
                ex.forwarded_for = value if ex.forwarded_for is None else ex.forwarded_for + b", " + value
            elif lower == b"x-request-id":
                ex.request_id = value
            elif lower == b"expect":
                ex.expect_continue = value.lower() == b"100-continue"
            return
        if lower == b"cookie":
            ex.cookie = value if ex.cookie is None else ex.cookie + b"; " + value
        elif lower == b"x-conveyor-version":
            ex.override = value
        elif lower == b"content-length":
            ex.content_length = int(value)
        elif lower == b"host":
            ex.has_host = True
        ex.headers.append(name + b": " + value + b"\r\n")

    def on_headers_complete(self) -> None:
        ex = cast(_Exchange, self.parsing)
        parser = self.parser
        ex.method = parser.get_method()
        ex.keep_alive = parser.should_keep_alive()
        ex.http11 = parser.get_http_version() == "1.1"
        if ex.content_length > self.router.max_body_bytes:
            ex.reject = self.router._too_large
            raise _Reject
        if ex.method == b"CONNECT":
            ex.reject = (405, "Method not allowed", "the router does not tunnel CONNECT requests")
            raise _Reject
        if not ex.chunked and not ex.content_length:
            ex.request_done = True
        if ex.expect_continue and self.current is None and (ex.content_length or ex.chunked):
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._enqueue(ex)

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        if ex is None or ex.done:
            return
        if ex.chunked:
            ex.body_size += len(body)
            if ex.body_size > self.router.max_body_bytes:
                ex.reject = self.router._too_large
                raise _Reject
            self._send_body(ex, b"%x\r\n%b\r\n" % (len(body), body))
        else:
            self._send_body(ex, body)

    def on_message_complete(self) -> None:
        ex = self.parsing
        self.parsing = None
        if ex is None:
            return
        ex.request_done = True
        if ex.chunked and not ex.done:
            self._send_body(ex, b"0\r\n\r\n")

    # the exchange queue

    def _enqueue(self, ex: _Exchange) -> None:
        if self.current is None:
            self.current = ex
            self.router._dispatch(self, ex)
        else:
            self.pending.append(ex)
            self.pause(_PIPELINE)

    def _send_body(self, ex: _Exchange, data: bytes) -> None:
        upstream = ex.upstream
        if upstream is not None:
            upstream.send_body(ex, data)
            return
        ex.unsent.append(data)
        ex.unsent_size += len(data)
        if ex.unsent_size > _BUFFER_LIMIT:
            self.pause(_BUFFER_FULL)

    def exchange_done(self, ex: _Exchange) -> None:
        """The response to `ex` is fully written: close, or move on to the next pipelined request."""
        self.current = None
        self.resume(_UPSTREAM_FULL | _BUFFER_FULL)
        if self.closed:
            return
        if not ex.keep_alive:
            self.close()
        elif self.pending:
            self.router._loop.call_soon(self._next)
        elif self.router._draining and self.parsing is None:
            self.close()
        else:
            self.resume(_PIPELINE)

    def _next(self) -> None:
        if self.closed or self.current is not None or not self.pending:
            return
        ex = self.current = self.pending.popleft()
        if not self.pending:
            self.resume(_PIPELINE)
        self.router._dispatch(self, ex)

    def _parse_failed(self) -> None:
        """Answer a request the parser or a limit refused, in its turn, then close the connection."""
        self.broken = True
        self.pause(_PIPELINE)
        ex = self.parsing
        self.parsing = None
        if ex is None:
            ex = _Exchange(time.perf_counter())
        elif ex.done:
            return
        if ex.reject is None:
            ex.reject = (400, "Bad request", "the request is not valid HTTP/1.1")
        ex.keep_alive = False
        if ex is self.current:
            self.router._abort_request(self, ex)
        elif ex not in self.pending:
            self._enqueue(ex)

    # flow control

    def pause(self, reason: int) -> None:
        """Stop reading from the client for `reason` (a bit), until it is cleared."""
        if not self.paused and not self.closed:
            self.transport.pause_reading()
        self.paused |= reason

    def resume(self, reasons: int) -> None:
        """Clear `reasons`; read again once no reason is left."""
        if self.paused & reasons:
            self.paused &= ~reasons
            if not self.paused and not self.closed:
                self.transport.resume_reading()

    def idle(self) -> bool:
        """No request is being read, queued or served."""
        return self.current is None and self.parsing is None and not self.pending

    def close(self) -> None:
        """Close after what is written has been flushed."""
        if not self.closed:
            self.closed = True
            self.transport.close()

    def may_keep_alive(self, ex: _Exchange) -> bool:
        """Whether the response to `ex` can leave the connection open."""
        if not ex.keep_alive or not ex.request_done or self.broken:
            return False
        return not (self.router._draining and not self.pending)


class _UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to an app instance; carries one exchange at a time."""

    transport: asyncio.Transport

    def __init__(self, router: Router, endpoint: Endpoint) -> None:
        self.router = router
        self.endpoint = endpoint
        self.parser = httptools.HttpResponseParser(self)
        self.sock: Any = None
        self.client: _ClientConnection | None = None
        self.ex: _Exchange | None = None
        self.closed = False
        self.reading_paused = False
        self.last_active = 0.0
        self.out: list[bytes] = []
        self.reason = b""
        self.headers: list[bytes] = []
        self.framing = _RAW
        self.has_length = False
        self.chunked_in = False
        self.interim = False
        self.eof_delimited = False
        self.keep = True
        self.reset_parser = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.sock = transport.get_extra_info("socket")

    def data_received(self, data: bytes) -> None:
        if self.ex is None:
            # An idle connection should be silent; whatever it says (a 408, a goodbye) makes it unusable.
            self.closed = True
            self.transport.abort()
            return
        self.last_active = self.router._time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._flush()
            self.fail("sent a response that is not valid HTTP/1.1")
            return
        if self.out:
            self._flush()
        if self.reset_parser:
            self.reset_parser = False
            self.parser = httptools.HttpResponseParser(self)
        elif self.ex is not None and _QUICKACK is not None and self.sock is not None:
            # Part of a response is still due: acknowledge now, so a server that writes headers and
            # body separately with Nagle on is not held back 40 ms by our delayed ACK.
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        router = self.router
        router._busy.discard(self)
        idle = router._idle.get(self.endpoint)
        if idle is not None and self in idle:
            idle.remove(self)
        ex = self.ex
        if ex is None:
            return
        if self.eof_delimited and ex.response_started:
            # A body without length ends when the connection does: that is a complete response.
            if self.framing == _CHUNKED:
                self.out.append(b"0\r\n\r\n")
            self._flush()
            self.keep = False
            router._response_done(self, ex)
            return
        self.fail("closed the connection" if exc is None else f"reset the connection ({exc})")

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.pause(_UPSTREAM_FULL)

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.resume(_UPSTREAM_FULL)

    # sending the request

    def attach(self, client: _ClientConnection, ex: _Exchange) -> None:
        """Send `ex` on this connection and stream its response back to `client`."""
        self.client = client
        self.ex = ex
        ex.upstream = self
        ex.endpoint = self.endpoint
        self.reason = b""
        self.headers = []
        self.has_length = False
        self.chunked_in = False
        self.eof_delimited = False
        self.interim = False
        head = ex.head
        if head is None:
            head = ex.head = self.router._request_head(client, ex)
        if ex.unsent:
            sent = ex.sent
            if sent is not None:
                if sum(map(len, sent)) + ex.unsent_size > _RETAIN_FOR_RETRY:
                    ex.sent = None
                else:
                    sent.extend(ex.unsent)
            self.transport.write(head + b"".join(ex.unsent))
            ex.unsent = []
            ex.unsent_size = 0
            client.resume(_BUFFER_FULL)
        else:
            self.transport.write(head)
        self.last_active = self.router._time()
        self.router._busy.add(self)
        if client.write_paused:
            self.pause_reading()

    def send_body(self, ex: _Exchange, data: bytes) -> None:
        """Stream one more piece of the request body."""
        sent = ex.sent
        if sent is not None:
            if sum(map(len, sent)) + len(data) > _RETAIN_FOR_RETRY:
                ex.sent = None
            else:
                sent.append(data)
        if not self.closed:
            self.transport.write(data)
            self.last_active = self.router._time()

    # httptools callbacks

    def on_status(self, reason: bytes) -> None:
        self.reason = reason

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower in _RESPONSE_DROPPED:
            if lower == b"transfer-encoding":
                self.chunked_in = True
            return
        if lower == b"content-length":
            self.has_length = True
        elif lower == b"x-conveyor-version":
            return
        self.headers.append(name + b": " + value + b"\r\n")

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            # 100 Continue / 103 Early Hints: the final response follows on the same connection.
            self.interim = True
            self.headers = []
            self.has_length = self.chunked_in = False
            return
        ex = self.ex
        client = self.client
        if ex is None or client is None:
            return
        self.keep = self.parser.should_keep_alive()
        keep = client.may_keep_alive(ex)
        if ex.method == b"HEAD" or status == 204 or status == 304:
            framing = _NO_BODY
        elif self.has_length:
            framing = _RAW
        elif self.chunked_in and ex.http11:
            framing = _CHUNKED
        else:
            self.eof_delimited = not self.chunked_in
            framing = _CHUNKED if ex.http11 else _RAW
            if not ex.http11:
                keep = False
        self.framing = framing
        ex.keep_alive = keep
        ex.status = status
        ex.response_started = True
        router = self.router
        parts = [b"HTTP/1.1 %d %b\r\n" % (status, self.reason), *self.headers]
        backend = cast(Backend, ex.backend)
        parts.append(router._version_header(backend.version))
        if ex.set_cookie:
            parts.append(router._cookie_header(backend.version))
        if framing == _CHUNKED:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        if not keep:
            parts.append(b"Connection: close\r\n")
        elif not ex.http11:
            parts.append(b"Connection: keep-alive\r\n")
        parts.append(b"\r\n")
        self.out.append(b"".join(parts))
        if ex.method == b"HEAD":
            # The parser cannot know this answered a HEAD and would wait for a body: finish here.
            self.reset_parser = True
            self._flush()
            router._response_done(self, ex)

    def on_body(self, body: bytes) -> None:
        if self.ex is None or self.interim:
            return
        if self.framing == _CHUNKED:
            self.out.append(b"%x\r\n%b\r\n" % (len(body), body))
        elif self.framing == _RAW:
            self.out.append(body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        ex = self.ex
        if ex is None:
            return
        if self.framing == _CHUNKED:
            self.out.append(b"0\r\n\r\n")
        self._flush()
        self.router._response_done(self, ex)

    # plumbing

    def _flush(self) -> None:
        out = self.out
        if not out:
            return
        client = self.client
        if client is not None and not client.closed:
            client.transport.write(out[0] if len(out) == 1 else b"".join(out))
        self.out = []

    def pause_reading(self) -> None:
        """Stop reading the response while the client cannot take more."""
        if not self.reading_paused and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Read the response again."""
        if self.reading_paused and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    def fail(self, what: str, timed_out: bool = False) -> None:
        """Give up on this connection and let the router retry or answer for the exchange it carried."""
        ex = self.ex
        client = self.client
        self.ex = None
        self.client = None
        self.router._busy.discard(self)
        if not self.closed:
            self.closed = True
            self.transport.abort()
        if ex is not None and client is not None and not ex.done:
            ex.upstream = None
            self.router._upstream_failed(client, ex, self.endpoint, what, timed_out=timed_out)

    def abandon(self) -> None:
        """The client went away mid-exchange: the rest of the response is of no use."""
        self.ex = None
        self.client = None
        self.router._busy.discard(self)
        if not self.closed:
            self.closed = True
            self.transport.abort()


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
        self._clients: set[_ClientConnection] = set()
        self._busy: set[_UpstreamConnection] = set()
        self._idle: dict[Endpoint, list[_UpstreamConnection]] = {}
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
            lambda: _ClientConnection(self), self.host, self._requested_port, reuse_address=True, backlog=1024
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

    # choosing where a request goes

    def _dispatch(self, client: _ClientConnection, ex: _Exchange) -> None:
        if ex.reject is not None:
            status, title, detail = ex.reject
            self._respond_local(client, ex, status, title, detail)
            return
        table = self._table
        sticky: str | None = None
        if table.sticky and ex.cookie is not None:
            sticky = _cookie_value(ex.cookie, table.cookie_name)
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
            if fault.latency_ms > 0:
                ex.timer = self._loop.call_later(
                    fault.latency_ms / 1000, self._after_delay, client, ex, fault
                )
                return
            if self._short_circuit(client, ex, fault):
                return
        self._forward(client, ex)

    def _after_delay(self, client: _ClientConnection, ex: _Exchange, fault: Fault) -> None:
        ex.timer = None
        if ex.done:
            return
        if not self._short_circuit(client, ex, fault):
            self._forward(client, ex)

    def _short_circuit(self, client: _ClientConnection, ex: _Exchange, fault: Fault) -> bool:
        """Apply a fault's abort or error share; True when the request was answered here."""
        if fault.abort_rate and self._random() < fault.abort_rate:
            ex.keep_alive = False
            client.close()
            self._finish(client, ex, 0, False)
            return True
        if fault.error_rate and self._random() < fault.error_rate:
            version = cast(Backend, ex.backend).version
            self._respond_local(
                client,
                ex,
                500,
                "Injected fault",
                f"fault injection answered for version {version!r} of environment {self.environment!r}",
                slug="injected-fault",
            )
            return True
        return False

    def _pick(self, backend: Backend, avoid: Endpoint | None) -> Endpoint | None:
        endpoints = backend.endpoints
        count = len(endpoints)
        start = self._round_robin.get(backend.version, 0)
        self._round_robin[backend.version] = start + 1
        down = self._down_until
        now = self._time() if down else 0.0
        fallback: Endpoint | None = None
        for i in range(count):
            endpoint = endpoints[(start + i) % count]
            if endpoint == avoid:
                continue
            if down and down.get(endpoint, 0.0) > now:
                fallback = fallback or endpoint
                continue
            return endpoint
        # Every other endpoint is marked down: try one anyway rather than refuse (marks are short guesses).
        return fallback

    def _forward(self, client: _ClientConnection, ex: _Exchange) -> None:
        endpoint = cast(Endpoint, self._pick(cast(Backend, ex.backend), None))
        self._send_to(client, ex, endpoint, False)

    def _send_to(self, client: _ClientConnection, ex: _Exchange, endpoint: Endpoint, fresh: bool) -> None:
        """Send `ex` over an idle connection to `endpoint` (unless `fresh`), or dial a new one."""
        ex.endpoint = endpoint
        if not fresh:
            idle = self._idle.get(endpoint)
            while idle:
                upstream = idle.pop()
                if not upstream.closed:
                    upstream.attach(client, ex)
                    return
        self._loop.create_task(self._connect(client, ex, endpoint))

    async def _connect(self, client: _ClientConnection, ex: _Exchange, endpoint: Endpoint) -> None:
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, upstream = await self._loop.create_connection(
                    lambda: _UpstreamConnection(self, endpoint), endpoint[0], endpoint[1]
                )
        except (OSError, TimeoutError) as exc:
            self._down_until[endpoint] = self._time() + self.down_for
            if ex.done:
                return
            timed_out = isinstance(exc, TimeoutError)
            what = "did not accept a connection in time" if timed_out else f"refused the connection ({exc})"
            self._upstream_failed(client, ex, endpoint, what, timed_out=timed_out, connect=True)
            return
        self._down_until.pop(endpoint, None)
        if ex.done:
            self._release(upstream)
            return
        upstream.attach(client, ex)

    # finishing

    def _response_done(self, upstream: _UpstreamConnection, ex: _Exchange) -> None:
        client = upstream.client
        upstream.ex = None
        upstream.client = None
        self._busy.discard(upstream)
        if upstream.keep and ex.request_done:
            self._release(upstream)
        elif not upstream.closed:
            upstream.closed = True
            upstream.transport.close()
        ex.upstream = None
        if client is not None:
            self._finish(client, ex, ex.status, False)

    def _release(self, upstream: _UpstreamConnection) -> None:
        if upstream.closed:
            return
        idle = self._idle.get(upstream.endpoint)
        if idle is None:
            idle = self._idle[upstream.endpoint] = []
        if upstream.endpoint not in self._live or len(idle) >= self.max_idle_per_endpoint:
            upstream.closed = True
            upstream.transport.close()
            return
        upstream.resume_reading()
        idle.append(upstream)

    def _finish(self, client: _ClientConnection, ex: _Exchange, status: int, upstream_error: bool) -> None:
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

    def _client_gone(self, ex: _Exchange) -> None:
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
        client: _ClientConnection,
        ex: _Exchange,
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
            backend = cast(Backend, ex.backend)
            # A refused connect rules the endpoint out; a dead pooled connection only rules out that socket.
            if connect or len(backend.endpoints) > 1:
                target, fresh = self._pick(backend, endpoint), False
            else:
                target, fresh = endpoint, True
            if target is not None:
                ex.attempts += 1
                if ex.sent:
                    ex.unsent = ex.sent + ex.unsent
                    ex.unsent_size = sum(map(len, ex.unsent))
                    ex.sent = []
                self._send_to(client, ex, target, fresh)
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

    def _abort_request(self, client: _ClientConnection, ex: _Exchange) -> None:
        """A request already sent upstream went bad mid-body: answer its refusal, or cut it off."""
        upstream = ex.upstream
        if upstream is not None:
            upstream.abandon()
            ex.upstream = None
        ex.keep_alive = False
        if ex.response_started:
            client.close()
            self._finish(client, ex, ex.status, False)
            return
        status, title, detail = cast(tuple[int, str, str], ex.reject)
        self._respond_local(client, ex, status, title, detail)

    def _respond_local(
        self,
        client: _ClientConnection,
        ex: _Exchange,
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
        phrase = http.HTTPStatus(status).phrase
        problem: dict[str, Any] = {
            "type": f"https://conveyor.dev/problems/{slug or phrase.lower().replace(' ', '-')}",
            "title": title,
            "status": status,
            "detail": detail,
            "environment": self.environment,
        }
        parts = [
            b"HTTP/1.1 %d %b\r\n" % (status, phrase.encode()),
            b"Content-Type: application/problem+json\r\n",
        ]
        if ex.backend is not None:
            problem["version"] = ex.backend.version
            parts.append(self._version_header(ex.backend.version))
        body = json.dumps(problem).encode()
        parts.append(b"Content-Length: %d\r\n" % len(body))
        keep = client.may_keep_alive(ex)
        ex.keep_alive = keep
        if not keep:
            parts.append(b"Connection: close\r\n")
        parts.append(b"\r\n")
        if ex.method != b"HEAD":
            parts.append(body)
        ex.status = status
        ex.response_started = True
        if not client.closed:
            client.transport.write(b"".join(parts))
        self._finish(client, ex, status, upstream)

    # small helpers

    def _request_head(self, client: _ClientConnection, ex: _Exchange) -> bytes:
        forwarded = client.peer if ex.forwarded_for is None else ex.forwarded_for + b", " + client.peer
        request_id = ex.request_id
        if request_id is None:
            request_id = b"%b-%x" % (self._id_prefix, next(self._ids))
        parts = [ex.method, b" ", ex.url, b" HTTP/1.1\r\n", *ex.headers]
        if not ex.has_host:
            # HTTP/1.0 clients may omit Host; the HTTP/1.1 request sent upstream must carry one.
            host, port = cast(Endpoint, ex.endpoint)
            parts.append(f"Host: {host}:{port}\r\n".encode())
        parts.append(
            b"X-Forwarded-For: %b\r\nX-Forwarded-Proto: http\r\nX-Request-ID: %b\r\n"
            % (forwarded, request_id)
        )
        if ex.chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def _version_header(self, version: str) -> bytes:
        header = self._version_headers.get(version)
        if header is None:
            header = self._version_headers[version] = f"X-Conveyor-Version: {version}\r\n".encode()
        return header

    def _cookie_header(self, version: str) -> bytes:
        key = (self._table.cookie_name, version)
        header = self._cookie_headers.get(key)
        if header is None:
            header = self._cookie_headers[key] = (
                f"Set-Cookie: {key[0]}={version}; Path=/; HttpOnly; SameSite=Lax\r\n".encode()
            )
        return header

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


def _cookie_value(header: bytes, name: str) -> str | None:
    wanted = name.encode()
    for part in header.split(b";"):
        key, sep, value = part.strip().partition(b"=")
        if sep and key == wanted:
            return value.strip().strip(b'"').decode("latin-1")
    return None


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

"""The router's client side: one asyncio Protocol per client socket, which Router.start accepts.

It parses requests with httptools as bytes arrive, queues pipelined requests and answers them in order
(one exchange in flight per connection), honours keep-alive, and pauses reading while a request waits
in the queue, upstream cannot take more or too much of a body is buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import deque
from typing import TYPE_CHECKING, Any, cast

import httptools

from conveyor.runtime.local.router_exchange import Exchange
from conveyor.runtime.local.router_http import QUICKACK, REQUEST_DROPPED

if TYPE_CHECKING:
    from conveyor.runtime.local.router import Router

# Reasons the client socket's reading is paused (a bit each, resumed when all are clear).
PIPELINE, UPSTREAM_FULL, BUFFER_FULL = 1, 2, 4
_BUFFER_LIMIT = 1024 * 1024


class _Reject(Exception):
    """Raised inside a parser callback to stop parsing a request the router refuses."""


class ClientConnection(asyncio.Protocol):
    """One client socket: parses requests, keeps their responses in order, honours keep-alive."""

    transport: asyncio.Transport

    def __init__(self, router: Router) -> None:
        self.router = router
        self.parser = httptools.HttpRequestParser(self)
        self.peer = b"unknown"
        self.parsing: Exchange | None = None
        self.current: Exchange | None = None
        self.pending: deque[Exchange] = deque()
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
        if parsing is not None and QUICKACK is not None and self.sock is not None:
            # Half a request is waiting: acknowledge now so a Nagle-bound client sends the rest at once.
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)

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
        self.parsing = Exchange(time.perf_counter())

    def on_url(self, url: bytes) -> None:
        ex = cast(Exchange, self.parsing)
        ex.url += url
        ex.head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        ex = cast(Exchange, self.parsing)
        ex.head_size += len(name) + len(value) + 4
        if ex.head_size > self.router.max_header_bytes:
            ex.reject = (431, "Request headers too large", "the request line and headers exceed the limit")
            raise _Reject
        lower = name.lower()
        if lower in REQUEST_DROPPED:
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
        ex = cast(Exchange, self.parsing)
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

    def _enqueue(self, ex: Exchange) -> None:
        if self.current is None:
            self.current = ex
            self.router._dispatch(self, ex)
        else:
            self.pending.append(ex)
            self.pause(PIPELINE)

    def _send_body(self, ex: Exchange, data: bytes) -> None:
        upstream = ex.upstream
        if upstream is not None:
            upstream.send_body(ex, data)
            return
        ex.unsent.append(data)
        ex.unsent_size += len(data)
        if ex.unsent_size > _BUFFER_LIMIT:
            self.pause(BUFFER_FULL)

    def exchange_done(self, ex: Exchange) -> None:
        """The response to `ex` is fully written: close, or move on to the next pipelined request."""
        self.current = None
        self.resume(UPSTREAM_FULL | BUFFER_FULL)
        if self.closed:
            return
        if not ex.keep_alive:
            self.close()
        elif self.pending:
            self.router._loop.call_soon(self._next)
        elif self.router._draining and self.parsing is None:
            self.close()
        else:
            self.resume(PIPELINE)

    def _next(self) -> None:
        if self.closed or self.current is not None or not self.pending:
            return
        ex = self.current = self.pending.popleft()
        if not self.pending:
            self.resume(PIPELINE)
        self.router._dispatch(self, ex)

    def _parse_failed(self) -> None:
        """Answer a request the parser or a limit refused, in its turn, then close the connection."""
        self.broken = True
        self.pause(PIPELINE)
        ex = self.parsing
        self.parsing = None
        if ex is None:
            ex = Exchange(time.perf_counter())
        elif ex.done:
            return
        if ex.reject is None:
            ex.reject = (400, "Bad request", "the request is not valid HTTP/1.1")
        ex.keep_alive = False
        if ex is self.current:
            self._abort_request(ex)
        elif ex not in self.pending:
            self._enqueue(ex)

    def _abort_request(self, ex: Exchange) -> None:
        """A request already sent upstream went bad mid-body: answer its refusal, or cut it off."""
        upstream = ex.upstream
        if upstream is not None:
            upstream.abandon()
            ex.upstream = None
        ex.keep_alive = False
        if ex.response_started:
            self.close()
            self.router._finish(self, ex, ex.status, False)
            return
        status, title, detail = cast(tuple[int, str, str], ex.reject)
        self.router._respond_local(self, ex, status, title, detail)

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

    def may_keep_alive(self, ex: Exchange) -> bool:
        """Whether the response to `ex` can leave the connection open."""
        if not ex.keep_alive or not ex.request_done or self.broken:
            return False
        return not (self.router._draining and not self.pending)

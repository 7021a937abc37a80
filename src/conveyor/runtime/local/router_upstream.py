"""One keep-alive connection from the router to an app instance; router_pool dials and reuses these.

It carries one exchange at a time: writes the request head and body, parses the response with httptools
and streams it to the client with the router's headers added, then returns itself to the idle pool (or
closes) and lets the router finish the exchange. A failure hands the exchange back to Router's retry rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING, Any, cast

import httptools

from conveyor.runtime.local.router_client import BUFFER_FULL, UPSTREAM_FULL, ClientConnection
from conveyor.runtime.local.router_exchange import Exchange
from conveyor.runtime.local.router_http import (
    QUICKACK,
    RESPONSE_DROPPED,
    cookie_header,
    request_head,
    version_header,
)
from conveyor.runtime.local.split import Backend, Endpoint

if TYPE_CHECKING:
    from conveyor.runtime.local.router import Router

# How the response body is framed towards the client.
_NO_BODY, _RAW, _CHUNKED = 0, 1, 2
_RETAIN_FOR_RETRY = 64 * 1024


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to an app instance; carries one exchange at a time."""

    transport: asyncio.Transport

    def __init__(self, router: Router, endpoint: Endpoint) -> None:
        self.router = router
        self.endpoint = endpoint
        self.parser = httptools.HttpResponseParser(self)
        self.sock: Any = None
        self.client: ClientConnection | None = None
        self.ex: Exchange | None = None
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
        elif self.ex is not None and QUICKACK is not None and self.sock is not None:
            # Part of a response is still due: acknowledge now, so a server that writes headers and
            # body separately with Nagle on is not held back 40 ms by our delayed ACK.
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)

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
            self._response_done(ex)
            return
        self.fail("closed the connection" if exc is None else f"reset the connection ({exc})")

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.pause(UPSTREAM_FULL)

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.resume(UPSTREAM_FULL)

    # sending the request

    def attach(self, client: ClientConnection, ex: Exchange) -> None:
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
            head = ex.head = request_head(self.router, client, ex)
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
            client.resume(BUFFER_FULL)
        else:
            self.transport.write(head)
        self.last_active = self.router._time()
        self.router._busy.add(self)
        if client.write_paused:
            self.pause_reading()

    def send_body(self, ex: Exchange, data: bytes) -> None:
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
        if lower in RESPONSE_DROPPED:
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
        parts.append(version_header(router, backend.version))
        if ex.set_cookie:
            parts.append(cookie_header(router, backend.version))
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
            self._response_done(ex)

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
        self._response_done(ex)

    # finishing

    def _response_done(self, ex: Exchange) -> None:
        """The response to `ex` is complete: keep this connection for reuse or close it, then finish `ex`."""
        router = self.router
        client = self.client
        self.ex = None
        self.client = None
        router._busy.discard(self)
        if self.keep and ex.request_done:
            self.release()
        elif not self.closed:
            self.closed = True
            self.transport.close()
        ex.upstream = None
        if client is not None:
            router._finish(client, ex, ex.status, False)

    def release(self) -> None:
        """Go back to the idle pool of this endpoint, or close when it is full or the endpoint gone."""
        if self.closed:
            return
        router = self.router
        idle = router._idle.get(self.endpoint)
        if idle is None:
            idle = router._idle[self.endpoint] = []
        if self.endpoint not in router._live or len(idle) >= router.max_idle_per_endpoint:
            self.closed = True
            self.transport.close()
            return
        self.resume_reading()
        idle.append(self)

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

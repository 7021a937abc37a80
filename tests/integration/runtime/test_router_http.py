"""The router's HTTP/1.1 handling over loopback: pipelining, chunked and large bodies, HEAD, limits, headers.

The upstream here is a small h11 server that echoes each request (method, target, headers, body) back, with
a chunked response unless told otherwise, so the tests see exactly what the router forwarded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import h11
import httpx
import pytest

from conveyor.runtime.local.split import Backend, RouteTable
from tests.integration.runtime.test_router import ENV, Responses, RouterThread


class EchoUpstream:
    """A real HTTP/1.1 server (h11, a thread per connection) answering each request with itself."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        conn = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        body = bytearray()
        with sock, contextlib.suppress(h11.RemoteProtocolError, OSError):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(sock.recv(65536))
                elif isinstance(event, h11.Request):
                    request, body = event, bytearray()
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage) and request is not None:
                    self._answer(conn, sock, request, bytes(body))
                    if conn.our_state is h11.MUST_CLOSE:
                        return
                    conn.start_next_cycle()
                else:
                    return

    @staticmethod
    def _answer(conn: h11.Connection, sock: socket.socket, request: h11.Request, body: bytes) -> None:
        seen = json.dumps([[k.decode(), v.decode()] for k, v in request.headers.raw_items()])
        headers = [("X-Echo-Method", request.method.decode()), ("X-Echo-Headers", seen)]
        if request.target.endswith(b"?length"):
            headers.append(("Content-Length", str(len(body))))
        sock.sendall(conn.send(h11.Response(status_code=200, headers=headers)) or b"")
        if request.method != b"HEAD":
            for start in range(0, len(body), 256 * 1024):
                sock.sendall(conn.send(h11.Data(data=body[start : start + 256 * 1024])) or b"")
        sock.sendall(conn.send(h11.EndOfMessage()) or b"")

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoUpstream]:
    upstream = EchoUpstream()
    yield upstream
    upstream.close()


@pytest.fixture
def router(echo: EchoUpstream) -> Iterator[Callable[..., RouterThread]]:
    started: list[RouterThread] = []

    def make(**options: Any) -> RouterThread:
        table = RouteTable(ENV, (Backend("v1", 10_000, (("127.0.0.1", echo.port),)),))
        started.append(RouterThread(table, **options))
        return started[-1]

    yield make
    for r in started:
        r.close()


def echoed_headers(response: httpx.Response) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for name, value in json.loads(response.headers["x-echo-headers"]):
        seen.setdefault(name.lower(), []).append(value)
    return seen


def raw(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class TestBodies:
    def test_chunked_request_and_response_pass_through(self, router: Callable[..., RouterThread]) -> None:
        r = router()
        pieces = [b"alpha-", b"beta-" * 1000, b"gamma"]
        response = httpx.post(f"{r.url}/upload", content=iter(pieces), timeout=10)
        assert response.status_code == 200
        assert response.content == b"".join(pieces)
        assert response.headers["transfer-encoding"] == "chunked"
        assert echoed_headers(response)["transfer-encoding"] == ["chunked"]

    def test_large_body_is_streamed_both_ways(self, router: Callable[..., RouterThread]) -> None:
        r = router()
        body = os.urandom(8 * 1024 * 1024)
        response = httpx.put(f"{r.url}/blob?length", content=body, timeout=30)
        assert response.status_code == 200
        assert response.headers["content-length"] == str(len(body))
        assert hashlib.sha256(response.content).digest() == hashlib.sha256(body).digest()

    def test_content_length_over_the_limit_is_413_and_closes(
        self, router: Callable[..., RouterThread]
    ) -> None:
        r = router(max_body_bytes=1000)
        with raw(r.port) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n" + b"x" * 1001)
            status, headers, body = Responses(sock).next()
            assert status == 413 and headers[b"connection"] == b"close"
            assert json.loads(body)["status"] == 413
            assert sock.recv(10) == b""

    def test_chunked_body_over_the_limit_is_413(self, router: Callable[..., RouterThread]) -> None:
        r = router(max_body_bytes=1000)
        response = httpx.post(r.url, content=iter([b"x" * 600, b"y" * 600]), timeout=10)
        assert response.status_code == 413

    def test_expect_continue_is_answered_by_the_router(self, router: Callable[..., RouterThread]) -> None:
        r = router()
        with raw(r.port) as sock:
            sock.sendall(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(b"hello")
            status, headers, body = Responses(sock).next()
        assert (status, body) == (200, b"hello")
        assert "expect" not in {k.lower() for k, _ in json.loads(headers[b"x-echo-headers"])}


class TestConnections:
    def test_pipelined_requests_are_answered_in_order(self, router: Callable[..., RouterThread]) -> None:
        r = router()
        with raw(r.port) as sock:
            sock.sendall(
                b"POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none"
                b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
                b"POST /3 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nthree"
            )
            responses = Responses(sock)
            answers = [responses.next() for _ in range(3)]
        assert [(status, body) for status, _, body in answers] == [(200, b"one"), (200, b""), (200, b"three")]
        assert [headers[b"x-echo-method"] for _, headers, _ in answers] == [b"POST", b"GET", b"POST"]

    def test_keep_alive_reuses_one_upstream_connection(
        self, router: Callable[..., RouterThread], echo: EchoUpstream
    ) -> None:
        r = router()
        before = echo.connections
        with httpx.Client(base_url=r.url, timeout=10) as client:
            for _ in range(20):
                assert client.get("/").status_code == 200
        assert echo.connections - before == 1

    def test_connection_close_is_honoured(self, router: Callable[..., RouterThread]) -> None:
        r = router()
        with raw(r.port) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status, headers, _ = Responses(sock).next()
            assert status == 200 and headers[b"connection"] == b"close"
            assert sock.recv(10) == b""

    def test_http_1_0_without_keep_alive_is_closed(self, router: Callable[..., RouterThread]) -> None:
        r = router()
        with raw(r.port) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close\r\n" in data
        assert b"Transfer-Encoding" not in data

    def test_head_has_no_body_and_the_connection_goes_on(self, router: Callable[..., RouterThread]) -> None:
        r = router()
        with raw(r.port) as sock:
            sock.sendall(b"HEAD /h?length HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while data.count(b"HTTP/1.1 200") < 2 or not data.endswith(b"0\r\n\r\n"):
                data += sock.recv(65536)
        head, get = data.split(b"HTTP/1.1 200", 2)[1:]
        assert head.endswith(b"\r\n\r\n") and b"X-Echo-Method: HEAD" in head
        assert b"X-Echo-Method: GET" in get

    def test_malformed_request_is_400_and_closes(self, router: Callable[..., RouterThread]) -> None:
        r = router()
        with raw(r.port) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost x\r\n\r\n")
            status, headers, _ = Responses(sock).next()
            assert status == 400 and headers[b"content-type"] == b"application/problem+json"
            assert sock.recv(10) == b""
        assert r.window("").by_class["4xx"] == 1


class TestHeaders:
    def test_forwarding_headers_are_added(self, router: Callable[..., RouterThread]) -> None:
        r = router()
        response = httpx.get(r.url, headers={"X-Forwarded-For": "203.0.113.9"}, timeout=10)
        seen = echoed_headers(response)
        assert seen["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
        assert seen["x-forwarded-proto"] == ["http"]
        assert len(seen["x-request-id"]) == 1 and seen["x-request-id"][0]
        assert response.headers["x-conveyor-version"] == "v1"

    def test_incoming_request_id_is_kept(self, router: Callable[..., RouterThread]) -> None:
        r = router()
        response = httpx.get(r.url, headers={"X-Request-ID": "abc-123"}, timeout=10)
        assert echoed_headers(response)["x-request-id"] == ["abc-123"]

    def test_request_ids_differ(self, router: Callable[..., RouterThread]) -> None:
        r = router()
        ids = {echoed_headers(httpx.get(r.url, timeout=10))["x-request-id"][0] for _ in range(5)}
        assert len(ids) == 5

    def test_hop_by_hop_headers_are_not_forwarded(self, router: Callable[..., RouterThread]) -> None:
        r = router()
        response = httpx.get(r.url, headers={"Keep-Alive": "timeout=5", "TE": "trailers"}, timeout=10)
        seen = echoed_headers(response)
        assert "keep-alive" not in seen and "te" not in seen and "connection" not in seen

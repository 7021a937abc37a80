"""Health probes against small loopback servers: pass on 2xx, fail with a reason otherwise."""

from __future__ import annotations

import asyncio
import socket

import pytest

from conveyor.runtime.local.health_probe import ProbeResult, probe


async def _probe_against(answer: bytes | None, timeout: float = 1.0) -> tuple[ProbeResult, list[bytes]]:
    """Probe a server that records the request and sends `answer` (None: never answers)."""
    requests: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        if answer is None:
            await asyncio.sleep(5)
        else:
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await probe("127.0.0.1", port, "/healthz", timeout), requests
    finally:
        server.close()


@pytest.mark.parametrize(
    ("raw", "ok", "detail"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", True, "HTTP 200"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", True, "HTTP 204"),
        (b"HTTP/1.0 200 OK\r\n\r\nbody until the connection closes", True, "HTTP 200"),
        (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nsick", False, "HTTP 503"),
        (b"HTTP/1.1 301 Moved\r\nLocation: /\r\nContent-Length: 0\r\n\r\n", False, "HTTP 301"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", False, "malformed HTTP answer"),
        (b"", False, "malformed HTTP answer (empty answer)"),
    ],
    ids=["200", "204-no-body", "read-to-close", "503", "redirect", "not-http", "empty"],
)
def test_status_decides(raw: bytes, ok: bool, detail: str) -> None:
    result, requests = asyncio.run(_probe_against(raw))
    assert result.ok is ok
    assert result.detail.startswith(detail)
    assert requests[0].startswith(b"GET /healthz HTTP/1.1\r\n")
    assert b"Connection: close" in requests[0]


def test_a_slow_answer_fails_after_the_timeout() -> None:
    result, _ = asyncio.run(_probe_against(None, timeout=0.2))
    assert result == ProbeResult(False, "no answer within 0.2s")


def test_nothing_listening_is_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = asyncio.run(probe("127.0.0.1", port, "/healthz", 1.0))
    assert result == ProbeResult(False, "connection refused")

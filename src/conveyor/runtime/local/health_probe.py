"""One HTTP health check over raw asyncio streams; the supervisor's tick loop launches these."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

_MAX_BODY = 1024 * 1024


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one check: passed or not, and what was seen ("HTTP 503", "connection refused")."""

    ok: bool
    detail: str


class _BadResponse(Exception):
    pass


async def probe(host: str, port: int, path: str, timeout: float) -> ProbeResult:
    """GET `path`; it passes on a 2xx answer received in full within `timeout` seconds."""
    try:
        status = await asyncio.wait_for(_get(host, port, path), timeout)
    except TimeoutError:
        return ProbeResult(False, f"no answer within {timeout:g}s")
    except ConnectionRefusedError:
        return ProbeResult(False, "connection refused")
    except OSError as exc:
        return ProbeResult(False, exc.strerror or type(exc).__name__)
    except (_BadResponse, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        return ProbeResult(False, f"malformed HTTP answer ({exc or type(exc).__name__})")
    return ProbeResult(200 <= status < 300, f"HTTP {status}")


async def _get(host: str, port: int, path: str) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: conveyor-health\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n"
        )
        writer.write(request.encode("ascii"))
        await writer.drain()
        status_line = await reader.readline()
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise _BadResponse(status_line[:80].decode("latin-1").strip() or "empty answer")
        length: int | None = None
        while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = header.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        # read the whole answer: closing with unread bytes resets the connection, and apps log that
        if length is not None:
            await reader.readexactly(min(length, _MAX_BODY))
        else:
            received = 0
            while received < _MAX_BODY and (chunk := await reader.read(64 * 1024)):
                received += len(chunk)
        return int(parts[1])
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

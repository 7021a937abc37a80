"""HTTP/1.1 pieces the router shares: header rules and building, problem+json answers, cookie parsing.

Used by router_client (which request headers to drop), router_upstream (the request head sent upstream,
the headers added to a response) and router (sticky cookies, answers from the router itself).
"""

from __future__ import annotations

import http
import json
import socket
from typing import TYPE_CHECKING, Any, cast

from conveyor.runtime.local.split import Endpoint

if TYPE_CHECKING:
    from conveyor.runtime.local.router import Router
    from conveyor.runtime.local.router_client import ClientConnection
    from conveyor.runtime.local.router_exchange import Exchange

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
REQUEST_DROPPED = frozenset(
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
RESPONSE_DROPPED = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"trailer"}
)
QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def request_head(router: Router, client: ClientConnection, ex: Exchange) -> bytes:
    """The request line and headers sent upstream: hop-by-hop headers gone, X-Forwarded-* added."""
    forwarded = client.peer if ex.forwarded_for is None else ex.forwarded_for + b", " + client.peer
    request_id = ex.request_id
    if request_id is None:
        request_id = b"%b-%x" % (router._id_prefix, next(router._ids))
    parts = [ex.method, b" ", ex.url, b" HTTP/1.1\r\n", *ex.headers]
    if not ex.has_host:
        # HTTP/1.0 clients may omit Host; the HTTP/1.1 request sent upstream must carry one.
        host, port = cast(Endpoint, ex.endpoint)
        parts.append(f"Host: {host}:{port}\r\n".encode())
    parts.append(
        b"X-Forwarded-For: %b\r\nX-Forwarded-Proto: http\r\nX-Request-ID: %b\r\n" % (forwarded, request_id)
    )
    if ex.chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def version_header(router: Router, version: str) -> bytes:
    """`X-Conveyor-Version: <version>`, built once per version and router."""
    header = router._version_headers.get(version)
    if header is None:
        header = router._version_headers[version] = f"X-Conveyor-Version: {version}\r\n".encode()
    return header


def cookie_header(router: Router, version: str) -> bytes:
    """The `Set-Cookie` that pins a client to `version`, built once per cookie name and version."""
    key = (router._table.cookie_name, version)
    header = router._cookie_headers.get(key)
    if header is None:
        header = router._cookie_headers[key] = (
            f"Set-Cookie: {key[0]}={version}; Path=/; HttpOnly; SameSite=Lax\r\n".encode()
        )
    return header


def problem_response(
    router: Router, ex: Exchange, status: int, title: str, detail: str, slug: str | None, keep: bool
) -> bytes:
    """A whole RFC 9457 problem+json response from the router itself (no body when answering HEAD)."""
    phrase = http.HTTPStatus(status).phrase
    problem: dict[str, Any] = {
        "type": f"https://conveyor.dev/problems/{slug or phrase.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
        "environment": router.environment,
    }
    parts = [
        b"HTTP/1.1 %d %b\r\n" % (status, phrase.encode()),
        b"Content-Type: application/problem+json\r\n",
    ]
    if ex.backend is not None:
        problem["version"] = ex.backend.version
        parts.append(version_header(router, ex.backend.version))
    body = json.dumps(problem).encode()
    parts.append(b"Content-Length: %d\r\n" % len(body))
    if not keep:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    if ex.method != b"HEAD":
        parts.append(body)
    return b"".join(parts)


def cookie_value(header: bytes, name: str) -> str | None:
    """The value of cookie `name` in a Cookie header, or None."""
    wanted = name.encode()
    for part in header.split(b";"):
        key, sep, value = part.strip().partition(b"=")
        if sep and key == wanted:
            return value.strip().strip(b'"').decode("latin-1")
    return None

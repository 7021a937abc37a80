"""The record of one request and its response, handed between Router and the router's two protocols."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from conveyor.runtime.local.metrics import Series
from conveyor.runtime.local.split import Backend, Endpoint

if TYPE_CHECKING:
    from conveyor.runtime.local.router_upstream import UpstreamConnection


class Exchange:
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
        self.upstream: UpstreamConnection | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.set_cookie = False
        self.response_started = False
        self.status = 0
        self.attempts = 1
        self.done = False

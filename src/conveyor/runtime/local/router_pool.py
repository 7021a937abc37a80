"""Where the router sends a request: round robin past endpoints marked down, idle keep-alive reuse, dialing.

Router's dispatch and retry rule and router_faults call these; the idle connections per endpoint, the
down marks and the round-robin counters live on the Router.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from conveyor.runtime.local.router_client import ClientConnection
from conveyor.runtime.local.router_exchange import Exchange
from conveyor.runtime.local.router_upstream import UpstreamConnection
from conveyor.runtime.local.split import Backend, Endpoint

if TYPE_CHECKING:
    from conveyor.runtime.local.router import Router


def pick(router: Router, backend: Backend, avoid: Endpoint | None) -> Endpoint | None:
    """The next endpoint of `backend` in round robin, skipping `avoid` and endpoints marked down."""
    endpoints = backend.endpoints
    count = len(endpoints)
    start = router._round_robin.get(backend.version, 0)
    router._round_robin[backend.version] = start + 1
    down = router._down_until
    now = router._time() if down else 0.0
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


def forward(router: Router, client: ClientConnection, ex: Exchange) -> None:
    """Send `ex` to the next endpoint of the version chosen for it."""
    endpoint = cast(Endpoint, pick(router, cast(Backend, ex.backend), None))
    send_to(router, client, ex, endpoint, False)


def send_to(router: Router, client: ClientConnection, ex: Exchange, endpoint: Endpoint, fresh: bool) -> None:
    """Send `ex` over an idle connection to `endpoint` (unless `fresh`), or dial a new one."""
    ex.endpoint = endpoint
    if not fresh:
        idle = router._idle.get(endpoint)
        while idle:
            upstream = idle.pop()
            if not upstream.closed:
                upstream.attach(client, ex)
                return
    router._loop.create_task(connect(router, client, ex, endpoint))


async def connect(router: Router, client: ClientConnection, ex: Exchange, endpoint: Endpoint) -> None:
    """Dial `endpoint` for `ex`; a failure marks it down for a while and goes to the retry rule."""
    try:
        async with asyncio.timeout(router.connect_timeout):
            _, upstream = await router._loop.create_connection(
                lambda: UpstreamConnection(router, endpoint), endpoint[0], endpoint[1]
            )
    except (OSError, TimeoutError) as exc:
        router._down_until[endpoint] = router._time() + router.down_for
        if ex.done:
            return
        timed_out = isinstance(exc, TimeoutError)
        what = "did not accept a connection in time" if timed_out else f"refused the connection ({exc})"
        router._upstream_failed(client, ex, endpoint, what, timed_out=timed_out, connect=True)
        return
    router._down_until.pop(endpoint, None)
    if ex.done:
        upstream.release()
        return
    upstream.attach(client, ex)

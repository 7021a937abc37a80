"""Faults injected for `conveyor fault` and chaos gates (latency, aborts, 5xx); Router._dispatch calls these.

Router._dispatch delays a request by scheduling `after_delay`, or calls `short_circuit` directly; the
fault's rates are drawn from the router's random source.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from conveyor.runtime.local.router_client import ClientConnection
from conveyor.runtime.local.router_exchange import Exchange
from conveyor.runtime.local.router_pool import forward
from conveyor.runtime.local.split import Backend, Fault

if TYPE_CHECKING:
    from conveyor.runtime.local.router import Router


def after_delay(router: Router, client: ClientConnection, ex: Exchange, fault: Fault) -> None:
    """The injected latency is over: apply the rest of the fault, or forward the request."""
    ex.timer = None
    if ex.done:
        return
    if not short_circuit(router, client, ex, fault):
        forward(router, client, ex)


def delays(router: Router, fault: Fault) -> bool:
    """Whether this request gets the fault's latency (drawn only when just a share is delayed)."""
    if fault.latency_ms <= 0:
        return False
    return fault.latency_rate >= 1.0 or router._random() < fault.latency_rate


def short_circuit(router: Router, client: ClientConnection, ex: Exchange, fault: Fault) -> bool:
    """Apply a fault's abort or error share; True when the request was answered here."""
    if fault.abort_rate and router._random() < fault.abort_rate:
        ex.keep_alive = False
        client.close()
        router._finish(client, ex, 0, False)
        return True
    if fault.error_rate and router._random() < fault.error_rate:
        version = cast(Backend, ex.backend).version
        router._respond_local(
            client,
            ex,
            fault.error_status,
            "Injected fault",
            f"fault injection answered for version {version!r} of environment {router.environment!r}",
            slug="injected-fault",
        )
        return True
    return False

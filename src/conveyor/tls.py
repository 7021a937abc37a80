"""One TLS context per process for every HTTP client Conveyor opens.

httpx builds a new SSL context for each client it creates, loading the whole CA bundle each time
(about 60 ms of CPU). The server talks to its agent with a fresh connection per call and the engine
polls every tick, so that load ran many times a second. One verifying context, built on first use
and shared (an `SSLContext` is safe to share between threads), keeps verification for https and
costs the load once.
"""

from __future__ import annotations

import functools
import ssl


@functools.cache
def client_context() -> ssl.SSLContext:
    """The default verifying client context (the system's CA store, or certifi's when httpx uses it)."""
    import httpx

    return httpx.create_ssl_context()

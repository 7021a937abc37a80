"""One verifying TLS context per process, shared by every HTTP client Conveyor opens."""

from __future__ import annotations

import ssl

from conveyor.tls import client_context


def test_the_context_is_built_once_and_verifies_servers() -> None:
    context = client_context()
    assert client_context() is context
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0  # a CA store was loaded

"""Runtime drivers: the protocol the server drives, and the local agent (supervisor, router, metrics)."""

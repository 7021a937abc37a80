"""The server's runtime driver: any driver, plus the values of the secrets a desired state names.

Desired states (recorded releases, rollout steps, rollbacks) carry secret references only. This
wrapper is the one place the server opens them: right before the runtime gets the desired state,
inside the process that holds the master key (ADR 0010). After each apply it also delivers the
environment's feature flags (ADR 0011). Everything else passes through.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from conveyor.flags import service as flags
from conveyor.resources import service as resources
from conveyor.runtime.desired import EnvironmentDesired
from conveyor.runtime.driver import RuntimeDriver
from conveyor.secrets import service as secrets
from conveyor.secrets.crypto import Keyring
from conveyor.store.db import Store


class DeliveringDriver:
    """A RuntimeDriver that sends each desired state with the values of its secret references."""

    def __init__(self, inner: RuntimeDriver, store: Store, keyring: Keyring) -> None:
        self.inner = inner
        self.store = store
        self.keyring = keyring

    def apply(
        self, desired: EnvironmentDesired, secret_values: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        refs = desired.secret_refs()
        values = dict(secret_values or {})
        if refs:
            with self.store.read() as session:
                resources.check_not_retired(session, refs)
                values.update(secrets.values(session, self.keyring, refs - set(values)))
        # every deployment delivers the environment's flags too, before its instances start (so the
        # file they are pointed at exists); a push missed while the agent was away arrives with the
        # next release (a failed delivery is logged, the release stands)
        flags.deliver(self.store, self.inner, desired.environment)
        return self.inner.apply(desired, values)

    def observe(self, environment: str | None = None) -> dict[str, Any]:
        return self.inner.observe(environment)

    def metrics(self, environment: str, window_seconds: float) -> dict[str, Any]:
        return self.inner.metrics(environment, window_seconds)

    def logs(self, environment: str, lines: int, follow: bool) -> Iterator[str]:
        return self.inner.logs(environment, lines, follow)

    def kill_instance(self, environment: str, instance_id: str) -> dict[str, Any]:
        return self.inner.kill_instance(environment, instance_id)

    def put_flags(self, environment: str, document: dict[str, Any]) -> dict[str, Any]:
        return self.inner.put_flags(environment, document)

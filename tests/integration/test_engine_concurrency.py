"""Two engines on one PostgreSQL store, stepping two promotions into one environment at the same time.

The runtime is a recording stand-in for our own driver protocol (slow on purpose, to widen any race);
the store, the leases and the locks are real. The environment must never hold two deployments.
"""

from __future__ import annotations

import io
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.artifacts.provenance import Provenance
from conveyor.artifacts.service import UploadWriter, register_bundle
from conveyor.audit.log import SYSTEM
from conveyor.clock import SystemClock
from conveyor.environments.service import apply
from conveyor.pipeline.decide import TERMINAL_STATES
from conveyor.pipeline.engine import Engine, EngineSettings
from conveyor.pipeline.records import transitions_of
from conveyor.pipeline.service import request
from conveyor.runtime.desired import EnvironmentDesired
from conveyor.store.db import Store
from conveyor.store.migrate import upgrade
from conveyor.store.tables import Promotion

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

SPEC = """
version: 1
project: shop
services:
  web: {command: python app.py}
environments:
  staging: {tier: staging}
"""


class SlowRuntime:
    """Records every apply; takes its time, as a real runtime starting processes does."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.desired: dict[str, EnvironmentDesired] = {}
        self.applies: list[str] = []

    def apply(self, desired: EnvironmentDesired, secret_values: Any = None) -> dict[str, Any]:
        time.sleep(0.3)
        with self.lock:
            self.desired[desired.environment] = desired
            self.applies.append(desired.versions[0].version)
        return {}

    def observe(self, environment: str | None = None) -> dict[str, Any]:
        with self.lock:
            desired = self.desired.get(environment or "")
        if desired is None:
            return {"desired": {"versions": []}, "instances": [], "router": {"port": None}}
        instances = [
            {"version": v.version, "state": "ready"} for v in desired.versions for _ in range(v.instances)
        ]
        return {"desired": desired.to_json(), "instances": instances, "router": {"port": None}}

    def metrics(self, environment: str, window_seconds: float) -> dict[str, Any]:
        return {}

    def logs(self, environment: str, lines: int, follow: bool) -> Iterator[str]:
        return iter(())


def _tar(version: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = f"print({version!r})\n".encode()
        info = tarfile.TarInfo("app.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_two_engines_never_deploy_two_promotions_into_one_environment_at_once(
    database_url: str, tmp_path: Path
) -> None:
    store = Store(database_url)
    upgrade(store)
    clock = SystemClock()
    root = tmp_path / "artifacts"
    with store.write() as session:
        apply(session, SYSTEM, SPEC, "conveyor.yaml", clock.now())
    ids = []
    for version in ("1.0.0", "1.1.0"):
        writer = UploadWriter(root)
        writer.write(_tar(version))
        with store.write() as session:
            register_bundle(session, SYSTEM, root, "web", version, writer.finish(), clock.now(), Provenance())
        with store.write() as session:
            ids.append(request(session, SYSTEM, None, "web", version, "staging", clock.now()).id)

    runtime = SlowRuntime()
    settings = EngineSettings(tick=0.05, lease=15)
    engines = [Engine(store, clock, runtime, tmp_path, settings) for _ in range(2)]

    def work(engine: Engine, promotion_id: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with store.read() as session:
                row = session.get(Promotion, promotion_id)
                assert row is not None
                if row.state in TERMINAL_STATES:
                    return
            engine.step(promotion_id)
            time.sleep(0.02)

    threads = [threading.Thread(target=work, args=pair) for pair in zip(engines, ids, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    with store.read() as session:
        states = [session.get(Promotion, i).state for i in ids]  # type: ignore[union-attr]
        spans = []
        for promotion_id in ids:
            moves = transitions_of(session, promotion_id)
            start = next(t.at for t in moves if t.to_state == "deploying")
            spans.append((start, moves[-1].at))
    store.dispose()
    assert states == ["succeeded", "succeeded"]
    (_, a_end), (b_start, _) = sorted(spans)
    assert a_end <= b_start, f"both promotions held staging at once: {spans}"
    assert sorted(runtime.applies) == ["1.0.0", "1.1.0"]  # each deployed exactly once

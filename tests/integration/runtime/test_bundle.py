"""Bundles end to end: the example app packed, verified, unpacked and run; a tampered one refused."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import pytest

from conveyor.runtime.local.bundle import BundleError, digest_file, unpack
from conveyor.runtime.local.supervisor import HealthCheck, InstanceSpec, Supervisor

ROOT = Path(__file__).resolve().parents[3]
APP_DIR = ROOT / "examples" / "app"


def _pack(tmp_path: Path) -> Path:
    """Pack the example app the way CI would: `tar -czf app.tar.gz -C examples/app .`."""
    bundle = tmp_path / "app.tar.gz"
    subprocess.run(
        ["tar", "-czf", str(bundle), "--exclude=__pycache__", "-C", str(APP_DIR), "."],
        check=True,
    )
    return bundle


def test_a_registered_bundle_unpacks_once_and_runs(tmp_path: Path) -> None:
    bundle = _pack(tmp_path)
    digest = digest_file(bundle)
    store = tmp_path / "bundles"
    workdir = unpack(bundle, digest, store)
    assert (workdir / "app.py").read_bytes() == (APP_DIR / "app.py").read_bytes()
    assert unpack(bundle, digest, store) == workdir

    async def scenario() -> dict[str, str]:
        supervisor = Supervisor(tmp_path / "logs", tick=0.05)
        await supervisor.start()
        try:
            spec = InstanceSpec(
                "dev", "shop", "1.0.0", 0, (sys.executable, "app.py"), workdir, {}, HealthCheck(interval=0.2)
            )
            await supervisor.apply([spec])
            deadline = time.monotonic() + 10
            while not supervisor.ready_endpoints("dev", "1.0.0"):
                assert time.monotonic() < deadline, supervisor.instances()
                await asyncio.sleep(0.02)
            host, port = supervisor.ready_endpoints("dev", "1.0.0")[0]
            async with httpx.AsyncClient() as client:
                return dict((await client.get(f"http://{host}:{port}/version")).json())
        finally:
            await supervisor.stop()

    assert asyncio.run(scenario()) == {"version": "1.0.0", "environment": "dev"}


@pytest.mark.parametrize("where", ["header", "middle", "end"])
def test_a_bundle_changed_after_registration_is_refused_and_leaves_nothing(
    tmp_path: Path, where: str
) -> None:
    bundle = _pack(tmp_path)
    registered = "sha256:" + hashlib.sha256(bundle.read_bytes()).hexdigest()
    data = bytearray(bundle.read_bytes())
    offset = {"header": 4, "middle": len(data) // 2, "end": len(data) - 1}[where]
    data[offset] ^= 0x01
    bundle.write_bytes(bytes(data))
    store = tmp_path / "bundles"
    with pytest.raises(BundleError) as caught:
        unpack(bundle, registered, store)
    error = caught.value
    assert f"expected {registered}" in error.detail
    assert f"found {digest_file(bundle)}" in error.detail
    assert "changed after it was registered" in error.detail
    assert error.hint is not None and "register" in error.hint
    assert [p for p in store.rglob("*") if p.name != "sha256"] == []


def test_a_tarball_with_an_escaping_member_is_refused_before_any_file_is_written(tmp_path: Path) -> None:
    bundle = tmp_path / "evil.tar.gz"
    with tarfile.open(bundle, "w:gz") as tar:
        tar.add(APP_DIR / "app.py", arcname="app.py")
        tar.add(APP_DIR / "app.py", arcname="../../escaped.py")
    store = tmp_path / "deep" / "store"
    with pytest.raises(BundleError, match=r"contains '\.\.'"):
        unpack(bundle, digest_file(bundle), store)
    assert not (tmp_path / "escaped.py").exists() and not (tmp_path / "deep" / "escaped.py").exists()
    assert [p for p in store.rglob("*") if p.name != "sha256"] == []

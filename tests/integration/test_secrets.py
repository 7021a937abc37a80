"""Secrets end to end: values reach app instances and nothing else, rotation ships as a release, a wrong
master key decrypts nothing, and a new master key re-wraps data keys without re-encrypting values."""

from __future__ import annotations

import hashlib
import json
import secrets as random
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.secrets.crypto import MasterKey
from tests.conftest import Cli, Server, _pg_connect, free_port
from tests.integration.test_promotions import add_user, register
from tests.integration.test_rollouts import Load

pytestmark = pytest.mark.integration

SPEC = """
version: 1
project: shop
services:
  web:
    command: python app.py
    health: {{path: /healthz, interval: 1s, timeout: 500ms}}
    secrets: [API_KEY, DB_PASSWORD]
environments:
  staging:
    tier: staging
    access: {{secrets: [release-manager], deploy: [release-manager]}}
    secrets:
      API_KEY: {{kind: api-key}}
      DB_PASSWORD: {{kind: database-password, rotate_every: 30d}}
    router: {{port: {staging}}}
  production:
    tier: production
    access: {{secrets: [release-manager], deploy: [release-manager]}}
    secrets:
      API_KEY: {{kind: api-key, rotate_every: 90d}}
      DB_PASSWORD: {{kind: database-password, rotate_every: 30d}}
    router: {{port: {production}}}
pipeline:
  stages: [staging, production]
"""


def fingerprint(port: int, name: str) -> dict[str, Any]:
    """What the running app reports about one variable (set or not, SHA-256, its pid)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/settings/{name}", timeout=5)
            if response.status_code == 200:
                return dict(response.json())
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the app on port {port} did not answer")
        time.sleep(0.2)


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def setup(server: Server, tmp_path: Path) -> tuple[int, int]:
    ports = free_port(), free_port()
    (server.home.parent / "conveyor.yaml").write_text(SPEC.format(staging=ports[0], production=ports[1]))
    server.cli("apply", "--yes", check=True)
    register(server, tmp_path, "1.0.0")
    return ports


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_values_reach_instances_and_appear_nowhere_else(server: Server, tmp_path: Path) -> None:
    staging_port, production_port = setup(server, tmp_path)
    values = {
        "staging": "stg-" + random.token_urlsafe(24),
        "production": "prd-" + random.token_urlsafe(24),
        "rotated": "prd2-" + random.token_urlsafe(24),
        "override": "ovr-" + random.token_urlsafe(24),
    }
    seen: list[str] = []

    def cli(*args: str, input: str | None = None, token: str | None = None, ok: bool = True) -> Any:
        result = server.cli(*args, input=input, token=token, check=ok)
        seen.extend([result.stdout, result.stderr])
        return result

    # nothing to release before the values exist: the promotion is refused with the fix
    refused = cli("promote", "web", "1.0.0", "--to", "staging", ok=False)
    assert refused.returncode == 1
    assert "API_KEY is a secret web needs, and staging has no value for it" in refused.stderr
    assert "conveyor secret set staging API_KEY" in refused.stderr

    # values come from stdin or a file; a developer without `secrets` access changes nothing
    developer = add_user(server, "dana", "developer")
    denied = cli("secret", "set", "staging", "API_KEY", input=values["staging"], token=developer, ok=False)
    assert denied.returncode == 1 and "environment:secrets" in denied.stderr
    cli("secret", "set", "staging", "API_KEY", "-m", "first key", input=values["staging"] + "\n")
    key_file = tmp_path / "prod-key.txt"
    key_file.write_text(values["production"])
    cli("secret", "set", "production", "API_KEY", "--file", str(key_file))
    for environment in ("staging", "production"):
        cli("secret", "set", environment, "DB_PASSWORD", "--generate")
    # an override would be stored and audited in the clear: a secret's name is refused there
    override = cli("config", "set", "production", f"API_KEY={values['override']}", ok=False)
    assert (
        override.returncode == 1 and "API_KEY is a secret of production, not configuration" in override.stderr
    )
    listed = cli("secret", "list", "production", "-o", "json").stdout
    rows = {row["name"]: row for row in json.loads(listed)["secrets"]}
    assert rows["API_KEY"]["version"] == 1 and rows["API_KEY"]["rotation"] == "ok"
    assert rows["DB_PASSWORD"]["next_rotation"][:10] > rows["DB_PASSWORD"]["set_at"][:10]

    for environment in ("staging", "production"):
        cli("promote", "web", "1.0.0", "--to", environment, "--wait", "60")
    assert fingerprint(staging_port, "API_KEY")["sha256"] == sha(values["staging"])
    before = fingerprint(production_port, "API_KEY")
    assert before["sha256"] == sha(values["production"])
    assert fingerprint(production_port, "DB_PASSWORD")["set"]

    # rotation is a new version; what runs changes with the next release, promoted like code
    cli("secret", "rotate", "production", "API_KEY", "--stdin", "-m", "quarterly", input=values["rotated"])
    assert fingerprint(production_port, "API_KEY")["sha256"] == sha(values["production"])
    diff = cli("config", "diff", "staging", "production", "-o", "json").stdout
    assert "staging/API_KEY@1" in diff and "production/API_KEY@2" in diff
    load = Load(production_port).start()  # users keep arriving while the instances change over
    try:
        cli("promote", "web", "1.0.0", "--to", "production", "--wait", "60")
        time.sleep(0.5)
    finally:
        load.stop()
    statuses = [status for _, status, _ in load.log]
    assert len(statuses) > 50 and not load.failures and set(statuses) == {200}, (load.failures, set(statuses))
    after = fingerprint(production_port, "API_KEY")
    assert after["sha256"] == sha(values["rotated"]) and after["pid"] != before["pid"]

    # every read is audited with the release and the versions it read
    with server.admin() as http:
        reads = http.get("/api/v1/audit/events", params={"action": "secret.read", "limit": 100}).json()
    assert {tuple(e["details"]["secrets"]) for e in reads} >= {
        ("production/API_KEY@1", "production/DB_PASSWORD@1"),
        ("production/API_KEY@2", "production/DB_PASSWORD@1"),
    }
    assert all(e["details"]["release"] for e in reads)

    # an export carries values only when asked, to someone with the environment's secrets access
    denied = cli("config", "export", "production", "--include-secrets", token=developer, ok=False)
    assert denied.returncode == 1 and "environment:secrets" in denied.stderr
    exported = server.cli(
        "config", "export", "production", "--include-secrets", "--format", "json", check=True
    )
    assert json.loads(exported.stdout)["API_KEY"] == values["rotated"]
    with server.admin() as http:
        exports = http.get("/api/v1/audit/events", params={"action": "secret.read", "limit": 100}).json()
    assert any(e["details"]["purpose"] == "export" and e["actor"] == "admin" for e in exports)

    # now look everywhere a value could have leaked to
    for args in (
        ("secret", "history", "production", "API_KEY", "-o", "json"),
        ("secret", "due"),
        ("config", "show", "production", "--reveal-sources"),
        ("config", "export", "production", "--format", "json"),
        ("history", "production"),
        ("ps", "--env", "production", "-o", "json"),
        ("logs", "production"),
        ("audit", "export"),
        ("promotion", "list", "-o", "json"),
    ):
        cli(*args)
    with server.admin() as http:
        for path in (
            "/api/v1/environments/production/secrets",
            "/api/v1/environments/production/config",
            "/api/v1/environments/production/runtime",
            "/api/v1/environments/staging/runtime",
            "/api/v1/audit/events?limit=10000",
            "/api/v1/promotions",
            "/api/v1/promotions/1",
            "/api/v1/promotions/3",
            "/api/v1/secrets/due",
            "/openapi.json",
        ):
            response = http.get(path)
            assert response.status_code == 200, (path, response.text)
            seen.append(response.text)
    seen.append(server.log())
    agent_dir = server.home / "agent"
    seen.append((server.home / "agent.log").read_text(errors="replace"))
    seen.append((agent_dir / "desired.json").read_text())
    seen.extend(p.read_text(errors="replace") for p in (agent_dir / "logs").rglob("*") if p.is_file())
    db = Path(server.database_url.removeprefix("sqlite:///"))
    seen.append(b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*")).decode("latin-1"))
    for value in values.values():
        hits = [blob[:200] for blob in seen if value in blob]
        assert not hits, f"a secret value leaked into: {hits}"
    # the agent keeps the values it runs with, readable only by its owner
    kept = agent_dir / "secrets.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and values["rotated"] in kept.read_text()
    assert stat.S_IMODE((server.home / "master.key").stat().st_mode) == 0o600


def restart(server: Server, **env: str) -> Cli:
    """Stop the server and agent (if running), then start them again with extra environment variables."""
    server.cli("down", check=True)
    cli = Cli(server.home, {**server.cli.env, **env})
    cli("up", "--port", server.url.rsplit(":", 1)[1], "--agent-port", str(free_port()), check=True)
    return cli


def stored_rows(server: Server) -> list[tuple[str, str, str]]:
    with _pg_connect(server.database_url) as conn:
        rows = conn.execute(
            "SELECT ciphertext, wrapped_key, key_id FROM secret_versions ORDER BY id"
        ).fetchall()
    return [tuple(r) for r in rows]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_wrong_master_key_decrypts_nothing_and_a_new_one_rewraps(server: Server, tmp_path: Path) -> None:
    _, production_port = setup(server, tmp_path)
    value = "prd-" + random.token_urlsafe(24)
    server.cli("secret", "set", "production", "API_KEY", input=value, check=True)
    server.cli("secret", "set", "production", "DB_PASSWORD", "--generate", check=True)
    old_key = (server.home / "master.key").read_text().strip()
    sealed = stored_rows(server)

    wrong = MasterKey.generate().encoded()
    cli = restart(server, CONVEYOR_MASTER_KEY=wrong)
    log = server.log()
    assert "sealed under master key" in log and value not in log
    refused = cli("secret", "set", "production", "API_KEY", input="another")
    assert refused.returncode == 1 and "which this server does not have" in refused.stderr
    listed = cli("secret", "list", "production", "-o", "json", check=True)  # names and versions still show
    assert json.loads(listed.stdout)["secrets"][0]["version"] == 1
    cli("promote", "web", "1.0.0", "--to", "staging", "--wait", "0")  # staging has no values: refused
    production = cli("deploy", "web", "1.0.0", "--env", "production")
    assert production.returncode == 1
    assert "cannot be opened" in production.stderr and value not in production.stdout + production.stderr
    assert stored_rows(server) == sealed

    server.cli("down", check=True)
    garbled = Cli(server.home, {**server.cli.env, "CONVEYOR_MASTER_KEY": "not-a-key"})("up", "--no-agent")
    assert garbled.returncode == 1 and "CONVEYOR_MASTER_KEY: a master key is 32 bytes" in garbled.stderr
    assert "conveyor secret keygen" in garbled.stderr

    new_key = MasterKey.generate().encoded()
    cli = restart(server, CONVEYOR_MASTER_KEY=f"{new_key},{old_key}")
    done = json.loads(cli("secret", "rewrap", "-o", "json", check=True).stdout)
    assert done["rewrapped"] == 2 and done["master_key_id"] == MasterKey.parse(new_key).id
    rewrapped = stored_rows(server)
    assert [r[0] for r in rewrapped] == [r[0] for r in sealed]  # values were not re-encrypted
    assert all(r[1] != s[1] and r[2] == done["master_key_id"] for r, s in zip(rewrapped, sealed, strict=True))

    cli = restart(server, CONVEYOR_MASTER_KEY=new_key)  # the old key is gone; everything still opens
    cli("deploy", "web", "1.0.0", "--env", "production", check=True)
    assert fingerprint(production_port, "API_KEY")["sha256"] == sha(value)

"""Configuration layers end to end: overrides are typed and audited, a config-only release goes through
a promotion like code, the app gets the new value, and a rollback returns to the old one."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, free_port
from tests.integration.test_promotions import add_user, register

pytestmark = pytest.mark.integration

SPEC = """
version: 1
project: shop
services:
  web:
    command: python app.py
    health: {{path: /healthz, interval: 1s, timeout: 500ms}}
    config_schema:
      LOG_LEVEL: {{type: string, default: info, choices: [debug, info, warn]}}
      DB_POOL_SIZE: {{type: integer, required: true}}
      REGION: {{type: string, default: eu-west-1}}
environments:
  staging:
    tier: staging
    access: {{config: [release-manager], deploy: [release-manager]}}
    config: {{DB_POOL_SIZE: 10}}
    router: {{port: {staging}}}
  production:
    tier: production
    access: {{config: [release-manager], deploy: [release-manager]}}
    config: {{DB_POOL_SIZE: 50, LOG_LEVEL: warn}}
    router: {{port: {production}}}
pipeline:
  stages: [staging, production]
"""


def running_env(server: Server, environment: str) -> dict[str, str]:
    with server.admin() as http:
        data: dict[str, Any] = http.get(f"/api/v1/environments/{environment}/runtime").json()
    return dict(data["observed"]["desired"]["env"])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_override_ships_as_a_config_only_release_and_rolls_back(server: Server, tmp_path: Path) -> None:
    text = SPEC.format(staging=free_port(), production=free_port())
    (server.home.parent / "conveyor.yaml").write_text(text)
    server.cli("apply", "--yes", check=True)
    register(server, tmp_path, "1.0.0")
    for environment in ("staging", "production"):
        server.cli("promote", "web", "1.0.0", "--to", environment, "--wait", "60", check=True)
    assert running_env(server, "production") == {
        "DB_POOL_SIZE": "50",
        "LOG_LEVEL": "warn",
        "REGION": "eu-west-1",
    }

    shown = server.cli("config", "show", "production", "--reveal-sources", check=True).stdout
    assert "eu-west-1" in shown and "config_schema default" in shown and "info (default)" in shown

    refused = server.cli("config", "set", "production", "DB_POOL_SIZE=lots")
    assert refused.returncode == 1 and "DB_POOL_SIZE: expected an integer, got 'lots'" in refused.stderr
    dev = add_user(server, "dev1", "developer")
    denied = server.cli("config", "set", "production", "DB_POOL_SIZE=80", token=dev)
    assert denied.returncode == 1 and "environment:config" in denied.stderr
    with server.admin() as http:
        assert (
            http.get("/api/v1/environments/production/config").json()["settings"][0]["key"] == "DB_POOL_SIZE"
        )
        assert not http.get("/api/v1/audit/events", params={"action": "config.set"}).json()

    server.cli("config", "set", "production", "DB_POOL_SIZE=80", "-m", "black friday", check=True)
    exported = server.cli("config", "export", "production", "--format", "tfvars", check=True).stdout
    assert exported == 'DB_POOL_SIZE = 80\nLOG_LEVEL = "warn"\nREGION = "eu-west-1"\n'
    wrong = server.cli("config", "export", "production", "--format", "yaml")
    assert wrong.returncode == 1 and "'yaml' is not an export format" in wrong.stderr
    assert running_env(server, "production")["DB_POOL_SIZE"] == "50"  # what runs waits for a release
    diff = server.cli("config", "diff", "staging", "production", check=True).stdout
    assert "DB_POOL_SIZE" in diff and "80 (override)" in diff and "10 (environment)" in diff

    promoted = server.cli("promote", "web", "1.0.0", "--to", "production", "--wait", "60", check=True)
    assert "succeeded" in promoted.stdout
    assert running_env(server, "production")["DB_POOL_SIZE"] == "80"
    with server.admin() as http:
        events = http.get("/api/v1/audit/events", params={"action": "config.set"}).json()
        history = http.get("/api/v1/environments/production/history").json()
    assert events[0]["details"] == {"key": "DB_POOL_SIZE", "from": None, "to": 80, "reason": "black friday"}
    first = history[-1]["id"]  # newest first: the last is the first release
    assert history[0]["config_sha256"] != history[-1]["config_sha256"]
    since = server.cli("config", "diff", "production", "--release", str(first), check=True).stdout
    assert "DB_POOL_SIZE" in since and "50" in since and "80" in since

    server.cli("rollback", "production", check=True)
    deadline = time.monotonic() + 30
    while running_env(server, "production")["DB_POOL_SIZE"] != "50":
        assert time.monotonic() < deadline, "rollback did not return to the old configuration"
        time.sleep(0.2)

    server.cli("config", "unset", "production", "DB_POOL_SIZE", check=True)
    again = server.cli("promote", "web", "1.0.0", "--to", "production")
    assert again.returncode == 1 and "already runs in production with this configuration" in again.stderr

"""`conveyor up / status / down`, the bootstrap admin, and refusing an unmigrated store."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import httpx
import pytest

from conveyor.store.db import Store
from conveyor.store.migrate import head_revision, upgrade
from tests.conftest import Cli, Server, free_port


def test_up_creates_an_admin_whose_token_is_in_a_private_file(server: Server) -> None:
    creds = server.home / "credentials"
    assert stat.S_IMODE(os.stat(creds).st_mode) == 0o600
    data = json.loads(creds.read_text())
    assert data["user"] == "admin" and data["url"] == server.url
    with server.admin() as http:
        assert http.get("/api/v1/whoami").json()["user"] == "admin"


def test_status_shows_server_store_and_environments(server: Server) -> None:
    result = server.cli("status", check=True)
    assert f"running at {server.url}" in result.stdout
    assert "nothing applied yet" in result.stdout
    data = json.loads(server.cli("status", "-o", "json", check=True).stdout)
    assert data["server"]["running"] is True
    assert data["store"]["dialect"] in ("sqlite", "postgresql")
    assert "password" not in json.dumps(data).lower()


def test_health_and_readiness_are_public_everything_else_is_not(server: Server) -> None:
    with server.http() as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").json() == {"status": "ready", "pid": server.pid()}
        for path in ("/version", "/openapi.json", "/api/v1/status"):
            response = http.get(path)
            assert response.status_code == 401, path
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["hint"]


def test_a_second_up_reports_the_running_server(server: Server) -> None:
    result = server.cli("up", "--port", str(free_port()), check=True)
    assert "already running" in result.stdout


def test_down_stops_the_server_and_status_says_so(server: Server) -> None:
    pid = server.pid()
    assert "server stopped" in server.cli("down", check=True).stdout
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    status = server.cli("status")
    assert status.returncode == 1 and "not reachable" in status.stdout
    try:
        httpx.get(f"{server.url}/healthz", timeout=1)
        raise AssertionError("server still answers")
    except httpx.TransportError:
        pass


def test_server_refuses_an_unmigrated_store(database_url: str, tmp_path: Path) -> None:
    cli = Cli(tmp_path / ".conveyor", {"CONVEYOR_DATABASE_URL": database_url})
    # a store with a table in it but no Conveyor schema is not auto-initialised
    store = Store(database_url)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE someone_elses (id INTEGER)")
    store.dispose()
    result = cli("server", "--port", str(free_port()), timeout=30)
    assert result.returncode != 0
    assert "no Conveyor schema" in result.stderr and "conveyor db upgrade" in result.stderr
    assert "Traceback" not in result.stderr
    up = cli("up", "--no-agent", "--port", str(free_port()))
    assert up.returncode == 1 and "conveyor db upgrade" in up.stderr
    assert "Traceback" not in up.stderr


def test_db_upgrade_then_up(database_url: str, tmp_path: Path) -> None:
    cli = Cli(tmp_path / ".conveyor", {"CONVEYOR_DATABASE_URL": database_url})
    assert "needs `conveyor db upgrade`" in cli("db", "current", check=True).stdout
    head = head_revision()
    assert f"→ {head}" in cli("db", "upgrade", check=True).stdout
    assert f"already at schema {head}" in cli("db", "upgrade", check=True).stdout
    store = Store(database_url)
    assert upgrade(store) == (head, head)
    store.dispose()
    cli("up", "--no-agent", "--port", str(free_port()), check=True)
    try:
        assert "running at" in cli("status", check=True).stdout
    finally:
        cli("down")


def test_an_older_schema_is_refused_until_upgraded(database_url: str, tmp_path: Path) -> None:
    cli = Cli(tmp_path / ".conveyor", {"CONVEYOR_DATABASE_URL": database_url})
    store = Store(database_url)
    upgrade(store, "0001")
    store.dispose()
    refused = cli("up", "--no-agent", "--port", str(free_port()))
    assert refused.returncode == 1
    assert f"schema revision 0001; this Conveyor needs {head_revision()}" in refused.stderr
    assert "conveyor db upgrade" in refused.stderr
    assert f"0001 → {head_revision()}" in cli("db", "upgrade", check=True).stdout
    cli("up", "--no-agent", "--port", str(free_port()), check=True)
    cli("down", check=True)


def test_cli_says_what_to_do_when_no_server_runs(tmp_path: Path) -> None:
    cli = Cli(tmp_path / ".conveyor", {"CONVEYOR_URL": f"http://127.0.0.1:{free_port()}"})
    result = cli("user", "list")
    assert result.returncode == 1
    assert "not reachable" in result.stderr and "conveyor up" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_launch_whose_port_another_program_takes_first_is_not_taken_for_ready(tmp_path: Path) -> None:
    # the port is free when the agent is launched; something else binds it while the agent is still
    # importing: its answers must not pass for the agent's
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from conveyor import daemon
    from conveyor.errors import ClientError
    from conveyor.settings import Settings

    class AlwaysOk(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"status": "ok"}'
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    settings = Settings(tmp_path / ".conveyor", f"sqlite:///{tmp_path / 'state.db'}")
    port = free_port()
    starting = daemon.launch(settings, "127.0.0.1", port, name="agent")
    squatter = ThreadingHTTPServer(("127.0.0.1", port), AlwaysOk)
    threading.Thread(target=squatter.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ClientError, match=f"another program answers at http://127.0.0.1:{port}"):
            daemon.wait_ready(settings, starting, ready_path="/healthz")
        assert starting.proc.wait(timeout=10) is not None  # it is stopped, or gave up by itself
        assert not (settings.home / "agent.pid").exists()
    finally:
        if starting.proc.poll() is None:
            starting.proc.kill()
        squatter.shutdown()

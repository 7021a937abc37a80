"""Walk every route in the OpenAPI document: none is open, and each denial names its permission."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute

from conveyor.auth.permissions import DEFAULT_ROLE_PERMISSIONS
from conveyor.settings import Settings
from conveyor.spec import render_init
from conveyor.store.db import Store
from conveyor.store.migrate import upgrade
from tests.conftest import Server

PUBLIC = {("GET", "/healthz"), ("GET", "/readyz")}


def _operations(server: Server) -> list[tuple[str, str, str]]:
    with server.admin() as http:
        doc = http.get("/openapi.json").json()
    ops = []
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            ops.append((method.upper(), path, op.get("x-permission")))
    return ops


_PARAMS = {"name": "production", "number": "1", "service": "web", "version": "1.0.0"}


def _concrete(path: str) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: _PARAMS.get(m.group(1), "1"), path)


def test_every_route_declares_a_permission(server: Server) -> None:
    ops = _operations(server)
    assert len(ops) >= 20
    for method, path, permission in ops:
        assert permission, f"{method} {path} declares no x-permission"
        assert (permission == "public") == ((method, path) in PUBLIC), f"{method} {path} is {permission}"


def test_no_route_answers_without_a_valid_token(server: Server) -> None:
    for token in (None, "cvy_" + "x" * 43, "not-a-token"):
        with server.http(token) as http:
            for method, path, permission in _operations(server):
                if permission == "public":
                    continue
                response = http.request(method, _concrete(path), json={})
                assert response.status_code == 401, f"{method} {path} with {token!r}: {response.status_code}"
                assert response.json()["status"] == 401


def _tiny_bundle() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = b"print('hello')\n"
        info = tarfile.TarInfo("app.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_missing_permission_is_a_403_naming_it(server: Server) -> None:
    with server.admin() as http:
        assert http.post("/api/v1/spec/apply", json={"source": render_init("shop")}).status_code == 200
        viewer = http.post("/api/v1/users", json={"name": "vera", "role": "viewer"}).json()["token"]["token"]
        for name in ("POSTGRES_PASSWORD", "JWT_SECRET", "API_KEY"):  # staging's release needs them
            generated = http.put(f"/api/v1/environments/staging/secrets/{name}", json={"generate": True})
            assert generated.status_code == 200, generated.text
        # a build of main starts promotion 1, so the promotion routes have something to guard
        registered = http.post(
            "/api/v1/artifacts",
            params={"service": "web", "version": "1.0.0", "branch": "main"},
            content=_tiny_bundle(),
        )
        assert registered.json()["auto_promotions"][0]["promotion"] == 1, registered.text
    granted = DEFAULT_ROLE_PERMISSIONS["viewer"]
    denied = 0
    with server.http(viewer) as http:
        for method, path, permission in _operations(server):
            if permission == "public" or permission in granted:
                continue
            response = http.request(method, _concrete(path), json={})
            assert response.status_code == 403, f"{method} {path}: {response.status_code} {response.text}"
            body = response.json()
            assert body["permission"] == permission and permission in body["detail"]
            denied += 1
    assert denied >= 8
    # denied writes are themselves audited
    with server.admin() as http:
        events = http.get("/api/v1/audit/events", params={"action": "access.denied"}).json()
    assert events and all(e["actor"] == "vera" and e["outcome"] == "denied" for e in events)


def _api_routes(routes: list[Any]) -> list[APIRoute]:
    """Every APIRoute, descending into included routers (FastAPI nests them as wrappers)."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):
            found += _api_routes(route.original_router.routes)
    return found


def test_the_openapi_document_lists_every_route_the_app_serves(tmp_path: Path) -> None:
    from conveyor.api.app import create_app

    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = Store(url)
    upgrade(store)
    store.dispose()
    app = create_app(Settings(home=tmp_path, database_url=url))
    served = {(m, r.path) for r in _api_routes(app.routes) for m in r.methods if m != "HEAD"}
    schema = app.openapi()
    documented = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
    assert served == documented


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_revoked_token_stops_working_at_once(server: Server) -> None:
    with server.admin() as http:
        issued = http.post("/api/v1/tokens", json={"name": "short-lived"}).json()
    with server.http(issued["token"]) as http:
        assert http.get("/api/v1/whoami").status_code == 200
    with server.admin() as http:
        assert http.delete(f"/api/v1/tokens/{issued['id']}").status_code == 200
    with server.http(issued["token"]) as http:
        response = http.get("/api/v1/whoami")
        assert response.status_code == 401 and "revoked" in response.json()["detail"]


def test_backup_routes_need_read_to_look_and_deploy_to_act(tmp_path: Path) -> None:
    from conveyor.api.app import create_app

    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = Store(url)
    upgrade(store)
    store.dispose()
    paths = create_app(Settings(home=tmp_path, database_url=url)).openapi()["paths"]
    declared = {
        (method.upper(), path): op["x-permission"]
        for path, ops in paths.items()
        for method, op in ops.items()
        if "backup" in path or "restore" in path
    }
    assert declared == {
        ("GET", "/api/v1/environments/{name}/backups"): "environments:read",
        ("POST", "/api/v1/environments/{name}/backups"): "environment:deploy",
        ("POST", "/api/v1/environments/{name}/backups/prune"): "environment:deploy",
        ("GET", "/api/v1/backups/{backup_id}"): "environments:read",
        ("POST", "/api/v1/environments/{name}/restore"): "environment:deploy",
        ("POST", "/api/v1/environments/{name}/restore-drills"): "environment:deploy",
        ("GET", "/api/v1/environments/{name}/restore-runs"): "environments:read",
    }


def test_data_routes_need_read_to_look_and_deploy_in_the_target_to_seed_or_clone(tmp_path: Path) -> None:
    from conveyor.api.app import create_app

    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = Store(url)
    upgrade(store)
    store.dispose()
    paths = create_app(Settings(home=tmp_path, database_url=url)).openapi()["paths"]
    declared = {
        (method.upper(), path): op["x-permission"]
        for path, ops in paths.items()
        for method, op in ops.items()
        if path.startswith("/api/v1/environments/{name}/data")
    }
    assert declared == {
        ("GET", "/api/v1/environments/{name}/data"): "environments:read",
        ("POST", "/api/v1/environments/{name}/data/seed"): "environment:deploy",
        ("POST", "/api/v1/environments/{name}/data/clone"): "environment:deploy",
    }

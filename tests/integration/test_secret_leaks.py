"""The admin token appears only in the response that created it (and the 0600 credentials file)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conveyor.spec import render_init
from tests.conftest import Server


def test_tokens_never_leak(server: Server) -> None:
    token = server.admin_token
    seen: list[str] = []
    (server.home.parent / "conveyor.yaml").write_text(render_init("shop"))
    for args in (
        ("status",),
        ("status", "-o", "json"),
        ("whoami",),
        ("plan",),
        ("apply", "--yes"),
        ("user", "add", "dana", "--role", "developer"),
        ("user", "list", "-o", "json"),
        ("token", "list", "--all", "-o", "json"),
        ("audit", "list", "-o", "json"),
        ("audit", "verify", "-o", "json"),
        ("spec", "history", "-o", "json"),
        ("audit", "export"),
    ):
        result = server.cli(*args, check=True)
        seen += [result.stdout, result.stderr]
    with server.admin() as http:
        for path in (
            "/api/v1/status",
            "/api/v1/tokens?all=true",
            "/api/v1/users",
            "/openapi.json",
            "/api/v1/audit/events?limit=10000",
            "/api/v1/spec",
            "/version",
        ):
            response = http.get(path)
            seen += [response.text, str(response.headers)]
        # a wrong token in an error must not be echoed back either
        wrong = "cvy_" + "W" * 43
        response = http.get("/api/v1/whoami", headers={"authorization": f"Bearer {wrong}"})
        assert response.status_code == 401 and wrong not in response.text
    # a newly created token is shown once, then only its prefix and id exist
    created = server.cli("token", "create", "--name", "once", check=True).stdout
    new_token = next(w for w in created.split() if w.startswith("cvy_"))
    listed = server.cli("token", "list", "-o", "json", check=True).stdout
    assert new_token not in listed and new_token[:8] in listed

    seen.append(server.log())
    for blob in seen:
        assert token not in blob
        assert new_token not in blob
    if server.database_url.startswith("sqlite"):
        db = Path(server.database_url.removeprefix("sqlite:///"))
        raw = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    else:
        dump = subprocess.run(
            ["pg_dump", "--data-only", server.database_url], capture_output=True, check=True
        )
        raw = dump.stdout
    assert raw, "the store dump is empty"
    assert token.encode() not in raw and new_token.encode() not in raw

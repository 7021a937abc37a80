"""Users, roles and tokens through the CLI, including the mistakes people make."""

from __future__ import annotations

import json

from conveyor.spec import render_init
from tests.conftest import Server


def test_user_lifecycle(server: Server) -> None:
    added = server.cli("user", "add", "rita", "--role", "release-manager", check=True).stdout
    rita = next(w for w in added.split() if w.startswith("cvy_"))
    me = json.loads(server.cli("whoami", "-o", "json", token=rita, check=True).stdout)
    assert me == {"user": "rita", "role": "release-manager", "token_id": me["token_id"]}

    users = json.loads(server.cli("user", "list", "-o", "json", check=True).stdout)
    assert [u["name"] for u in users] == ["admin", "rita"]

    # rita may read users but not manage them
    denied = server.cli("user", "add", "eve", "--role", "admin", token=rita)
    assert denied.returncode == 1
    assert "lacks the permission 'users:manage'" in denied.stderr

    server.cli("user", "set-role", "rita", "viewer", check=True)
    assert json.loads(server.cli("whoami", "-o", "json", token=rita).stdout)["role"] == "viewer"
    server.cli("user", "disable", "rita", check=True)
    gone = server.cli("whoami", token=rita)
    assert gone.returncode == 1 and ("revoked" in gone.stderr or "disabled" in gone.stderr)


def test_user_mistakes_are_explained(server: Server) -> None:
    bad_role = server.cli("user", "add", "tom", "--role", "superuser")
    assert bad_role.returncode == 1 and "unknown role 'superuser'" in bad_role.stderr
    assert "release-manager" in bad_role.stderr
    bad_name = server.cli("user", "add", "Tom Jones", "--role", "viewer")
    assert bad_name.returncode == 1 and "not a valid user name" in bad_name.stderr
    server.cli("user", "add", "tom", "--role", "viewer", check=True)
    twice = server.cli("user", "add", "tom", "--role", "viewer")
    assert twice.returncode == 1 and "already exists" in twice.stderr
    last_admin = server.cli("user", "disable", "admin")
    assert last_admin.returncode == 1 and "last admin" in last_admin.stderr
    unknown = server.cli("user", "disable", "nobody")
    assert unknown.returncode == 1 and "no user named 'nobody'" in unknown.stderr
    users = json.loads(server.cli("user", "list", "-o", "json", check=True).stdout)
    assert [u["name"] for u in users] == ["admin", "tom"]


def test_tokens_create_list_revoke(server: Server) -> None:
    created = json.loads(
        server.cli(
            "token", "create", "--name", "ci", "--expires-in-days", "30", "-o", "json", check=True
        ).stdout
    )
    assert created["token"].startswith("cvy_") and created["expires_at"]
    listed = json.loads(server.cli("token", "list", "-o", "json", check=True).stdout)
    assert {t["name"] for t in listed} == {"bootstrap", "ci"}
    assert all("token" not in t and "secret_hash" not in t for t in listed)
    server.cli("token", "revoke", created["id"], check=True)
    again = server.cli("token", "revoke", created["id"])
    assert again.returncode == 1 and "already revoked" in again.stderr
    missing = server.cli("token", "revoke", "tok_nope")
    assert missing.returncode == 1 and "no token with id" in missing.stderr
    dead = server.cli("whoami", token=created["token"])
    assert dead.returncode == 1 and "revoked" in dead.stderr


def test_only_managers_touch_other_users_tokens(server: Server) -> None:
    dev = next(
        w
        for w in server.cli("user", "add", "dev1", "--role", "developer", check=True).stdout.split()
        if w.startswith("cvy_")
    )
    own = json.loads(
        server.cli("token", "create", "--name", "laptop", "-o", "json", token=dev, check=True).stdout
    )
    assert own["user"] == "dev1"
    others = server.cli("token", "list", "--all", token=dev)
    assert others.returncode == 1 and "tokens:manage" in others.stderr
    admin_tokens = json.loads(server.cli("token", "list", "-o", "json", check=True).stdout)
    steal = server.cli("token", "revoke", admin_tokens[0]["id"], token=dev)
    assert steal.returncode == 1 and "belongs to another user" in steal.stderr
    for_admin = server.cli("token", "create", "--user", "admin", token=dev)
    assert for_admin.returncode == 1 and "tokens:manage" in for_admin.stderr
    # the admin can
    server.cli("token", "revoke", own["id"], check=True)


def test_roles_come_from_the_applied_spec(server: Server) -> None:
    refused = server.cli("user", "add", "audrey", "--role", "auditor")
    assert refused.returncode == 1 and "unknown role 'auditor'" in refused.stderr
    spec = render_init("shop").replace(
        "roles: {}",
        "roles:\n  auditor: [status:read, audit:read, audit:verify]\n  viewer: [status:read]",
        1,
    )
    (server.home.parent / "conveyor.yaml").write_text(spec)
    server.cli("apply", "--yes", check=True)
    audrey = next(
        w
        for w in server.cli("user", "add", "audrey", "--role", "auditor", check=True).stdout.split()
        if w.startswith("cvy_")
    )
    assert "audit chain intact" in server.cli("audit", "verify", token=audrey, check=True).stdout
    denied = server.cli("spec", "history", token=audrey)
    assert denied.returncode == 1 and "'spec:read'" in denied.stderr
    # the spec narrowed the built-in viewer role
    vic = next(
        w
        for w in server.cli("user", "add", "vic", "--role", "viewer", check=True).stdout.split()
        if w.startswith("cvy_")
    )
    assert server.cli("audit", "list", token=vic).returncode == 1
    assert server.cli("whoami", token=vic).returncode == 0

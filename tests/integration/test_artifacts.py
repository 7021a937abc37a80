"""Artifacts through the CLI: immutable, with provenance; bundles and OCI images; bad input refused."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from conveyor.spec import render_init
from tests.conftest import ROOT, Server

pytestmark = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
DIGEST = "sha256:" + "3c" * 32
IMAGE = f"registry.example.com/shop/web:2.0.0@{DIGEST}"


def _bundle(tmp: Path, text: str) -> Path:
    path = tmp / f"{abs(hash(text))}.tar.gz"
    extra = tmp / "NOTE"
    extra.write_text(text)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(ROOT / "examples/app/app.py", arcname="app.py")
        tar.add(extra, arcname="NOTE")
    return path


def _ready(server: Server) -> None:
    (server.home.parent / "conveyor.yaml").write_text(render_init("shop"))
    server.cli("apply", "--yes", check=True)


def test_a_bundle_with_provenance(server: Server, tmp_path: Path) -> None:
    _ready(server)
    bundle = _bundle(tmp_path, "one")
    args = [
        "artifact",
        "register",
        "web",
        "1.0.0",
        "--bundle",
        str(bundle),
        "--commit",
        "a1b2c3d",
        "--branch",
        "main",
        "--build-url",
        "https://ci.example.com/runs/7",
        "-o",
        "json",
    ]
    first = json.loads(server.cli(*args, check=True).stdout)
    assert first["created"] is True and first["kind"] == "bundle"
    assert first["provenance"] == {
        "source_commit": "a1b2c3d",
        "source_branch": "main",
        "build_url": "https://ci.example.com/runs/7",
        "builder": None,
    }
    again = json.loads(server.cli(*args, check=True).stdout)
    assert again["created"] is False and again["digest"] == first["digest"]

    other_commit = server.cli(
        "artifact", "register", "web", "1.0.0", "--bundle", str(bundle), "--commit", "ffff000"
    )
    assert other_commit.returncode == 1 and "registered with source_commit a1b2c3d" in other_commit.stderr
    other_bytes = server.cli(
        "artifact", "register", "web", "1.0.0", "--bundle", str(_bundle(tmp_path, "two"))
    )
    assert other_bytes.returncode == 1 and "immutable" in other_bytes.stderr

    shown = server.cli("artifact", "show", "web", "1.0.0", check=True).stdout
    assert "a1b2c3d" in shown and "nowhere yet" in shown
    with server.admin() as http:
        events = http.get("/api/v1/audit/events", params={"action": "artifact.register"}).json()
    assert len(events) == 1 and events[0]["details"]["source_commit"] == "a1b2c3d"


def test_provenance_comes_from_github_actions(server: Server, tmp_path: Path) -> None:
    _ready(server)
    server.cli.env.update(
        GITHUB_ACTIONS="true",
        GITHUB_SHA="0123456789abcdef0123456789abcdef01234567",
        GITHUB_REF_NAME="main",
        GITHUB_WORKFLOW="build",
        GITHUB_SERVER_URL="https://github.com",
        GITHUB_REPOSITORY="org/shop",
        GITHUB_RUN_ID="42",
    )
    try:
        result = json.loads(
            server.cli(
                "artifact",
                "register",
                "web",
                "1.2.0",
                "--bundle",
                str(_bundle(tmp_path, "gh")),
                "-o",
                "json",
                check=True,
            ).stdout
        )
    finally:
        for key in (
            "GITHUB_ACTIONS",
            "GITHUB_SHA",
            "GITHUB_REF_NAME",
            "GITHUB_WORKFLOW",
            "GITHUB_SERVER_URL",
            "GITHUB_REPOSITORY",
            "GITHUB_RUN_ID",
        ):
            server.cli.env.pop(key)
    assert result["provenance"] == {
        "source_commit": "0123456789abcdef0123456789abcdef01234567",
        "source_branch": "main",
        "build_url": "https://github.com/org/shop/actions/runs/42",
        "builder": "github-actions:build",
    }


def test_oci_images_are_registered_by_digest(server: Server) -> None:
    _ready(server)
    created = json.loads(
        server.cli("artifact", "register", "web", "2.0.0", "--image", IMAGE, "-o", "json", check=True).stdout
    )
    assert created["kind"] == "oci" and created["digest"] == DIGEST and created["image"] == IMAGE
    tag_only = server.cli(
        "artifact", "register", "web", "2.0.1", "--image", "registry.example.com/shop/web:2.0.1"
    )
    assert tag_only.returncode == 1 and "not pinned by digest" in tag_only.stderr
    moved = server.cli("artifact", "register", "web", "2.0.0", "--image", IMAGE.replace("3c", "4d"))
    assert moved.returncode == 1 and "immutable" in moved.stderr
    local = server.cli("deploy", "web", "2.0.0", "--env", "development")
    assert local.returncode == 1 and "the local runtime runs bundles" in local.stderr


def test_bad_input_changes_nothing(server: Server, tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, "x")
    before_apply = server.cli("artifact", "register", "web", "1.0.0", "--bundle", str(bundle))
    assert before_apply.returncode == 1 and "no conveyor.yaml has been applied" in before_apply.stderr
    _ready(server)
    for args, words in [
        (["api", "1.0.0", "--bundle", str(bundle)], "not declared in conveyor.yaml"),
        (["web", "v1.0.0", "--bundle", str(bundle)], "register it as '1.0.0'"),
        (["web", "1.0.0", "--bundle", str(ROOT / "README.md")], "not a tar archive"),
        (["web", "1.0.0", "--bundle", str(bundle), "--commit", "HEAD"], "not a git commit id"),
        (["web", "1.0.0"], "exactly one of --bundle and --image"),
        (["web", "1.0.0", "--bundle", str(tmp_path / "missing.tar.gz")], "is not a file"),
    ]:
        result = server.cli("artifact", "register", *args)
        assert result.returncode == 1, args
        assert words in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert json.loads(server.cli("artifact", "list", "-o", "json", check=True).stdout) == []
    leftovers = list((server.home / "artifacts").rglob("*")) if (server.home / "artifacts").exists() else []
    assert [p for p in leftovers if p.is_file()] == []

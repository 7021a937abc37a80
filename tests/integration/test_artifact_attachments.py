"""Evidence attached to artifacts through the CLI: real scan and test reports, Ed25519 signatures.

Every bad input (a file that is not the report it claims to be, a forged signature) is a clear
error and changes nothing: no row, no stored bytes, no audit event.
"""

from __future__ import annotations

import base64
import json
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from conveyor.spec import render_init
from conveyor.store.db import Store
from conveyor.store.tables import ArtifactAttachment
from tests.conftest import ROOT, Server

pytestmark = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
FIXTURES = ROOT.parent / "shared" / "fixtures"
TRIVY = FIXTURES / "sarif" / "trivy-alpine-310.sarif.json"
GRYPE = FIXTURES / "sarif" / "grype-image.sarif.json"
JEST = FIXTURES / "junit" / "jest-junit.xml"
GO = FIXTURES / "junit" / "go-junit-report-skipped.xml"


def _bundle(tmp: Path, text: str = "one") -> Path:
    path = tmp / f"web-{text}.tar.gz"
    note = tmp / "NOTE"
    note.write_text(text)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(ROOT / "examples/app/app.py", arcname="app.py")
        tar.add(note, arcname="NOTE")
    return path


def _apply(server: Server, trusted: dict[str, str] | None = None) -> None:
    source = render_init("shop")
    if trusted:
        source += "\nsigning:\n  trusted_keys:\n" + "".join(f"    {k}: {v}\n" for k, v in trusted.items())
    (server.home.parent / "conveyor.yaml").write_text(source)
    server.cli("apply", "--yes", check=True)


def _register(server: Server, bundle: Path, version: str = "1.0.0", *extra: str) -> dict[str, Any]:
    args = ["artifact", "register", "web", version, "--bundle", str(bundle), *extra, "-o", "json"]
    return dict(json.loads(server.cli(*args, check=True).stdout))


def _show(server: Server, version: str = "1.0.0") -> dict[str, Any]:
    return dict(json.loads(server.cli("artifact", "show", "web", version, "-o", "json", check=True).stdout))


def _keygen(server: Server, tmp: Path, name: str) -> tuple[Path, str]:
    key = tmp / f"{name}.key"
    out = json.loads(
        server.cli("artifact", "keygen", "--out", str(key), "--name", name, "-o", "json", check=True).stdout
    )
    return key, str(out["public_key"])


def _sign(server: Server, key: Path, target: str, out: Path) -> Path:
    signature = server.cli("artifact", "sign", "--key", str(key), target, check=True).stdout.strip()
    out.write_text(signature + "\n")
    return out


def _state(server: Server) -> tuple[int, list[Path], int]:
    """(attachment rows, stored attachment files, artifact.attach audit events)."""
    store = Store(server.database_url)
    try:
        with store.read() as session:
            rows = session.execute(select(func.count()).select_from(ArtifactAttachment)).scalar_one()
    finally:
        store.engine.dispose()
    blobs = server.home / "artifacts" / "attachments"
    files = sorted(p for p in blobs.rglob("*") if p.is_file()) if blobs.exists() else []
    with server.admin() as http:
        events = http.get("/api/v1/audit/events", params={"action": "artifact.attach"}).json()
    return int(rows), files, len(events)


def _fails(server: Server, *args: str) -> str:
    result = server.cli(*args)
    assert result.returncode == 1, (args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stderr


def test_reports_are_attached_summarized_and_immutable(server: Server, tmp_path: Path) -> None:
    _apply(server)
    _register(server, _bundle(tmp_path))
    attach = ["artifact", "attach", "web", "1.0.0"]

    scan = json.loads(
        server.cli(*attach, "--sarif", str(TRIVY), "--name", "dependencies", "-o", "json", check=True).stdout
    )
    assert scan["created"] is True and (scan["kind"], scan["name"]) == ("sarif", "dependencies")
    assert scan["summary"]["counts"] == {"critical": 0, "high": 0, "medium": 6, "low": 2, "none": 0}
    assert scan["summary"]["tools"] == ["Trivy"] and scan["attached_by"] == "admin"

    tests = server.cli(*attach, "--junit", str(JEST), "--name", "unit", check=True).stdout
    assert "test report 'unit' attached to web 1.0.0: 6 tests: 1 passed, 4 failures, 1 skipped" in tests
    default_named = server.cli(*attach, "--sarif", str(GRYPE), check=True).stdout
    assert "scan report 'grype' attached" in default_named and "1 medium, 1 low" in default_named

    again = server.cli(*attach, "--sarif", str(TRIVY), "--name", "dependencies", check=True).stdout
    assert "already attached (same file)" in again
    other = _fails(server, *attach, "--sarif", str(GRYPE), "--name", "dependencies")
    assert "web 1.0.0 already has a scan report 'dependencies' with other content" in other
    assert "immutable evidence" in other

    shown = _show(server)
    assert [(a["kind"], a["name"]) for a in shown["attachments"]] == [
        ("junit", "unit"),
        ("sarif", "dependencies"),
        ("sarif", "grype"),
    ]
    assert shown["signed_by"] is None
    table = server.cli("artifact", "show", "web", "1.0.0", check=True).stdout
    assert "Trivy: 6 medium, 2 low" in table and "no trusted key" in table

    rows, files, events = _state(server)
    assert (rows, len(files), events) == (3, 3, 3)
    with server.admin() as http:
        stored = http.get("/api/v1/artifacts/web/1.0.0/attachments/sarif/dependencies")
        assert stored.status_code == 200 and stored.content == TRIVY.read_bytes()
        assert stored.headers["content-type"].startswith("application/sarif+json")
        events = http.get("/api/v1/audit/events", params={"action": "artifact.attach"}).json()
    unit = next(e for e in events if e["details"]["name"] == "unit")
    assert unit["details"]["failures"] == 4 and unit["target"] == "artifact:web@1.0.0"


def test_a_file_that_is_not_the_report_it_claims_changes_nothing(server: Server, tmp_path: Path) -> None:
    _apply(server)
    _register(server, _bundle(tmp_path))
    text = tmp_path / "notes.txt"
    text.write_text("this is not a report\n")
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE t [<!ENTITY a "aaaa">]><testsuite name="&a;"/>')
    attach = ["artifact", "attach", "web", "1.0.0"]
    for args, words in [
        (["--sarif", str(JEST)], "the file is not a SARIF 2.1.0 report: it is XML, a JUnit test report"),
        (["--sarif", str(text)], "the file is not a SARIF 2.1.0 report: it is not JSON"),
        (["--junit", str(TRIVY)], "the file is not a JUnit XML report: it is JSON, a SARIF scan report"),
        (["--junit", str(bomb)], "declares a DOCTYPE or entities"),
        (["--junit", str(GO), "--name", "Unit Tests"], "'Unit Tests' is not a valid report name"),
        (["--junit", str(tmp_path / "missing.xml")], "is not a file"),
        (["--junit", str(GO), "--sarif", str(TRIVY)], "exactly one of --sarif, --junit and --signature"),
    ]:
        stderr = _fails(server, *attach, *args)
        assert words in stderr, (args, stderr)
        assert "hint:" in stderr, (args, stderr)
    assert "no artifact web 9.9.9" in _fails(server, "artifact", "attach", "web", "9.9.9", "--junit", str(GO))

    with server.admin() as http:
        response = http.post(
            "/api/v1/artifacts/web/1.0.0/attachments", params={"kind": "sarif", "name": "sast"}, content=b"{}"
        )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "the file is not a SARIF 2.1.0 report: it has no `runs`"
    assert _state(server) == (0, [], 0)
    assert _show(server)["attachments"] == []


def test_signatures_verify_against_the_trusted_keys(server: Server, tmp_path: Path) -> None:
    key, public = _keygen(server, tmp_path, "ci")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert len(base64.b64decode(public)) == 32
    forger, _ = _keygen(server, tmp_path, "forger")
    _apply(server, {"ci": public})
    bundle = _bundle(tmp_path)
    digest = _register(server, bundle)["digest"]

    forged = _sign(server, forger, str(bundle), tmp_path / "forged.sig")
    stderr = _fails(server, "artifact", "attach", "web", "1.0.0", "--signature", str(forged))
    assert f"the signature does not verify with any trusted key (ci) for digest {digest}" in stderr
    assert "conveyor artifact sign --key KEY" in stderr
    assert _state(server) == (0, [], 0)
    assert _show(server)["signed_by"] is None

    by_file = _sign(server, key, str(bundle), tmp_path / "web.sig")
    by_digest = _sign(server, key, digest, tmp_path / "web-digest.sig")
    assert by_file.read_text() == by_digest.read_text()  # Ed25519 is deterministic; both sign the digest
    attached = server.cli(
        "artifact", "attach", "web", "1.0.0", "--signature", str(by_file), check=True
    ).stdout
    assert "signature attached to web 1.0.0: Ed25519 by trusted key 'ci'" in attached
    again = server.cli("artifact", "attach", "web", "1.0.0", "--signature", str(by_digest), check=True).stdout
    assert "already attached (same file)" in again
    shown = _show(server)
    assert shown["signed_by"] == "ci"
    assert [(a["kind"], a["name"], a["summary"]["signed"]) for a in shown["attachments"]] == [
        ("signature", "ci", digest)
    ]
    assert "trusted key 'ci'" in server.cli("artifact", "show", "web", "1.0.0", check=True).stdout

    unknown = _fails(
        server, "artifact", "attach", "web", "1.0.0", "--signature", str(by_file), "--name", "release"
    )
    assert "conveyor.yaml trusts no key named 'release' (trusted keys: ci)" in unknown

    _apply(server, {"release": _keygen(server, tmp_path, "release")[1]})
    assert _show(server)["signed_by"] is None  # removing a key from conveyor.yaml revokes its signatures


def test_register_attaches_reports_and_a_signature_in_one_go(server: Server, tmp_path: Path) -> None:
    key, public = _keygen(server, tmp_path, "ci")
    _apply(server, {"ci": public})
    bundle = _bundle(tmp_path, "ci")
    signature = _sign(server, key, str(bundle), tmp_path / "web.sig")
    result = _register(
        server,
        bundle,
        "2.0.0",
        "--sarif",
        f"dependencies={TRIVY}",
        "--junit",
        f"unit={GO}",
        "--signature",
        str(signature),
    )
    assert result["created"] is True
    assert [(a["kind"], a["name"], a["created"]) for a in result["attachments"]] == [
        ("sarif", "dependencies", True),
        ("junit", "unit", True),
        ("signature", "ci", True),
    ]
    assert _show(server, "2.0.0")["signed_by"] == "ci"

    bad = _fails(
        server, "artifact", "register", "web", "2.0.1", "--bundle", str(bundle), "--sarif", "trivy.sarif"
    )
    assert "--sarif trivy.sarif is not NAME=FILE" in bad
    not_sarif = _fails(
        server, "artifact", "register", "web", "2.0.0", "--bundle", str(bundle), "--sarif", f"sast={JEST}"
    )
    assert "web 2.0.0 is registered, but attaching" in not_sarif and "it is XML" in not_sarif
    assert "conveyor artifact attach web 2.0.0 --sarif" in not_sarif


def test_sign_and_keygen_explain_local_mistakes(server: Server, tmp_path: Path) -> None:
    key, _ = _keygen(server, tmp_path, "ci")
    assert "already exists" in _fails(server, "artifact", "keygen", "--out", str(key))
    assert "neither a digest" in _fails(server, "artifact", "sign", "--key", str(key), "1.0.0")
    not_a_key = tmp_path / "not.key"
    not_a_key.write_text("hello")
    assert "not a PEM private key" in _fails(
        server, "artifact", "sign", "--key", str(not_a_key), "sha256:" + "a" * 64
    )
    assert "cannot read the key file" in _fails(
        server, "artifact", "sign", "--key", str(tmp_path / "none.key"), "sha256:" + "a" * 64
    )

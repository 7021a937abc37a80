"""`artifact register|list|show|attach|sign|keygen`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from conveyor.artifacts.provenance import image_digest
from conveyor.artifacts.sarif import SEVERITIES
from conveyor.cli.client import Client
from conveyor.cli.common import api
from conveyor.cli.output import (
    Output,
    OutputOption,
    console,
    err_console,
    print_json,
    print_table,
    short_time,
)
from conveyor.errors import ClientError, ConveyorError

app = typer.Typer(help="Artifacts: each build registered once, immutable.", no_args_is_help=True)


def ci_provenance() -> dict[str, str]:
    """Provenance a CI system exposes in its environment (GitHub Actions, GitLab CI)."""
    env = os.environ
    if env.get("GITHUB_ACTIONS") == "true":
        found = {
            "commit": env.get("GITHUB_SHA", ""),
            "branch": env.get("GITHUB_REF_NAME", ""),
            "builder": f"github-actions:{env.get('GITHUB_WORKFLOW', '')}".rstrip(":"),
        }
        if env.get("GITHUB_SERVER_URL") and env.get("GITHUB_REPOSITORY") and env.get("GITHUB_RUN_ID"):
            found["build_url"] = (
                f"{env['GITHUB_SERVER_URL']}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
            )
        return {k: v for k, v in found.items() if v}
    if env.get("GITLAB_CI") == "true":
        found = {
            "commit": env.get("CI_COMMIT_SHA", ""),
            "branch": env.get("CI_COMMIT_REF_NAME", ""),
            "build_url": env.get("CI_JOB_URL", ""),
            "builder": "gitlab-ci",
        }
        return {k: v for k, v in found.items() if v}
    return {}


@app.command("register")
def register(
    ctx: typer.Context,
    service: str = typer.Argument(..., help="service name from conveyor.yaml"),
    version: str = typer.Argument(..., help="semantic version, e.g. 2.1.0"),
    bundle: Path = typer.Option(None, "--bundle", help="a .tar.gz of the app (local runtime)"),
    image: str = typer.Option(None, "--image", help="an OCI image pinned by digest: registry/app@sha256:…"),
    commit: str = typer.Option(None, "--commit", help="source commit (default: from the CI environment)"),
    branch: str = typer.Option(None, "--branch", help="source branch (default: from the CI environment)"),
    build_url: str = typer.Option(None, "--build-url", help="the CI run that built it"),
    builder: str = typer.Option(None, "--builder", help="who or what built it"),
    sarif: list[str] = typer.Option(
        [], "--sarif", metavar="NAME=FILE", help="attach a SARIF scan report under NAME (repeatable)"
    ),
    junit: list[str] = typer.Option(
        [], "--junit", metavar="NAME=FILE", help="attach a JUnit test report under NAME (repeatable)"
    ),
    signature: Path = typer.Option(
        None, "--signature", help="attach an Ed25519 signature of the digest (from `artifact sign`)"
    ),
    output: Output = OutputOption,
) -> None:
    """Register a build once: its digest is recorded with where it came from, and never changes."""
    if (bundle is None) == (image is None):
        raise ClientError("give exactly one of --bundle and --image", hint="e.g. --bundle dist/app.tar.gz")
    extras = [
        *(("sarif", *_named_file(value, "--sarif")) for value in sarif),
        *(("junit", *_named_file(value, "--junit")) for value in junit),
        *([("signature", None, _readable(signature, "signature"))] if signature is not None else []),
    ]
    detected = ci_provenance()
    provenance = {
        "commit": commit or detected.get("commit"),
        "branch": branch or detected.get("branch"),
        "build_url": build_url or detected.get("build_url"),
        "builder": builder or detected.get("builder"),
    }
    with api(ctx) as client:
        if image is not None:
            body = {"service": service, "version": version, "image": image}
            body.update(
                {f"source_{k}" if k in ("commit", "branch") else k: v for k, v in provenance.items() if v}
            )
            result = client.post("/api/v1/artifacts/images", json=body)
        else:
            assert bundle is not None
            if not bundle.is_file():
                raise ClientError(f"{bundle} is not a file", hint="pass the path of a .tar.gz bundle")
            params = {"service": service, "version": version, **{k: v for k, v in provenance.items() if v}}
            with bundle.open("rb") as data:
                result = client.post(
                    "/api/v1/artifacts",
                    params=params,
                    content=data,
                    headers={"content-type": "application/gzip"},
                )
        attached = [
            _attach_after_register(client, service, version, kind, name, path) for kind, name, path in extras
        ]
    if output is Output.json:
        print_json({**result, "attachments": attached} if extras else result)
        return
    verb = "registered" if result["created"] else "already registered (same build)"
    size = f" ({result['size']} bytes)" if result["kind"] == "bundle" else f" ({result['image']})"
    console.print(f"{service} {version} {verb}: {result['digest']}{size}")
    for item in attached:
        console.print(_attached_line(item))
    for auto in result.get("auto_promotions") or []:
        if "promotion" in auto:
            number, target = auto["promotion"], auto["environment"]
            console.print(
                f"promotion {number} started: {service} {version} → {target} "
                f"(it follows {provenance.get('branch')}); follow it with `conveyor promotion wait {number}`"
            )
        else:
            console.print(f"not promoted to {auto['environment']}: {auto['skipped']}")


@app.command("list")
def list_artifacts(
    ctx: typer.Context,
    service: str = typer.Option(None, "--service", help="only this service"),
    output: Output = OutputOption,
) -> None:
    """Registered artifacts, newest first."""
    with api(ctx) as client:
        rows = client.get("/api/v1/artifacts", params={"service": service} if service else None)
    if output is Output.json:
        print_json(rows)
        return
    print_table(
        "Artifacts",
        ["service", "version", "digest", "size", "registered", "by", "succeeded in"],
        (
            [
                a["service"],
                a["version"],
                a["digest"][:19] + "…",
                a["size"],
                short_time(a["registered_at"]),
                a["registered_by"],
                ", ".join(a.get("succeeded_in") or []) or None,
            ]
            for a in rows
        ),
    )


@app.command("show")
def show(
    ctx: typer.Context,
    service: str = typer.Argument(...),
    version: str = typer.Argument(...),
    output: Output = OutputOption,
) -> None:
    """One artifact with its digest."""
    with api(ctx) as client:
        row = client.get(f"/api/v1/artifacts/{service}/{version}")
    if output is Output.json:
        print_json(row)
        return
    for key in ("service", "version", "digest", "kind", "size", "image", "registered_at", "registered_by"):
        if row[key] is not None:
            console.print(f"{key + ':':15} {row[key]}")
    for key, value in row["provenance"].items():
        if value:
            console.print(f"{key + ':':15} {value}")
    console.print(f"{'deployed in:':15} {', '.join(row['deployed_in']) or 'nowhere yet'}")
    passed = [
        f"{p['environment']} {p['state']} (promotion {p['promotion']})" for p in row.get("promotions", [])
    ]
    console.print(f"{'promotions:':15} {'; '.join(passed) or 'none yet'}")
    if row.get("signed_by"):
        console.print(f"{'signed by:':15} trusted key '{row['signed_by']}'")
    elif "signed_by" in row:
        console.print(f"{'signed by:':15} no trusted key")
    if row.get("attachments"):
        print_table(
            "Attachments",
            ["kind", "name", "summary", "attached", "by"],
            (
                [a["kind"], a["name"], summary_text(a), short_time(a["attached_at"]), a["attached_by"]]
                for a in row["attachments"]
            ),
        )


_CONTENT_TYPES = {"sarif": "application/sarif+json", "junit": "application/xml", "signature": "text/plain"}
_NOUNS = {"sarif": "scan report", "junit": "test report", "signature": "signature"}


def _readable(path: Path, what: str) -> Path:
    if not path.is_file():
        raise ClientError(f"{path} is not a file", hint=f"pass the path of the {what}")
    return path


def _named_file(value: str, flag: str) -> tuple[str, Path]:
    """`sast=trivy.sarif` as (name, path), checked before anything is sent."""
    from conveyor.spec.fields import NAME_RULE, is_valid_name

    name, sep, file = value.partition("=")
    if not sep or not name or not file:
        raise ClientError(f"{flag} {value} is not NAME=FILE", hint=f"e.g. {flag} sast=reports/trivy.sarif")
    if not is_valid_name(name):
        raise ClientError(f"'{name}' is not a valid report name", hint=NAME_RULE)
    return name, _readable(Path(file), _NOUNS["sarif" if flag == "--sarif" else "junit"])


def upload_attachment(
    client: Client, service: str, version: str, kind: str, name: str | None, path: Path
) -> dict[str, Any]:
    """POST one file as an attachment of SERVICE VERSION; the server checks and summarizes it."""
    params = {"kind": kind, **({"name": name} if name else {})}
    result: dict[str, Any] = client.post(
        f"/api/v1/artifacts/{service}/{version}/attachments",
        params=params,
        content=path.read_bytes(),
        headers={"content-type": _CONTENT_TYPES[kind]},
    )
    return result


def _attach_after_register(
    client: Client, service: str, version: str, kind: str, name: str | None, path: Path
) -> dict[str, Any]:
    try:
        return upload_attachment(client, service, version, kind, name, path)
    except ConveyorError as exc:
        flag = f"--{kind} {path}" + (f" --name {name}" if name else "")
        raise ClientError(
            f"{service} {version} is registered, but attaching {path} failed: {exc.detail}",
            hint=(f"{exc.hint}; then " if exc.hint else "")
            + f"run `conveyor artifact attach {service} {version} {flag}`",
        ) from None


def summary_text(attachment: dict[str, Any]) -> str:
    """One line for people: findings by severity, test counts, or the signing key."""
    summary = attachment["summary"]
    if attachment["kind"] == "sarif":
        counts = [f"{n} {s}" for s in SEVERITIES if (n := summary["counts"].get(s))]
        tools = ", ".join(summary.get("tools") or [])
        text = ", ".join(counts) or "no findings"
        if summary.get("suppressed"):
            text += f" ({summary['suppressed']} suppressed)"
        return f"{tools}: {text}" if tools else text
    if attachment["kind"] == "junit":
        parts = [f"{summary['passed']} passed"]
        parts += [f"{summary[key]} {key}" for key in ("failures", "errors", "skipped") if summary[key]]
        return f"{summary['tests']} tests: " + ", ".join(parts)
    return f"Ed25519 by trusted key '{summary['key']}'"


def _attached_line(result: dict[str, Any]) -> str:
    noun = _NOUNS[result["kind"]]
    label = f"{noun} '{result['name']}'" if result["kind"] != "signature" else noun
    verb = "attached" if result["created"] else "already attached (same file)"
    return f"{label} {verb} to {result['service']} {result['version']}: {summary_text(result)}"


@app.command("attach")
def attach(
    ctx: typer.Context,
    service: str = typer.Argument(..., help="service name from conveyor.yaml"),
    version: str = typer.Argument(..., help="the registered version"),
    sarif: Path = typer.Option(None, "--sarif", help="a SARIF 2.1.0 scan report (trivy, grype, CodeQL, …)"),
    junit: Path = typer.Option(None, "--junit", help="a JUnit XML test report"),
    signature: Path = typer.Option(None, "--signature", help="an Ed25519 signature from `artifact sign`"),
    name: str = typer.Option(
        None,
        "--name",
        help="report name the gates ask for (e.g. sast, unit); default: the scanner's name, or tests. "
        "With --signature: the trusted key to check",
    ),
    output: Output = OutputOption,
) -> None:
    """Attach evidence to an artifact: a scan report, a test report or a signature; never replaced."""
    given = [
        (kind, path) for kind, path in (("sarif", sarif), ("junit", junit), ("signature", signature)) if path
    ]
    if len(given) != 1:
        raise ClientError(
            "give exactly one of --sarif, --junit and --signature",
            hint="e.g. --sarif trivy.sarif --name sast",
        )
    kind, path = given[0]
    _readable(path, _NOUNS[kind])
    with api(ctx) as client:
        result = upload_attachment(client, service, version, kind, name, path)
    if output is Output.json:
        print_json(result)
        return
    console.print(_attached_line(result))


def _digest_of(target: str) -> str:
    from conveyor.artifacts.signatures import file_digest, is_digest

    if is_digest(target):
        return target
    if "@sha256:" in target:
        return image_digest(target)
    path = Path(target)
    if path.is_file():
        return file_digest(path)
    raise ClientError(
        f"'{target}' is neither a digest (sha256:<64 hex>), an image pinned by digest, nor a file",
        hint="pass the bundle you register, or the digest `conveyor artifact show SERVICE VERSION` prints",
    )


@app.command("sign")
def sign_artifact(
    target: str = typer.Argument(
        ..., metavar="DIGEST_OR_BUNDLE", help="sha256:… digest, registry/app@sha256:… image, or bundle file"
    ),
    key: Path = typer.Option(..., "--key", help="the Ed25519 private key (PEM) `artifact keygen` wrote"),
) -> None:
    """Print the base64 Ed25519 signature of an artifact's digest, for `artifact attach --signature`."""
    from conveyor.artifacts.signatures import load_private_key, sign

    digest = _digest_of(target)
    try:
        pem = key.read_bytes()
    except OSError as exc:
        raise ClientError(f"cannot read the key file {key}: {exc.strerror}", hint="pass --key PATH") from None
    try:
        private = load_private_key(pem)
    except ConveyorError as exc:
        raise ClientError(f"{key}: {exc.detail}", hint=exc.hint) from None
    console.print(sign(digest, private), markup=False)
    err_console.print(f"signed {digest}", markup=False)


@app.command("keygen")
def keygen(
    out: Path = typer.Option(..., "--out", help="where to write the private key (created with mode 0600)"),
    name: str = typer.Option("ci", "--name", help="the key's name under signing.trusted_keys"),
    output: Output = OutputOption,
) -> None:
    """Make an Ed25519 key pair: the private key for CI to sign with, the public key for conveyor.yaml."""
    from conveyor.artifacts.signatures import generate_key
    from conveyor.spec.fields import NAME_RULE, is_valid_name

    if not is_valid_name(name):
        raise ClientError(f"'{name}' is not a valid key name", hint=NAME_RULE)
    pem, public = generate_key()
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ClientError(
            f"{out} already exists", hint="choose another --out; keygen never overwrites a key"
        ) from None
    except OSError as exc:
        raise ClientError(f"cannot create {out}: {exc.strerror}", hint="check the directory exists") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    if output is Output.json:
        print_json({"name": name, "public_key": public, "private_key_file": str(out)})
        return
    console.print(
        f"wrote the private key to {out} (mode 0600): keep it secret, e.g. as a CI secret", markup=False
    )
    console.print(
        f"public key: {public}\n\nadd it to conveyor.yaml and run `conveyor apply`:\n", markup=False
    )
    console.print(f"signing:\n  trusted_keys:\n    {name}: {public}", markup=False)

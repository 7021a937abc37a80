"""`artifact register|list|show`."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from conveyor.cli.common import api
from conveyor.cli.output import Output, OutputOption, console, print_json, print_table, short_time
from conveyor.errors import ClientError

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
    output: Output = OutputOption,
) -> None:
    """Register a build once: its digest is recorded with where it came from, and never changes."""
    if (bundle is None) == (image is None):
        raise ClientError("give exactly one of --bundle and --image", hint="e.g. --bundle dist/app.tar.gz")
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
    if output is Output.json:
        print_json(result)
        return
    verb = "registered" if result["created"] else "already registered (same build)"
    size = f" ({result['size']} bytes)" if result["kind"] == "bundle" else f" ({result['image']})"
    console.print(f"{service} {version} {verb}: {result['digest']}{size}")


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
        ["service", "version", "digest", "size", "registered", "by"],
        (
            [
                a["service"],
                a["version"],
                a["digest"][:19] + "…",
                a["size"],
                short_time(a["registered_at"]),
                a["registered_by"],
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

"""`artifact register|list|show`."""

from __future__ import annotations

from pathlib import Path

import typer

from conveyor.cli.common import api
from conveyor.cli.output import Output, OutputOption, console, print_json, print_table, short_time
from conveyor.errors import ClientError

app = typer.Typer(help="Artifacts: each build registered once, immutable.", no_args_is_help=True)


@app.command("register")
def register(
    ctx: typer.Context,
    service: str = typer.Argument(..., help="service name from conveyor.yaml"),
    version: str = typer.Argument(..., help="semantic version, e.g. 2.1.0"),
    bundle: Path = typer.Option(..., "--bundle", help="a .tar.gz of the app"),
    output: Output = OutputOption,
) -> None:
    """Register a build once: its sha256 digest is computed and it can never change."""
    if not bundle.is_file():
        raise ClientError(f"{bundle} is not a file", hint="pass the path of a .tar.gz bundle")
    with api(ctx) as client, bundle.open("rb") as data:
        result = client.post(
            "/api/v1/artifacts",
            params={"service": service, "version": version},
            content=data,
            headers={"content-type": "application/gzip"},
        )
    if output is Output.json:
        print_json(result)
        return
    verb = "registered" if result["created"] else "already registered (same digest)"
    console.print(f"{service} {version} {verb}: {result['digest']} ({result['size']} bytes)")


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
    for key in ("service", "version", "digest", "kind", "size", "registered_at", "registered_by"):
        console.print(f"{key + ':':15} {row[key]}")

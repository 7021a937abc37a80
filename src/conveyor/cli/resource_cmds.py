"""`conveyor resource …`: the database each environment declares, provisioned on a real PostgreSQL server."""

from __future__ import annotations

from typing import Any

import typer

from conveyor.cli.common import api
from conveyor.cli.output import Output, OutputOption, console, print_json, print_table
from conveyor.errors import ClientError

app = typer.Typer(
    help="Backing resources per environment: a PostgreSQL database and logins of its own, made by Conveyor.",
    no_args_is_help=True,
)

EnvArg = typer.Argument(..., help="environment name")


@app.command("list")
def list_resources(ctx: typer.Context, output: Output = OutputOption) -> None:
    """Each environment's declared database and cache, and whether the database is provisioned."""
    with api(ctx) as client:
        data = client.get("/api/v1/resources")
    if output is Output.json:
        print_json(data)
        return
    rows = [
        [r["environment"], r["database"], r["database_name"], "yes" if r["provisioned"] else "no", r["cache"]]
        for r in data["resources"]
    ]
    print_table("Resources", ["environment", "database", "name", "provisioned", "cache"], rows)


def _print(data: dict[str, Any]) -> None:
    live = data.get("live") or {}
    logins = live.get("logins") or {}
    rows = [
        ["server", data["server"]],
        ["database", data["database"] + ("" if live.get("exists", True) else " (missing on the server)")],
        ["owner role", data["owner_role"]],
        [
            "logins",
            ", ".join(f"{k} ({'can log in' if v else 'retired'})" for k, v in logins.items())
            or ", ".join(data["logins"]),
        ],
        [
            "password",
            f"{data['password_secret']} v{data['password_version']} on {data['password_login']}"
            if data["password_version"]
            else f"{data['password_secret']}: no value yet",
        ],
        [
            "provisioned",
            f"{data['provisioned_at'][:19]} by {data['provisioned_by']}" if data["provisioned"] else "no",
        ],
    ]
    if live.get("size_bytes") is not None:
        rows.append(["size", f"{live['size_bytes'] / 1e6:.1f} MB, {live['sessions']} session(s)"])
    if live.get("error"):
        rows.append(["server says", live["error"]])
    print_table(f"Database of {data['environment']}", ["", ""], rows)


@app.command("show")
def show(ctx: typer.Context, env: str = EnvArg, output: Output = OutputOption) -> None:
    """The environment's database: names, logins and what the server reports now."""
    with api(ctx) as client:
        data = client.get(f"/api/v1/environments/{env}/resources/database")
    if output is Output.json:
        print_json(data)
    else:
        _print(data)


@app.command("provision")
def provision(ctx: typer.Context, env: str = EnvArg, output: Output = OutputOption) -> None:
    """Create the database, its owner role and two login roles (idempotent).

    Releases then get PGHOST, PGPORT, PGDATABASE, PGUSER and PGPASSWORD; a rotated password goes on
    the login no running instance uses, and the old login is retired once no instance needs it.
    """
    with api(ctx) as client:
        data = client.post(f"/api/v1/environments/{env}/resources/database/provision")
    if output is Output.json:
        print_json(data)
    else:
        _print(data)


@app.command("reset")
def reset(
    ctx: typer.Context,
    env: str = EnvArg,
    yes: bool = typer.Option(False, "--yes", help="confirm: every row in the database is dropped"),
) -> None:
    """Drop the database and create it empty again (refused for production and dr)."""
    if not yes:
        raise ClientError(
            f"this drops every row of {env}'s database", hint=f"run `conveyor resource reset {env} --yes`"
        )
    with api(ctx) as client:
        data = client.post(f"/api/v1/environments/{env}/resources/database/reset")
    console.print(f"{env}: database {data['database']} dropped and created empty", markup=False)

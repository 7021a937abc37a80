"""`user add|list|disable|set-role` and `whoami`."""

from __future__ import annotations

import typer

from conveyor.cli.common import api
from conveyor.cli.output import Output, OutputOption, console, print_json, print_table, short_time

app = typer.Typer(help="Users and their roles.", no_args_is_help=True)


@app.command("add")
def add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="user name (lowercase)"),
    role: str = typer.Option(
        ..., "--role", help="viewer, developer, qa, release-manager, admin, or a spec role"
    ),
    no_token: bool = typer.Option(False, "--no-token", help="do not issue a first token"),
    output: Output = OutputOption,
) -> None:
    """Add a user; prints their first API token once."""
    with api(ctx) as client:
        created = client.post("/api/v1/users", json={"name": name, "role": role, "issue_token": not no_token})
    if output is Output.json:
        print_json(created)
        return
    console.print(f"added user {name} with role {role}")
    if created["token"]:
        console.print(f"token ({created['token']['id']}), shown only now — hand it to {name}:")
        console.print(created["token"]["token"], markup=False)


@app.command("list")
def list_users(ctx: typer.Context, output: Output = OutputOption) -> None:
    """List users."""
    with api(ctx) as client:
        users = client.get("/api/v1/users")
    if output is Output.json:
        print_json(users)
        return
    print_table(
        "Users",
        ["name", "role", "created", "by", "disabled"],
        (
            [u["name"], u["role"], short_time(u["created_at"]), u["created_by"], short_time(u["disabled_at"])]
            for u in users
        ),
    )


@app.command("disable")
def disable(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Disable a user and revoke all their tokens."""
    with api(ctx) as client:
        client.post(f"/api/v1/users/{name}/disable")
    console.print(f"disabled user {name}; their tokens are revoked")


@app.command("set-role")
def set_role(ctx: typer.Context, name: str = typer.Argument(...), role: str = typer.Argument(...)) -> None:
    """Change a user's role."""
    with api(ctx) as client:
        client.patch(f"/api/v1/users/{name}", json={"role": role})
    console.print(f"user {name} now has role {role}")


def whoami(ctx: typer.Context, output: Output = OutputOption) -> None:
    """Show the user and role behind your token."""
    with api(ctx) as client:
        me = client.get("/api/v1/whoami")
    if output is Output.json:
        print_json(me)
    else:
        console.print(f"{me['user']} (role {me['role']}, token {me['token_id']})")

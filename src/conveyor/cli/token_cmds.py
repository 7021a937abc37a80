"""`token create|list|revoke`."""

from __future__ import annotations

import typer

from conveyor.cli.common import api
from conveyor.cli.output import Output, OutputOption, console, print_json, print_table, short_time

app = typer.Typer(help="API tokens (stored hashed, shown once).", no_args_is_help=True)


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Option("cli", "--name", help="what the token is for, e.g. ci-staging"),
    user: str = typer.Option(None, "--user", help="issue for another user (needs tokens:manage)"),
    expires_in_days: int = typer.Option(None, "--expires-in-days", min=1, max=3650),
    output: Output = OutputOption,
) -> None:
    """Create a token; its value is printed once and never again."""
    body = {"name": name, "user": user, "expires_in_days": expires_in_days}
    with api(ctx) as client:
        issued = client.post("/api/v1/tokens", json=body)
    if output is Output.json:
        print_json(issued)
        return
    expiry = f", expires {issued['expires_at']}" if issued["expires_at"] else ""
    console.print(f"token {issued['id']} for {issued['user']} ({issued['name']}{expiry}), shown only now:")
    console.print(issued["token"], markup=False)


@app.command("list")
def list_tokens(
    ctx: typer.Context,
    user: str = typer.Option(None, "--user", help="another user's tokens (needs tokens:manage)"),
    all_users: bool = typer.Option(False, "--all", help="every user's tokens (needs tokens:manage)"),
    output: Output = OutputOption,
) -> None:
    """List tokens (ids and prefixes, never values)."""
    params: dict[str, object] = {"all": all_users}
    if user:
        params["user"] = user
    with api(ctx) as client:
        tokens = client.get("/api/v1/tokens", params=params)
    if output is Output.json:
        print_json(tokens)
        return
    print_table(
        "Tokens",
        ["id", "user", "name", "prefix", "created", "expires", "last used", "revoked"],
        (
            [
                t["id"],
                t["user"],
                t["name"],
                t["prefix"] + "…",
                short_time(t["created_at"]),
                short_time(t["expires_at"]),
                short_time(t["last_used_at"]),
                short_time(t["revoked_at"]),
            ]
            for t in tokens
        ),
    )


@app.command("revoke")
def revoke(
    ctx: typer.Context, token_id: str = typer.Argument(..., help="token id, e.g. tok_1a2b3c4d5e6f")
) -> None:
    """Revoke a token; requests with it fail from now on."""
    with api(ctx) as client:
        client.delete(f"/api/v1/tokens/{token_id}")
    console.print(f"revoked {token_id}")

"""`conveyor config show|set|unset|diff`: an environment's configuration and where each value comes from."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from conveyor.cli.common import api
from conveyor.cli.output import Output, OutputOption, console, print_json, print_table
from conveyor.credentials import write_private
from conveyor.errors import ClientError

app = typer.Typer(
    help="Configuration per environment: resolved values with their sources, overrides, parity diffs.",
    no_args_is_help=True,
)

EnvArg = typer.Argument(..., help="environment name")


def _print_problems(data: dict[str, Any]) -> None:
    for problem in data["problems"]:
        console.print(f"problem: {problem['message']}\n  fix: {problem['fix']}", markup=False)


@app.command("show")
def show(
    ctx: typer.Context,
    env: str = EnvArg,
    reveal_sources: bool = typer.Option(
        False, "--reveal-sources", help="also list the values each one shadows"
    ),
    service: str = typer.Option(
        None, "--service", help="the service whose schema applies (default: the only one)"
    ),
    output: Output = OutputOption,
) -> None:
    """Each key the next release runs with, its value and the layer it came from."""
    with api(ctx) as client:
        data = client.get(
            f"/api/v1/environments/{env}/config", params={"service": service} if service else {}
        )
    if output is Output.json:
        print_json(data)
        return
    columns = ["key", "value", "from"] + (["shadows"] if reveal_sources else [])
    rows = []
    for s in data["settings"]:
        row = [s["key"], s["value"], s["origin"] if reveal_sources else s["layer"]]
        if reveal_sources:
            row.append("; ".join(f"{x['value']} ({x['layer']})" for x in s["shadowed"]) or None)
        rows.append(row)
    print_table(f"Configuration of {env} (the next release)", columns, rows)
    _print_problems(data)


def _assignments(pairs: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ClientError(
                f"'{pair}' is not KEY=VALUE", hint="for example: conveyor config set staging LOG_LEVEL=debug"
            )
        values[key] = value
    return values


@app.command("set")
def set_values(
    ctx: typer.Context,
    env: str = EnvArg,
    pairs: list[str] = typer.Argument(..., help="KEY=VALUE, one or more"),
    reason: str = typer.Option("", "--reason", "-m", help="why (kept in the audit log)"),
    output: Output = OutputOption,
) -> None:
    """Override keys for the environment's next release. What runs changes when a release is promoted."""
    with api(ctx) as client:
        data = client.request(
            "PUT",
            f"/api/v1/environments/{env}/config",
            json={"values": _assignments(pairs), "reason": reason},
        )
    if output is Output.json:
        print_json(data)
        return
    console.print(f"{env}: {', '.join(_assignments(pairs))} set for the next release", markup=False)
    console.print(
        f"what runs is unchanged: promote the running version again to release it "
        f"(`conveyor promote SERVICE VERSION --to {env}`), through the same gates and approvals",
        markup=False,
    )
    _print_problems(data)


@app.command("unset")
def unset(
    ctx: typer.Context,
    env: str = EnvArg,
    key: str = typer.Argument(..., help="the overridden key"),
    reason: str = typer.Option("", "--reason", "-m", help="why (kept in the audit log)"),
) -> None:
    """Remove an override; the next release takes the value from the layers below."""
    with api(ctx) as client:
        client.delete(f"/api/v1/environments/{env}/config/{key}", params={"reason": reason})
    console.print(f"{env}: override of {key} removed for the next release", markup=False)


@app.command("diff")
def diff(
    ctx: typer.Context,
    env: str = EnvArg,
    other: str = typer.Argument(None, help="another environment to compare with"),
    release: int = typer.Option(
        None, "--release", help="compare with this earlier release (see `conveyor history`)"
    ),
    output: Output = OutputOption,
) -> None:
    """What differs between two environments, or what changed since a release, key by key."""
    if (other is None) == (release is None):
        raise ClientError(
            "compare with another environment or with --release N, not both or neither",
            hint=f"conveyor config diff staging production, or conveyor config diff {env} --release 12",
        )
    with api(ctx) as client:
        if other is not None:
            data = client.get("/api/v1/config/diff", params={"a": env, "b": other})
        else:
            data = client.get(f"/api/v1/environments/{env}/config/since/{release}")
    if output is Output.json:
        print_json(data)
        return
    if other is not None:
        rows = [[d["key"], _side(d["a"]), _side(d["b"])] for d in data["differences"]]
        if not rows:
            console.print(f"{env} and {other} resolve to the same configuration")
            return
        print_table(f"Configuration: {env} vs {other}", ["key", env, other], rows)
        return
    changes = [[c["key"], c["before"], c["after"]] for c in data["changes"]]
    if not changes:
        console.print(f"{env}'s next release has the same configuration as release {release}")
        return
    print_table(
        f"Configuration of {env}: release {release} ({data['version']}) → next release",
        ["key", "then", "next"],
        changes,
    )


@app.command("export")
def export_values(
    ctx: typer.Context,
    env: str = EnvArg,
    fmt: str = typer.Option("dotenv", "--format", "-f", help="dotenv, json or tfvars (Terraform variables)"),
    file: Path = typer.Option(None, "--file", help="write here instead of standard output"),
    include_secrets: bool = typer.Option(
        False,
        "--include-secrets",
        help="add the secrets' values (needs the environment's secrets access; audited)",
    ),
) -> None:
    """The next release's configuration for other tools: a .env file, JSON, or Terraform variables.

    Secrets are left out unless --include-secrets is given; the file is then written 0600.
    """
    path = f"/api/v1/environments/{env}/config/export" + ("/with-secrets" if include_secrets else "")
    with api(ctx) as client:
        text = client.get_text(path, params={"format": fmt})
    if file is None:
        sys.stdout.write(text)
        return
    if include_secrets:
        write_private(file, text)
    else:
        file.write_text(text)
    console.print(f"{env}'s configuration written to {file} ({fmt})", markup=False)


def _side(side: dict[str, Any] | None) -> str:
    if side is None:
        return "(not set)"
    return f"{side['value']} ({side['layer']})"


def register(root: typer.Typer) -> None:
    """Add `conveyor config …` to the root app."""
    root.add_typer(app, name="config")

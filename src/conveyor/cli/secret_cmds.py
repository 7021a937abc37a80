"""`conveyor secret …`: values in (stdin or a file, never an argument), names, versions and dates out."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Any

import typer

from conveyor.cli.common import api
from conveyor.cli.output import Output, OutputOption, console, print_json, print_table
from conveyor.errors import ClientError

app = typer.Typer(
    help="Secrets per environment: encrypted at rest, versioned, rotated, delivered only to app instances.",
    no_args_is_help=True,
)

EnvArg = typer.Argument(..., help="environment name")
NameArg = typer.Argument(..., help="secret name, as declared under the environment's secrets")
ReasonOption = typer.Option("", "--reason", "-m", help="why (kept in the audit log)")
FileOption = typer.Option(None, "--file", "-f", help="read the value from this file", dir_okay=False)


def _read_value(name: str, path: Path | None) -> str:
    """The value from a file, from piped stdin, or typed at a hidden prompt."""
    if path is not None:
        try:
            return path.read_text()
        except OSError as exc:
            raise ClientError(f"cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ClientError(
                f"{path} is not UTF-8 text", hint="secrets are text; base64-encode binary keys"
            ) from None
    if sys.stdin.isatty():
        value = getpass.getpass(f"value of {name} (not shown): ")
        if value != getpass.getpass("again: "):
            raise ClientError("the two values differ; nothing was stored")
        return value
    value = sys.stdin.read()
    # one trailing newline is what `echo` and most editors add; a value keeps any other whitespace
    return value[:-1] if value.endswith("\n") else value


def _stored(data: dict[str, Any], verb: str) -> None:
    console.print(
        f"{data['environment']}: {data['name']} {verb} (version {data['version']}, {data['kind']})",
        markup=False,
    )
    console.print(
        f"the next release of {data['environment']} runs with it; what runs now is unchanged "
        f"(promote the running version again to roll it out)",
        markup=False,
    )


@app.command("set")
def set_secret(
    ctx: typer.Context,
    env: str = EnvArg,
    name: str = NameArg,
    file: Path = FileOption,
    generate: bool = typer.Option(False, "--generate", help="have Conveyor generate a random value"),
    reason: str = ReasonOption,
    output: Output = OutputOption,
) -> None:
    """Store a new version of a secret. The value comes from stdin or --file, never the command line."""
    if generate and file is not None:
        raise ClientError("--generate and --file exclude each other")
    body: dict[str, Any] = {"reason": reason}
    if generate:
        body["generate"] = True
    else:
        body["value"] = _read_value(name, file)
    with api(ctx) as client:
        data = client.request("PUT", f"/api/v1/environments/{env}/secrets/{name}", json=body)
    if output is Output.json:
        print_json(data)
    else:
        _stored(data, "generated" if generate else "stored")


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    env: str = EnvArg,
    name: str = NameArg,
    file: Path = FileOption,
    stdin: bool = typer.Option(False, "--stdin", help="read the new value from stdin"),
    reason: str = ReasonOption,
    output: Output = OutputOption,
) -> None:
    """Replace a secret with a new version: generated, or from --file / --stdin (kinds Conveyor cannot make).

    The old version stays readable until every instance runs with the new one.
    """
    body: dict[str, Any] = {"reason": reason}
    if file is not None or stdin:
        body["value"] = _read_value(name, file)
    with api(ctx) as client:
        data = client.post(f"/api/v1/environments/{env}/secrets/{name}/rotate", json=body)
    if output is Output.json:
        print_json(data)
    else:
        _stored(data, "rotated")


@app.command("list")
def list_secrets(ctx: typer.Context, env: str = EnvArg, output: Output = OutputOption) -> None:
    """Names, versions, ages and next rotation (values are never shown)."""
    with api(ctx) as client:
        data = client.get(f"/api/v1/environments/{env}/secrets")
    if output is Output.json:
        print_json(data)
        return
    rows = [
        [
            s["name"],
            s["kind"],
            s["version"],
            s["set_at"][:10] if s["set_at"] else None,
            s["age_days"],
            s["rotation"],
            (s["next_rotation"] or "")[:10] or None,
            s["from_environment"],
        ]
        for s in data["secrets"]
    ]
    columns = ["name", "kind", "version", "set", "age (days)", "rotation", "next rotation", "from"]
    print_table(f"Secrets of {env}", columns, rows)


@app.command("history")
def history(
    ctx: typer.Context, env: str = EnvArg, name: str = NameArg, output: Output = OutputOption
) -> None:
    """Every version of a secret: who set it, when and why."""
    with api(ctx) as client:
        data = client.get(f"/api/v1/environments/{env}/secrets/{name}/history")
    if output is Output.json:
        print_json(data)
        return
    rows = [
        [
            v["version"],
            v["set_at"][:19],
            v["set_by"],
            v["reason"] or None,
            (v["deleted_at"] or "")[:19] or None,
        ]
        for v in data["versions"]
    ]
    print_table(f"{name} in {env}", ["version", "set at", "by", "reason", "deleted"], rows)


@app.command("delete")
def delete(
    ctx: typer.Context,
    env: str = EnvArg,
    name: str = NameArg,
    force: bool = typer.Option(False, "--force", help="delete even though the running release uses it"),
    reason: str = ReasonOption,
) -> None:
    """Destroy every stored version of a secret; its history stays."""
    with api(ctx) as client:
        data = client.delete(
            f"/api/v1/environments/{env}/secrets/{name}",
            params={"reason": reason, "force": str(force).lower()},
        )
    console.print(f"{env}: {name} deleted ({data['destroyed_versions']} version(s) destroyed)", markup=False)


@app.command("due")
def due(
    ctx: typer.Context,
    env: str = typer.Option(None, "--env", help="only this environment"),
    output: Output = OutputOption,
) -> None:
    """Secrets that are missing, overdue, due, or due within a week."""
    with api(ctx) as client:
        data = client.get("/api/v1/secrets/due", params={"environment": env} if env else {})
    if output is Output.json:
        print_json(data)
        return
    if not data["secrets"]:
        console.print("nothing is due: every declared secret has a value within its rotation period")
        return
    rows = [
        [
            s["environment"],
            s["name"],
            s["kind"],
            s["rotation"],
            (s["next_rotation"] or "")[:10] or None,
            s.get("rotation_policy"),
        ]
        for s in data["secrets"]
    ]
    print_table("Secrets due", ["environment", "name", "kind", "status", "rotate by", "policy"], rows)


@app.command("rewrap")
def rewrap(ctx: typer.Context, output: Output = OutputOption) -> None:
    """Re-wrap every data key under the server's current master key, after a master-key change."""
    with api(ctx) as client:
        data = client.post("/api/v1/secrets/rewrap")
    if output is Output.json:
        print_json(data)
        return
    console.print(
        f"{data['rewrapped']} data key(s) re-wrapped under master key {data['master_key_id']}; "
        "older master keys can now be removed from the keyring",
        markup=False,
    )


@app.command("keygen")
def keygen() -> None:
    """Print a new random master key (for CONVEYOR_MASTER_KEY or .conveyor/master.key)."""
    from conveyor.secrets.crypto import MasterKey

    print(MasterKey.generate().encoded())

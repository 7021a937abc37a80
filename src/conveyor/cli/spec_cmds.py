"""`init`, `validate`, `schema`, `plan`, `apply` and `spec history|diff|show`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from conveyor.cli.common import api
from conveyor.cli.output import Output, OutputOption, console, print_json, print_table, short_time
from conveyor.errors import ClientError, SpecError, SpecProblem

spec_app = typer.Typer(help="Applied spec revisions: history, diff, show.", no_args_is_help=True)

FileArg = typer.Argument(Path("conveyor.yaml"), help="the conveyor.yaml to read")


def _read_valid(path: Path) -> str:
    """The file's text, validated locally first: FILE:LINE:COL errors without a round trip."""
    from conveyor.spec import load_spec_text

    source = _read(path)
    load_spec_text(source, str(path))
    return source


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(
            [SpecProblem(str(path), None, None, "", "file not found", "run `conveyor init` to create one")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([SpecProblem(str(path), None, None, "", f"cannot read the file: {exc}")]) from None


def init(
    extra: str = typer.Option(
        "",
        "--with",
        help="optional environments to add, comma-separated: qa, dr, preview (a pull-request template)",
    ),
    project: str = typer.Option(None, "--project", help="project name (default: this directory's name)"),
    file: Path = typer.Option(Path("conveyor.yaml"), "--file", "-f", help="where to write"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing file"),
) -> None:
    """Write a commented conveyor.yaml with development, staging and production."""
    from conveyor.spec import load_spec_file, render_init

    if file.exists() and not force:
        raise ClientError(f"{file} already exists", hint="pass --force to overwrite it")
    wanted = {part.strip() for part in extra.split(",") if part.strip()}
    name = project or Path.cwd().name.lower().replace(" ", "-") or "my-app"
    try:
        text = render_init(name, frozenset(wanted))
    except ValueError as exc:
        raise ClientError(str(exc), hint="--with takes qa, dr and/or preview, e.g. --with qa,dr") from None
    file.write_text(text, encoding="utf-8")
    spec = load_spec_file(file)
    console.print(f"wrote {file}: environments {', '.join(spec.environments)}")
    console.print("next: `conveyor validate`, then `conveyor up` and `conveyor apply`")


def validate(file: Path = FileArg, output: Output = OutputOption) -> None:
    """Check conveyor.yaml against the schema; mistakes print as FILE:LINE:COL with the fix."""
    from conveyor.spec import load_spec_file

    try:
        spec = load_spec_file(file)
    except SpecError as exc:
        if output is Output.json:
            print_json({"valid": False, "errors": [p.to_dict() for p in exc.problems]})
            raise typer.Exit(2) from None
        raise
    envs = list(spec.environments)
    if output is Output.json:
        print_json({"valid": True, "environments": envs, "services": list(spec.services)})
        return
    console.print(
        f"{file} is valid: {len(envs)} environment(s) ({', '.join(envs)}), {len(spec.services)} service(s)"
    )


def schema(output_file: Path = typer.Option(None, "--output-file", help="write to a file instead")) -> None:
    """Print the JSON Schema of conveyor.yaml, for editor completion."""
    from conveyor.spec import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if output_file:
        output_file.write_text(text)
        console.print(f"wrote {output_file}")
    else:
        sys.stdout.write(text)


def _fmt(value: Any, limit: int = 100) -> str:
    """A value as JSON; a long mapping or list is summarised (its keys or its length)."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    if len(text) <= limit:
        return text
    if isinstance(value, dict):
        return "{" + ", ".join(str(k) for k in value) + "}"
    if isinstance(value, list):
        return f"[{len(value)} items]"
    return text[: limit - 1] + "…"


def _print_plan(plan: dict[str, Any], heading: str) -> None:
    envs = plan["environments"]
    if plan["empty"]:
        console.print(f"{heading}: no changes.")
        return
    console.print(f"{heading}:")
    for name in envs["added"]:
        console.print(f"  [green]+ environment {name}[/green]")
    for name, changes in envs["changed"].items():
        console.print(f"  [yellow]~ environment {name}[/yellow]")
        for change in changes:
            _print_change(change, indent="      ")
    for name in envs["removed"]:
        console.print(f"  [red]- environment {name}[/red]")
    for change in plan["other"]:
        _print_change(change, indent="  ")
    summary = (
        f"Plan: {len(envs['added'])} environment(s) to add, {len(envs['changed'])} to change, "
        f"{len(envs['removed'])} to remove"
    )
    console.print(summary + (f"; {len(plan['other'])} other setting(s) change." if plan["other"] else "."))


def _print_change(change: dict[str, Any], indent: str) -> None:
    path = ".".join(str(p) for p in change["path"])
    if change["op"] == "add":
        console.print(f"{indent}[green]+ {path}: {_fmt(change['new'])}[/green]", markup=True, highlight=False)
    elif change["op"] == "remove":
        console.print(f"{indent}[red]- {path}: {_fmt(change['old'])}[/red]")
    else:
        console.print(f"{indent}[yellow]~ {path}: {_fmt(change['old'])} → {_fmt(change['new'])}[/yellow]")


def plan(ctx: typer.Context, file: Path = FileArg, output: Output = OutputOption) -> None:
    """Show what `apply` would change in the server's state, field by field."""
    source = _read_valid(file)
    with api(ctx) as client:
        result = client.post("/api/v1/spec/plan", json={"source": source, "filename": str(file)})
    if output is Output.json:
        print_json(result)
        return
    _print_plan(result, f"Changes against revision {result['base_revision']}")


def apply(
    ctx: typer.Context,
    file: Path = FileArg,
    yes: bool = typer.Option(False, "--yes", "-y", help="apply without asking"),
    message: str = typer.Option(None, "--message", "-m", help="why: kept with the revision"),
    output: Output = OutputOption,
) -> None:
    """Apply conveyor.yaml as one new spec revision (shows the plan and asks first)."""
    source = _read_valid(file)
    with api(ctx) as client:
        planned = client.post("/api/v1/spec/plan", json={"source": source, "filename": str(file)})
        if planned["empty"]:
            if output is Output.json:
                print_json({"applied": False, "revision": planned["base_revision"], "plan": planned})
            else:
                console.print(f"No changes: revision {planned['base_revision']} already matches {file}.")
            return
        if output is Output.table:
            _print_plan(planned, f"Changes against revision {planned['base_revision']}")
        if not yes:
            if not sys.stdin.isatty():
                raise ClientError("refusing to apply without confirmation", hint="pass --yes in scripts")
            typer.confirm("Apply these changes?", abort=True)
        result = client.post(
            "/api/v1/spec/apply",
            json={
                "source": source,
                "filename": str(file),
                "expected_revision": planned["base_revision"],
                "message": message,
            },
        )
    if output is Output.json:
        print_json(result)
    else:
        console.print(f"Applied: revision {result['revision']}.")


@spec_app.command("history")
def history(
    ctx: typer.Context, limit: int = typer.Option(50, "--limit", min=1), output: Output = OutputOption
) -> None:
    """Applied revisions, newest first."""
    with api(ctx) as client:
        rows = client.get("/api/v1/spec/revisions", params={"limit": limit})
    if output is Output.json:
        print_json(rows)
        return
    print_table(
        "Spec revisions",
        ["rev", "applied at", "by", "file", "sha256", "message"],
        (
            [
                r["number"],
                short_time(r["created_at"]),
                r["created_by"],
                r["filename"],
                r["document_sha256"][:12],
                r["message"],
            ]
            for r in rows
        ),
    )


@spec_app.command("diff")
def diff(
    ctx: typer.Context,
    old: int = typer.Argument(..., help="older revision (0: empty)"),
    new: int = typer.Argument(..., help="newer revision"),
    output: Output = OutputOption,
) -> None:
    """Field-by-field differences between two applied revisions."""
    with api(ctx) as client:
        result = client.get("/api/v1/spec/diff", params={"from": old, "to": new})
    if output is Output.json:
        print_json(result)
        return
    _print_plan(result, f"Revision {old} → {new}")


@spec_app.command("show")
def show(
    ctx: typer.Context,
    revision: int = typer.Argument(None, help="revision (default: newest)"),
    output: Output = OutputOption,
) -> None:
    """The conveyor.yaml of a revision, as it was applied."""
    with api(ctx) as client:
        row = client.get(f"/api/v1/spec/revisions/{revision}" if revision else "/api/v1/spec")
    if output is Output.json:
        print_json(row)
    else:
        sys.stdout.write(row["source"] if row["source"].endswith("\n") else row["source"] + "\n")


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.command("init")(init)
    app.command("validate")(validate)
    app.command("schema")(schema)
    app.command("plan")(plan)
    app.command("apply")(apply)
    app.add_typer(spec_app, name="spec")

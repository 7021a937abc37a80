"""`conveyor migrations …`: what an environment's database has applied, and what a release would run."""

from __future__ import annotations

from typing import Any

import typer

from conveyor.cli.common import api
from conveyor.cli.output import Output, OutputOption, console, print_json, print_table

app = typer.Typer(
    help="Schema migrations shipped in artifacts: applied history, and the check before a release runs them.",
    no_args_is_help=True,
)

EnvArg = typer.Argument(..., help="environment name")


@app.command("status")
def status(ctx: typer.Context, env: str = EnvArg, output: Output = OutputOption) -> None:
    """The migrations the environment's database records as applied (checksum, release, duration)."""
    with api(ctx) as client:
        data = client.get(f"/api/v1/environments/{env}/migrations")
    if output is Output.json:
        print_json(data)
        return
    if data["database"] is None:
        console.print(f"{env} has no provisioned database", markup=False)
        return
    rows = [
        [a["id"], a["release"], a["applied_at"][:19], f"{a['duration_ms']:.1f} ms", a["checksum"][:19] + "…"]
        for a in data["applied"]
    ]
    print_table(
        f"Migrations applied in {data['database']}", ["id", "release", "applied", "took", "checksum"], rows
    )


@app.command("plan")
def plan(
    ctx: typer.Context,
    env: str = EnvArg,
    service: str = typer.Argument(..., help="service name"),
    version: str = typer.Argument(..., help="artifact version"),
    output: Output = OutputOption,
) -> None:
    """What promoting SERVICE VERSION to ENV would run, and whether it is safe.

    Runs squawk on the pending files and Conveyor's expand/contract check against every version
    running in any environment. Exits 1 when something would refuse the promotion.
    """
    with api(ctx) as client:
        data = client.get(
            f"/api/v1/environments/{env}/migrations/plan", params={"service": service, "version": version}
        )
    if output is Output.json:
        print_json(data)
    else:
        _print(data)
    if not data["ok"]:
        raise typer.Exit(1)


def _print(data: dict[str, Any]) -> None:
    head = f"{data['service']} {data['version']} → {data['environment']}"
    if not data["migrations"]:
        console.print(f"{head}: the artifact ships no migrations", markup=False)
        return
    pending = ", ".join(data["pending"]) or "nothing (all applied)"
    console.print(f"{head} ({data['database']}): pending {pending}", markup=False)
    for line in data["changed"] + data["behind"]:
        console.print(f"  refused: {line}", markup=False)
    for v in data["violations"]:
        console.print(
            f"  refused: {v['migration']}, line {v['line']}: {v['why']} [{v['rule']}]", markup=False
        )
        console.print(f"    {v['statement'].splitlines()[0][:150]}", markup=False)
        for step in v["safe_sequence"]:
            console.print(f"    safe: {step}", markup=False)
    for f in data["lint"]:
        verdict = "refused" if f["refuses"] else "advice"
        tail = f" ({f['help']})" if f["help"] else ""
        console.print(
            f"  {verdict}: {f['file']}, line {f['line']}: {f['message']}{tail} [squawk {f['rule']}]",
            markup=False,
        )
    console.print(
        "  ok: safe to promote" if data["ok"] else "  not safe: the promotion would be refused", markup=False
    )

"""`audit list|verify|export`."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from conveyor.cli.common import api, parse_since
from conveyor.cli.output import (
    Output,
    OutputOption,
    console,
    err_console,
    print_json,
    print_table,
    short_time,
)

app = typer.Typer(help="The hash-chained audit trail.", no_args_is_help=True)


@app.command("list")
def list_events(
    ctx: typer.Context,
    env: str = typer.Option(None, "--env", help="environment"),
    actor: str = typer.Option(None, "--actor", help="user name"),
    action: str = typer.Option(None, "--action", help="action, or a prefix like spec.*"),
    since: str = typer.Option(None, "--since", help="30m, 2h, 7d or an ISO 8601 time"),
    until: str = typer.Option(None, "--until", help="30m, 2h, 7d or an ISO 8601 time"),
    limit: int = typer.Option(100, "--limit", min=1, max=10_000),
    output: Output = OutputOption,
) -> None:
    """Audit events, newest first."""
    params = {
        k: v
        for k, v in {
            "environment": env,
            "actor": actor,
            "action": action,
            "since": parse_since(since),
            "until": parse_since(until),
            "limit": limit,
        }.items()
        if v is not None
    }
    with api(ctx) as client:
        events = client.get("/api/v1/audit/events", params=params)
    if output is Output.json:
        print_json(events)
        return
    print_table(
        "Audit events",
        ["seq", "at", "actor", "action", "env", "target", "outcome", "from"],
        (
            [
                e["seq"],
                short_time(e["at"]),
                e["actor"],
                e["action"],
                e["environment"],
                e["target"],
                e["outcome"],
                e["source_ip"],
            ]
            for e in events
        ),
    )


@app.command("verify")
def verify(ctx: typer.Context, output: Output = OutputOption) -> None:
    """Recompute the hash chain; exits 1 and names the first bad event if anything was tampered with."""
    with api(ctx) as client:
        result = client.get("/api/v1/audit/verify")
    if output is Output.json:
        print_json(result)
    elif result["ok"]:
        console.print(f"audit chain intact: {result['checked']} events, head {result['head']['hash'][:16]}…")
    else:
        bad = result["first_bad"]
        err_console.print(f"audit chain BROKEN at event {bad['seq']}: {bad['reason']}", markup=False)
        err_console.print(f"{result['checked']} events before it verified")
    if not result["ok"]:
        raise typer.Exit(1)


@app.command("export")
def export(
    ctx: typer.Context,
    file: Path = typer.Option(None, "--file", "-f", help="write JSON Lines here (default: stdout)"),
) -> None:
    """Export every event in chain order as JSON Lines."""
    count = 0
    with api(ctx) as client:
        out = file.open("w", encoding="utf-8") if file else sys.stdout
        try:
            for line in client.stream_lines("/api/v1/audit/export"):
                if line:
                    out.write(line + "\n")
                    count += 1
        finally:
            if file:
                out.close()
    if file:
        console.print(f"wrote {count} events to {file}")

"""`promote`, `approve`, `reject`, `explain` and `promotion list|show|wait|cancel|rerun|override`."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.markup import escape

from conveyor.cli.client import Client
from conveyor.cli.common import api
from conveyor.cli.output import Output, OutputOption, console, print_json, print_table, short_time
from conveyor.errors import ClientError

app = typer.Typer(
    help="Promotions: list, show, wait for, cancel, re-run gates, override.", no_args_is_help=True
)

TERMINAL = ("succeeded", "rejected", "cancelled", "failed", "rolled_back")
GOOD_ENDS = ("succeeded",)


def _print_lines(lines: list[str]) -> None:
    for line in lines:
        console.print(escape(line))


def _follow(
    client: Client, promotion_id: int, until: tuple[str, ...], timeout: float, quiet: bool
) -> dict[str, Any]:
    """Print each state change until the promotion reaches one of `until` (or ends); returns it."""
    deadline = time.monotonic() + timeout
    seen = 0
    while True:
        data: dict[str, Any] = client.get(f"/api/v1/promotions/{promotion_id}")
        for t in data["transitions"][seen:]:
            if not quiet and t["from"] is not None:
                console.print(f"  {short_time(t['at'])}  {t['from']} → {t['to']}: {escape(t['reason'])}")
        seen = len(data["transitions"])
        if data["state"] in until or data["state"] in TERMINAL:
            return data
        if time.monotonic() > deadline:
            raise ClientError(
                f"promotion {promotion_id} is still {data['state']} after {timeout:.0f}s: {data['reason']}",
                hint=f"see `conveyor explain {promotion_id}`",
            )
        time.sleep(0.5)


def _finish(data: dict[str, Any], output: Output, until: tuple[str, ...]) -> None:
    if output is Output.json:
        print_json(data)
    elif data["state"] not in GOOD_ENDS:
        _print_lines(data["explain"]["lines"])
    if data["state"] in TERMINAL and data["state"] not in GOOD_ENDS and data["state"] not in until:
        raise typer.Exit(1)


STATES = (
    "requested",
    "gating",
    "awaiting_approval",
    "queued",
    "deploying",
    "verifying",
    "rolling_out",
    *TERMINAL,
)


def _states(value: str) -> tuple[str, ...]:
    states = tuple(s.strip() for s in value.split(",") if s.strip())
    unknown = [s for s in states if s not in STATES]
    if unknown:
        raise ClientError(f"'{unknown[0]}' is not a promotion state", hint=f"states: {', '.join(STATES)}")
    return states


def promote(
    ctx: typer.Context,
    service: str = typer.Argument(..., help="service from conveyor.yaml"),
    version: str = typer.Argument(..., help="a registered version"),
    to: str = typer.Option(..., "--to", help="target environment"),
    wait: float = typer.Option(0.0, "--wait", help="seconds to follow it (0: return at once)"),
    until: str = typer.Option(
        "awaiting_approval", "--until", help="with --wait, also stop at these states (comma-separated)"
    ),
    output: Output = OutputOption,
) -> None:
    """Ask to move VERSION of SERVICE into an environment through its gates, approvals and window."""
    with api(ctx) as client:
        created = client.post(
            f"/api/v1/environments/{to}/promotions", json={"service": service, "version": version}
        )
        if output is Output.table:
            console.print(f"promotion {created['id']}: {service} {version} → {to} ({created['state']})")
        if wait <= 0:
            if output is Output.json:
                print_json(created)
            return
        stops = _states(until)
        data = _follow(client, created["id"], stops, wait, quiet=output is Output.json)
    if output is Output.table:
        console.print(f"promotion {data['id']} is {data['state']}")
    _finish(data, output, stops)


def _review(
    ctx: typer.Context, promotion_id: int, decision: str, body: dict[str, str], output: Output
) -> None:
    with api(ctx) as client:
        data = client.post(f"/api/v1/promotions/{promotion_id}/{decision}", json=body)
        explained = client.get(f"/api/v1/promotions/{promotion_id}/explain")
    if output is Output.json:
        print_json({**data, "explain": explained})
        return
    console.print(f"promotion {promotion_id}: {'approved' if decision == 'approve' else 'rejected'}")
    _print_lines(explained["lines"])


def approve(
    ctx: typer.Context,
    promotion: int = typer.Argument(..., help="promotion id"),
    comment: str = typer.Option("", "--comment", "-m", help="why you approve"),
    output: Output = OutputOption,
) -> None:
    """Approve a promotion's exact release (artifact digest + configuration)."""
    _review(ctx, promotion, "approve", {"comment": comment}, output)


def reject(
    ctx: typer.Context,
    promotion: int = typer.Argument(..., help="promotion id"),
    reason: str = typer.Option(..., "--reason", "-m", help="what is wrong (shown to the requester)"),
    output: Output = OutputOption,
) -> None:
    """Reject a promotion; one rejection ends it."""
    _review(ctx, promotion, "reject", {"reason": reason}, output)


def explain(
    ctx: typer.Context,
    promotion: int = typer.Argument(..., help="promotion id"),
    output: Output = OutputOption,
) -> None:
    """Why a promotion is where it is: gates and evidence, approvals and who may give them, the window."""
    with api(ctx) as client:
        data = client.get(f"/api/v1/promotions/{promotion}/explain")
    if output is Output.json:
        print_json(data)
        return
    _print_lines(data["lines"])


@app.command("list")
def list_promotions(
    ctx: typer.Context,
    env: str = typer.Option(None, "--env", help="only this environment"),
    state: str = typer.Option(None, "--state", help="a state, or `active`"),
    service: str = typer.Option(None, "--service", help="only this service"),
    limit: int = typer.Option(50, "--limit", min=1, max=500),
    output: Output = OutputOption,
) -> None:
    """Promotions, newest first."""
    params = {k: v for k, v in {"environment": env, "status": state, "service": service}.items() if v}
    with api(ctx) as client:
        rows = client.get("/api/v1/promotions", params={**params, "limit": limit})
    if output is Output.json:
        print_json(rows)
        return
    print_table(
        "Promotions",
        ["#", "service", "version", "to", "state", "trigger", "requested by", "at", "why"],
        (
            [
                r["id"],
                r["service"],
                r["version"],
                r["environment"],
                r["state"] + (" (override)" if r["override"] else ""),
                r["trigger"],
                r["requested_by"],
                short_time(r["requested_at"]),
                r["reason"],
            ]
            for r in rows
        ),
    )


@app.command("show")
def show(
    ctx: typer.Context,
    promotion: int = typer.Argument(..., help="promotion id"),
    output: Output = OutputOption,
) -> None:
    """One promotion: explanation, transitions, every gate attempt, reviews."""
    with api(ctx) as client:
        data = client.get(f"/api/v1/promotions/{promotion}")
    if output is Output.json:
        print_json(data)
        return
    _print_lines(data["explain"]["lines"])
    console.print(f"artifact: {data['digest']}  release: {escape(data['release'])}")
    print_table(
        "Transitions",
        ["at", "from", "to", "by", "why"],
        ([short_time(t["at"]), t["from"], t["to"], t["actor"], t["reason"]] for t in data["transitions"]),
    )
    if data["gates"]:
        print_table(
            "Gate runs",
            ["run", "gate", "type", "attempt", "state", "started", "why"],
            (
                [
                    g["id"],
                    g["name"],
                    g["type"],
                    g["attempt"],
                    g["state"],
                    short_time(g["started_at"]),
                    g["reason"],
                ]
                for g in data["gates"]
            ),
        )
    if data["reviews"]:
        print_table(
            "Reviews",
            ["by", "role", "decision", "at", "comment", "counts for this release"],
            (
                [r["user"], r["role"], r["decision"], short_time(r["at"]), r["comment"], r["current_release"]]
                for r in data["reviews"]
            ),
        )


@app.command("wait")
def wait(
    ctx: typer.Context,
    promotion: int = typer.Argument(..., help="promotion id"),
    until: str = typer.Option("", "--until", help="also stop at these states (comma-separated)"),
    timeout: float = typer.Option(600.0, "--timeout", help="seconds"),
    output: Output = OutputOption,
) -> None:
    """Follow a promotion until it ends (or reaches --until); exit 1 unless it succeeded or reached it."""
    stops = _states(until)
    with api(ctx) as client:
        data = _follow(client, promotion, stops, timeout, quiet=output is Output.json)
    if output is Output.table:
        console.print(f"promotion {promotion} is {data['state']}")
    _finish(data, output, stops)


def _act(ctx: typer.Context, promotion: int, action: str, body: dict[str, Any], output: Output) -> None:
    with api(ctx) as client:
        data = client.post(f"/api/v1/promotions/{promotion}/{action}", json=body)
    if output is Output.json:
        print_json(data)
        return
    console.print(f"promotion {promotion}: {data['state']} — {escape(data['reason'])}")


@app.command("cancel")
def cancel(
    ctx: typer.Context,
    promotion: int = typer.Argument(..., help="promotion id"),
    reason: str = typer.Option(..., "--reason", "-m", help="why"),
    output: Output = OutputOption,
) -> None:
    """Cancel a promotion that has not started deploying (its running gates are stopped)."""
    _act(ctx, promotion, "cancel", {"reason": reason}, output)


@app.command("rerun")
def rerun(
    ctx: typer.Context,
    promotion: int = typer.Argument(..., help="promotion id"),
    gate: str = typer.Option(None, "--gate", help="one gate (default: every failed gate)"),
    output: Output = OutputOption,
) -> None:
    """Run failed gates again; a promotion that a gate rejected goes back to gating."""
    _act(ctx, promotion, "rerun", {"gate": gate}, output)


@app.command("override")
def override(
    ctx: typer.Context,
    promotion: int = typer.Argument(..., help="promotion id"),
    reason: str = typer.Option(..., "--reason", "-m", help="why this cannot wait (audited)"),
    output: Output = OutputOption,
) -> None:
    """Let a promotion out during a freeze or outside the change window (admins only; audited)."""
    _act(ctx, promotion, "override", {"reason": reason}, output)


def register(root: typer.Typer) -> None:
    """Attach these commands to the root app."""
    root.command("promote")(promote)
    root.command("approve")(approve)
    root.command("reject")(reject)
    root.command("explain")(explain)
    root.add_typer(app, name="promotion")

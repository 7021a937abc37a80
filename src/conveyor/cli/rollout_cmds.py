"""`conveyor rollout status|watch|pause|resume|promote|abort|simulate ENV`."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import typer
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from conveyor.cli.client import Client
from conveyor.cli.common import api
from conveyor.cli.output import Output, OutputOption, console, print_json
from conveyor.cli.rollout_simulate import simulate_command
from conveyor.errors import ClientError

app = typer.Typer(
    help="Rollouts: watch traffic move step by step; pause, resume, promote or abort; simulate a policy.",
    no_args_is_help=True,
)

MOVING = ("preview", "progressing")
EnvArg = typer.Argument(..., help="environment name")
ReasonOption = typer.Option("", "--reason", "-m", help="why (kept in the audit log)")


def _pct(bp: int) -> str:
    return f"{bp / 100:g}%"


def _seconds_since(stamp: str | None) -> float | None:
    if not stamp:
        return None
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return (datetime.now(UTC) - moment).total_seconds()


def _fetch(client: Client, env: str, live: float = 0, analysis: int = 5) -> dict[str, Any]:
    params: dict[str, Any] = {"analysis": analysis}
    if live:
        params["live"] = live
    data: dict[str, Any] = client.get(f"/api/v1/environments/{env}/rollout", params=params)
    return data


def _summary(r: dict[str, Any]) -> str:
    weights = ", ".join(f"{v} {_pct(bp)}" for v, bp in r["weights"].items())
    move = f"{r['service']} {r['stable_version']} → {r['new_version']} ({r['strategy']})"
    return f"{move}: {r['step_words']}; {weights}"


def _timer(r: dict[str, Any]) -> str:
    if r["phase"] not in MOVING or r["step"] < 0:
        return ""
    elapsed = _seconds_since(r["step_started_at"]) or 0.0
    pause = r["step_pause_s"]
    parts = [f"in step for {elapsed:.0f} s" + (f" of {pause:g} s" if pause else "")]
    due = _seconds_since(r["next_analysis_at"])
    if due is not None:
        parts.append(f"next analysis in {max(0.0, -due):.0f} s")
    if r["paused"]:
        parts.append(f"PAUSED: {r['pause_reason']}")
    return "; ".join(parts)


def _traffic_table(r: dict[str, Any], live: dict[str, Any] | None) -> Table:
    table = Table(header_style="bold", title_justify="left")
    for column in ("version", "role", "weight", "req/s", "error rate", "p99"):
        table.add_column(column)
    for version, role in ((r["stable_version"], "stable"), (r["new_version"], "new")):
        stats = (live or {}).get(version) or {}
        p99 = stats.get("p99_ms")
        table.add_row(
            version,
            role,
            _pct(r["weights"].get(version, 0)),
            f"{stats.get('rps', 0.0):.1f}" if stats else "—",
            f"{stats.get('error_rate', 0.0) * 100:.2f}%" if stats else "—",
            f"{p99:.0f} ms" if p99 is not None else "—",
        )
    return table


def _verdict_line(r: dict[str, Any]) -> str:
    runs = r["analysis_runs"]
    if not runs:
        return "no analysis yet"
    last = runs[-1]
    return (
        f"latest analysis ({last['at'][11:19]}, step {last['step'] + 1}): {last['outcome']}: {last['reason']}"
    )


def _view(data: dict[str, Any]) -> Group:
    r = data["rollout"]
    steps = " → ".join(
        f"[reverse]{_pct(s['weight_bp'])}[/reverse]"
        if i == r["step"] and r["phase"] in MOVING
        else _pct(s["weight_bp"])
        for i, s in enumerate(r["steps"])
    )
    return Group(
        Text(f"{data['environment']}: {_summary(r)}"),
        Text.from_markup(
            f"steps: {steps}   phase: {r['phase']}   promotion {r['promotion']}: {r['promotion_state']}"
        ),
        Text(_timer(r)),
        _traffic_table(r, data.get("live")),
        Text(_verdict_line(r)),
        Text(f"why: {r['reason']}"),
    )


def _outcome(client: Client, r: dict[str, Any]) -> int:
    promotion: dict[str, Any] = client.get(f"/api/v1/promotions/{r['promotion']}")
    state = promotion["state"]
    console.print(f"promotion {r['promotion']} {state}: {escape(promotion['reason'])}")
    return 0 if state == "succeeded" else 1


def _ended(data: dict[str, Any]) -> bool:
    r = data["rollout"]
    return r["phase"] not in MOVING and r["promotion_state"] not in ("deploying", "verifying", "rolling_out")


@app.command("status")
def status(ctx: typer.Context, env: str = EnvArg, output: Output = OutputOption) -> None:
    """The environment's latest rollout: step, weights, timers, recent analysis verdicts."""
    with api(ctx) as client:
        data = _fetch(client, env, live=10, analysis=20)
    if output is Output.json:
        print_json(data)
        return
    r = data["rollout"]
    if r is None:
        console.print(f"{env} has had no rollout yet (its releases replaced each other at once)")
        return
    console.print(_view(data))
    for run in r["analysis_runs"][-10:]:
        console.print(
            f"  {run['at'][11:19]}  step {run['step'] + 1}  {run['outcome']:<12} {escape(run['reason'])}"
        )


@app.command("watch")
def watch(
    ctx: typer.Context,
    env: str = EnvArg,
    interval: float = typer.Option(1.0, "--interval", min=0.2, max=60, help="seconds between refreshes"),
    timeout: float = typer.Option(
        0, "--timeout", min=0, help="stop watching after this many seconds (0: never)"
    ),
) -> None:
    """A live view of the rollout until it ends: step, weights, timers, both versions' traffic, verdicts.

    Exits 0 when the release took all traffic, 1 when it was rolled back or failed.
    """
    deadline = time.monotonic() + timeout if timeout else None
    with api(ctx) as client:
        data = _fetch(client, env, live=10)
        if data["rollout"] is None:
            raise ClientError(
                f"{env} has had no rollout yet",
                hint=f"promote a release: conveyor promote SERVICE VERSION --to {env}",
            )
        if not console.is_terminal:
            code = _watch_lines(client, env, interval, deadline)
        else:
            with Live(_view(data), console=console, refresh_per_second=4) as live:
                while not _ended(data):
                    if deadline and time.monotonic() > deadline:
                        break
                    time.sleep(interval)
                    data = _fetch(client, env, live=10)
                    live.update(_view(data))
            code = _outcome(client, data["rollout"])
    raise typer.Exit(code)


def _watch_lines(client: Client, env: str, interval: float, deadline: float | None) -> int:
    """Piped output: one line whenever the step, phase or latest verdict changes."""
    last = None
    while True:
        data = _fetch(client, env, live=10)
        r = data["rollout"]
        runs = r["analysis_runs"]
        key = (r["step"], r["phase"], r["paused"], runs[-1]["outcome"] if runs else None)
        if key != last:
            verdict = f"  ({runs[-1]['outcome']}: {runs[-1]['reason']})" if runs else ""
            console.print(f"{datetime.now(UTC):%H:%M:%S}  {_summary(r)}{verdict}", markup=False)
            last = key
        if _ended(data) or (deadline and time.monotonic() > deadline):
            return _outcome(client, r)
        time.sleep(interval)


def _act(ctx: typer.Context, env: str, action: str, reason: str, output: Output) -> None:
    with api(ctx) as client:
        data = client.post(f"/api/v1/environments/{env}/rollout/{action}", json={"reason": reason})
    if output is Output.json:
        print_json(data)
        return
    r = data["rollout"]
    done = {
        "pause": "paused: traffic stays where it is; analysis still runs and can still roll back",
        "resume": "resumed",
        "promote": "promoted: it moves to the next step now",
        "abort": "aborting: all traffic goes back to the stable version now",
    }[action]
    console.print(f"{env}: rollout of {r['new_version']} at {r['step_words']} {done}")


@app.command("pause")
def pause(
    ctx: typer.Context, env: str = EnvArg, reason: str = ReasonOption, output: Output = OutputOption
) -> None:
    """Hold the current step (time no longer moves it on); analysis still runs and can roll back."""
    _act(ctx, env, "pause", reason, output)


@app.command("resume")
def resume(
    ctx: typer.Context, env: str = EnvArg, reason: str = ReasonOption, output: Output = OutputOption
) -> None:
    """Let a paused rollout go on with its steps."""
    _act(ctx, env, "resume", reason, output)


@app.command("promote")
def promote(
    ctx: typer.Context, env: str = EnvArg, reason: str = ReasonOption, output: Output = OutputOption
) -> None:
    """Move to the next step now: skips the rest of the pause, a manual hold or an inconclusive analysis."""
    _act(ctx, env, "promote", reason, output)


@app.command("abort")
def abort(
    ctx: typer.Context, env: str = EnvArg, reason: str = ReasonOption, output: Output = OutputOption
) -> None:
    """Send all traffic back to the stable version now; the promotion ends rolled back."""
    _act(ctx, env, "abort", reason, output)


app.command("simulate")(simulate_command)


def register(root: typer.Typer) -> None:
    """Add `conveyor rollout …` to the root app."""
    root.add_typer(app, name="rollout")

"""`deploy`, `ps`, `logs` and `traffic`: what runs where, through the server."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import Any

import typer

from conveyor.cli.common import api
from conveyor.cli.output import Output, OutputOption, console, print_json, print_table, short_time
from conveyor.errors import ClientError


def deploy(
    ctx: typer.Context,
    service: str = typer.Argument(..., help="service from conveyor.yaml"),
    version: str = typer.Argument(..., help="a registered version"),
    env: str = typer.Option(..., "--env", help="target environment"),
    wait: float = typer.Option(120.0, "--wait", help="seconds to wait for readiness (0: do not wait)"),
    output: Output = OutputOption,
) -> None:
    """Run a registered version in an environment now, replacing what runs there (recreate)."""
    with api(ctx) as client:
        result = client.post(
            f"/api/v1/environments/{env}/deploy", json={"service": service, "version": version}
        )
        if output is Output.table:
            console.print(f"deployment {result['deployment']}: {service} {version} → {env}")
        if wait > 0:
            result["ready"] = _wait_ready(client, env, version, wait, quiet=output is Output.json)
    if output is Output.json:
        print_json(result)


def _replay(
    ctx: typer.Context, env: str, kind: str, wait: float, output: Output, body: dict[str, Any] | None = None
) -> None:
    with api(ctx) as client:
        result = client.post(f"/api/v1/environments/{env}/{kind}", json=body)
        if output is Output.table:
            console.print(
                f"deployment {result['id']} ({kind}): {result['service']} {result['version']} → {env}"
            )
        if wait > 0:
            result["ready"] = _wait_ready(client, env, result["version"], wait, quiet=output is Output.json)
    if output is Output.json:
        print_json(result)


def rollback(
    ctx: typer.Context,
    env: str = typer.Argument(..., help="environment"),
    wait: float = typer.Option(120.0, "--wait", help="seconds to wait for readiness (0: do not wait)"),
    output: Output = OutputOption,
    override_schema: str | None = typer.Option(
        None,
        "--override-schema",
        metavar="REASON",
        help="go back although the older version cannot use the schema as later migrations left it (audited)",
    ),
) -> None:
    """Return an environment to its previous release (same artifact and configuration).

    Refused when later schema migrations changed what the older version uses; the error says what.
    """
    body = {"override_schema": override_schema} if override_schema else None
    _replay(ctx, env, "rollback", wait, output, body)


def redeploy(
    ctx: typer.Context,
    env: str = typer.Argument(..., help="environment"),
    wait: float = typer.Option(120.0, "--wait", help="seconds to wait for readiness (0: do not wait)"),
    output: Output = OutputOption,
) -> None:
    """Apply the environment's current release again, exactly as it was."""
    _replay(ctx, env, "redeploy", wait, output)


def history(
    ctx: typer.Context,
    env: str = typer.Argument(..., help="environment"),
    limit: int = typer.Option(20, "--limit", min=1, max=500),
    output: Output = OutputOption,
) -> None:
    """Releases of an environment: what, who, when, how long, outcome."""
    with api(ctx) as client:
        rows = client.get(f"/api/v1/environments/{env}/history", params={"limit": limit})
    if output is Output.json:
        print_json(rows)
        return
    print_table(
        f"Releases of {env}",
        ["#", "kind", "service", "version", "config", "by", "at", "took", "outcome"],
        (
            [
                r["id"],
                r["kind"] + (f" #{r['promotion']}" if r.get("promotion") else ""),
                r["service"],
                r["version"],
                r["config_sha256"][:8],
                r["created_by"],
                short_time(r["created_at"]),
                _took(r["created_at"], r["finished_at"]),
                r["state"] + (f": {r['error']}" if r["error"] else ""),
            ]
            for r in rows
        ),
    )


def _took(start: str, end: str | None) -> str:
    if not end:
        return "—"
    seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    return f"{seconds:.1f}s"


def _wait_ready(client: Any, env: str, version: str, timeout: float, quiet: bool) -> bool:
    deadline = time.monotonic() + timeout
    wanted = None
    while time.monotonic() < deadline:
        observed = client.get(f"/api/v1/environments/{env}/runtime")["observed"]
        wanted = wanted or next(
            (v["instances"] for v in observed["desired"]["versions"] if v["version"] == version), 0
        )
        mine = [i for i in observed["instances"] if i["version"] == version]
        looping = [i for i in mine if i["state"] == "crash-loop"]
        if looping:
            tail = "\n".join(looping[0].get("output_tail") or [])
            raise ClientError(
                f"{version} is crash-looping in {env} (exit code {looping[0].get('last_exit_code')}); "
                f"its last output:\n{tail}",
                hint=f"fix the cause, then deploy again; `conveyor logs {env}` has the full output",
            )
        ready = sum(1 for i in mine if i["state"] == "ready")
        if observed.get("error"):
            raise ClientError(f"the runtime reports: {observed['error']}")
        if ready >= wanted > 0:
            if not quiet:
                port = observed["router"]["port"]
                where = f", traffic on http://127.0.0.1:{port}" if port else ""
                console.print(f"{version} is live in {env}: {ready}/{wanted} instance(s) ready{where}")
            return True
        time.sleep(0.25)
    raise ClientError(
        f"{version} did not become ready in {env} within {timeout:.0f}s",
        hint=f"see `conveyor ps --env {env}` and `conveyor logs {env}`",
    )


def _uptime(started_at: float | None) -> str:
    if not started_at:
        return "—"
    seconds = int(max(0, time.time() - started_at))
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def ps(
    ctx: typer.Context,
    env: str = typer.Option(None, "--env", help="only this environment"),
    output: Output = OutputOption,
) -> None:
    """App instances with their health, uptime and restarts."""
    with api(ctx) as client:
        if env:
            observed = {env: client.get(f"/api/v1/environments/{env}/runtime")["observed"]}
        else:
            observed = client.get("/api/v1/runtime")
    if output is Output.json:
        print_json(observed)
        return
    rows = []
    for name, state in observed.items():
        for i in state["instances"]:
            rows.append(
                [
                    name,
                    state["service"],
                    i["version"],
                    i["index"],
                    i["pid"],
                    i["port"],
                    i["state"],
                    _uptime(i.get("started_at")),
                    i["restarts"],
                ]
            )
        if state.get("error"):
            console.print(f"[red]{name}: {state['error']}[/red]")
    print_table(
        "Instances", ["env", "service", "version", "#", "pid", "port", "state", "uptime", "restarts"], rows
    )


def logs(
    ctx: typer.Context,
    env: str = typer.Argument(..., help="environment"),
    lines: int = typer.Option(100, "--lines", "-n", min=0, max=10_000),
    follow: bool = typer.Option(False, "--follow", "-f", help="keep printing new lines"),
) -> None:
    """The output of every instance in an environment."""
    with api(ctx) as client:
        for line in client.stream_lines(
            f"/api/v1/environments/{env}/logs", params={"lines": lines, "follow": follow}, timeout=None
        ):
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


def traffic(
    ctx: typer.Context,
    env: str = typer.Argument(..., help="environment"),
    window: float = typer.Option(60.0, "--window", help="seconds of history"),
    output: Output = OutputOption,
) -> None:
    """Live weights and per-version request rate, error rate and latency."""
    with api(ctx) as client:
        data = client.get(f"/api/v1/environments/{env}/traffic", params={"window": window})
    if output is Output.json:
        print_json(data)
        return
    router = data["router"]
    console.print(f"router: {'http://127.0.0.1:' + str(router['port']) if router['port'] else 'none'}")
    rows = []
    for backend in router["backends"]:
        stats = data["versions"].get(backend["version"], {})
        rows.append(
            [
                backend["version"],
                f"{backend['weight_bp'] / 100:g}%",
                len(backend["endpoints"]),
                f"{stats.get('rps', 0):.1f}",
                stats.get("requests", 0),
                f"{stats.get('error_rate', 0) * 100:.2f}%",
                f"{stats.get('p50_ms', 0):.1f}",
                f"{stats.get('p99_ms', 0):.1f}",
                stats.get("inflight", 0),
            ]
        )
    print_table(
        f"Traffic in {env} (last {window:g}s)",
        ["version", "weight", "ready", "req/s", "requests", "errors", "p50 ms", "p99 ms", "in flight"],
        rows,
    )


def fault(
    ctx: typer.Context,
    env: str = typer.Argument(..., help="environment"),
    version: str = typer.Argument(..., help="a version running there"),
    latency_ms: float = typer.Option(0.0, "--latency-ms", min=0, help="added latency per request"),
    error_rate: float = typer.Option(0.0, "--error-rate", min=0, max=1, help="share answered 500"),
    abort_rate: float = typer.Option(0.0, "--abort-rate", min=0, max=1, help="share of dropped connections"),
    clear: bool = typer.Option(False, "--clear", help="remove every fault from the version"),
) -> None:
    """Inject faults into one version's traffic at the router (chaos testing); audited."""
    if clear:
        latency_ms = error_rate = abort_rate = 0.0
    elif not (latency_ms or error_rate or abort_rate):
        raise ClientError(
            "no fault given", hint="pass --latency-ms, --error-rate or --abort-rate, or --clear"
        )
    body = {"version": version, "latency_ms": latency_ms, "error_rate": error_rate, "abort_rate": abort_rate}
    with api(ctx) as client:
        result = client.post(f"/api/v1/environments/{env}/faults", json=body)
    if result["fault"] is None:
        console.print(f"{version} in {env}: faults cleared")
    else:
        f = result["fault"]
        console.print(
            f"{version} in {env}: +{f['latency_ms']:g} ms, {f['error_rate'] * 100:g}% errors, "
            f"{f['abort_rate'] * 100:g}% aborts"
        )


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.command("deploy")(deploy)
    app.command("ps")(ps)
    app.command("logs")(logs)
    app.command("traffic")(traffic)
    app.command("fault")(fault)
    app.command("rollback")(rollback)
    app.command("redeploy")(redeploy)
    app.command("history")(history)

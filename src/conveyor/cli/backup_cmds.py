"""`conveyor backup …`, `conveyor restore` and `conveyor restore-drill`: the PostgreSQL database of
each environment, dumped, kept, restored and rehearsed (ADR 0016)."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from conveyor.cli.common import api
from conveyor.cli.output import Output, OutputOption, console, print_json, print_table, short_time

WAIT_S = 24 * 3600.0  # dumps and restores are long requests: the client waits while the server works
"""A backup or restore of a large database takes as long as it takes; the server records its progress."""


class _BackupGroup(TyperGroup):
    """`conveyor backup ENV` means `conveyor backup create ENV`; other first words are sub-commands."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # click's Context (typer vendors it)
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["create", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_BackupGroup,
    help="Backups of each environment's PostgreSQL database: `conveyor backup ENV` takes one now.",
    no_args_is_help=True,
)

EnvArg = typer.Argument(..., help="environment name")


def _size(value: int | None) -> str | None:
    if value is None:
        return None
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000  # type: ignore[assignment]
    return None


def _seconds(value: float | None) -> str | None:
    if value is None:
        return None
    if value < 120:
        return f"{value:.1f}s"
    return f"{value / 60:.1f}m" if value < 7200 else f"{value / 3600:.1f}h"


def _print_backup(data: dict[str, Any]) -> None:
    rows = [
        ["environment", data["environment"]],
        ["database", data["database"]],
        ["state", data["state"] + (f": {data['error']}" if data.get("error") else "")],
        ["trigger", data["trigger"]],
        ["file", data["file"]],
        ["size", _size(data["size_bytes"])],
        ["sha256", data["sha256"]],
        ["tables", f"{data['table_count']} tables, {data['row_count']} rows"],
        ["taken", f"{short_time(data['started_at'])} by {data['created_by']}"],
        ["duration", _seconds(data["duration_s"])],
    ]
    if data.get("server_version"):
        rows.append(["server version", data["server_version"]])
    print_table(f"Backup {data['id']}", ["", ""], rows)
    if data.get("tables"):
        print_table(None, ["table", "rows"], sorted(data["tables"].items()))
    if data.get("pruned"):
        console.print(
            f"pruned (older than backups.keep): {', '.join(map(str, data['pruned']))}", markup=False
        )


@app.command("create")
def create(ctx: typer.Context, env: str = EnvArg, output: Output = OutputOption) -> None:
    """Back up ENV's database now: pg_dump -Fc of one snapshot with its row counts; prunes expired ones."""
    with api(ctx, timeout=WAIT_S) as client, console.status(f"backing up {env}'s database…"):
        data = client.post(f"/api/v1/environments/{env}/backups")
    if output is Output.json:
        print_json(data)
    else:
        _print_backup(data)


@app.command("list")
def list_backups(ctx: typer.Context, env: str = EnvArg, output: Output = OutputOption) -> None:
    """ENV's backups, newest first, with the schedule and retention from conveyor.yaml."""
    with api(ctx, timeout=WAIT_S) as client:
        data = client.get(f"/api/v1/environments/{env}/backups")
    if output is Output.json:
        print_json(data)
        return
    rows = [
        [
            b["id"],
            short_time(b["started_at"]),
            b["state"],
            b["trigger"],
            _size(b["size_bytes"]),
            b["table_count"],
            b["row_count"],
            _seconds(b["duration_s"]),
            b["created_by"],
        ]
        for b in data["backups"]
    ]
    schedule = (
        f"every {data['every']}, kept {data['keep']}"
        if data["every"]
        else "no schedule (backups: in conveyor.yaml)"
    )
    print_table(
        f"Backups of {env} ({schedule})",
        ["id", "taken", "state", "trigger", "size", "tables", "rows", "duration", "by"],
        rows,
    )


@app.command("show")
def show(
    ctx: typer.Context,
    backup_id: int = typer.Argument(..., metavar="ID", help="backup id"),
    output: Output = OutputOption,
) -> None:
    """One backup: file, size, sha256, per-table row counts, timing, who took it."""
    with api(ctx, timeout=WAIT_S) as client:
        data = client.get(f"/api/v1/backups/{backup_id}")
    if output is Output.json:
        print_json(data)
    else:
        _print_backup(data)


@app.command("prune")
def prune(ctx: typer.Context, env: str = EnvArg, output: Output = OutputOption) -> None:
    """Delete ENV's backups older than backups.keep (file and record); the last good one always stays."""
    with api(ctx, timeout=WAIT_S) as client:
        data = client.post(f"/api/v1/environments/{env}/backups/prune")
    if output is Output.json:
        print_json(data)
    elif data["pruned"]:
        console.print(f"{env}: pruned backups {', '.join(map(str, data['pruned']))}", markup=False)
    else:
        console.print(f"{env}: no backup is older than backups.keep", markup=False)


def _runs(ctx: typer.Context, env: str, kind: str, output: Output) -> None:
    with api(ctx, timeout=WAIT_S) as client:
        data = client.get(f"/api/v1/environments/{env}/restore-runs", params={"kind": kind})
    if output is Output.json:
        print_json(data)
        return
    if kind == "drill":
        rows = [
            [
                r["id"],
                short_time(r["started_at"]),
                r["backup"],
                "pass" if r["passed"] else "FAIL",
                _seconds(r["restore_s"]),
                _objective(r["rto_s"], r["rto_met"]),
                _seconds(r["backup_age_s"]),
                _objective(r["rpo_s"], r["rpo_met"]),
                r["reason"],
            ]
            for r in data["runs"]
        ]
        columns = ["id", "when", "backup", "result", "restore", "RTO", "backup age", "RPO", "why"]
        print_table(f"Restore drills of {env}", columns, rows)
        return
    rows = [
        [
            r["id"],
            short_time(r["started_at"]),
            f"{r['backup']} ({r['source']})",
            r["state"],
            _seconds(r["restore_s"]),
            r["safety_backup"],
            r["sessions_ended"],
            r["created_by"],
            r["reason"],
        ]
        for r in data["runs"]
    ]
    columns = ["id", "when", "backup", "state", "restore", "safety backup", "sessions ended", "by", "why"]
    print_table(f"Restores into {env}", columns, rows)


def _objective(limit: float | None, met: bool | None) -> str:
    """`1h met` / `5m MISSED`: the objective as conveyor.yaml writes it, and whether it held."""
    if limit is None:
        return "not set"
    from conveyor.spec.types import Duration  # imported here: the spec package is slow to import

    return f"{Duration(round(limit * 1000))} {'met' if met else 'MISSED'}"


@app.command("drills")
def drills(ctx: typer.Context, env: str = EnvArg, output: Output = OutputOption) -> None:
    """ENV's restore drills, newest first: result, restore time vs the RTO, backup age vs the RPO."""
    _runs(ctx, env, "drill", output)


@app.command("restores")
def restores(ctx: typer.Context, env: str = EnvArg, output: Output = OutputOption) -> None:
    """Restores into ENV, newest first: which backup, how long, the safety backup taken before."""
    _runs(ctx, env, "restore", output)


def restore(
    ctx: typer.Context,
    env: str = typer.Argument(..., help="environment the backup was taken of"),
    backup: int = typer.Option(
        ..., "--from", metavar="BACKUP", min=1, help="backup id (`conveyor backup list ENV`)"
    ),
    to: str | None = typer.Option(None, "--to", metavar="ENV2", help="restore into this environment instead"),
    yes: bool = typer.Option(False, "--yes", help="confirm replacing a production or dr database"),
    safety_backup: bool = typer.Option(
        True, "--safety-backup/--no-safety-backup", help="back up the current data first (default: yes)"
    ),
    output: Output = OutputOption,
) -> None:
    """Restore a backup into ENV (or ENV2): verified first, restored beside the database, swapped in.

    The file's sha256 must match the record. pg_restore writes into a new database; only when it
    succeeded and every table's row count equals the backup's is it swapped in, so a failed restore
    leaves the database as it was. Open sessions of the old database are ended (apps reconnect).
    """
    target = to or env
    body = {"backup": backup, "source": env, "confirm": yes, "safety_backup": safety_backup}
    with api(ctx, timeout=WAIT_S) as client, console.status(f"restoring backup {backup} into {target}…"):
        data = client.post(f"/api/v1/environments/{target}/restore", json=body)
    if output is Output.json:
        print_json(data)
        return
    checks = data.get("checks") or {}
    lines = [
        f"{target}: backup {data['backup']} of {data['source']} restored into {data['database']} "
        f"in {_seconds(data['restore_s'])} "
        f"({checks.get('tables')} tables, {checks.get('rows')} rows verified)",
    ]
    if data.get("safety_backup"):
        lines.append(f"the data it replaced is in safety backup {data['safety_backup']}")
    ended = data.get("sessions_ended") or 0
    lines.append(
        f"{ended} open session(s) of the old database were ended; running apps reconnect to the restored data"
        if ended
        else "no session was open on the old database"
    )
    for line in lines:
        console.print(line, markup=False)


def restore_drill(
    ctx: typer.Context,
    env: str = EnvArg,
    backup: int | None = typer.Option(
        None, "--from", metavar="BACKUP", min=1, help="backup id (default: the latest good one)"
    ),
    output: Output = OutputOption,
) -> None:
    """Restore a backup into a throwaway database, verify and time it against ENV's RTO, then drop it.

    Exits non-zero when the drill fails (restore error, a row count or constraint differs) or the
    restore took longer than recovery.rto.
    """
    with api(ctx, timeout=WAIT_S) as client, console.status(f"restore drill of {env}…"):
        data = client.post(f"/api/v1/environments/{env}/restore-drills", json={"backup": backup})
    if output is Output.json:
        print_json(data)
    else:
        checks = data.get("checks") or {}
        rows = [
            ["result", "pass" if data["passed"] else "FAIL"],
            ["backup", data["backup"]],
            ["restore time", _seconds(data["restore_s"])],
            ["RTO", _objective(data["rto_s"], data["rto_met"])],
            ["backup age", _seconds(data["backup_age_s"])],
            ["RPO", _objective(data["rpo_s"], data["rpo_met"])],
            ["verified", f"{checks.get('tables', 0)} tables, {checks.get('rows', 0)} rows, "
             f"{checks.get('constraints', 0)} constraints"],
            ["throwaway database", f"{data['scratch_database']} "
             f"({'dropped' if checks.get('scratch_dropped') else 'NOT dropped'})"],
        ]  # fmt: skip
        if data["reason"]:
            rows.append(["why", data["reason"]])
        print_table(f"Restore drill {data['id']} of {env}", ["", ""], rows)
    if not data["passed"]:
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    """Add `backup …`, `restore` and `restore-drill` to the root command."""
    root.add_typer(app, name="backup")
    root.command("restore")(restore)
    root.command("restore-drill")(restore_drill)

"""`conveyor data …`: synthetic seeding and masked clones of an environment's database."""

from __future__ import annotations

from typing import Any

import typer

from conveyor.cli.common import api
from conveyor.cli.output import Output, OutputOption, console, print_json, print_table

app = typer.Typer(
    help="Data policies: seed synthetic rows (synthetic), clone through masking rules (masked).",
    no_args_is_help=True,
)

EnvArg = typer.Argument(..., help="environment name")
LONG_TIMEOUT_S = 6 * 3600.0
"""A clone of a large database runs inside one request; the server does the work, the CLI waits."""


@app.command("show")
def show(ctx: typer.Context, env: str = EnvArg, output: Output = OutputOption) -> None:
    """The environment's data policy and the personal columns, masking and subset rules declared."""
    with api(ctx) as client:
        data = client.get(f"/api/v1/environments/{env}/data")
    if output is Output.json:
        print_json(data)
        return
    source = f" from {data['source']}" if data["source"] else ""
    console.print(f"{env} ({data['tier']}): {data['policy']} data{source}", markup=False)
    rows = [
        [column, str(rule), "yes" if column in data["pii"] else ""]
        for column, rule in data["masking"].items()
    ]
    rows += [[column, "keep (not sensitive)", ""] for column in data["not_sensitive"]]
    if rows:
        print_table("Columns", ["column", "rule", "PII"], rows)
    if data["subset"]:
        print_table("Subset", ["table", "keeps"], list(data["subset"].items()))


@app.command("seed")
def seed(
    ctx: typer.Context,
    env: str = EnvArg,
    rows: int = typer.Option(100, "--rows", min=1, help="rows per table"),
    seed_value: int = typer.Option(0, "--seed", min=0, help="the same seed gives the same rows"),
    output: Output = OutputOption,
) -> None:
    """Replace the database's rows with deterministic synthetic ones (synthetic environments only)."""
    with (
        api(ctx, timeout=LONG_TIMEOUT_S) as client,
        console.status(f"seeding {env} with {rows:,} rows per table …"),
    ):
        data = client.post(f"/api/v1/environments/{env}/data/seed", json={"rows": rows, "seed": seed_value})
    if output is Output.json:
        print_json(data)
        return
    print_table(
        f"Seeded {data['database']} (seed {data['seed']})",
        ["table", "rows"],
        [[table, f"{count:,}"] for table, count in data["tables"].items()],
    )
    console.print(f"{data['rows']:,} rows in {data['seconds']:.1f} s", markup=False)


def print_clone(data: dict[str, Any]) -> None:
    """A clone's tables, subsets, masking report and unreviewed columns, as `data clone` prints them."""
    print_table(
        f"{data['source']} → {data['target']} ({data['database']})",
        ["table", "rows"],
        [[table, f"{count:,}"] for table, count in data["tables"].items()],
    )
    for ref, subset in data["subset"].items():
        console.print(f"subset {ref}: {subset['rule']} → {subset['rows']:,} rows", markup=False)
    for ref, count in data["kept_by_reference"].items():
        console.print(f"subset {ref}: {count:,} rows kept because kept rows reference them", markup=False)
    console.print("masking report:", markup=False)
    for line in data["report_lines"]:
        console.print(f"  {line}", markup=False)
    for suspect in data["suspected_pii"]:
        console.print(
            f"looks personal, not declared: {suspect['column']} ({suspect['why']}; e.g. masking: "
            f"{suspect['column']}: {suspect['suggested_rule']}, or list it under not_sensitive)",
            markup=False,
        )
    if data["unreviewed_columns"]:
        console.print(
            f"{len(data['unreviewed_columns'])} column(s) copied unchanged without review (declare them "
            "under masking or not_sensitive): " + ", ".join(data["unreviewed_columns"]),
            markup=False,
        )
    console.print(
        f"{data['rows']:,} rows in {data['seconds']:.1f} s ({data['rows_per_second'] or 0:,} rows/s)",
        markup=False,
    )


@app.command("clone")
def clone(
    ctx: typer.Context,
    source: str = typer.Argument(..., help="environment copied from (e.g. production)"),
    to: str = typer.Option(..., "--to", help="environment copied into; its data policy must be masked"),
    check: bool = typer.Option(False, "--check", help="run the pre-flight only; nothing is copied"),
    output: Output = OutputOption,
) -> None:
    """Copy SOURCE into --to through the masking rules; the clone is built aside and swapped in whole."""
    with (
        api(ctx, timeout=LONG_TIMEOUT_S) as client,
        console.status(f"{'checking' if check else 'cloning'} {source} → {to} …"),
    ):
        data = client.post(f"/api/v1/environments/{to}/data/clone", json={"source": source, "check": check})
    if output is Output.json:
        print_json(data)
    elif check:
        verdict = "may start" if data["ok"] else "would be refused"
        console.print(f"masked clone {source} → {to} {verdict} (key {data['key_fingerprint']})", markup=False)
        for problem in data["problems"]:
            console.print(f"  {problem['message']} — {problem['fix']}", markup=False)
        for suspect in data["suspected_pii"]:
            console.print(
                f"  looks personal, not declared: {suspect['column']} "
                f"({suspect['why']}; suggested: {suspect['suggested_rule']})",
                markup=False,
            )
        if data["unreviewed_columns"]:
            console.print("unreviewed columns: " + ", ".join(data["unreviewed_columns"]), markup=False)
    else:
        print_clone(data)
    if check and not data["ok"]:
        raise typer.Exit(1)

"""`conveyor resource …`: the database (PostgreSQL or SQLite file) and Redis namespace of each environment."""

from __future__ import annotations

from typing import Any

import typer

from conveyor.cli.common import api
from conveyor.cli.data_cmds import LONG_TIMEOUT_S, print_clone
from conveyor.cli.output import Output, OutputOption, console, print_json, print_table
from conveyor.errors import ClientError

app = typer.Typer(
    help="Backing resources per environment: a PostgreSQL database or SQLite file, and a Redis namespace, "
    "made by Conveyor.",
    no_args_is_help=True,
)

EnvArg = typer.Argument(..., help="environment name")


@app.command("list")
def list_resources(ctx: typer.Context, output: Output = OutputOption) -> None:
    """Each environment's declared database and cache, and whether they are provisioned."""
    with api(ctx) as client:
        data = client.get("/api/v1/resources")
    if output is Output.json:
        print_json(data)
        return
    flag = {True: "yes", False: "no", None: "-"}
    rows = [
        [
            r["environment"],
            r["database"],
            r["database_name"],
            flag[r["provisioned"]] if r["database"] else "-",
            r["cache"],
            r.get("cache_namespace"),
            flag[r.get("cache_provisioned")],
        ]
        for r in data["resources"]
    ]
    print_table(
        "Resources",
        ["environment", "database", "name", "provisioned", "cache", "namespace", "provisioned"],
        rows,
    )


def _print_all(data: dict[str, Any]) -> None:
    database, cache = data.get("database"), data.get("cache")
    if database is not None and database["engine"] == "postgres":
        _print(database)
    elif database is not None:
        live = database["live"]
        rows = [["path", database["path"]], ["url", database["url"]]]
        rows.append(
            ["file", f"{live['size_bytes']} bytes, mode {live['mode']}" if live["exists"] else "missing"]
        )
        print_table(f"SQLite database of {data['environment']}", ["", ""], rows)
    if cache is not None:
        _print_cache(cache)
    if database is None and cache is None:
        console.print(f"{data['environment']} declares no database and no cache", markup=False)


def _print_cache(data: dict[str, Any]) -> None:
    live = data.get("live") or {}
    rows = [["server", data["server"]], ["key prefix", data["key_prefix"]]]
    if data["namespace"] == "acl":
        held = ", ".join(f"v{v}" for v in data["password_versions"]) or "none"
        rows += [
            ["ACL user", data["user"] + ("" if live.get("exists", True) else " (missing on the server)")],
            ["password", f"{data['password_secret']} v{data['password_version']}, held: {held}"
             if data["password_version"] else f"{data['password_secret']}: no value yet"],
        ]  # fmt: skip
    else:
        rows.append(
            ["database", f"{data['db']}" + ("" if live.get("exists", True) else " (not claimed yet)")]
        )
    if live.get("keys") is not None:
        rows.append(["keys", str(live["keys"])])
    if live.get("error"):
        rows.append(["server says", live["error"]])
    print_table(f"Redis namespace of {data['environment']}", ["", ""], rows)


def _print(data: dict[str, Any]) -> None:
    live = data.get("live") or {}
    logins = live.get("logins") or {}
    rows = [
        ["server", data["server"]],
        ["database", data["database"] + ("" if live.get("exists", True) else " (missing on the server)")],
        ["owner role", data["owner_role"]],
        [
            "logins",
            ", ".join(f"{k} ({'can log in' if v else 'retired'})" for k, v in logins.items())
            or ", ".join(data["logins"]),
        ],
        [
            "password",
            f"{data['password_secret']} v{data['password_version']} on {data['password_login']}"
            if data["password_version"]
            else f"{data['password_secret']}: no value yet",
        ],
        [
            "provisioned",
            f"{data['provisioned_at'][:19]} by {data['provisioned_by']}" if data["provisioned"] else "no",
        ],
    ]
    if live.get("size_bytes") is not None:
        rows.append(["size", f"{live['size_bytes'] / 1e6:.1f} MB, {live['sessions']} session(s)"])
    if live.get("error"):
        rows.append(["server says", live["error"]])
    print_table(f"Database of {data['environment']}", ["", ""], rows)


@app.command("show")
def show(ctx: typer.Context, env: str = EnvArg, output: Output = OutputOption) -> None:
    """The environment's database and Redis namespace: names, logins, keys and what the servers report."""
    with api(ctx) as client:
        data = client.get(f"/api/v1/environments/{env}/resources")
    if output is Output.json:
        print_json(data)
    else:
        _print_all(data)


@app.command("provision")
def provision(ctx: typer.Context, env: str = EnvArg, output: Output = OutputOption) -> None:
    """Create what the environment declares (idempotent): database and logins, SQLite file, Redis user.

    Releases then get PGHOST, PGPORT, PGDATABASE, PGUSER and PGPASSWORD (SQLite: DATABASE_URL and
    SQLITE_PATH; Redis: REDIS_HOST, REDIS_PORT, REDIS_USERNAME, REDIS_KEY_PREFIX, REDIS_PASSWORD). A
    rotated password goes on the login no running instance uses (Redis: is added to the user), and
    the old one is retired once no instance needs it.
    """
    with api(ctx) as client:
        data = client.post(f"/api/v1/environments/{env}/resources/provision")
    if output is Output.json:
        print_json(data)
    else:
        _print_all(data)


def _print_reset(env: str, database: dict[str, Any]) -> None:
    if database.get("engine") == "sqlite":
        console.print(f"{env}: SQLite file {database['path']} dropped and created empty", markup=False)
        return
    done = "dropped and created empty" if database["empty"] else "dropped and created again"
    console.print(f"{env}: database {database['database']} {done}", markup=False)
    for run in database["migrations"]:
        applied = ", ".join(run["applied"]) or "none pending"
        console.print(f"{env}: migrations of {run['service']} {run['version']}: {applied}", markup=False)
    seeded, cloned = database.get("seed"), database.get("clone")
    if seeded is not None:
        per_table = f"{seeded['rows_per_table']:,} rows per table"
        print_table(
            f"Seeded {seeded['database']} (seed {seeded['seed']}, {per_table})",
            ["table", "rows"],
            [[table, f"{count:,}"] for table, count in seeded["tables"].items()],
        )
    if cloned is not None:
        print_clone(cloned)
    if database.get("note"):
        console.print(f"{env}: {database['note']}", markup=False)


@app.command("reset")
def reset(
    ctx: typer.Context,
    env: str = EnvArg,
    yes: bool = typer.Option(False, "--yes", help="confirm: every row and every cached key is dropped"),
    empty: bool = typer.Option(
        False, "--empty", help="drop and recreate only: no migrations, no seed, no clone"
    ),
    rows: int | None = typer.Option(
        None, "--rows", min=1, help="synthetic policy: rows per table (default 100)"
    ),
    seed: int | None = typer.Option(None, "--seed", min=0, help="synthetic policy: the seed (default 0)"),
    output: Output = OutputOption,
) -> None:
    """Recreate the environment's resources with its data policy (refused for production and dr).

    The database is dropped and created again, and the migrations of every version deployed there run.

    Then it is seeded (synthetic) or cloned from its source through the masking rules (masked).

    A SQLite file comes back empty; the Redis namespace's keys are deleted.
    """
    if not yes:
        raise ClientError(
            f"this drops every row of {env}'s database and every key of its cache",
            hint=f"run `conveyor resource reset {env} --yes`",
        )
    body: dict[str, Any] = {"empty": empty}
    body.update({k: v for k, v in (("rows", rows), ("seed", seed)) if v is not None})
    with api(ctx, timeout=LONG_TIMEOUT_S) as client, console.status(f"resetting {env} …"):
        data = client.post(f"/api/v1/environments/{env}/resources/reset", json=body)
    if output is Output.json:
        print_json(data)
        return
    if data["database"] is not None:
        _print_reset(env, data["database"])
    if data["cache"] is not None:
        cache = data["cache"]
        console.print(
            f"{env}: {cache['deleted_keys']} key(s) under {cache['key_prefix']} deleted", markup=False
        )

"""`up`, `down`, `status`, `server` (foreground) and `db upgrade|current`."""

from __future__ import annotations

import logging
import sys

import typer

# the store and the server are imported inside the commands that need them: every other
# command starts faster without SQLAlchemy, Alembic and Uvicorn
from conveyor import daemon
from conveyor.cli.client import Client, api_token, server_url
from conveyor.cli.common import cli_context
from conveyor.cli.output import Output, OutputOption, console, print_json, print_table
from conveyor.errors import ClientError, ConveyorError, ServerUnreachable
from conveyor.runtime.local.client import DEFAULT_AGENT_PORT, agent_url
from conveyor.settings import DEFAULT_HOST, DEFAULT_PORT, Settings

db_app = typer.Typer(help="Conveyor's own state store schema.", no_args_is_help=True)

HostOption = typer.Option(DEFAULT_HOST, "--host", help="interface to listen on (loopback by default)")
PortOption = typer.Option(DEFAULT_PORT, "--port", min=1, max=65535, help="TCP port")


def _migrate_if_empty(settings: Settings) -> None:
    from conveyor.store.db import Store, redact_url
    from conveyor.store.migrate import is_empty, upgrade

    store = Store(settings.database_url)
    try:
        if is_empty(store):
            upgrade(store)
            console.print(f"initialised an empty state store at {redact_url(store.url)}")
    finally:
        store.dispose()


def up(
    ctx: typer.Context,
    host: str = HostOption,
    port: int = PortOption,
    agent_port: int = typer.Option(DEFAULT_AGENT_PORT, "--agent-port", min=1, max=65535, help="agent port"),
    no_agent: bool = typer.Option(False, "--no-agent", help="start only the server (no local runtime)"),
) -> None:
    """Start the server and the local runtime agent in the background (pids and logs in .conveyor/)."""
    from conveyor.rollout.policy import time_scale
    from conveyor.secrets.keys import load_keyring

    settings = cli_context(ctx).settings
    time_scale()  # a bad CONVEYOR_TIME_SCALE is refused here, not in the background server's log
    load_keyring(settings.home, create=True)  # so is a malformed master key; a new home gets one
    extra_env: dict[str, str] = {}
    agent: daemon.Starting | None = None
    if not no_agent:
        agent_pid = daemon.running_pid(settings, "agent")
        if agent_pid:
            console.print(f"agent already running (pid {agent_pid}) at {agent_url(settings.home)}")
        else:  # it starts while the store is prepared and the server starts: the two wait side by side
            agent = daemon.launch(settings, host, agent_port, name="agent")
        extra_env["CONVEYOR_AGENT_URL"] = agent_url(settings.home)
    pid = daemon.running_pid(settings)
    server: daemon.Starting | None = None
    try:
        if pid:
            console.print(f"server already running (pid {pid}) at {server_url(settings)}")
            return
        # a brand-new store has nothing to lose; an old one must be upgraded on purpose
        _migrate_if_empty(settings)
        server = daemon.launch(settings, host, port, extra_env=extra_env)
    finally:
        if agent is not None:
            try:
                agent_pid, url = daemon.wait_ready(settings, agent, ready_path="/healthz")
            except ClientError:
                if server is not None:  # no server is left running without the agent it was given
                    daemon.stop(settings)
                raise
            console.print(f"agent started (pid {agent_pid}) at {url}")
    assert server is not None
    pid, url = daemon.wait_ready(settings, server)
    console.print(f"server started (pid {pid}) at {url}")
    console.print(f"logs: {settings.log_file}, {settings.home / 'agent.log'}")
    if settings.credentials_file.exists():
        console.print(f"credentials: {settings.credentials_file} (mode 0600)")


def down(ctx: typer.Context) -> None:
    """Stop the background server, then the agent (which stops the app instances)."""
    settings = cli_context(ctx).settings
    pid = daemon.stop(settings)
    console.print(f"server stopped (pid {pid})" if pid else "server was not running")
    agent_pid = daemon.stop(settings, name="agent")
    if agent_pid:
        console.print(f"agent stopped (pid {agent_pid}); its app instances are stopped")


def agent(
    ctx: typer.Context,
    host: str = HostOption,
    port: int = typer.Option(DEFAULT_AGENT_PORT, "--port", min=1, max=65535, help="TCP port"),
) -> None:
    """Run the local runtime agent in the foreground (instances, routers, metrics)."""
    import uvicorn

    from conveyor.runtime.local.agent_api import create_agent_app

    settings = cli_context(ctx).settings
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    app = create_agent_app(settings.home)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=10, loop="uvloop")


def server(ctx: typer.Context, host: str = HostOption, port: int = PortOption) -> None:
    """Run the server in the foreground (Ctrl-C stops it)."""
    import uvicorn

    from conveyor.api.app import create_app
    from conveyor.rollout.policy import time_scale

    settings = cli_context(ctx).settings
    time_scale()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    app = create_app(settings, public_url=f"http://{host}:{port}")
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=10)


def status(ctx: typer.Context, output: Output = OutputOption) -> None:
    """Server, store and environments at a glance."""
    cc = cli_context(ctx)
    url = server_url(cc.settings, cc.url)
    pid = daemon.running_pid(cc.settings)
    client = Client(url, api_token(cc.settings), timeout=5.0)
    try:
        data = client.get("/api/v1/status")
    except ServerUnreachable as exc:
        if output is Output.json:
            print_json({"server": {"url": url, "running": False, "error": exc.detail}})
        else:
            console.print(f"server: not reachable at {url}")
            console.print("hint: start it with `conveyor up`")
        raise typer.Exit(1) from None
    finally:
        client.close()
    data["server"].update(url=url, pid=pid, running=True)
    data["agent"] = {"url": agent_url(cc.settings.home), "pid": daemon.running_pid(cc.settings, "agent")}
    if output is Output.json:
        print_json(data)
        return
    srv, store, spec = data["server"], data["store"], data["spec"]
    console.print(
        f"server:  running at {url} (version {srv['version']}, since {srv['started_at']})"
        + (f", pid {pid}" if pid else "")
    )
    console.print(f"store:   {store['dialect']} {store['url']} (schema {store['schema_revision']})")
    agent_pid = daemon.running_pid(cc.settings, "agent")
    console.print(
        f"agent:   running at {agent_url(cc.settings.home)}, pid {agent_pid}"
        if agent_pid
        else "agent:   not running here (start it with `conveyor up`)"
    )
    if spec["revision"]:
        console.print(
            f"spec:    revision {spec['revision']}, applied {spec['applied_at']} by {spec['applied_by']}"
        )
    else:
        console.print("spec:    nothing applied yet (run `conveyor apply`)")
    if data["environments"]:
        print_table(
            "Environments",
            ["name", "tier", "since revision"],
            ([e["name"], e["tier"], e["updated_revision"]] for e in data["environments"]),
        )


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Migrate Conveyor's own schema to this version's newest revision."""
    from conveyor.store.db import Store, redact_url
    from conveyor.store.migrate import upgrade

    settings = cli_context(ctx).settings
    store = Store(settings.database_url)
    try:
        before, after = upgrade(store)
    except ConveyorError:
        raise
    except Exception as exc:
        raise ClientError(
            f"migrating {redact_url(store.url)} failed: {exc}",
            hint="nothing was changed; fix the cause and retry",
        ) from None
    finally:
        store.dispose()
    if before == after:
        console.print(f"store already at schema {after}")
    else:
        console.print(f"migrated store {redact_url(store.url)}: {before or 'empty'} → {after}")


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Show the store's schema revision and the newest this version knows."""
    from conveyor.store.db import Store, redact_url
    from conveyor.store.migrate import current_revision, head_revision

    settings = cli_context(ctx).settings
    store = Store(settings.database_url)
    try:
        current = current_revision(store)
    finally:
        store.dispose()
    head = head_revision()
    state = "up to date" if current == head else "needs `conveyor db upgrade`"
    console.print(f"store {redact_url(store.url)}: schema {current or 'none'} (newest {head}): {state}")


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.command("up")(up)
    app.command("down")(down)
    app.command("server")(server)
    app.command("agent")(agent)
    app.command("status")(status)
    app.add_typer(db_app, name="db")

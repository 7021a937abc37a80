"""Entry point of the `conveyor` command: the root app, its sub-commands, and error handling."""

from __future__ import annotations

import sys

import typer

from conveyor import __version__
from conveyor.cli import (
    artifact_cmds,
    audit_cmds,
    backup_cmds,
    config_cmds,
    data_cmds,
    flag_cmds,
    migration_cmds,
    promotion_cmds,
    resource_cmds,
    rollout_cmds,
    runtime_cmds,
    secret_cmds,
    server_cmds,
    spec_cmds,
    token_cmds,
    user_cmds,
)
from conveyor.cli.common import CliContext
from conveyor.cli.output import exit_with_error
from conveyor.errors import ConveyorError
from conveyor.settings import load_settings

app = typer.Typer(
    name="conveyor",
    help="Conveyor: declare environments in conveyor.yaml, promote one immutable artifact through them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"conveyor {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    url: str = typer.Option(
        None, "--url", envvar="CONVEYOR_URL", help="server URL (default: what `up` started)"
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version"
    ),
) -> None:
    """Conveyor release control plane."""
    ctx.obj = CliContext(load_settings(), url)


spec_cmds.register(app)
server_cmds.register(app)
runtime_cmds.register(app)
promotion_cmds.register(app)
rollout_cmds.register(app)
config_cmds.register(app)
flag_cmds.register(app)
app.add_typer(user_cmds.app, name="user")
app.command("whoami")(user_cmds.whoami)
app.add_typer(token_cmds.app, name="token")
app.add_typer(audit_cmds.app, name="audit")
app.add_typer(artifact_cmds.app, name="artifact")
app.add_typer(secret_cmds.app, name="secret")
app.add_typer(resource_cmds.app, name="resource")
app.add_typer(data_cmds.app, name="data")
backup_cmds.register(app)
app.add_typer(migration_cmds.app, name="migrations")


def run() -> None:
    """Run the CLI; foreseeable errors print as messages with a non-zero exit, never a traceback."""
    try:
        # standalone mode: the CLI framework prints usage errors and exits on its own
        app()
    except ConveyorError as exc:
        try:
            exit_with_error(exc)
        except typer.Exit as done:
            sys.exit(done.exit_code)

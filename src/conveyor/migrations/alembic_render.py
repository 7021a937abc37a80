"""Subprocess: render an Alembic project's revisions to SQL offline and print them as JSON (ADR 0018).

    python -m conveyor.migrations.alembic_render DIRECTORY

`conveyor.migrations.alembic.render` starts it in an extracted bundle, because the project's env.py
is the team's code and may import their models: it never runs inside the Conveyor server. DIRECTORY
holds alembic.ini; Alembic reads it from there, as when the team runs `alembic` in that directory.
The history must be one line. Each revision is rendered like `alembic upgrade PREV:REV --sql` and
`alembic downgrade REV:PREV --sql`, sharing one ScriptDirectory so the revision files load once.

Prints one JSON line: `{"version_table", "revisions": [{"revision", "down_revision", "message",
"file", "sha256", "up", "down"}]}`; `{"error", "hint"}` for a project that cannot be read (exit 2);
`{"failed": {"revision", "location"}}` with the traceback on stderr when env.py or a revision fails
while rendering (exit 1). Anything the project prints goes to stderr.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from conveyor.errors import ConveyorError
from conveyor.migrations.alembic import DUMMY_URL, INI, LINEAR_HINT, AlembicProjectInvalid, linear_order


def main(argv: list[str]) -> int:
    """Render DIRECTORY (argv[1]) and print the JSON; the exit status says how it went."""
    if len(argv) != 2:
        print("usage: python -m conveyor.migrations.alembic_render DIRECTORY", file=sys.stderr)
        return 2
    with _stdout_to_stderr():
        result, status = run(Path(argv[1]).resolve())
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return status


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """While the project's code runs, whatever it prints (Python or C level) goes to stderr."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)


def run(directory: Path) -> tuple[dict[str, Any], int]:
    """(the JSON to print, the exit status) for the project in `directory`."""
    try:
        script, chain = _load(directory)
    except ConveyorError as exc:
        return {"error": exc.detail, "hint": exc.hint}, 2
    rendered: list[dict[str, Any]] = []
    version_table = "alembic_version"
    current: str | None = None
    try:
        for revision in chain:
            current = revision
            found = script.get_revision(revision)
            assert found is not None
            previous = _down_revisions(found.down_revision)
            below = previous[0] if previous else None
            up, version_table = _offline(directory, script, below or "base", revision, upgrade=True)
            down, _ = _offline(directory, script, revision, below or "base", upgrade=False)
            rendered.append(
                {
                    "revision": revision,
                    "down_revision": below,
                    "message": found.doc,
                    "file": str(Path(found.path).resolve()),
                    "sha256": hashlib.sha256(Path(found.path).read_bytes()).hexdigest(),
                    "up": up,
                    "down": down,
                }
            )
    except Exception as exc:  # the project's code failed offline: the parent reports the traceback's end
        traceback.print_exc()
        return {"failed": {"revision": current, "location": _location(exc, directory)}}, 1
    return {"version_table": version_table, "revisions": rendered}, 0


def _config(directory: Path, buffer: io.StringIO | None = None) -> Config:
    """The project's Config, printing offline SQL into `buffer`, with the dummy database URL."""
    config = Config(str(directory / INI), output_buffer=buffer, stdout=sys.stderr)
    config.set_main_option("sqlalchemy.url", DUMMY_URL)
    return config


def _load(directory: Path) -> tuple[ScriptDirectory, list[str]]:
    """(the ScriptDirectory, its revisions base first); AlembicProjectInvalid says what is wrong."""
    if not (directory / INI).is_file():
        raise AlembicProjectInvalid(
            f"there is no {INI} in {directory}",
            hint="point services.NAME.migrations.path at the directory holding alembic.ini "
            "(`alembic init` creates one)",
        )
    os.chdir(directory)  # as when the team runs `alembic` here: relative paths in alembic.ini work
    try:
        script = ScriptDirectory.from_config(_config(directory))
    except CommandError as exc:
        location = _config(directory).get_main_option("script_location")
        raise AlembicProjectInvalid(
            f"script_location {location!r} in {directory / INI} cannot be used: {exc}",
            hint="set script_location to the directory holding env.py and versions/ "
            "(`%(here)s/migrations`, or a path relative to alembic.ini)",
        ) from None
    except Exception as exc:
        raise AlembicProjectInvalid(
            f"{directory / INI} cannot be read: {type(exc).__name__}: {exc}",
            hint="`alembic history` in that directory shows the same error",
        ) from None
    try:
        revisions = {s.revision: _down_revisions(s.down_revision) for s in script.walk_revisions()}
    except CommandError as exc:  # a cycle, a missing revision, a duplicate id
        raise AlembicProjectInvalid(f"its history cannot be read: {exc}", hint=LINEAR_HINT) from None
    except KeyError as exc:
        raise AlembicProjectInvalid(
            f"a revision revises {exc}, which is not in the project", hint=LINEAR_HINT
        ) from None
    except Exception as exc:
        where = _location(exc, directory) or "a revision file"
        raise AlembicProjectInvalid(
            f"revision file {where} does not import: {type(exc).__name__}: {exc}",
            hint="a revision file may import only what the bundle and Conveyor's Python provide "
            "(alembic, sqlalchemy); `alembic history` shows the same error",
        ) from None
    return script, linear_order(revisions)


def _down_revisions(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _offline(
    directory: Path, script: ScriptDirectory, start: str, destination: str, *, upgrade: bool
) -> tuple[str, str]:
    """(the SQL of `alembic upgrade|downgrade START:DESTINATION --sql`, the version table).

    The same steps as `alembic.command.upgrade/downgrade(config, "START:DESTINATION", sql=True)`, but
    with one ScriptDirectory for every revision: the command loads every revision file again on each
    call, which makes a long history quadratic.
    """
    buffer = io.StringIO()

    def steps(revision: Any, context: Any) -> Any:
        if upgrade:
            return script._upgrade_revs(destination, revision)
        return script._downgrade_revs(destination, revision)

    with EnvironmentContext(
        _config(directory, buffer),
        script,
        fn=steps,
        as_sql=True,
        starting_rev=start,
        destination_rev=destination,
    ) as environment:
        script.run_env()
        context = environment.get_context()
        schema = context.version_table_schema
        table = f"{schema}.{context.version_table}" if schema else context.version_table
    return buffer.getvalue(), table


def _location(exc: BaseException, directory: Path) -> str | None:
    """`file, line N` of the project's own code where `exc` was raised (None: not in the project)."""
    if isinstance(exc, SyntaxError) and exc.filename and not exc.filename.startswith("<"):
        return f"{Path(exc.filename).resolve()}, line {exc.lineno}"
    roots = [directory, *(Path(p).resolve() for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith("<")
        and any(Path(frame.filename).resolve().is_relative_to(root) for root in roots)
    ]
    return f"{Path(frames[-1].filename).resolve()}, line {frames[-1].lineno}" if frames else None


if __name__ == "__main__":
    sys.exit(main(sys.argv))

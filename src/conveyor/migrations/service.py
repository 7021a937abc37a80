"""Schema migrations of a release: read from its artifact, checked, applied before its instances start.

`plan` answers "what would promoting SERVICE VERSION to ENV run, and is it safe": the artifact's
migrations (SQL files, or an Alembic project rendered offline, from the verified bundle), what the
environment's database has applied, squawk's findings on the pending ones, and the expand/contract
check against every version running in any environment. `apply_for` runs the pending ones under the
runner's lock, checking again under it. `rollback_problems` says why an older version cannot run
against the schema as it is (ADR 0014, ADR 0018).
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy.orm import Session

from conveyor.artifacts.service import blob_path, get_artifact
from conveyor.deployments import running as deployments
from conveyor.errors import ConveyorError, InvalidRequest
from conveyor.migrations import alembic, compat, lint, runner
from conveyor.migrations.files import Migration, MigrationFilesInvalid, parse_files
from conveyor.migrations.schema import Shape, shape_of
from conveyor.resources import postgres
from conveyor.resources import service as resources
from conveyor.runtime.local.bundle import digest_file
from conveyor.secrets.crypto import Keyring
from conveyor.spec import Spec
from conveyor.spec.migrations import MigrationFormat

_CACHE: dict[tuple[str, str, str], list[Migration]] = {}
_MAX_FILE = 16 * 1024 * 1024


class MigrationRefused(ConveyorError):
    """A release's migrations would break a running version, fail the lint, or edit history."""

    status = 409
    title = "Migration refused"
    slug = "migration-refused"


@dataclass
class Plan:
    """What promoting one version to one environment would do to its database, and what stops it."""

    environment: str
    service: str
    version: str
    database: str | None = None
    applied: dict[str, runner.Applied] = field(default_factory=dict)
    migrations: list[Migration] = field(default_factory=list)
    pending: list[Migration] = field(default_factory=list)
    violations: list[compat.Violation] = field(default_factory=list)
    findings: list[lint.Finding] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    behind: list[str] = field(default_factory=list)
    """Problems running this version against a schema later migrations changed (a rollback)."""

    @property
    def refusals(self) -> list[str]:
        return [
            *self.changed,
            *(v.render() for v in self.violations),
            *(f.render() for f in self.findings if f.refuses),
            *self.behind,
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "service": self.service,
            "version": self.version,
            "database": self.database,
            "migrations": [
                {"id": m.id, "checksum": m.checksum, "down": m.down is not None} for m in self.migrations
            ],
            "applied": sorted(self.applied),
            "pending": [m.id for m in self.pending],
            "violations": [v.to_json() for v in self.violations],
            "lint": [f.to_json() for f in self.findings],
            "changed": self.changed,
            "behind": self.behind,
            "ok": not self.refusals,
        }


def bundle_migrations(
    home: Path, digest: str, directory: str, format: MigrationFormat = "sql"
) -> list[Migration]:
    """The migrations under `directory` of the bundle with `digest`, verified against it: its SQL
    files, or its Alembic project's revisions rendered offline (`format: alembic`, ADR 0018)."""
    key = (digest, directory, format)
    if key in _CACHE:
        return _CACHE[key]
    path = blob_path(home / "artifacts", digest)
    if not path.exists():
        raise InvalidRequest(
            f"the bundle {digest} is missing from the artifact store", hint="register it again"
        )
    if digest_file(path) != digest:
        raise InvalidRequest(
            f"the stored bundle {digest} does not match its digest: it was changed after it was registered",
            hint="register the artifact again from CI; a tampered bundle never runs",
        )
    if format == "alembic":
        found = alembic.bundle_revisions(path, digest, directory)
    else:
        found = _sql_files(path, directory)
    _CACHE[key] = found
    return found


def _sql_files(path: Path, directory: str) -> list[Migration]:
    root = PurePosixPath(directory.strip("/"))
    files: dict[str, bytes] = {}
    with tarfile.open(path, "r:gz") as archive:
        for member in archive:
            name = PurePosixPath(member.name.removeprefix("./"))
            if member.isfile() and name.parent == root and member.size <= _MAX_FILE:
                extracted = archive.extractfile(member)
                if extracted is not None:
                    files[name.name] = extracted.read()
    found = parse_files(files, where=f"{directory} in the bundle")
    if not found and alembic.INI in files:  # forgetting `format: alembic` must not skip every migration
        raise MigrationFilesInvalid(
            f"{directory} in the bundle holds alembic.ini and no NNNN_name.sql files",
            hint="an Alembic project: set services.NAME.migrations.format: alembic",
        )
    return found


def migrations_of(session: Session, home: Path, spec: Spec, service: str, version: str) -> list[Migration]:
    """The migrations `version` of `service` ships (none for a service without them, or an image)."""
    declared = spec.services[service].migrations
    if declared is None:
        return []
    artifact = get_artifact(session, service, version)
    if artifact.kind != "bundle" or artifact.digest is None:
        return []
    return bundle_migrations(home, artifact.digest, declared.path, declared.format)


def running_versions(
    session: Session, home: Path, spec: Spec, service: str, besides: str | None = None
) -> list[compat.Running]:
    """Every version of `service` running (or being applied, or kept by a rollout) anywhere."""
    found: dict[tuple[str, str], compat.Running] = {}
    for environment in spec.environments:
        for desired in deployments.desired_in_use(session, environment):
            if desired.service != service:
                continue
            for v in desired.versions:
                if v.version == besides or (environment, v.version) in found:
                    continue
                shape = shape_of(migrations_of(session, home, spec, service, v.version))
                found[(environment, v.version)] = compat.Running(environment, v.version, shape)
    return list(found.values())


def declared_columns(spec: Spec) -> Callable[[str, str], bool]:
    """Whether a column has a masking rule or is marked not sensitive under any service's `data`.

    Every service's tables live in the environment's one database, and a masked clone applies
    the rules of all services together, so a declaration anywhere covers the column.
    """
    names: set[str] = set()
    for declared in spec.services.values():
        for ref in [*declared.data.masking, *declared.data.not_sensitive]:
            names.add(str(ref).lower().removeprefix("public."))
    return lambda table, column: f"{table}.{column}" in names


def database_url(session: Session, spec: Spec, environment: str) -> tuple[str, str] | None:
    """(admin URL of the environment's database, owner role), or None when it is not provisioned."""
    row = resources.resource(session, environment)
    if row is None:
        return None
    return postgres.with_database(row.server, row.database), row.owner_role


def _provisioned(session: Session, spec: Spec, environment: str, release: str) -> tuple[str, str]:
    target = database_url(session, spec, environment)
    if target is None:
        raise InvalidRequest(
            f"{release} ships schema migrations, but {environment} has no provisioned database",
            hint=f"declare its resources.database, then run `conveyor resource provision {environment}`",
        )
    return target


def plan(session: Session, home: Path, spec: Spec, environment: str, service: str, version: str) -> Plan:
    """What promoting SERVICE VERSION to ENVIRONMENT would apply, and every reason to refuse it."""
    spec.environment(environment)
    spec.service(service)
    result = Plan(environment, service, version)
    result.migrations = migrations_of(session, home, spec, service, version)
    if not result.migrations:
        return result
    target = _provisioned(session, spec, environment, f"{service} {version}")
    result.database = target[0].rsplit("/", 1)[-1]
    with postgres.connect(target[0]) as conn:
        result.applied = runner.read_applied(conn, service)
    _judge(session, home, spec, result)
    return result


def _judge(session: Session, home: Path, spec: Spec, result: Plan) -> None:
    """Fill in what stops `result` given its migrations and what is applied."""
    service, version = result.service, result.version
    result.changed = runner.changed(result.migrations, result.applied)
    result.pending = compat.pending_of(result.migrations, result.applied)
    result.behind = _behind(session, home, spec, result)
    if result.pending:
        current = shape_of(m for m in result.migrations if m.id in result.applied)
        running = running_versions(session, home, spec, service, besides=version)
        result.violations = compat.check(result.pending, current, running, declared_columns(spec))
        exclude = spec.services[service].migrations
        result.findings = lint.lint(result.pending, exclude.lint_exclude if exclude else ())


def _behind(session: Session, home: Path, spec: Spec, result: Plan) -> list[str]:
    """Problems running `result.version` against a schema migrations it lacks have changed."""
    ahead = sorted(set(result.applied) - {m.id for m in result.migrations})
    if not ahead:
        return []
    now = _database_shape(session, home, spec, result.service, result.applied)
    return [
        f"{problem} (applied since: {', '.join(ahead)})"
        for problem in compat.rollback_problems(shape_of(result.migrations), now, result.version)
    ]


def _database_shape(
    session: Session, home: Path, spec: Spec, service: str, applied: dict[str, runner.Applied]
) -> Shape:
    """The schema the applied migrations built, read from the release that applied the latest one."""
    latest = max(applied.values(), key=lambda a: a.id)
    version = latest.release.rsplit(" ", 1)[-1]
    migrations = migrations_of(session, home, spec, service, version)
    return shape_of(m for m in migrations if m.id in applied)


def rollback_refusal(
    session: Session, home: Path, spec: Spec, environment: str, service: str, version: str
) -> list[str]:
    """Why going back to `version` in `environment` would run it against a schema it cannot use."""
    if service not in spec.services or spec.services[service].migrations is None:
        return []
    target = database_url(session, spec, environment)
    if target is None:
        return []
    result = Plan(
        environment, service, version, migrations=migrations_of(session, home, spec, service, version)
    )
    with postgres.connect(target[0]) as conn:
        result.applied = runner.read_applied(conn, service)
    return _behind(session, home, spec, result)


def refuse(result: Plan) -> None:
    if result.refusals:
        raise MigrationRefused(
            f"{result.service} {result.version} cannot go to {result.environment}: "
            + "\n".join(result.refusals),
            hint="`conveyor migrations plan` shows the whole check; follow the safe sequence it names",
        )


def login_target(
    session: Session, spec: Spec, keyring: Keyring, environment: str, release: str
) -> tuple[str, str]:
    """(URL of the environment's database signed in as its app login, owner role): what migrations
    run on. The login can become the owner and no more, so neither can a migration (ADR 0014)."""
    url, owner = _provisioned(session, spec, environment, release)
    return postgres.as_login(url, *resources.migration_login(session, spec, keyring, environment)), owner


def apply_for(
    session_factory: Callable[[], Any],
    home: Path,
    spec: Spec,
    keyring: Keyring,
    environment: str,
    service: str,
    version: str,
) -> runner.Run | None:
    """Apply what `version` has pending in `environment`, checking again under the runner's lock.

    `session_factory()` gives a read session context; the check under the lock opens a new one, so
    it sees what runs where after the wait for the lock, not before.
    """
    with session_factory() as session:
        migrations = migrations_of(session, home, spec, service, version)
        if not migrations:
            return None
        target = login_target(session, spec, keyring, environment, f"{service} {version}")

    def under_lock(pending: list[Migration], applied: dict[str, runner.Applied]) -> None:
        result = Plan(environment, service, version, migrations=migrations, applied=applied)
        if pending or set(applied) - {m.id for m in migrations}:
            with session_factory() as fresh:
                _judge(fresh, home, spec, result)
        refuse(result)

    return run_on(target, spec, service, version, migrations, before=under_lock)


def run_on(
    target: tuple[str, str],
    spec: Spec,
    service: str,
    version: str,
    migrations: list[Migration],
    before: Callable[[list[Migration], dict[str, runner.Applied]], None] | None = None,
) -> runner.Run:
    """The runner on `target` (URL, owner role) with the service's declared timeouts."""
    declared = spec.services[service].migrations
    assert declared is not None, f"{service} declares no migrations"
    with postgres.connect(target[0]) as conn:
        return runner.migrate(
            conn,
            target[1],
            migrations,
            service=service,
            release=f"{service} {version}",
            lock_timeout_ms=declared.lock_timeout.milliseconds,
            statement_timeout_ms=declared.statement_timeout.milliseconds,
            before=before,
        )


def status(session: Session, spec: Spec, environment: str) -> dict[str, Any]:
    """The environment's applied migrations as its database records them, service by service."""
    spec.environment(environment)
    target = database_url(session, spec, environment)
    if target is None:
        return {"environment": environment, "database": None, "applied": []}
    with postgres.connect(target[0]) as conn:
        applied = [
            (name, a) for name in sorted(spec.services) for a in runner.read_applied(conn, name).values()
        ]
    return {
        "environment": environment,
        "database": target[0].rsplit("/", 1)[-1],
        "applied": [
            {"service": name, "id": a.id, "checksum": a.checksum, "release": a.release,
             "applied_at": a.applied_at, "duration_ms": round(a.duration_ms, 1)}
            for name, a in applied
        ],
    }  # fmt: skip

"""An environment's PostgreSQL database: provisioning, the login a password version sets, retiring
the login no running instance needs any more, and the connection settings releases get (ADR 0013).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from conveyor.audit.log import AuditContext, record
from conveyor.clock import isoformat
from conveyor.deployments import running as deployments
from conveyor.errors import Conflict, InvalidRequest, NotFound
from conveyor.resources import namespaces, postgres, sqlite_file
from conveyor.rollout.policy import time_scale
from conveyor.secrets import service as secrets
from conveyor.secrets.crypto import Keyring
from conveyor.spec import Spec
from conveyor.spec.data import Database
from conveyor.spec.vocabulary import LIVE_TIERS
from conveyor.store.tables import DatabaseResource, Deployment, SecretVersion

BINDING = "postgres-login:"
RETIRED = "postgres-login-retired:"
GRACE_S = 10.0
"""How long an environment stays settled after a release before the old login is retired (scaled by
CONVEYOR_TIME_SCALE, like every wait of a rollout)."""


@dataclass(frozen=True)
class Declared:
    """What conveyor.yaml asks for, resolved to names and a server."""

    environment: str
    spec: Database
    names: postgres.Names
    server: str


def declared(spec: Spec, environment: str) -> Declared:
    """The environment's PostgreSQL database as declared; a clear error when there is none."""
    spec.environment(environment)  # NotFound naming the declared ones
    database = spec.environments[environment].resources.database
    if database is None or database.engine != "postgres":
        raise InvalidRequest(
            f"{environment} declares no PostgreSQL database",
            hint=f"add resources: {{database: {{engine: postgres}}}} under environments.{environment}",
        )
    return Declared(
        environment,
        database,
        postgres.names(spec.project, environment, database.name),
        postgres.server_url(database.server),
    )


def resource(session: Session, environment: str) -> DatabaseResource | None:
    return session.execute(
        select(DatabaseResource).where(DatabaseResource.environment == environment)
    ).scalar_one_or_none()


def login_of(row: SecretVersion | None) -> str | None:
    """The login role a password version is set on (None: none, or retired since)."""
    if row is None or row.binding is None or not row.binding.startswith(BINDING):
        return None
    return row.binding.removeprefix(BINDING)


def migration_login(session: Session, spec: Spec, keyring: Keyring, environment: str) -> tuple[str, str]:
    """(login role, its password): the newest login of the environment's database that a password
    still opens. Migrations connect as it and `SET ROLE` to the owner, so no statement in them can
    act as more than the owner role, whatever it executes (ADR 0014)."""
    d = declared(spec, environment)
    for version in reversed(secrets.versions(session, environment, d.spec.password_secret)):
        login = login_of(version)
        if login is not None:
            ref = str(secrets.Ref(environment, version.name, version.version))
            return login, secrets.values(session, keyring, {ref})[ref]
    raise Conflict(
        f"{environment}'s database has no login with a password yet: migrations connect as the app's login",
        hint=f"`conveyor secret set {environment} {d.spec.password_secret}`, "
        f"then `conveyor resource provision {environment}`",
    )


def check_not_retired(session: Session, refs: set[str]) -> None:
    """Refuse a desired state that needs a password whose login was retired after a rotation."""
    for text in refs:
        ref = secrets.Ref.parse(text)
        row = next(
            (v for v in secrets.versions(session, ref.environment, ref.name) if v.version == ref.version),
            None,
        )
        if row is not None and row.binding is not None and row.binding.startswith(RETIRED):
            raise Conflict(
                f"this release logs in to the database with {ref.name} version {ref.version}, whose login "
                f"({row.binding.removeprefix(RETIRED)}) was retired after the password was rotated",
                hint="release the running version again instead (it takes the current password)",
            )
        if row is not None and row.binding is not None and row.binding.startswith(namespaces.RETIRED):
            raise Conflict(
                f"this release logs in to Redis with {ref.name} version {ref.version}, whose password "
                "was removed from its ACL user after a rotation",
                hint="release the running version again instead (it takes the current password)",
            )


def provision(
    session: Session, ctx: AuditContext, spec: Spec, keyring: Keyring, environment: str, now: datetime
) -> dict[str, Any]:
    """Create the database and roles (idempotent), and set the current password on a login."""
    d = declared(spec, environment)
    done = postgres.provision(d.server, d.names)
    row = resource(session, environment) or DatabaseResource(environment=environment)
    row.server, row.database, row.owner_role = d.server, d.names.database, d.names.owner
    row.provisioned_by, row.provisioned_at = ctx.actor, isoformat(now)
    session.add(row)
    session.flush()
    password = secrets.current(session, environment, d.spec.password_secret)
    if password is not None and login_of(password) is None:
        bind(session, spec, keyring, environment, password)
    record(
        session,
        ctx,
        "resource.provision",
        now=now,
        environment=environment,
        target=f"database:{d.names.database}",
        details={"server": d.server, "database": d.names.database, "created": done["created"]},
    )
    return show(session, spec, environment)


def is_bound(session: Session, spec: Spec, environment: str, name: str) -> bool:
    """Whether `name` is the password of a provisioned database or Redis namespace of `environment`."""
    database = spec.environments[environment].resources.database
    return (
        database is not None
        and database.engine == "postgres"
        and database.password_secret == name
        and resource(session, environment) is not None
    ) or namespaces.is_bound(session, spec, environment, name)


def _running_versions(session: Session, environment: str, name: str) -> set[int]:
    """Versions of secret `name` that what runs (or is being applied) in `environment` uses.

    That is the current release, any deployment still being applied, and the stable release a
    rollout keeps running beside or after the new one (preview, progressing, hot, standby).
    """
    found: set[int] = set()
    for desired in deployments.desired_in_use(session, environment):
        for ref in desired.secret_refs():
            parsed = secrets.Ref.parse(ref)
            if (parsed.environment, parsed.name) == (environment, name):
                found.add(parsed.version)
    return found


def _logins_in_use(session: Session, environment: str, name: str) -> set[str]:
    versions = {v.version: v for v in secrets.versions(session, environment, name)}
    return {
        login
        for number in _running_versions(session, environment, name)
        if (login := login_of(versions.get(number))) is not None
    }


def bind(session: Session, spec: Spec, keyring: Keyring, environment: str, row: SecretVersion) -> str:
    """Set a new password version on the login no running release uses; returns that login.

    Runs inside the transaction that stores the version: when the server refuses, nothing is stored.
    A Redis namespace's password is added to its ACL user instead (returns the user).
    """
    cache = spec.environments[environment].resources.cache
    if cache is not None and cache.namespace == "acl" and cache.password_secret == row.name:
        return namespaces.bind(session, spec, keyring, environment, row)
    d = declared(spec, environment)
    in_use = _logins_in_use(session, environment, row.name)
    latest_login = next(
        (
            login_of(v)
            for v in reversed(secrets.versions(session, environment, row.name))
            if login_of(v) and v is not row
        ),
        None,
    )
    free = [login for login in d.names.logins if login not in in_use]
    if not free:
        raise Conflict(
            f"both logins of {d.names.database} are in use by versions that may still run",
            hint="let the running rollout finish (or abort it), then rotate again",
        )
    # alternate: prefer the login the previous version did not use (its instances may still run)
    login = next((x for x in free if x != latest_login), free[0])
    value = secrets.values(session, keyring, {str(secrets.Ref(environment, row.name, row.version))})
    postgres.set_login(d.server, login, next(iter(value.values())))
    for older in secrets.versions(session, environment, row.name):
        if older is not row and login_of(older) == login:
            older.binding = RETIRED + login  # its password no longer opens that login
    row.binding = BINDING + login
    return login


def connection_settings(
    session: Session, spec: Spec, environment: str, password_ref: str | None
) -> dict[str, str]:
    """PGHOST, PGPORT, PGDATABASE and PGUSER for a release whose password is `password_ref`."""
    row = resource(session, environment)
    database = spec.environments[environment].resources.database
    if row is None or database is None or password_ref is None:
        return {}
    ref = secrets.Ref.parse(password_ref)
    version = next(
        (v for v in secrets.versions(session, ref.environment, ref.name) if v.version == ref.version), None
    )
    login = login_of(version)
    if login is None:
        return {}
    host, port = postgres.endpoint(row.server)
    return {"PGHOST": host, "PGPORT": port, "PGDATABASE": row.database, "PGUSER": login}


def retire_unused(
    session: Session, ctx: AuditContext, spec: Spec, environment: str, now: datetime
) -> list[str]:
    """Retire (NOLOGIN) each login, and remove from a Redis ACL user each password, that no release
    that may still run uses.

    Only once the environment is settled: nothing deploying, verifying or rolling out, and the last
    release applied at least GRACE_S ago, so every instance that had the old password is gone.
    """
    if environment not in spec.environments or not _settled(session, environment, now):
        return []
    cache = spec.environments[environment].resources.cache
    removed = []
    if cache is not None:
        in_use = _running_versions(session, environment, cache.password_secret)
        current = secrets.current(session, environment, cache.password_secret)
        if current is not None:
            in_use.add(current.version)  # the next release takes it
        removed = namespaces.retire(session, ctx, spec, environment, in_use, now)
    return sorted(_retire_logins(session, ctx, spec, environment, now) + removed)


def _settled(session: Session, environment: str, now: datetime) -> bool:
    """Nothing deploying, verifying or rolling out, and the last release applied GRACE_S ago or more."""
    from conveyor.store.tables import Promotion

    moving = session.execute(
        select(Promotion.id).where(
            Promotion.environment == environment,
            Promotion.state.in_(("deploying", "verifying", "rolling_out")),
        )
    ).first()
    last = session.execute(
        select(Deployment)
        .where(Deployment.environment == environment)
        .order_by(Deployment.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if moving is not None or last is None or last.finished_at is None:
        return False
    finished = datetime.fromisoformat(last.finished_at.replace("Z", "+00:00"))
    return (now - finished).total_seconds() >= GRACE_S * time_scale()


def _retire_logins(
    session: Session, ctx: AuditContext, spec: Spec, environment: str, now: datetime
) -> list[str]:
    row = resource(session, environment)
    database = spec.environments[environment].resources.database
    if row is None or database is None or database.engine != "postgres":
        return []
    name = database.password_secret
    in_use = _logins_in_use(session, environment, name)
    # the newest version waits for the next release to take it: retiring it would refuse that release
    current = login_of(secrets.current(session, environment, name))
    if current is not None:
        in_use.add(current)
    retired = []
    for version in secrets.versions(session, environment, name):
        login = login_of(version)
        if login is None or login in in_use:
            continue
        postgres.retire_login(row.server, login)
        version.binding = RETIRED + login
        retired.append(login)
        record(
            session,
            ctx,
            "resource.retire_login",
            now=now,
            environment=environment,
            target=f"database:{row.database}",
            details={"login": login, "secret": name, "version": version.version},
        )
    return sorted(set(retired))


def show(session: Session, spec: Spec, environment: str) -> dict[str, Any]:
    """What is declared, what is provisioned, and (when reachable) what the server says."""
    d = declared(spec, environment)
    row = resource(session, environment)
    password = secrets.current(session, environment, d.spec.password_secret)
    data: dict[str, Any] = {
        "environment": environment,
        "engine": "postgres",
        "server": d.server,
        "database": d.names.database,
        "owner_role": d.names.owner,
        "logins": list(d.names.logins),
        "provisioned": row is not None,
        "provisioned_at": row.provisioned_at if row else None,
        "provisioned_by": row.provisioned_by if row else None,
        "password_secret": d.spec.password_secret,
        "password_version": password.version if password else None,
        "password_login": login_of(password),
    }
    if row is not None:
        try:
            data["live"] = postgres.describe(d.server, d.names)
        except Conflict as exc:
            data["live"] = {"error": exc.detail}
    return data


def listing(session: Session, spec: Spec) -> list[dict[str, Any]]:
    """Every environment's declared database and cache, and whether Conveyor provisioned them.

    Read from the store and the disk only (a cache in db-index mode has no record: null).
    """
    rows = []
    for name, environment in spec.environments.items():
        database, cache = environment.resources.database, environment.resources.cache
        provisioned = resource(session, name) is not None
        database_name = None
        if database is not None and database.engine == "postgres":
            database_name = postgres.names(spec.project, name, database.name).database
        elif database is not None:
            path = sqlite_file.path_of(name)
            database_name, provisioned = str(path), path.exists()
        d = namespaces.declared(spec, name)
        cache_provisioned = None
        if d is not None and d.acl:
            versions = secrets.versions(session, name, d.spec.password_secret)
            cache_provisioned = any(v.binding and v.binding.startswith(namespaces.BINDING) for v in versions)
        rows.append(
            {
                "environment": name,
                "database": None if database is None else database.engine,
                "database_name": database_name,
                "provisioned": provisioned,
                "cache": None if cache is None else cache.engine,
                "cache_namespace": None if d is None else (d.names.prefix if d.acl else f"db {d.spec.db}"),
                "cache_provisioned": cache_provisioned,
            }
        )
    return rows


def provisioned(session: Session, spec: Spec, environment: str) -> Declared:
    """The environment's PostgreSQL database as declared, refused when it was never provisioned."""
    d = declared(spec, environment)
    if resource(session, environment) is None:
        raise NotFound(
            f"{environment}'s database was never provisioned",
            hint=f"`conveyor resource provision {environment}`",
        )
    return d


# -- every resource of an environment: what `conveyor resource` shows, provisions and resets -------


def release_settings(
    session: Session, spec: Spec, environment: str, refs: dict[str, str]
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """What a release gets from the provisioned resources: settings, extra secret references, origins.

    The extra references are PGPASSWORD and REDIS_PASSWORD: the same secret versions as the
    passwords the logins were set with, so a login and its password always change in one release.
    """
    resources = spec.environments[environment].resources
    settings: dict[str, str] = {}
    extra: dict[str, str] = {}
    origins: dict[str, str] = {}
    database, cache = resources.database, resources.cache
    if database is not None and database.engine == "postgres" and database.password_secret in refs:
        found = connection_settings(session, spec, environment, refs[database.password_secret])
        if found:
            settings.update(found)
            extra["PGPASSWORD"] = refs[database.password_secret]
            origins.update(dict.fromkeys(found, "resources.database, provisioned by Conveyor"))
    elif database is not None and database.engine == "sqlite":
        path = sqlite_file.path_of(environment)
        if path.exists():
            found = {"DATABASE_URL": sqlite_file.url_of(path), "SQLITE_PATH": str(path)}
            settings.update(found)
            origins.update(dict.fromkeys(found, "resources.database (sqlite), provisioned by Conveyor"))
    if cache is not None:
        ref = refs.get(cache.password_secret)
        found = namespaces.connection_settings(session, spec, environment, ref)
        if found:
            settings.update(found)
            if ref is not None and "REDIS_USERNAME" in found:
                extra["REDIS_PASSWORD"] = ref
            origins.update(dict.fromkeys(found, "resources.cache, provisioned by Conveyor"))
    return settings, extra, origins


def refuse_live(spec: Spec, environment: str, what: str) -> None:
    """A production or dr environment's database or cache is never reset."""
    tier = spec.environment(environment).tier
    if tier in LIVE_TIERS:
        raise Conflict(
            f"{environment} is a {tier} environment: its {what} is never reset",
            hint="restore a backup instead, or reset a non-production environment",
        )


def nothing_declared(environment: str) -> InvalidRequest:
    """The error for an environment with no resource to act on."""
    return InvalidRequest(
        f"{environment} declares no database and no cache",
        hint=f"add resources: {{database: {{engine: postgres}}}} (or cache: {{engine: redis}}) "
        f"under environments.{environment}",
    )


def show_all(session: Session, spec: Spec, environment: str) -> dict[str, Any]:
    """The environment's database (PostgreSQL or SQLite) and cache, each as `show` describes it."""
    spec.environment(environment)
    database = spec.environments[environment].resources.database
    d = namespaces.declared(spec, environment)
    data: dict[str, Any] = {"environment": environment, "database": None, "cache": None}
    if database is not None and database.engine == "postgres":
        data["database"] = show(session, spec, environment)
    elif database is not None:
        path = sqlite_file.path_of(environment)
        live = sqlite_file.describe(path)
        data["database"] = {
            "environment": environment,
            "engine": "sqlite",
            "path": str(path),
            "url": sqlite_file.url_of(path),
            "provisioned": live["exists"],
            "live": live,
        }
    if d is not None:
        data["cache"] = namespaces.show(session, spec, d)
    return data


def provision_all(
    session: Session, ctx: AuditContext, spec: Spec, keyring: Keyring, environment: str, now: datetime
) -> dict[str, Any]:
    """Provision every resource the environment declares (idempotent): database or file, and cache."""
    spec.environment(environment)
    database = spec.environments[environment].resources.database
    d = namespaces.declared(spec, environment)
    if database is None and d is None:
        raise nothing_declared(environment)
    if database is not None and database.engine == "postgres":
        provision(session, ctx, spec, keyring, environment, now)
    elif database is not None:
        path = sqlite_file.path_of(environment)
        done = sqlite_file.provision(path)
        record(
            session,
            ctx,
            "resource.provision",
            now=now,
            environment=environment,
            target=f"sqlite:{path.name}",
            details={"path": str(path), "created": done["created"]},
        )
    if d is not None:
        namespaces.provision(session, ctx, spec, keyring, d, now)
    return show_all(session, spec, environment)


def reset_sqlite(session: Session, ctx: AuditContext, environment: str, now: datetime) -> dict[str, Any]:
    """Remove the environment's SQLite file (and journal) and create it empty; audited."""
    path = sqlite_file.path_of(environment)
    if not path.exists():
        raise NotFound(
            f"{environment}'s SQLite file was never provisioned",
            hint=f"`conveyor resource provision {environment}`",
        )
    sqlite_file.reset(path)
    record(
        session,
        ctx,
        "resource.reset",
        now=now,
        environment=environment,
        target=f"sqlite:{path.name}",
        details={"path": str(path)},
    )
    return {"engine": "sqlite", "path": str(path)}


def retiring_environments(session: Session) -> list[str]:
    """Environments with logins or Redis passwords that may need retiring: provisioned ones."""
    found = set(session.execute(select(DatabaseResource.environment)).scalars())
    found |= set(
        session.execute(
            select(SecretVersion.environment).where(SecretVersion.binding.startswith(namespaces.BINDING))
        ).scalars()
    )
    return sorted(found)

"""An environment's Redis namespace: provisioning, the passwords its ACL user holds, retiring the old
ones, and the settings releases get (ADR 0017). `resources.service` calls these for every command.

A password version set on the user is marked `redis-password:SHA256` (the hash Redis keeps, needed to
remove it later without opening the secret); removed, `redis-password-retired:SHA256`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from conveyor.audit.log import AuditContext, record
from conveyor.errors import Conflict, InvalidRequest
from conveyor.resources import redis_namespace as edge
from conveyor.secrets import service as secrets
from conveyor.secrets.crypto import Keyring
from conveyor.spec import Spec
from conveyor.spec.data import Cache
from conveyor.store.tables import SecretVersion

BINDING = "redis-password:"
RETIRED = "redis-password-retired:"


@dataclass(frozen=True)
class Declared:
    """What conveyor.yaml asks for, resolved to a user, a prefix and a server."""

    environment: str
    spec: Cache
    names: edge.Names
    server: str

    @property
    def acl(self) -> bool:
        return self.spec.namespace == "acl"

    @property
    def target(self) -> str:
        return f"cache:{self.names.prefix}" if self.acl else f"cache:db{self.spec.db}"


def declared(spec: Spec, environment: str) -> Declared | None:
    """The environment's Redis namespace as declared (None: it declares no cache)."""
    spec.environment(environment)  # NotFound naming the declared ones
    cache = spec.environments[environment].resources.cache
    if cache is None:
        return None
    return Declared(environment, cache, edge.names(spec.project, environment), edge.server_url(cache.server))


def digest_of(row: SecretVersion | None) -> str | None:
    """The password hash a version put on the ACL user (None: none, or removed since)."""
    if row is None or row.binding is None or not row.binding.startswith(BINDING):
        return None
    return row.binding.removeprefix(BINDING)


def _password_secret(d: Declared, spec: Spec) -> str:
    name = d.spec.password_secret
    if name not in spec.environments[d.environment].secrets:
        raise InvalidRequest(
            f"{d.environment}'s Redis user needs a password, and {name} is not declared",
            hint=f"add {name}: {{kind: database-password}} under environments.{d.environment}.secrets, "
            f"apply, then `conveyor secret set {d.environment} {name} --generate`",
        )
    return name


def provision(
    session: Session, ctx: AuditContext, spec: Spec, keyring: Keyring, d: Declared, now: datetime
) -> None:
    """Create the ACL user (or claim the database index), idempotently; put the current password on it."""
    if d.acl:
        name = _password_secret(d, spec)
        done = edge.provision(d.server, d.names)
        password = secrets.current(session, d.environment, name)
        if password is not None:  # again when bound: a user deleted by hand gets its password back
            bind(session, spec, keyring, d.environment, password)
    else:
        assert d.spec.db is not None  # the spec requires it with db-index
        done = edge.claim_index(d.server, d.names, d.spec.db)
    record(
        session,
        ctx,
        "resource.provision",
        now=now,
        environment=d.environment,
        target=d.target,
        details={"server": d.server, "namespace": d.spec.namespace, "created": done["created"]},
    )


def is_bound(session: Session, spec: Spec, environment: str, name: str) -> bool:
    """Whether `name` is the password of a provisioned ACL namespace of `environment`."""
    d = declared(spec, environment) if environment in spec.environments else None
    if d is None or not d.acl or d.spec.password_secret != name:
        return False
    if any(
        v.binding and v.binding.startswith((BINDING, RETIRED))
        for v in secrets.versions(session, environment, name)
    ):
        return True
    try:
        return edge.user_exists(d.server, d.names.user)
    except Conflict:
        return False  # not reachable now: `resource provision` puts the password on the user later


def bind(session: Session, spec: Spec, keyring: Keyring, environment: str, row: SecretVersion) -> str:
    """Add a new password version to the ACL user (the older ones keep working); returns the user.

    Runs inside the transaction that stores the version: when the server refuses, nothing is stored.
    """
    d = declared(spec, environment)
    assert d is not None
    value = secrets.values(session, keyring, {str(secrets.Ref(environment, row.name, row.version))})
    password = next(iter(value.values()))
    edge.add_password(d.server, d.names.user, password)
    row.binding = BINDING + edge.password_hash(password)
    return d.names.user


def connection_settings(
    session: Session, spec: Spec, environment: str, password_ref: str | None
) -> dict[str, str]:
    """REDIS_HOST, REDIS_PORT, REDIS_KEY_PREFIX and REDIS_USERNAME (acl) or REDIS_DB (db-index)."""
    d = declared(spec, environment)
    if d is None:
        return {}
    host, port = edge.endpoint(d.server)
    settings = {"REDIS_HOST": host, "REDIS_PORT": port, "REDIS_KEY_PREFIX": d.names.prefix}
    if edge.uses_tls(d.server):
        settings["REDIS_TLS"] = "true"
    if not d.acl:
        return {**settings, "REDIS_DB": str(d.spec.db)}
    if password_ref is None:
        return {}
    ref = secrets.Ref.parse(password_ref)
    version = next(
        (v for v in secrets.versions(session, ref.environment, ref.name) if v.version == ref.version), None
    )
    if digest_of(version) is None:
        return {}  # not provisioned (or this version's password was removed): nothing to log in with
    return {**settings, "REDIS_USERNAME": d.names.user}


def retire(
    session: Session, ctx: AuditContext, spec: Spec, environment: str, in_use: set[int], now: datetime
) -> list[str]:
    """Remove from the ACL user each password no release that may still run uses (versions `in_use` stay).

    The caller decides the environment is settled (resources.service.retire_unused).
    """
    d = declared(spec, environment) if environment in spec.environments else None
    if d is None or not d.acl:
        return []
    name = d.spec.password_secret
    found = secrets.versions(session, environment, name)
    keep = {digest_of(v) for v in found if v.version in in_use}
    removed = []
    for version in found:
        digest = digest_of(version)
        if digest is None or version.version in in_use:
            continue
        if digest not in keep:  # the same value set twice stays while either version runs
            edge.remove_password(d.server, d.names.user, digest)
        version.binding = RETIRED + digest
        removed.append(f"{d.names.user} v{version.version}")
        record(
            session,
            ctx,
            "resource.retire_password",
            now=now,
            environment=environment,
            target=d.target,
            details={"user": d.names.user, "secret": name, "version": version.version},
        )
    return removed


def show(session: Session, spec: Spec, d: Declared) -> dict[str, Any]:
    """What is declared, which password versions the user holds, and what the server says now."""
    data: dict[str, Any] = {
        "environment": d.environment,
        "engine": "redis",
        "server": d.server,
        "namespace": d.spec.namespace,
        "user": d.names.user if d.acl else None,
        "key_prefix": d.names.prefix,
        "db": d.spec.db,
        "password_secret": d.spec.password_secret if d.acl else None,
        "password_versions": [],
        "password_version": None,
    }
    if d.acl:
        found = secrets.versions(session, d.environment, d.spec.password_secret)
        data["password_versions"] = [v.version for v in found if digest_of(v) is not None]
        current = secrets.current(session, d.environment, d.spec.password_secret)
        data["password_version"] = current.version if current else None
    try:
        data["live"] = edge.describe(d.server, d.names, None if d.acl else d.spec.db)
    except Conflict as exc:
        data["live"] = {"error": exc.detail}
    data["provisioned"] = bool(data["live"].get("exists"))
    return data


def reset(session: Session, ctx: AuditContext, d: Declared, now: datetime) -> int:
    """Delete every key of the namespace (SCAN + UNLINK by prefix; never FLUSHDB)."""
    deleted = edge.reset(d.server, d.names, None if d.acl else d.spec.db)
    record(
        session,
        ctx,
        "resource.reset",
        now=now,
        environment=d.environment,
        target=d.target,
        details={"deleted_keys": deleted},
    )
    return deleted

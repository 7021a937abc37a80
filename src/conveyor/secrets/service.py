"""Secrets in the store: versions sealed under the master key, rotation, history, delivery (ADR 0010).

Values go in through `set_secret`/`rotate` and come out only through `values`, which the runtime
delivery calls for a release's references. Nothing here returns or records a value anywhere else:
listings, history and audit events carry names, versions, kinds and dates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from conveyor.audit.log import AuditContext, record
from conveyor.clock import isoformat
from conveyor.errors import Conflict, InvalidRequest, NotFound
from conveyor.secrets import policy
from conveyor.secrets.crypto import Keyring, OpenFailed, Sealed, open_sealed, rewrap, row_aad, seal
from conveyor.spec import Spec
from conveyor.spec.settings import SecretRef
from conveyor.store.tables import SecretVersion

MAX_BYTES = 64 * 1024
_REF = re.compile(r"(?P<environment>[^/@]+)/(?P<name>[^/@]+)@(?P<version>\d+)")


@dataclass(frozen=True)
class Ref:
    """`environment/NAME@version`: which stored value a release runs with."""

    environment: str
    name: str
    version: int

    def __str__(self) -> str:
        return f"{self.environment}/{self.name}@{self.version}"

    @classmethod
    def parse(cls, text: str) -> Ref:
        match = _REF.fullmatch(text)
        if match is None:
            raise InvalidRequest(f"'{text}' is not a secret reference (environment/NAME@version)")
        return cls(match["environment"], match["name"], int(match["version"]))


def _parse_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def declared(spec: Spec, environment: str, name: str) -> SecretRef:
    """The reference conveyor.yaml declares; NotFound naming what is declared."""
    spec.environment(environment)  # NotFound naming the declared ones
    secrets = spec.environments[environment].secrets
    if name not in secrets:
        have = ", ".join(secrets) or "none"
        raise NotFound(
            f"{environment} declares no secret '{name}'",
            hint=f"declare it under environments.{environment}.secrets in conveyor.yaml and apply "
            f"(declared there: {have})",
        )
    ref = secrets[name]
    if ref.from_environment is not None:
        raise InvalidRequest(
            f"{environment} uses {name} from {ref.from_environment}",
            hint=f"set it there: `conveyor secret set {ref.from_environment} {name}`",
        )
    return ref


def versions(session: Session, environment: str, name: str) -> list[SecretVersion]:
    """Every version of one secret, oldest first."""
    query = (
        select(SecretVersion)
        .where(SecretVersion.environment == environment, SecretVersion.name == name)
        .order_by(SecretVersion.version)
    )
    return list(session.execute(query).scalars())


def current(session: Session, environment: str, name: str) -> SecretVersion | None:
    """The newest version, unless the secret was deleted."""
    found = versions(session, environment, name)
    if not found or found[-1].destroyed_at is not None:
        return None
    return found[-1]


def _check_value(name: str, kind: str, value: str) -> datetime | None:
    """Refuse an empty or oversized value; a certificate's expiry date (None for other kinds)."""
    if not value.strip():
        raise InvalidRequest(f"the value of {name} is empty", hint="pipe the value in: `… < file`")
    if len(value.encode()) > MAX_BYTES:
        raise InvalidRequest(f"the value of {name} is over {MAX_BYTES // 1024} KiB")
    if kind != "certificate":
        return None
    from cryptography import x509

    try:
        certificate = x509.load_pem_x509_certificate(value.encode())
    except ValueError:
        raise InvalidRequest(
            f"{name} is declared as a certificate, and this value is not a PEM certificate",
            hint="give the certificate in PEM form (-----BEGIN CERTIFICATE-----)",
        ) from None
    return certificate.not_valid_after_utc


def _store(
    session: Session,
    ctx: AuditContext,
    keyring: Keyring,
    environment: str,
    name: str,
    kind: str,
    value: str,
    action: str,
    reason: str,
    now: datetime,
    generated: bool,
) -> SecretVersion:
    expires = _check_value(name, kind, value)
    existing = versions(session, environment, name)
    number = existing[-1].version + 1 if existing else 1
    sealed = seal(keyring, value.encode(), row_aad(environment, name, number))
    row = SecretVersion(
        environment=environment,
        name=name,
        version=number,
        kind=kind,
        ciphertext=sealed.ciphertext,
        wrapped_key=sealed.wrapped_key,
        key_id=sealed.key_id,
        expires_at=None if expires is None else isoformat(expires),
        created_by=ctx.actor,
        created_at=isoformat(now),
        reason=reason,
    )
    session.add(row)
    details: dict[str, Any] = {"name": name, "version": number, "kind": kind, "reason": reason}
    if generated:
        details["generated"] = True
    if existing:
        details["previous_version"] = existing[-1].version
    record(session, ctx, action, now=now, environment=environment, target=f"secret:{name}", details=details)
    return row


def set_secret(
    session: Session,
    ctx: AuditContext,
    spec: Spec,
    keyring: Keyring,
    environment: str,
    name: str,
    value: str | None,
    reason: str,
    now: datetime,
) -> SecretVersion:
    """Store a new version of a declared secret (`value` None: generate one, for kinds that allow it)."""
    ref = declared(spec, environment, name)
    generated = value is None
    if value is None:
        try:
            value = policy.generate(ref.kind)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
    return _store(
        session, ctx, keyring, environment, name, ref.kind, value, "secret.set", reason, now, generated
    )


def rotate(
    session: Session,
    ctx: AuditContext,
    spec: Spec,
    keyring: Keyring,
    environment: str,
    name: str,
    value: str | None,
    reason: str,
    now: datetime,
) -> SecretVersion:
    """A new version replacing the current one (generated when no value is given and the kind allows).

    The old version stays readable, so instances still running with it keep working until the next
    release has replaced every one of them, and a rollback can return to it.
    """
    ref = declared(spec, environment, name)
    if current(session, environment, name) is None:
        raise NotFound(
            f"{environment} has no value for {name} to rotate",
            hint=f"set one first: `conveyor secret set {environment} {name}`",
        )
    generated = value is None
    if value is None:
        if ref.kind not in policy.GENERATED_KINDS:
            raise InvalidRequest(
                f"{name} is a {ref.kind}, which Conveyor cannot generate",
                hint=f"give the new value: `conveyor secret rotate {environment} {name} --file F` "
                "or on stdin",
            )
        value = policy.generate(ref.kind)
    return _store(
        session, ctx, keyring, environment, name, ref.kind, value, "secret.rotate", reason, now, generated
    )


def delete(
    session: Session,
    ctx: AuditContext,
    environment: str,
    name: str,
    reason: str,
    now: datetime,
    in_use: bool,
    force: bool,
) -> int:
    """Destroy every version's ciphertext (the history stays); returns how many versions were destroyed."""
    found = [v for v in versions(session, environment, name) if v.destroyed_at is None]
    if not found:
        raise NotFound(f"{environment} has no stored value for {name}")
    if in_use and not force:
        raise Conflict(
            f"the release running in {environment} uses {name}",
            hint="its instances keep the value until they stop; pass --force to delete it anyway",
        )
    for row in found:
        row.ciphertext = row.wrapped_key = None
        row.destroyed_at = isoformat(now)
    record(
        session,
        ctx,
        "secret.delete",
        now=now,
        environment=environment,
        target=f"secret:{name}",
        details={"name": name, "versions": [v.version for v in found], "reason": reason},
    )
    return len(found)


def source_of(spec: Spec, environment: str, name: str) -> str:
    """The environment whose stored value `environment` uses for `name` (itself, or the one sharing it)."""
    ref = spec.environments[environment].secrets.get(name)
    return ref.from_environment if ref is not None and ref.from_environment else environment


def release_refs(
    session: Session, spec: Spec, environment: str, service: str
) -> tuple[dict[str, str], list[str]]:
    """The references a release of `service` in `environment` runs with, and the secrets without a value."""
    refs: dict[str, str] = {}
    missing: list[str] = []
    for name in spec.services[service].secrets:
        source = source_of(spec, environment, name)
        row = current(session, source, name)
        if row is None:
            missing.append(name)
        else:
            refs[name] = str(Ref(source, name, row.version))
    return refs, missing


def values(session: Session, keyring: Keyring, refs: set[str]) -> dict[str, str]:
    """The plaintext of each reference (for the runtime only); a clear error when one cannot be opened."""
    result: dict[str, str] = {}
    for text in sorted(refs):
        ref = Ref.parse(text)
        row = session.execute(
            select(SecretVersion).where(
                SecretVersion.environment == ref.environment,
                SecretVersion.name == ref.name,
                SecretVersion.version == ref.version,
            )
        ).scalar_one_or_none()
        if row is None or row.ciphertext is None or row.wrapped_key is None or row.key_id is None:
            raise Conflict(
                f"secret {ref.name} version {ref.version} of {ref.environment} was deleted",
                hint=f"set a new value with `conveyor secret set {ref.environment} {ref.name}` "
                "and release again",
            )
        try:
            plain = open_sealed(
                keyring, Sealed(row.ciphertext, row.wrapped_key, row.key_id), row_aad(*_key(ref))
            )
        except OpenFailed as exc:
            raise Conflict(
                f"secret {ref.name} version {ref.version} of {ref.environment} cannot be opened: {exc}",
                hint="start the server with the master key these secrets were sealed under "
                "(CONVEYOR_MASTER_KEY or .conveyor/master.key)",
            ) from None
        result[text] = plain.decode()
    return result


def _key(ref: Ref) -> tuple[str, str, int]:
    return ref.environment, ref.name, ref.version


def check_keyring(session: Session, keyring: Keyring) -> list[str]:
    """Master key ids that wrap stored data keys and are not in the keyring (empty: all open)."""
    used = session.execute(
        select(SecretVersion.key_id).where(SecretVersion.key_id.is_not(None)).distinct()
    ).scalars()
    return sorted(k for k in used if k is not None and keyring.find(k) is None)


def rewrap_all(session: Session, ctx: AuditContext, keyring: Keyring, now: datetime) -> dict[str, Any]:
    """Re-wrap every data key not under the current master key; values are not re-encrypted."""
    rows = session.execute(
        select(SecretVersion).where(
            SecretVersion.key_id.is_not(None), SecretVersion.key_id != keyring.current.id
        )
    ).scalars()
    count = 0
    for row in rows:
        assert row.ciphertext is not None and row.wrapped_key is not None and row.key_id is not None
        aad = row_aad(row.environment, row.name, row.version)
        try:
            sealed = rewrap(keyring, Sealed(row.ciphertext, row.wrapped_key, row.key_id), aad)
        except OpenFailed as exc:
            raise Conflict(
                f"secret {row.name} version {row.version} of {row.environment} cannot be re-wrapped: {exc}",
                hint="keep the old master key in the keyring (after the new one) "
                "until every secret is re-wrapped",
            ) from None
        row.wrapped_key, row.key_id = sealed.wrapped_key, sealed.key_id
        count += 1
    record(
        session,
        ctx,
        "secret.rewrap",
        now=now,
        target="secrets",
        details={"rewrapped": count, "master_key": keyring.current.id},
    )
    return {"rewrapped": count, "master_key_id": keyring.current.id}


def _rotation(spec: Spec, environment: str, name: str, row: SecretVersion, now: datetime) -> policy.Rotation:
    ref = spec.environments[environment].secrets.get(name)
    declared_period = ref is not None and "rotate_every" in ref.model_fields_set
    every = (
        timedelta(milliseconds=ref.rotate_every.milliseconds)
        if ref is not None and ref.rotate_every is not None
        else None
    )
    period = policy.period(row.kind, every, declared_period)
    set_at = _parse_time(row.created_at)
    assert set_at is not None
    return policy.rotation(row.kind, set_at, now, period, _parse_time(row.expires_at))


def listing(session: Session, spec: Spec, environment: str, now: datetime) -> list[dict[str, Any]]:
    """Every secret the environment declares or stores: name, kind, version, age, next rotation."""
    spec.environment(environment)  # NotFound naming the declared ones
    declared_refs = spec.environments[environment].secrets
    stored = {
        row.name
        for row in session.execute(
            select(SecretVersion).where(SecretVersion.environment == environment)
        ).scalars()
    }
    rows: list[dict[str, Any]] = []
    for name in sorted(set(declared_refs) | stored):
        ref = declared_refs.get(name)
        source = source_of(spec, environment, name) if ref is not None else environment
        row = current(session, source, name)
        entry: dict[str, Any] = {
            "name": name,
            "kind": ref.kind if ref is not None else (row.kind if row else None),
            "declared": ref is not None,
            "from_environment": source if source != environment else None,
            "version": None,
            "set_at": None,
            "set_by": None,
            "age_days": None,
            "rotation": None,
            "next_rotation": None,
            "expires_at": None,
        }
        if row is not None:
            set_at = _parse_time(row.created_at)
            assert set_at is not None
            rotation = _rotation(spec, source, name, row, now) if ref is not None else None
            entry.update(
                version=row.version,
                set_at=row.created_at,
                set_by=row.created_by,
                age_days=round((now - set_at).total_seconds() / 86400, 1),
                rotation=None if rotation is None else rotation.status,
                rotation_policy=None if rotation is None else rotation.why,
                next_rotation=None
                if rotation is None or rotation.next_at is None
                else isoformat(rotation.next_at),
                expires_at=row.expires_at,
            )
        else:
            entry["rotation"] = "missing" if ref is not None else "deleted"
        rows.append(entry)
    return rows


def due(session: Session, spec: Spec, now: datetime, environment: str | None = None) -> list[dict[str, Any]]:
    """Secrets that are missing, overdue, due or due soon, most urgent first."""
    order = {"missing": 0, "overdue": 1, "due": 2, "soon": 3}
    found: list[dict[str, Any]] = []
    for name in [environment] if environment else list(spec.environments):
        for entry in listing(session, spec, name, now):
            if entry["rotation"] in order and entry["from_environment"] is None:
                found.append({"environment": name, **entry})
    return sorted(found, key=lambda e: (order[e["rotation"]], e["next_rotation"] or "", e["environment"]))


def history(session: Session, environment: str, name: str) -> list[dict[str, Any]]:
    """Every version: who set it, when, why, whether it was generated or deleted (never a value)."""
    found = versions(session, environment, name)
    if not found:
        raise NotFound(f"{environment} has no history for secret {name}")
    return [
        {
            "version": v.version,
            "kind": v.kind,
            "set_by": v.created_by,
            "set_at": v.created_at,
            "reason": v.reason,
            "master_key_id": v.key_id,
            "expires_at": v.expires_at,
            "deleted_at": v.destroyed_at,
        }
        for v in found
    ]

"""An environment's configuration: the layers read from conveyor.yaml and the store, overrides, diffs.

`release_config` is what every release (promotion, deploy) runs with; `resolution` is the same with
provenance for `conveyor config show`. Overrides are audited; they change the next release, not
what runs now (ADR 0009).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from conveyor.audit.log import AuditContext, record
from conveyor.clock import isoformat
from conveyor.config.resolve import (
    Layer,
    LayerName,
    Problem,
    Resolution,
    Setting,
    as_text,
    parse_value,
    resolve,
)
from conveyor.errors import InvalidRequest, NotFound
from conveyor.resources import service as resources
from conveyor.secrets import service as secrets
from conveyor.spec import Spec
from conveyor.spec.settings import ScalarValue
from conveyor.store.tables import ConfigOverride

MASK = "********"


def masked(ref: str) -> str:
    """How a secret shows in configuration: masked, with the version it is (`******** (prod/API_KEY@3)`)."""
    return f"{MASK} ({ref})"


_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _fixes(environment: str) -> dict[LayerName, str]:
    return {
        "override": f"change it with `conveyor config set {environment} KEY=VALUE` or remove it with "
        f"`conveyor config unset {environment} KEY`",
        "environment": f"set it under environments.{environment}.config in conveyor.yaml, or with "
        f"`conveyor config set {environment} KEY=VALUE`",
        "default": "fix the default in the service's config_schema in conveyor.yaml",
    }


def overrides(session: Session, environment: str) -> list[ConfigOverride]:
    """The environment's overrides, by key."""
    query = (
        select(ConfigOverride).where(ConfigOverride.environment == environment).order_by(ConfigOverride.key)
    )
    return list(session.execute(query).scalars())


def service_of(spec: Spec, environment: str, service: str | None) -> str:
    """The service whose schema applies (the only one, or the one named)."""
    if service is not None:
        if service not in spec.services:
            raise NotFound(
                f"service '{service}' is not in the applied conveyor.yaml",
                hint=f"services: {', '.join(spec.services)}",
            )
        return service
    if not spec.services:
        raise InvalidRequest("the applied conveyor.yaml declares no services", hint="add one under services:")
    return next(iter(spec.services))


def resolution(session: Session, spec: Spec, environment: str, service: str | None = None) -> Resolution:
    """Every key of `environment` for `service`, with the layer it came from and what it shadows.

    Secrets appear masked, as their version: their values never leave the secret store here.
    """
    return resolution_and_refs(session, spec, environment, service)[0]


def resolution_and_refs(
    session: Session, spec: Spec, environment: str, service: str | None
) -> tuple[Resolution, dict[str, str]]:
    """The resolution, and the secret references a release would run with."""
    spec.environment(environment)  # NotFound naming the declared ones
    service = service_of(spec, environment, service)
    schema = spec.services[service].config_schema
    stored = overrides(session, environment)
    refs, missing = secrets.release_refs(session, spec, environment, service)
    # provisioned resources: libpq's and Redis's variables, the login this password version opens
    connection, linked_refs, origins = resources.release_settings(session, spec, environment, refs)
    refs = {**refs, **linked_refs}
    layers = [
        Layer(
            "override",
            {o.key: json.loads(o.value) for o in stored},
            {o.key: f"override by {o.set_by} at {o.set_at[:19]}Z" for o in stored},
        ),
        Layer(
            "secret",
            {name: masked(ref) for name, ref in refs.items()},
            {name: f"secret store, {ref}" for name, ref in refs.items()},
        ),
        Layer(
            "environment",
            dict(spec.environments[environment].config),
            {
                key: f"conveyor.yaml environments.{environment}.config"
                for key in spec.environments[environment].config
            },
        ),
        Layer(
            "default",
            {**connection, **{key: s.default for key, s in schema.items() if s.default is not None}},
            {
                **origins,
                **{key: "conveyor.yaml config_schema default" for key in schema},
            },
        ),
    ]
    resolved = resolve(schema, layers, _fixes(environment))
    unset = tuple(_unset_secret(spec, environment, service, name) for name in missing)
    return Resolution(resolved.settings, resolved.problems + unset), refs


def _unset_secret(spec: Spec, environment: str, service: str, name: str) -> Problem:
    source = secrets.source_of(spec, environment, name)
    return Problem(
        name,
        f"{name} is a secret {service} needs, and {source} has no value for it",
        f"set it with `conveyor secret set {source} {name}` "
        "(the value is read from stdin or --file; --generate makes one)",
    )


def release_config(
    session: Session, spec: Spec, environment: str, service: str | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """What a release of `environment` runs with: its configuration, and references to its secrets.

    A clear error when the configuration has problems. Secrets are references
    (`environment/NAME@version`), so no stored release ever holds a secret's value (ADR 0010).
    """
    resolved, refs = resolution_and_refs(session, spec, environment, service)
    refuse_problems(environment, resolved)
    return {key: as_text(value) for key, value in plain(resolved).items()}, refs


def refuse_problems(environment: str, resolved: Resolution) -> None:
    """InvalidRequest listing every problem and its fix, when there is any."""
    if resolved.problems:
        words = "; ".join(p.message for p in resolved.problems)
        fixes = "; ".join(p.fix for p in resolved.problems)
        raise InvalidRequest(f"the configuration of {environment} has problems: {words}", hint=fixes)


def plain(resolved: Resolution) -> dict[str, ScalarValue]:
    """The resolved values that are configuration, typed (secrets are delivered as references)."""
    return {s.key: s.value for s in resolved.settings if s.layer != "secret"}


def set_override(
    session: Session,
    ctx: AuditContext,
    spec: Spec,
    environment: str,
    assignments: dict[str, str],
    reason: str,
    now: datetime,
) -> list[ConfigOverride]:
    """Store overrides (typed by the schema); nothing is stored if any one is wrong."""
    if not assignments:
        raise InvalidRequest("nothing to set", hint="pass KEY=VALUE, e.g. LOG_LEVEL=debug")
    service_of(spec, environment, None)  # a clear error when there is no service at all
    # a key is typed by the service that declares it (services usually share their settings)
    services = reversed(list(spec.services.values()))  # the first service that declares a key wins
    schema = {key: s for svc in services for key, s in svc.config_schema.items()}
    typed: dict[str, Any] = {}
    secret_names = set(spec.environments[environment].secrets) if environment in spec.environments else set()
    for key, text in assignments.items():
        if not _KEY.fullmatch(key):
            raise InvalidRequest(
                f"'{key}' is not a valid config name", hint="use letters, digits and _, like LOG_LEVEL"
            )
        if key in secret_names:
            # an override is stored and audited in the clear: a secret's value must never be one
            raise InvalidRequest(
                f"{key} is a secret of {environment}, not configuration",
                hint=f"set it with `conveyor secret set {environment} {key}` (the value is read from stdin)",
            )
        try:
            typed[key] = parse_value(schema.get(key), text)
        except ValueError as exc:
            raise InvalidRequest(f"{key}: {exc}", hint=_setting_hint(schema.get(key))) from None
    current = {o.key: o for o in overrides(session, environment)}
    rows = []
    for key, value in typed.items():
        row = current.get(key) or ConfigOverride(environment=environment, key=key)
        before = json.loads(row.value) if row.value is not None else None
        row.value, row.set_by, row.set_at, row.reason = json.dumps(value), ctx.actor, isoformat(now), reason
        session.add(row)
        rows.append(row)
        record(
            session,
            ctx,
            "config.set",
            now=now,
            environment=environment,
            target=f"config:{key}",
            details={"key": key, "from": before, "to": value, "reason": reason},
        )
    return rows


def _setting_hint(setting: Any) -> str | None:
    if setting is None:
        return None
    choices = f"; one of {', '.join(setting.choices)}" if setting.choices else ""
    return f"the service declares {setting.type}{choices}"


def unset_override(
    session: Session, ctx: AuditContext, environment: str, key: str, reason: str, now: datetime
) -> None:
    """Remove an override; NotFound when there is none."""
    found = {o.key: o for o in overrides(session, environment)}
    row = found.get(key)
    if row is None:
        have = ", ".join(found) or "none"
        raise NotFound(f"{environment} has no override of {key}", hint=f"overrides there: {have}")
    session.delete(row)
    record(
        session,
        ctx,
        "config.unset",
        now=now,
        environment=environment,
        target=f"config:{key}",
        details={"key": key, "was": json.loads(row.value), "reason": reason},
    )


def diff(a: Resolution, b: Resolution) -> list[dict[str, Any]]:
    """Keys whose values differ between two resolutions (missing on one side counts)."""
    left = {s.key: s for s in a.settings}
    right = {s.key: s for s in b.settings}
    rows = []
    for key in sorted(set(left) | set(right)):
        x, y = left.get(key), right.get(key)
        if x is not None and y is not None and x.text == y.text:
            continue
        rows.append({"key": key, "a": _side(x), "b": _side(y)})
    return rows


def _side(setting: Setting | None) -> dict[str, Any] | None:
    if setting is None:
        return None
    return {"value": setting.text, "layer": setting.layer, "origin": setting.origin}


def env_diff(before: dict[str, str], after: dict[str, str]) -> list[dict[str, Any]]:
    """Keys that changed between two environment-variable maps (a release and now)."""
    return [
        {"key": key, "before": before.get(key), "after": after.get(key)}
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]

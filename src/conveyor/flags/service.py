"""An environment's feature flags in the store: list, change (audited), export as flagd JSON, deliver.

A change is one transaction: the flag row and its audit event (before, after, reason) commit
together, and nothing is written when the definition is invalid. Unlike configuration, a flag
change reaches running instances at once: after the commit the API hands the environment's whole
flagd document to the runtime (`deliver`), which rewrites the file instances read (ADR 0011).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from conveyor.audit.log import AuditContext, record
from conveyor.clock import isoformat
from conveyor.errors import ConveyorError, InvalidRequest, NotFound
from conveyor.flags.evaluate import Resolution, evaluate
from conveyor.flags.model import Flag, InvalidFlag, Problem, check_key, document, parse_document, parse_flag
from conveyor.flags.targeting import Chain, Rollout, chain_of, rollout_weights
from conveyor.runtime.driver import RuntimeDriver
from conveyor.spec.fields import suggest
from conveyor.store.db import Store
from conveyor.store.tables import FeatureFlag

log = logging.getLogger("conveyor.flags")


@dataclass(frozen=True)
class StoredFlag:
    """A flag and who changed it last, when and why."""

    flag: Flag
    updated_by: str
    updated_at: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        chain = chain_of(self.flag.targeting)
        return {
            "key": self.flag.key,
            "kind": self.flag.kind,
            **self.flag.definition(),
            "rules": len(chain.rules) if chain else None,
            "rollout": _rollout_json(chain.rollout) if chain and chain.rollout else None,
            "custom_targeting": chain is None,
            "updated_by": self.updated_by,
            "updated_at": self.updated_at,
            "reason": self.reason,
        }


def _rollout_json(rollout: Rollout) -> dict[str, Any]:
    return {variant: rollout.percent(variant) for variant, _ in rollout.buckets}


def _rows(session: Session, environment: str) -> dict[str, FeatureFlag]:
    query = select(FeatureFlag).where(FeatureFlag.environment == environment).order_by(FeatureFlag.key)
    return {row.key: row for row in session.execute(query).scalars()}


def _stored(row: FeatureFlag) -> StoredFlag:
    return StoredFlag(
        parse_flag(row.key, json.loads(row.definition)), row.updated_by, row.updated_at, row.reason
    )


def list_flags(session: Session, environment: str) -> list[StoredFlag]:
    """The environment's flags, by key."""
    return [_stored(row) for row in _rows(session, environment).values()]


def get_flag(session: Session, environment: str, key: str) -> StoredFlag:
    """One flag, or NotFound naming the close match and how to create it."""
    rows = _rows(session, environment)
    if key not in rows:
        close = suggest(key, rows)
        hint = (
            f"did you mean '{close}'?"
            if close
            else f"create it with `conveyor flag set {environment} {key} --on`"
        )
        raise NotFound(f"{environment} has no flag '{key}'", hint=hint)
    return _stored(rows[key])


def flagd_document(session: Session, environment: str) -> dict[str, Any]:
    """The environment's flags as one flagd JSON document (what instances read)."""
    flags = [s.flag for s in list_flags(session, environment)]
    return document(flags, {"flagSetId": f"conveyor/{environment}"})


def _save(
    session: Session,
    ctx: AuditContext,
    environment: str,
    flag: Flag,
    reason: str,
    now: datetime,
    action: str = "flag.set",
) -> bool:
    """Store `flag` and audit the change; False (nothing written) when it is already so."""
    row = _rows(session, environment).get(flag.key)
    before = json.loads(row.definition) if row is not None else None
    after = flag.definition()
    if before == after:
        return False
    row = row or FeatureFlag(environment=environment, key=flag.key)
    row.definition = json.dumps(after, sort_keys=True)
    row.updated_by, row.updated_at, row.reason = ctx.actor, isoformat(now), reason
    session.add(row)
    record(
        session,
        ctx,
        action,
        now=now,
        environment=environment,
        target=f"flag:{flag.key}",
        details={"key": flag.key, "before": before, "after": after, "reason": reason},
    )
    return True


def _current(session: Session, environment: str, key: str) -> Flag | None:
    row = _rows(session, environment).get(key)
    return parse_flag(key, json.loads(row.definition)) if row is not None else None


def compose(
    current: Flag | None,
    key: str,
    *,
    definition: Mapping[str, Any] | None = None,
    on: bool | None = None,
    variants: Mapping[str, Any] | None = None,
    default: str | None = None,
) -> Flag:
    """The flag `flag set` asks for: a whole definition, a boolean switch, or new variants."""
    if definition is not None:
        if on is not None or variants is not None or default is not None:
            raise InvalidRequest(
                "give a whole definition (--file) or --on/--off/--variants/--default, not both",
                hint="put every change into the definition file, or leave --file out",
            )
        return parse_flag(key, dict(definition))
    if on is not None:
        if variants is not None or default is not None:
            raise InvalidRequest(
                "--on/--off sets a boolean flag's default; --variants and --default name other values",
                hint="pass one of them",
            )
        if current is None:
            return parse_flag(
                key,
                {
                    "state": "ENABLED",
                    "variants": {"on": True, "off": False},
                    "defaultVariant": "on" if on else "off",
                },
            )
        matching = [name for name, value in current.variants.items() if value is on]
        if current.kind != "boolean" or not matching:
            raise InvalidRequest(
                f"flag '{key}' is a {current.kind} flag, so --on/--off does not apply",
                hint=f"choose its default variant with --default (variants: {', '.join(current.variants)})",
            )
        return current.with_changes(defaultVariant=matching[0])
    if variants is not None:
        chosen: str | None
        if default is not None:
            chosen = default
        elif current is not None and current.default_variant in variants:
            chosen = current.default_variant
        else:
            chosen = next(iter(variants), None)
        base = current.definition() if current else {"state": "ENABLED"}
        return parse_flag(key, {**base, "variants": dict(variants), "defaultVariant": chosen})
    if default is not None:
        if current is None:
            raise NotFound(f"there is no flag '{key}' yet", hint="create it with --on, --variants or --file")
        return current.with_changes(defaultVariant=default)
    raise InvalidRequest(
        "say what to set", hint="pass --on or --off, --variants a=1,b=2 [--default a], or --file def.json"
    )


def set_flag(
    session: Session,
    ctx: AuditContext,
    environment: str,
    key: str,
    reason: str,
    now: datetime,
    **changes: Any,
) -> tuple[StoredFlag, bool]:
    """Create or change a flag (`changes` as `compose` takes them); returns it and whether it changed."""
    problems = check_key(key)
    if problems:
        raise InvalidFlag(problems)
    flag = compose(_current(session, environment, key), key, **changes)
    changed = _save(session, ctx, environment, flag, reason, now)
    return get_flag(session, environment, key), changed


def _chain(flag: Flag, environment: str) -> Chain:
    chain = chain_of(flag.targeting)
    if chain is None:
        raise InvalidRequest(
            f"flag '{flag.key}' has targeting Conveyor did not write, so rules and rollouts cannot be added",
            hint=f"replace the whole flag with `conveyor flag set {environment} {flag.key} --file def.json`",
        )
    return chain


def set_rollout(
    session: Session,
    ctx: AuditContext,
    environment: str,
    key: str,
    percent: float | None,
    variant: str | None,
    reason: str,
    now: datetime,
) -> StoredFlag:
    """Give `percent` of targeting keys `variant` and the rest the default variant (None: no rollout)."""
    flag = get_flag(session, environment, key).flag
    chain = _chain(flag, environment)
    if percent is None:
        new = chain.with_rollout(None)
    else:
        share, remainder = rollout_weights(percent)
        chosen = variant or _rollout_variant(flag)
        if chosen not in flag.variants:
            raise InvalidRequest(
                f"flag '{key}' has no variant '{chosen}'", hint=f"variants: {', '.join(flag.variants)}"
            )
        rest = flag.default_variant
        if rest is None or rest == chosen:
            other = next((v for v in flag.variants if v != chosen), "NAME")
            raise InvalidRequest(
                f"flag '{key}' needs a default variant other than '{chosen}' for the rest of the traffic",
                hint=f"set one with `conveyor flag set {environment} {key} --default {other}`",
            )
        new = chain.with_rollout(Rollout(((chosen, share), (rest, remainder))))
    updated = flag.with_changes(targeting=new.to_targeting())
    _save(session, ctx, environment, updated, reason, now)
    return get_flag(session, environment, key)


def _rollout_variant(flag: Flag) -> str:
    if flag.kind == "boolean":
        return next(
            (name for name, value in flag.variants.items() if value is True), next(iter(flag.variants))
        )
    return next((name for name in flag.variants if name != flag.default_variant), next(iter(flag.variants)))


def set_rule(
    session: Session,
    ctx: AuditContext,
    environment: str,
    key: str,
    condition: Mapping[str, Any] | None,
    variant: str | None,
    reason: str,
    now: datetime,
) -> StoredFlag:
    """Add a rule (`condition` → `variant`, replacing one with the same condition); None clears the rules."""
    flag = get_flag(session, environment, key).flag
    chain = _chain(flag, environment)
    if condition is None:
        new = chain.without_rules()
    else:
        if variant is None:
            raise InvalidRequest("a rule needs the variant it serves", hint="pass --variant NAME")
        if variant not in flag.variants:
            raise InvalidFlag(
                [Problem(key, f"has no variant '{variant}'", f"use one of: {', '.join(flag.variants)}")]
            )
        new = chain.with_rule(dict(condition), variant)
    _save(session, ctx, environment, flag.with_changes(targeting=new.to_targeting()), reason, now)
    return get_flag(session, environment, key)


def set_state(
    session: Session, ctx: AuditContext, environment: str, key: str, enabled: bool, reason: str, now: datetime
) -> StoredFlag:
    """Enable or disable a flag (a disabled flag makes applications use their own default)."""
    flag = get_flag(session, environment, key).flag
    state = "ENABLED" if enabled else "DISABLED"
    _save(session, ctx, environment, flag.with_changes(state=state), reason, now)
    return get_flag(session, environment, key)


def delete_flag(
    session: Session, ctx: AuditContext, environment: str, key: str, reason: str, now: datetime
) -> None:
    """Remove a flag; applications evaluating it get FLAG_NOT_FOUND (and their own default)."""
    stored = get_flag(session, environment, key)
    row = _rows(session, environment)[key]
    session.delete(row)
    record(
        session,
        ctx,
        "flag.delete",
        now=now,
        environment=environment,
        target=f"flag:{key}",
        details={"key": key, "before": stored.flag.definition(), "after": None, "reason": reason},
    )


def import_document(
    session: Session, ctx: AuditContext, environment: str, data: Any, reason: str, now: datetime
) -> dict[str, list[str]]:
    """Create or replace every flag of a flagd document; nothing is written if any flag is invalid.

    `$evaluators` are inlined into the flags that use them; flags not in the document are kept.
    """
    flags = parse_document(data)
    existing = set(_rows(session, environment))
    outcome: dict[str, list[str]] = {"created": [], "changed": [], "unchanged": []}
    for flag in flags:
        changed = _save(session, ctx, environment, flag, reason, now, action="flag.import")
        bucket = "unchanged" if not changed else ("changed" if flag.key in existing else "created")
        outcome[bucket].append(flag.key)
    return outcome


def evaluate_flag(
    session: Session,
    environment: str,
    key: str,
    context: Mapping[str, Any],
    now: datetime,
    targeting_key: str | None = None,
) -> Resolution:
    """What the flag resolves to for `context` now, as an application would see it."""
    return evaluate(flagd_document(session, environment), key, context, now=now, targeting_key=targeting_key)


# one delivery per environment at a time, so a slower push never overwrites a newer document
_delivery_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def deliver(store: Store, driver: RuntimeDriver, environment: str) -> dict[str, Any]:
    """Hand the environment's current flagd document to the runtime; says whether it arrived.

    The change is committed already: when the runtime is unreachable, delivery is pending and the
    next change or deployment of the environment delivers the document again.
    """
    with _locks_guard:
        lock = _delivery_locks.setdefault(environment, threading.Lock())
    with lock:
        with store.read() as session:
            doc = flagd_document(session, environment)
        try:
            ack = driver.put_flags(environment, doc)
        except ConveyorError as exc:
            log.warning("flags of %s not delivered: %s", environment, exc.detail)
            return {"delivered": False, "pending": True, "error": exc.detail}
    return {"delivered": True, "pending": False, "flags": len(doc["flags"]), "runtime": ack}

"""Resetting an environment's resources by its data policy: `conveyor resource reset ENV`.

Called by the resources API routes. A PostgreSQL database is reset under its lock
(`resources.database_lock`), in order:

1. **recreate**: drop the database (ending its sessions) and create it empty;
2. `synthetic`: the **migrations** of every service version deployed in the environment (oldest
   build first: each version's files replayed by the migration runner), then a **seed** like
   `conveyor data seed` (100 rows per table and seed 0 unless asked otherwise);
3. `masked`: a **clone** of the source like `conveyor data clone SOURCE --to ENV`, then the deployed
   versions' pending **migrations** on top, through `migrations.service.apply_for` with every check
   a deploy makes. The clone replaces the whole database with the source's schema and history, so
   migrations run before it would be thrown away with the database they built.

`empty` stops after step 1. Everything that can refuse before the drop does (a live tier, a bad
option, a clone the pre-flight refuses): nothing is changed then. A step that fails after the drop
is audited (`resource.reset`, outcome `failure`, with the steps done and the one that failed), and
its error says which step stopped and how to finish. Results and audit hold names, counts and
migration ids, never a value. A SQLite file is recreated empty (seeding and clones read
PostgreSQL's catalogs); a Redis namespace's keys are deleted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from conveyor.artifacts.service import get_artifact
from conveyor.audit.log import AuditContext, record
from conveyor.data import service as data
from conveyor.data.seeding import NothingToSeed
from conveyor.deployments import running as deployments
from conveyor.errors import Conflict, ConveyorError, InvalidRequest, first_line
from conveyor.migrations import runner
from conveyor.migrations import service as migrations
from conveyor.resources import database_lock, namespaces, postgres
from conveyor.resources import service as resources
from conveyor.secrets.crypto import Keyring
from conveyor.spec import Spec
from conveyor.store.db import Store

log = logging.getLogger("conveyor.data")


@dataclass(frozen=True)
class Options:
    """What the caller asked for: `empty` (drop and recreate only), or the seed's rows and seed."""

    empty: bool = False
    rows: int | None = None
    seed: int | None = None


class ResetIncomplete(Conflict):
    """A step after the drop failed for a reason of its own kind; the database is partly reset."""

    title = "Reset incomplete"
    slug = "reset-incomplete"


@dataclass(frozen=True)
class _Plan:
    """A reset that passed every check: the database, the policy, and how to fill it."""

    environment: str
    declared: resources.Declared
    policy: str
    empty: bool
    rows: int
    seed: int
    clone: data.ClonePlan | None


def _check_options(spec: Spec, environment: str, options: Options) -> tuple[str, int, int]:
    """(policy, rows, seed) the reset will use; InvalidRequest for options the policy does not take."""
    policy = spec.environments[environment].data
    given = [
        flag for flag, value in (("--rows", options.rows), ("--seed", options.seed)) if value is not None
    ]
    if given and options.empty:
        raise InvalidRequest(
            f"{' and '.join(given)} choose{'s' if len(given) == 1 else ''} the synthetic rows, "
            "but --empty leaves the database empty",
            hint=f"drop --empty to seed, or drop {' and '.join(given)}",
        )
    if given and policy.policy != "synthetic":
        raise InvalidRequest(
            f"{environment}'s data policy is {policy.policy}: a reset refills it with a masked clone of "
            f"{policy.source}, so {' and '.join(given)} do{'es' if len(given) == 1 else ''} not apply",
            hint=f"drop {' and '.join(given)}",
        )
    if policy.policy == "real" and not options.empty:
        raise Conflict(  # conveyor.yaml allows real data in live tiers only, which are never reset
            f"{environment}'s data policy is real: its data comes from customers, never from a reset",
            hint="reset an environment whose data policy is synthetic or masked",
        )
    rows = data.DEFAULT_ROWS if options.rows is None else options.rows
    seed = data.DEFAULT_SEED if options.seed is None else options.seed
    if policy.policy == "synthetic" and not options.empty:
        data.check_seed(spec, environment, rows)
    return policy.policy, rows, seed


def _plan(
    store: Store,
    ctx: AuditContext,
    spec: Spec,
    keyring: Keyring,
    environment: str,
    options: Options,
    now: Callable[[], datetime],
) -> _Plan:
    """Every check that can refuse before the drop; a refusal changes nothing."""
    resources.refuse_live(spec, environment, "database")
    policy, rows, seed = _check_options(spec, environment, options)
    clone: data.ClonePlan | None = None
    with store.read() as session:
        declared = resources.provisioned(session, spec, environment)
        if policy == "masked" and not options.empty:
            source = spec.environments[environment].data.source
            assert source is not None  # conveyor.yaml requires it with policy: masked
            clone = data.plan_clone(session, spec, keyring, source, environment)
    if clone is not None:
        try:
            data.preflight_clone(clone)
        except (InvalidRequest, Conflict) as error:  # a refused clone is audited, as `data clone` does
            details = {"policy": policy, "source": clone.source, "reason": error.detail}
            _audit(store, ctx, now(), declared, "refused", {**details, **data.problem_kinds(error)})
            raise
    return _Plan(environment, declared, policy, options.empty, rows, seed, clone)


def reset_database(
    store: Store,
    home: Path,
    ctx: AuditContext,
    spec: Spec,
    keyring: Keyring,
    environment: str,
    now: Callable[[], datetime],
    options: Options,
) -> dict[str, Any]:
    """Drop and recreate the environment's PostgreSQL database, then fill it as its data policy says."""
    plan = _plan(store, ctx, spec, keyring, environment, options, now)
    d = plan.declared
    with database_lock.hold(d.server, d.names.database, environment, "reset"):
        return _run(store, home, ctx, spec, keyring, plan, now)


def _run(
    store: Store,
    home: Path,
    ctx: AuditContext,
    spec: Spec,
    keyring: Keyring,
    plan: _Plan,
    now: Callable[[], datetime],
) -> dict[str, Any]:
    d, environment = plan.declared, plan.environment
    result: dict[str, Any] = {
        "environment": environment,
        "engine": "postgres",
        "database": d.names.database,
        "policy": plan.policy,
        "empty": plan.empty,
        "steps": [],
        "migrations": [],
        "seed": None,
        "clone": None,
        "note": None,
    }
    started = time.perf_counter()
    step = "recreate"
    try:
        postgres.reset(d.server, d.names)
        result["steps"].append(step)
        if not plan.empty and plan.clone is None:
            step = "migrations"
            result["migrations"] = _migrate(store, home, spec, keyring, environment, replay=True)
            result["steps"].append(step)
            step = "seed"
            url = postgres.with_database(d.server, d.names.database)
            try:
                result["seed"] = data.fill_synthetic(url, d.names.database, plan.rows, plan.seed)
                result["steps"].append(step)
            except NothingToSeed:
                result["note"] = (
                    f"nothing was seeded: no deployed release of {environment} creates tables with its "
                    f"migrations; deploy one, then `conveyor data seed {environment}`"
                )
        elif plan.clone is not None:
            step = "clone"
            result["clone"] = data.copy_masked(plan.clone)
            result["steps"].append(step)
            step = "migrations"
            result["migrations"] = _migrate(store, home, spec, keyring, environment, replay=False)
            result["steps"].append(step)
    except Exception as exc:
        raise _failed(store, ctx, now, plan, result, step, exc) from None
    result["seconds"] = round(time.perf_counter() - started, 3)
    _audit(store, ctx, now(), d, "success", _details(result))
    return result


def _migrate(
    store: Store, home: Path, spec: Spec, keyring: Keyring, environment: str, *, replay: bool
) -> list[dict[str, Any]]:
    """Apply the migrations of every version deployed in `environment`, oldest build first.

    `replay`: onto the database just created (every file of each version), else onto a clone that
    brought its source's schema and history (what is pending, checked as a deploy checks it).
    """
    with store.read() as session:
        found = {
            (desired.service, v.version)
            for desired in deployments.desired_in_use(session, environment)
            if desired.service in spec.services
            for v in desired.versions
        }
        ordered = sorted(found, key=lambda pair: get_artifact(session, *pair).id)
    done = []
    for service, version in ordered:
        if replay:
            run = _replay(store, home, spec, keyring, environment, service, version)
        else:
            run = migrations.apply_for(store.read, home, spec, keyring, environment, service, version)
        if run is not None:  # None: the version ships no migrations
            done.append(
                {
                    "service": service,
                    "version": version,
                    "applied": [m["id"] for m in run.applied],
                    "already_applied": run.already,
                }
            )
    return done


def _replay(
    store: Store, home: Path, spec: Spec, keyring: Keyring, environment: str, service: str, version: str
) -> runner.Run | None:
    """Every migration of `version` onto the database just created, under the runner's lock.

    Not through `migrations.apply_for`: its expand/contract check holds pending files against the
    versions running in every environment, since a promotion changes a schema they use. Here every
    file counts as pending, no other environment uses this database, and the versions of this one
    are replayed in the order they were deployed, so that check would refuse a plain replay whenever
    another environment runs another version. The runner still refuses an edited or forbidden file.
    """
    with store.read() as session:
        # the files a deploy of `version` applies (bundle verified against its digest)
        files = migrations.migrations_of(session, home, spec, service, version)
        if not files:
            return None
        target = migrations.login_target(session, spec, keyring, environment, f"{service} {version}")
    return migrations.run_on(target, spec, service, version, files)


def _finish_hint(plan: _Plan, step: str) -> str:
    """How to finish a reset that stopped at `step`."""
    environment = plan.environment
    again = f"`conveyor resource reset {environment} --yes`"
    if step == "recreate":
        return f"fix the cause, then run {again} again"
    if step == "seed":
        return (
            f"{environment}'s schema is in place with no rows: fix the cause, then "
            f"`conveyor data seed {environment} --rows {plan.rows} --seed {plan.seed}`"
        )
    if step == "clone":
        assert plan.clone is not None
        return (
            f"{environment}'s database is empty: fix the cause, then run {again} again "
            f"(or `conveyor data clone {plan.clone.source} --to {environment}`)"
        )
    if plan.clone is not None:
        return (
            f"{environment} holds the masked copy of {plan.clone.source} without the migrations of what "
            f"is deployed there: fix the cause, then deploy the running version again or run {again} again"
        )
    return f"{environment}'s database is empty: fix the cause, then run {again} again"


def _failed(
    store: Store,
    ctx: AuditContext,
    now: Callable[[], datetime],
    plan: _Plan,
    result: dict[str, Any],
    step: str,
    exc: Exception,
) -> ConveyorError:
    """Audit a reset that stopped at `step`; the error to raise, saying which step and how to finish."""
    if isinstance(exc, ConveyorError):
        error, reason = exc, exc.detail
    else:  # a raw database or OS error: its first line, never the statement or row it quotes
        log.warning("reset of %s stopped at %s", plan.environment, step, exc_info=exc)
        reason = f"{type(exc).__name__}: {first_line(exc)}"
        error = ResetIncomplete(reason)
    finish = _finish_hint(plan, step)
    error.detail = f"the reset of {plan.environment} stopped at its {step} step: {reason}"
    error.hint = f"{error.hint}; {finish}" if error.hint else finish
    error.extra["reset"] = {"failed_step": step, "steps_done": list(result["steps"])}
    try:
        details = {**_details(result), "failed_step": step, "reason": reason}
        _audit(store, ctx, now(), plan.declared, "failure", details)
    except Exception:  # the reset's own error matters more; the log keeps why the audit failed
        log.exception("could not audit the failed reset of %s", plan.environment)
    return error


def _details(result: dict[str, Any]) -> dict[str, Any]:
    """What the audit keeps of a reset: steps, migration ids, seeded and cloned counts."""
    seeded, cloned = result["seed"], result["clone"]
    return {
        "database": result["database"],
        "policy": result["policy"],
        "empty": result["empty"],
        "steps": list(result["steps"]),
        "migrations": result["migrations"],
        "seed": None
        if seeded is None
        else {k: seeded[k] for k in ("seed", "rows_per_table", "tables", "rows")},
        "clone": None if cloned is None else data.clone_details(cloned),
        "note": result["note"],
    }


def _audit(
    store: Store,
    ctx: AuditContext,
    now: datetime,
    declared: resources.Declared,
    outcome: str,
    details: dict[str, Any],
) -> None:
    with store.write() as session:
        record(
            session,
            ctx,
            "resource.reset",
            now=now,
            environment=declared.environment,
            target=f"database:{declared.names.database}",
            outcome=outcome,
            details=details,
        )


def reset_environment(
    store: Store,
    home: Path,
    ctx: AuditContext,
    spec: Spec,
    keyring: Keyring,
    environment: str,
    now: Callable[[], datetime],
    options: Options,
) -> dict[str, Any]:
    """Reset every resource of the environment: the database by its data policy (a SQLite file empty),
    the Redis namespace's keys deleted; refused for production and dr."""
    spec.environment(environment)
    database = spec.environments[environment].resources.database
    cache = namespaces.declared(spec, environment)
    resources.refuse_live(spec, environment, "database" if database is not None else "cache")
    if database is None and cache is None:
        raise resources.nothing_declared(environment)
    if (database is None or database.engine != "postgres") and (
        options.rows is not None or options.seed is not None
    ):
        raise InvalidRequest(
            f"--rows and --seed seed a PostgreSQL database; {environment} declares "
            + ("none" if database is None else "a SQLite file, which a reset leaves empty"),
            hint="drop --rows and --seed",
        )
    result: dict[str, Any] = {"environment": environment, "database": None, "cache": None}
    if database is not None and database.engine == "postgres":
        result["database"] = reset_database(store, home, ctx, spec, keyring, environment, now, options)
    elif database is not None:
        with store.write() as session:
            result["database"] = resources.reset_sqlite(session, ctx, environment, now())
    if cache is not None:
        with store.write() as session:
            result["cache"] = {
                "key_prefix": cache.names.prefix,
                "deleted_keys": namespaces.reset(session, ctx, cache, now()),
            }
    return result

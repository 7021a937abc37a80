"""Data policies of environments: synthetic seeding and masked clones, as the API calls them.

`seed` fills a `synthetic` environment's database; `clone` copies a `masked` environment's source
through the masking pipeline; `check_clone` runs only the pre-flight. Each checks the environment's
policy and tier first and refuses with the fix; the long database work runs outside any state-store
transaction, under the target database's lock (`resources.database_lock`: one seed, clone, restore
or reset of a database at a time), and the outcome is audited (names and counts, never a value).
`fill_synthetic` and `copy_masked` do the work alone, for `data/reset.py`, which holds the lock.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from conveyor.audit.log import AuditContext, record
from conveyor.data import clone as cloning
from conveyor.data import detect
from conveyor.data.catalog import Catalog, CatalogTable
from conveyor.data.masking import Masker
from conveyor.data.rules import (
    Column,
    ColumnRef,
    MaskingRefused,
    RuleSet,
    column_category,
    parse_rules,
    preflight,
    report,
    suggested_rule,
)
from conveyor.data.seeding import seed_database
from conveyor.data.subset import SubsetPlan, SubsetRule, plan_subset
from conveyor.errors import Conflict, InvalidRequest, NotFound
from conveyor.resources import database_lock, postgres
from conveyor.resources import service as resources
from conveyor.secrets import service as secrets
from conveyor.secrets.crypto import Keyring
from conveyor.spec import Spec
from conveyor.spec.vocabulary import LIVE_TIERS

MASKING_KEY = "MASKING_KEY"
Sessions = Callable[[], AbstractContextManager[Session]]


@dataclass(frozen=True)
class Declared:
    """What every service of conveyor.yaml says about its tables, merged."""

    rules: RuleSet
    pii: tuple[str, ...]
    not_sensitive: tuple[str, ...]
    subset: dict[str, SubsetRule]


def declared(spec: Spec) -> Declared:
    """The masking rules, PII, reviewed columns and subset rules of all services together."""
    masking: dict[str, Any] = {}
    pii: list[str] = []
    not_sensitive: list[str] = []
    subset: dict[str, SubsetRule] = {}
    for service in spec.services.values():
        data = service.data
        masking.update(data.masking)
        pii += data.pii
        not_sensitive += data.not_sensitive
        for table, rule in data.subset.items():
            subset[table] = SubsetRule(rule.where, rule.percent)
    return Declared(
        parse_rules(masking), tuple(dict.fromkeys(pii)), tuple(dict.fromkeys(not_sensitive)), subset
    )


def _database_url(
    session: Session, spec: Spec, environment: str, what: str
) -> tuple[str, resources.Declared]:
    d = resources.declared(spec, environment)
    if resources.resource(session, environment) is None:
        raise NotFound(
            f"{environment}'s database was never provisioned, so there is nothing to {what}",
            hint=f"`conveyor resource provision {environment}`",
        )
    return postgres.with_database(d.server, d.names.database), d


def _tier(spec: Spec, environment: str) -> str:
    return spec.environment(environment).tier


MAX_SEED_ROWS = 1_000_000
"""Rows per table a seed may ask for: the generator holds a table's rows in memory."""
DEFAULT_ROWS = 100
"""Rows per table of `conveyor data seed` and of a reset's seed when none is asked for."""
DEFAULT_SEED = 0
"""The seed of `conveyor data seed` and of a reset's seed when none is asked for."""


def _record(
    sessions: Sessions,
    ctx: AuditContext,
    action: str,
    now: datetime,
    environment: str,
    database: str,
    details: dict[str, Any],
    outcome: str = "success",
) -> None:
    """Audit one data operation on `environment`'s database in a short session of its own."""
    with sessions() as session:
        record(
            session,
            ctx,
            action,
            now=now,
            environment=environment,
            target=f"database:{database}",
            outcome=outcome,
            details=details,
        )


def check_seed(spec: Spec, environment: str, rows: int) -> None:
    """Refuse a seed of a live tier, of an environment whose policy is not synthetic, or of bad size."""
    tier = _tier(spec, environment)
    if tier in LIVE_TIERS:
        raise Conflict(
            f"{environment} is a {tier} environment: its data is never replaced by synthetic rows",
            hint="seed a development, testing, staging or preview environment",
        )
    policy = spec.environments[environment].data.policy
    if policy != "synthetic":
        raise Conflict(
            f"{environment}'s data policy is {policy}, so it is not seeded with synthetic rows",
            hint=f"set environments.{environment}.data.policy: synthetic in conveyor.yaml, "
            + (f"or refresh it with `conveyor data clone {spec.environments[environment].data.source} "
               f"--to {environment}`" if policy == "masked" else "or seed another environment"),
        )  # fmt: skip
    if not 1 <= rows <= MAX_SEED_ROWS:
        raise InvalidRequest(
            f"--rows {rows} is out of range", hint=f"give 1 to {MAX_SEED_ROWS:,} rows per table"
        )


def seed(
    sessions: Sessions,
    ctx: AuditContext,
    spec: Spec,
    environment: str,
    rows: int,
    seed_value: int,
    now: Callable[[], datetime],
) -> dict[str, Any]:
    """Replace the environment's rows with synthetic ones; refused unless its data policy is synthetic.

    `sessions()` opens a state-store write session: one short one to find the database, the seed
    itself runs outside any (under the database's lock), and one short one records it.
    """
    check_seed(spec, environment, rows)
    with sessions() as session:
        url, d = _database_url(session, spec, environment, "seed")
    with database_lock.hold(d.server, d.names.database, environment, "seed"):
        result = fill_synthetic(url, d.names.database, rows, seed_value)
    details = {k: result[k] for k in ("rows_per_table", "seed", "tables", "seconds")}
    _record(sessions, ctx, "data.seed", now(), environment, d.names.database, details)
    return {"environment": environment, **result}


def fill_synthetic(url: str, database: str, rows: int, seed_value: int) -> dict[str, Any]:
    """Seed the database at `url` (its lock held by the caller): what went in, counts only, and how long."""
    started = time.perf_counter()
    result = seed_database(url, rows, seed_value)
    return {
        "database": database,
        "seed": seed_value,
        "rows_per_table": rows,
        "tables": result["tables"],
        "rows": result["rows"],
        "seconds": round(time.perf_counter() - started, 3),
    }


@dataclass(frozen=True)
class ClonePlan:
    """A clone that passed every check the state store can answer: what to read, where to write, how."""

    source: str
    target: str
    source_url: str
    source_role: str
    target_server: str
    names: postgres.Names
    declared: Declared
    masker: Masker


def plan_clone(session: Session, spec: Spec, keyring: Keyring, source: str, target: str) -> ClonePlan:
    """Every check of a masked clone the state store can answer: tiers, policy, source, provisioning, key."""
    spec.environment(source)
    tier = _tier(spec, target)
    if tier in LIVE_TIERS:
        raise Conflict(
            f"{target} is a {tier} environment: a masked clone never overwrites it",
            hint="clone into a staging, testing, development or preview environment",
        )
    data = spec.environments[target].data
    if data.policy != "masked":
        raise Conflict(
            f"{target}'s data policy is {data.policy}, not masked: it does not take copies of {source}",
            hint=f"set environments.{target}.data: {{policy: masked, source: {source}}} in conveyor.yaml",
        )
    if data.source != source:
        raise Conflict(
            f"{target} takes its masked data from {data.source}, not from {source}",
            hint=f"`conveyor data clone {data.source} --to {target}`, or change "
            f"environments.{target}.data.source",
        )
    source_url, source_declared = _database_url(session, spec, source, "clone")
    _, target_declared = _database_url(session, spec, target, "clone into")
    return ClonePlan(
        source,
        target,
        source_url,
        source_declared.names.owner,
        target_declared.server,
        target_declared.names,
        declared(spec),
        Masker(_masking_key(session, spec, keyring, source)),
    )


def _masking_key(session: Session, spec: Spec, keyring: Keyring, source: str) -> str:
    hint = (
        f"declare {MASKING_KEY}: {{kind: token}} under environments.{source}.secrets, apply, then "
        f"`conveyor secret set {source} {MASKING_KEY} --generate`"
    )
    if MASKING_KEY not in spec.environments[source].secrets:
        raise Conflict(
            f"{source} declares no {MASKING_KEY}: a masked clone is keyed by it (ADR 0012)", hint=hint
        )
    owner = secrets.source_of(spec, source, MASKING_KEY)
    row = secrets.current(session, owner, MASKING_KEY)
    if row is None:
        raise Conflict(f"{source}'s {MASKING_KEY} has no value yet", hint=hint)
    ref = str(secrets.Ref(owner, MASKING_KEY, row.version))
    return secrets.values(session, keyring, {ref})[ref]


def _preflight(plan: ClonePlan, catalog: Catalog) -> SubsetPlan:
    found = preflight(catalog.for_rules(), plan.declared.rules, plan.declared.pii)
    found.raise_for_problems()
    return plan_subset(catalog, plan.declared.subset)


def _unreviewed(plan: ClonePlan, catalog: Catalog) -> list[str]:
    reviewed = {str(rule.column) for rule in plan.declared.rules} | set(plan.declared.not_sensitive)
    return [
        f"{table.ref}.{column.name}"
        for table in catalog.tables
        for column in table.columns
        if f"{table.ref}.{column.name}" not in reviewed
    ]


_PERSONAL = re.compile(
    r"e_?mail|phone|mobile|first_?name|last_?name|full_?name|surname|(^|_)name$|address|street|"
    r"birth|dob|ssn|social|passport|national_id|tax_id|iban|card|account_number|(^|_)ip(_|$)|"
    r"postcode|zip|salary|gender|password",
    re.IGNORECASE,
)


Sampler = Callable[[CatalogTable, str], list[str | None]]
SAMPLE_ROWS = 200


def suspects(catalog: Catalog, unreviewed: list[str], sample: Sampler | None = None) -> list[dict[str, str]]:
    """Unreviewed columns that look personal, by their name or (with `sample`) by what a sample of
    their values looks like, each with a rule to start from and why, for a person to confirm."""
    found = []
    for ref in unreviewed:
        table_ref, _, name = ref.rpartition(".")
        table = catalog.table(table_ref)
        column = table.column(name) if table else None
        if table is None or column is None:
            continue
        if _PERSONAL.search(name):
            rule = suggested_rule(Column(column.name, column.type, column.nullable))
            found.append({"column": ref, "suggested_rule": rule, "why": "its name looks personal"})
        elif sample is not None and column_category(column.type) == "text":
            detected = detect.classify(sample(table, name))
            if detected is not None:
                found.append({"column": ref, "suggested_rule": detected.kind.rule, "why": detected.why})
    return found


@contextmanager
def sampler(url: str) -> Iterator[Sampler]:
    """Reads up to SAMPLE_ROWS non-null values of a column, read-only, for the detector's eyes only."""
    from psycopg import sql

    with postgres.connect(url) as conn:
        conn.execute("SET default_transaction_read_only = on")
        conn.execute("SET statement_timeout = '5s'")

        def sample(table: CatalogTable, column: str) -> list[str | None]:
            query = sql.SQL("SELECT {c}::text FROM {s}.{t} WHERE {c} IS NOT NULL LIMIT %s").format(
                c=sql.Identifier(column), s=sql.Identifier(table.schema), t=sql.Identifier(table.name)
            )
            return [row[0] for row in conn.execute(query, (SAMPLE_ROWS,))]

        yield sample


def check_clone(session: Session, spec: Spec, keyring: Keyring, source: str, target: str) -> dict[str, Any]:
    """The pre-flight of a masked clone, run against the source's schema now; changes nothing."""
    plan = plan_clone(session, spec, keyring, source, target)
    catalog = cloning.inspect(plan.source_url)
    found = preflight(catalog.for_rules(), plan.declared.rules, plan.declared.pii)
    unreviewed = _unreviewed(plan, catalog)
    subset_problem = None
    if found.ok:
        try:
            plan_subset(catalog, plan.declared.subset)
        except InvalidRequest as error:
            subset_problem = {"message": error.detail, "fix": error.hint}
    return {
        "source": source,
        "target": target,
        "ok": found.ok and subset_problem is None,
        "problems": [p.to_json() for p in found.problems] + ([subset_problem] if subset_problem else []),
        "unreviewed_columns": unreviewed,
        "suspected_pii": _suspects_in_source(plan, catalog, unreviewed),
        "key_fingerprint": plan.masker.fingerprint,
    }


def preflight_clone(plan: ClonePlan) -> None:
    """Hold the rules against the source's schema now; MaskingRefused (or InvalidRequest) with every fix."""
    _preflight(plan, cloning.inspect(plan.source_url))


def clone(
    sessions: Sessions,
    ctx: AuditContext,
    spec: Spec,
    keyring: Keyring,
    source: str,
    target: str,
    now: Callable[[], datetime],
) -> dict[str, Any]:
    """Copy `source` into `target` through the masking rules; refused (audited) by the pre-flight.

    `sessions` opens a write session of the state store; the clone itself runs between two of them,
    under the target database's lock.
    """
    with sessions() as session:
        plan = plan_clone(session, spec, keyring, source, target)
    try:
        preflight_clone(plan)  # refuse before anything is created
        with database_lock.hold(plan.target_server, plan.names.database, target, "clone"):
            result = copy_masked(plan)
    except (MaskingRefused, InvalidRequest, Conflict) as error:
        refused = isinstance(error, MaskingRefused | InvalidRequest | database_lock.DatabaseBusy)
        details = {"source": source, "reason": error.detail, **problem_kinds(error)}
        _record(sessions, ctx, "data.clone", now(), target, plan.names.database, details,
                "refused" if refused else "failure")  # fmt: skip
        raise
    _record(sessions, ctx, "data.clone", now(), target, plan.names.database, clone_details(result))
    return result


def copy_masked(plan: ClonePlan) -> dict[str, Any]:
    """Build the masked clone and swap it in (the target's lock held by the caller); what was copied.

    The snapshot's own catalog is held against the rules again before a row is copied.
    """
    started = time.perf_counter()
    name, built, catalog = cloning.build(
        plan.source_url,
        cloning.Target(plan.target_server, plan.names),
        plan.declared.rules,
        plan.masker,
        lambda found: _preflight(plan, found),
        subset_role=plan.source_role,
    )
    cloning.swap(plan.target_server, plan.names.database, name, plan.names.owner)
    seconds = round(time.perf_counter() - started, 3)
    counts: dict[ColumnRef | str, int] = {k: v for k, v in built.column_counts().items()}
    masking = report(plan.declared.rules, counts, plan.declared.pii, plan.masker.fingerprint)
    unreviewed = _unreviewed(plan, catalog)
    return {
        "source": plan.source,
        "target": plan.target,
        "database": plan.names.database,
        "rows": built.rows,
        "tables": {t.table: t.rows for t in built.tables},
        "subset": {
            ref: {"rule": rule.describe(), "rows": built.subset_rows.get(ref)}
            for ref, rule in plan.declared.subset.items()
        },
        "kept_by_reference": {
            ref: count for ref, count in built.subset_rows.items() if ref not in plan.declared.subset
        },
        "seconds": seconds,
        "phases": {k: round(v, 3) for k, v in built.seconds.items()},
        "rows_per_second": round(built.rows / seconds) if seconds else None,
        "unreviewed_columns": unreviewed,
        "suspected_pii": _suspects_in_source(plan, catalog, unreviewed),
        "report": masking.to_json(),
        "report_lines": masking.lines(),
    }


def _suspects_in_source(plan: ClonePlan, catalog: Catalog, unreviewed: list[str]) -> list[dict[str, str]]:
    with sampler(plan.source_url) as sample:
        return suspects(catalog, unreviewed, sample)


def clone_details(result: dict[str, Any]) -> dict[str, Any]:
    """What the audit keeps of a clone: names, counts and the masking report (never a value)."""
    return {k: result[k] for k in ("source", "rows", "tables", "seconds", "report")}


def problem_kinds(error: Exception) -> dict[str, Any]:
    """The kind and column of each problem a refusal carries (for the audit: names, never values)."""
    problems = getattr(error, "problems", None)
    if not problems:
        return {}
    return {"problems": [{"kind": p.kind, "column": p.column} for p in problems if hasattr(p, "kind")]}


def status(spec: Spec, environment: str) -> dict[str, Any]:
    """The environment's data policy and what conveyor.yaml declares about personal data."""
    env = spec.environment(environment)
    d = declared(spec)
    return {
        "environment": environment,
        "tier": env.tier,
        "policy": env.data.policy,
        "source": env.data.source,
        "refresh": str(env.data.refresh) if env.data.refresh is not None else None,
        "pii": list(d.pii),
        "masking": d.rules.to_mapping(),
        "not_sensitive": list(d.not_sensitive),
        "subset": {table: rule.describe() for table, rule in d.subset.items()},
    }
